"""The `--only` filter language: which cases a command works on.

    backend=onnxruntime,batch>=16     conditions separated by commas, all must hold (AND)
    backend=torch|onnxruntime         | inside one condition: any of these values (OR)
    precision!=fp32                   != : none of these values
    size<512, batch>=8                < <= > >= compare numbers: size and batch only
    device=cuda, scope=e2e, data=samples, model=resnet50, weights=ckpt.pt
    options=channels_last=true        options: the case has these k=v pairs (others may be
    options=mode=max-autotune,channels_last=true    there too); commas go on listing pairs
    options=                          ... and an empty value: a case without options
    status=ok|failed                  the stored status; `none` = no stored result yet

Fields: model, weights, backend, device, precision, size (alias image_size), batch (alias
batch_size), data, scope, options, status. Field names are case-insensitive, values are not.
A value with a comma or a | in it can be quoted: weights="a,b.pt". `==` is read as `=`.

An empty or missing filter matches every case. ``parse_filter`` checks everything it can
(fields, operators, numbers, devices, precisions, scopes, statuses) and raises ``FilterError``
with one message naming the bad part and what is allowed; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infersweep.case import Case, OptionsError, format_options, parse_options
from infersweep.results.result import STATUSES
from infersweep.grid.spec import KNOWN_DEVICES, KNOWN_PRECISIONS, KNOWN_SCOPES

TEXT_FIELDS = ("model", "weights", "backend", "device", "precision", "data", "scope", "options",
               "status")
NUMBER_FIELDS = ("size", "batch")
FIELDS = ("model", "weights", "backend", "device", "precision", "size", "batch", "data", "scope",
          "options", "status")
ALIASES = {"image_size": "size", "batch_size": "batch"}
# Filter field -> Case attribute (status is not a Case field: it is passed to `matches`).
CASE_ATTRIBUTE = {"size": "image_size", "batch": "batch_size"}

NO_RESULT = "none"  # the status value of a case without a stored result
STATUS_VALUES = STATUSES + (NO_RESULT,)
KNOWN_VALUES = {"device": KNOWN_DEVICES, "precision": KNOWN_PRECISIONS, "scope": KNOWN_SCOPES,
                "status": STATUS_VALUES}

EQUALITY_OPS = ("=", "!=")
ORDER_OPS = ("<", "<=", ">", ">=")
OPS = EQUALITY_OPS + ORDER_OPS

HELP = ("only the cases matching FILTER: comma-separated conditions, all must hold, e.g. "
        "'backend=torch|onnxruntime,batch>=16,precision!=fp32'. Fields: " + ", ".join(FIELDS)
        + "; operators = != (any of a|b) and < <= > >= (size, batch)")

_HEAD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|=|<|>)(.*)\Z", re.DOTALL)


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    field: str  # canonical name, one of FIELDS
    op: str  # one of OPS
    values: tuple  # ints for size/batch; str otherwise (options: canonical "k=v,k=v")

    def matches(self, case: Case | Mapping, status: str | None) -> bool:
        actual = _value_of(case, self.field, status)
        if self.op in ORDER_OPS:
            (bound,) = self.values
            return {"<": actual < bound, "<=": actual <= bound, ">": actual > bound,
                    ">=": actual >= bound}[self.op]
        if self.field == "options":
            hit = any(_options_match(actual, wanted) for wanted in self.values)
        else:
            hit = actual in self.values
        return hit if self.op == "=" else not hit

    def __str__(self) -> str:
        return f"{self.field}{self.op}{'|'.join(_render(self.field, v) for v in self.values)}"


@dataclass(frozen=True)
class Filter:
    conditions: tuple[Condition, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.conditions

    @property
    def fields(self) -> frozenset[str]:
        """The canonical names of the fields this filter has conditions on."""
        return frozenset(c.field for c in self.conditions)

    def on(self, field: str) -> tuple[Condition, ...]:
        field = ALIASES.get(field, field)
        return tuple(c for c in self.conditions if c.field == field)

    def matches(self, case: Case | Mapping, status: str | None = None) -> bool:
        """True when every condition holds. ``case``: a Case, or a flat row (dict with the Case
        fields and maybe "status"). ``status``: the stored status, None when there is none (then
        the status is `none`: status=none matches, status=ok does not)."""
        if status is None and isinstance(case, Mapping):
            status = case.get("status")
        return all(c.matches(case, status) for c in self.conditions)

    def __str__(self) -> str:
        return ",".join(str(c) for c in self.conditions)


MATCH_ALL = Filter()


def parse_filter(text: str | None, backends: Iterable[str] | None = None) -> Filter:
    """Parse `--only` text. ``backends``: when given, backend values must be among these names
    (pass the registry's names for run/plan; leave None where stored runs may hold others)."""
    if text is None or not text.strip():
        return MATCH_ALL
    known_backends = tuple(backends) if backends is not None else None
    pieces: list[list[str]] = []  # [field, op, raw value text, whole condition text]
    for segment in _split(text, ","):
        if not segment.strip():
            raise FilterError(f"empty condition in filter {text!r} (two commas in a row, or a "
                              "comma at the start or end)")
        head = _HEAD.match(segment)
        name = head.group(1).lower() if head else None
        field = ALIASES.get(name, name)
        op = "=" if head and head.group(2) == "==" else head.group(2) if head else None
        if field not in FIELDS:
            previous = pieces[-1] if pieces else None
            if previous and previous[0] == "options" and op == "=":
                # options=a=1,b=2: the comma goes on listing the option pairs
                previous[2] += "," + segment.strip()
                previous[3] += "," + segment.strip()
                continue
            raise FilterError(_bad_field(segment.strip(), name, op, pieces))
        pieces.append([field, op, head.group(3), segment.strip()])
    return Filter(tuple(_condition(f, op, raw, whole, known_backends)
                        for f, op, raw, whole in pieces))


# How the operators read in a folder name: views/backend=torch,batch-ge-16
_NAME_OPS = {">=": "-ge-", "<=": "-le-", "!=": "-ne-", ">": "-gt-", "<": "-lt-", "|": "+"}


def view_name(flt: Filter) -> str:
    """A folder name for the view of a filter (report --only): readable, one per filter."""
    import hashlib

    text = str(flt)
    for op, word in _NAME_OPS.items():
        text = text.replace(op, word)
    name = re.sub(r"[^A-Za-z0-9=,._+-]+", "_", text).strip("._") or "all"
    if len(name) > 80 or name != text:  # shortened or changed: a digest keeps names apart
        name = f"{name[:60]}-{hashlib.sha256(str(flt).encode()).hexdigest()[:8]}"
    return name


def select(results: Iterable, flt: Filter | None) -> list:
    """The results (anything with .case and .status, e.g. Result) that the filter matches."""
    if flt is None or flt.empty:
        return list(results)
    return [r for r in results if flt.matches(r.case, r.status)]


# Fields whose values are names a run's cases carry: a value no case has is a typo, not a
# question (device, precision, scope and status are checked against fixed lists when parsed).
NAMED_FIELDS = ("model", "weights", "backend", "data")


def check_known(flt: Filter | None, cases: Iterable[Case], flag: str = "--only") -> None:
    """FilterError when ``flt`` names a model, weights, backend or data that none of ``cases``
    has. Where a filter selects stored results (compare), a
    misspelt name would otherwise select nothing and pass silently ("no pairs", exit 0)."""
    if flt is None or flt.empty:
        return
    cases = list(cases)
    for condition in flt.conditions:
        if condition.field not in NAMED_FIELDS:
            continue
        present = {_value_of(c, condition.field, None) for c in cases}
        unknown = [v for v in condition.values if v not in present]
        if unknown:
            allowed = ", ".join(sorted(str(v) for v in present)) or "none"
            raise FilterError(f"{flag} {condition}: unknown {condition.field} {unknown[0]!r}; "
                              f"allowed: {allowed}")


def _bad_field(segment: str, name: str | None, op: str | None, pieces: list) -> str:
    if name is None or op is None:
        if pieces and pieces[-1][1] in EQUALITY_OPS and not any(ch in segment for ch in "|=<>!"):
            whole = pieces[-1][3]
            return (f"{segment!r} is not a condition (FIELD=VALUE): conditions are separated by "
                    f"commas; for several values of one field write {whole}|{segment}")
        return (f"{segment!r} is not a condition: write FIELD OP VALUE with OP one of "
                f"{' '.join(OPS)}, e.g. backend=torch or batch>=16")
    close = difflib.get_close_matches(name, FIELDS + tuple(ALIASES), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"unknown field {name!r} in {segment!r}{hint}; fields: {', '.join(FIELDS)} "
            f"(aliases: {', '.join(ALIASES)})")


def _condition(field: str, op: str, raw: str, whole: str,
               known_backends: tuple[str, ...] | None) -> Condition:
    texts = [_unquote(v, whole) for v in _split(raw, "|")]
    if op in ORDER_OPS:
        if field not in NUMBER_FIELDS:
            raise FilterError(f"{whole!r}: {op} compares numbers and applies to "
                              f"{' and '.join(NUMBER_FIELDS)} only; {field} takes = or !=")
        if len(texts) > 1:
            raise FilterError(f"{whole!r}: | (any of) works with = and != only, not with {op}")
    if field == "options":
        return Condition(field, op, _dedupe(_options_value(t, whole) for t in texts))
    if any(t == "" for t in texts):
        raise FilterError(f"{whole!r}: no value for {field} (write {field}{op}VALUE)")
    if field in NUMBER_FIELDS:
        numbers = []
        for t in texts:
            try:
                numbers.append(int(t))
            except ValueError:
                raise FilterError(f"{whole!r}: {field} takes whole numbers, not {t!r}") from None
        return Condition(field, op, _dedupe(numbers))
    allowed = KNOWN_VALUES.get(field) or (known_backends if field == "backend" else None)
    if allowed is not None:
        for t in texts:
            if t not in allowed:
                raise FilterError(f"{whole!r}: unknown {field} {t!r}; allowed: "
                                  f"{', '.join(allowed)}")
    return Condition(field, op, _dedupe(texts))


def _options_value(text: str, whole: str) -> str:
    """Canonical "k=v,k=v" (sorted, as in Case.options); "" for no options."""
    try:
        pairs = parse_options(text)
    except OptionsError as exc:
        raise FilterError(f"{whole!r}: options are KEY=VALUE pairs separated by commas, "
                          f"e.g. options=channels_last=true; {exc.item!r} is not one") from None
    return format_options({k.strip(): v.strip() for k, v in pairs.items()})


def _options_match(actual: str, wanted: str) -> bool:
    if not wanted:
        return actual == ""
    return parse_options(wanted).items() <= parse_options(actual).items()


def _value_of(case: Case | Mapping, field: str, status: str | None):
    if field == "status":
        return status if status is not None else NO_RESULT
    attribute = CASE_ATTRIBUTE.get(field, field)
    return case[attribute] if isinstance(case, Mapping) else getattr(case, attribute)


def _dedupe(values) -> tuple:
    return tuple(dict.fromkeys(values))


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside single or double quotes (the quotes stay in the pieces)."""
    pieces, current, quote = [], [], None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == sep:
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quote:
        raise FilterError(f"unterminated {quote} quote in filter {text!r}")
    pieces.append("".join(current))
    return pieces


def _unquote(text: str, whole: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if any(q in text for q in "\"'"):
        raise FilterError(f"{whole!r}: quote a whole value (\"...\"), not a part of it")
    return text


def _render(field: str, value) -> str:
    if field in NUMBER_FIELDS or field == "options":
        return str(value)
    text = str(value)
    if text and not any(ch in text for ch in ",|\"'") and text == text.strip():
        return text
    return f"'{text}'" if '"' in text else f'"{text}"'
