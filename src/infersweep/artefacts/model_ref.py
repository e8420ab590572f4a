"""What a ``--model`` entry names, read without running any of the user's code.

Four forms:
- ``resnet18``: a torchvision classification model;
- ``timm:NAME``: a timm model (the optional extra ``infersweep[timm]``);
- ``PATH.py:FUNCTION`` or ``package.module:FUNCTION``: the user's factory returning an nn.Module,
  optionally taking the image size;
- ``PATH.onnx``: an ONNX file, run as is by the ONNX backends.

The parent process only reads: a factory file is parsed with ``ast`` and a module is located on
``sys.path`` without being imported, so a factory that formats the disk on import does so in a
worker (or in the preflight's checking subprocess), never while the sweep is being validated.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib.machinery
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TORCHVISION, TIMM, FACTORY, ONNX = "torchvision", "timm", "factory", "onnx"
TIMM_PREFIX = "timm:"
TIMM_HINT = "pip install 'infersweep[timm]'"


class ModelError(ValueError):
    """A --model entry that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class ModelRef:
    text: str  # the entry as cases carry it (file paths made absolute)
    kind: str  # torchvision | timm | factory | onnx
    target: str  # model name, factory file or module, or ONNX file
    function: str = ""  # the factory function

    @property
    def torch_side(self) -> bool:
        """Built as a torch nn.Module (every backend can run it); ONNX files are not."""
        return self.kind != ONNX

    @property
    def short(self) -> str:
        """A name for folder names and titles: the model or file name without its folder."""
        if self.kind in (FACTORY, ONNX) and os.sep in self.target:
            stem = Path(self.target).stem
            return f"{stem}:{self.function}" if self.function else stem
        return self.text


def parse_model(text: str, base: Path | None = None) -> ModelRef:
    """The entry's form, with file paths resolved against ``base`` (default: the working
    directory); only its syntax is checked here (``check_model`` opens what it names)."""
    text = text.strip()
    if not text:
        raise ModelError("--model: empty model entry")
    if text.startswith(TIMM_PREFIX):
        name = text[len(TIMM_PREFIX):].strip()
        if not name:
            raise ModelError(f"--model {text!r}: no timm model name after 'timm:'")
        return ModelRef(f"{TIMM_PREFIX}{name}", TIMM, name)
    if text.lower().endswith(".onnx"):
        path = _absolute(text, base)
        return ModelRef(str(path), ONNX, str(path))
    where, colon, function = text.rpartition(":")
    if colon and where:
        if not function.isidentifier():
            raise ModelError(f"--model {text!r}: {function!r} is not a Python function name")
        if where.endswith(".py"):
            path = _absolute(where, base)
            return ModelRef(f"{path}:{function}", FACTORY, str(path), function)
        if all(part.isidentifier() for part in where.split(".")):
            return ModelRef(text, FACTORY, where, function)
        raise ModelError(f"--model {text!r}: expected PATH.py:FUNCTION or package.module:FUNCTION")
    if text.lower().endswith(".py"):  # a factory file without its function: not a model name
        raise ModelError(f"--model {text!r}: name the function that builds the model: "
                         f"'{text}:FUNCTION'")
    return ModelRef(text, TORCHVISION, text)


def _absolute(path: str, base: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(os.path.abspath((base or Path.cwd()) / p))


def check_model(ref: ModelRef) -> None:
    """Open what the entry names, without running user code: a ModelError names the problem."""
    if ref.kind == TORCHVISION:
        from infersweep.artefacts.models import available_models, registered_models

        # A name the source reader missed is asked of torchvision before it is refused.
        known = available_models()
        _check_name(ref.text, ref.target, known if ref.target in known else registered_models(),
                    "torchvision", "(see `infersweep plan --list-models`)")
    elif ref.kind == TIMM:
        _check_name(ref.text, ref.target, timm_models(), "timm", "")
    elif ref.kind == FACTORY:
        source = _factory_file(ref)
        _check_defined(ref, source)
    else:
        onnx_input(ref.target)  # raises ModelError for a missing, unreadable or non-model file


def _check_name(text: str, name: str, known: tuple[str, ...], library: str, tail: str) -> None:
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6) or \
        [m for m in known if name.lower()[:4] in m][:5]
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ModelError(f"unknown model {text!r}: not a {library} model{hint}"
                     f"{' ' + tail if tail else ''}")


@lru_cache(maxsize=1)
def timm_models() -> tuple[str, ...]:
    try:
        import timm
    except ImportError:
        raise ModelError(f"--model timm:...: timm is not installed; install it with: {TIMM_HINT}") \
            from None
    return tuple(timm.list_models())


def _factory_file(ref: ModelRef) -> Path:
    """The factory's source file: the PATH.py itself, or the module found on sys.path (its
    packages' __init__ files are not run: the path finder only looks)."""
    if ref.target.endswith(".py"):
        path = Path(ref.target)
        if not path.is_file():
            raise ModelError(f"--model {ref.text!r}: factory file {path} does not exist")
        return path
    search, spec = None, None
    for part in ref.target.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, search)
        if spec is None:
            raise ModelError(f"--model {ref.text!r}: no module {ref.target!r} on the Python path")
        search = spec.submodule_search_locations
    if spec.origin is None or not spec.origin.endswith(".py"):
        raise ModelError(f"--model {ref.text!r}: module {ref.target!r} has no Python source file")
    return Path(spec.origin)


def _check_defined(ref: ModelRef, path: Path) -> None:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ModelError(f"--model {ref.text!r}: cannot read {path}: {exc}") from None
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    if ref.function not in defined:
        raise ModelError(f"--model {ref.text!r}: {path} defines no function {ref.function!r}")


def factory_digest(ref: ModelRef) -> str:
    """Content hash of a factory's source file: a changed factory never reuses an export."""
    return hashlib.sha256(_factory_file(ref).read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class OnnxInput:
    name: str
    batch: int | None  # None: a named (dynamic) dimension
    channels: int | None
    height: int | None
    width: int | None
    digest: str  # content hash of the file: a changed file is a new case

    @property
    def fixed_size(self) -> int | None:
        return self.height if self.height is not None and self.height == self.width else None


@lru_cache(maxsize=64)
def onnx_input(path: str) -> OnnxInput:
    """The graph's image input, read from the file (its weights are not loaded)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"--model {path!r}: ONNX file does not exist")
    try:
        data = p.read_bytes()
        model = onnx.load_model_from_string(data)
    except OSError as exc:
        raise ModelError(f"--model {path!r}: cannot read the ONNX file: {exc.strerror}") from None
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"--model {path!r}: not an ONNX model ({type(exc).__name__})") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not model.graph.node or len(inputs) != 1:
        raise ModelError(f"--model {path!r}: not an ONNX image model (expected one input, "
                         f"found {len(inputs)} and {len(model.graph.node)} nodes)")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelError(f"--model {path!r}: its input {inputs[0].name!r} has {len(dims)} "
                         "dimensions; an image model takes N x 3 x H x W")
    found = OnnxInput(inputs[0].name, dims[0], dims[1], dims[2], dims[3],
                      hashlib.sha256(data).hexdigest()[:16])
    if found.channels not in (None, 3):
        raise ModelError(f"--model {path!r}: its input takes {found.channels} channels; "
                         "image classification feeds 3 (RGB)")
    return found
