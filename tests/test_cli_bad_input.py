"""Bad input through the real `infersweep` command: exit 2, one message naming the bad value, and
nothing stored.

Every row is a real subprocess (each imports torch, ~3 s), so the rows of one session are started
together, in parallel, the first time any of them is asked for; each test then checks its own.
No sweep is run: the base arguments are valid (see test_base_arguments_are_valid) and each row
spoils exactly one thing.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from infersweep.grid.spec import SpecError, build_spec

# Valid, and tiny in case a row is wrongly accepted and a sweep starts after all.
BASE = {"--backends": "torch", "--devices": "cpu", "--precisions": "fp32", "--sizes": "32",
        "--batches": "1", "--data": "synthetic", "--min-time": "0.01", "--max-time": "0.05",
        "--min-iterations": "2", "--timeout": "30"}


@dataclass
class Row:
    id: str
    # (the row's own empty folder, shared files) -> (flags to change or add, spec file or None,
    # the text stderr must contain). A flag set to None is dropped from BASE.
    make: Callable[[Path, dict], tuple[dict, str | None, str]]
    command: str = "run"


@dataclass
class Outcome:
    row: Row
    folder: Path
    needle: str
    proc: subprocess.CompletedProcess
    wall_s: float

    def describe(self) -> str:
        return (f"rc={self.proc.returncode}\n--- stderr ---\n{self.proc.stderr}\n"
                f"--- stdout ---\n{self.proc.stdout[-2000:]}")


def flag(name: str, value: str, needle: str | None = None):
    return lambda d, s: ({name: value}, None, value if needle is None else needle)


def _empty_weights(d, s):
    (d / "empty.pt").write_bytes(b"")
    return {"--weights": str(d / "empty.pt")}, None, f"weights file is empty: {d / 'empty.pt'}"


def _missing_weights(d, s):
    path = d / "no" / "such" / "weights.pt"
    return {"--weights": str(path)}, None, f"weights file not found: {path}"


def _list_weights(d, s):
    return ({"--weights": str(s["list"])}, None,
            f"{s['list']} does not hold a state_dict (found list)")


def _wrong_architecture(d, s):
    return ({"--weights": str(s["mobilenet"])}, None,
            f"{s['mobilenet']} does not fit resnet18: ")


def _missing_data(d, s):
    return {"--data": str(d / "photos")}, None, str(d / "photos")


def _empty_data(d, s):
    (d / "photos").mkdir()
    return {"--data": str(d / "photos")}, None, f"data folder {d / 'photos'} holds no images"


def _corrupt_data(d, s):
    folder = d / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "b.jpg").write_text("hello")
    return ({"--data": str(folder)}, None,
            f"none of the 2 images in {folder} can be decoded")


def _toml_syntax(d, s):
    path = d / "sweep.toml"
    path.write_text('model = "resnet18"\nsizes = [32,\n')
    return {}, str(path), f"{path} is not valid TOML"


def _toml_unknown_key(d, s):
    path = d / "sweep.toml"
    path.write_text('model = "resnet18"\ncolour = "red"\n')
    return {}, str(path), f"{path}: unknown key(s) colour"


def _toml_missing(d, s):
    path = d / "nowhere" / "sweep.toml"
    return {}, str(path), f"sweep file not found: {path}"


def _toml_seed_inf(d, s):
    path = d / "sweep.toml"
    path.write_text("seed = inf\n")
    return {}, str(path), "seed"


def _out_under_a_file(d, s):
    (d / "afile").write_text("I am a file")
    out = d / "afile" / "sub"
    return {"--out": str(out)}, None, f"--out {out} cannot be written"


ROWS = [
    Row("backend", flag("--backends", "tensorflow", "unknown backend 'tensorflow'")),
    Row("device", flag("--devices", "tpu", "unknown device 'tpu'")),
    Row("precision", flag("--precisions", "fp8", "unknown precision 'fp8'")),
    Row("model", flag("--model", "resnet9000", "unknown model 'resnet9000'")),
    Row("batch-0", flag("--batches", "0", "batches: '0' is not a positive integer")),
    Row("batch-negative", flag("--batches", "-1", "batches: '-1' is not a positive integer")),
    Row("batch-fraction", flag("--batches", "1.5", "batches: '1.5' is not a positive integer")),
    Row("batch-word", flag("--batches", "abc", "batches: 'abc' is not a positive integer")),
    Row("size-0", flag("--sizes", "0", "sizes: '0' is not a positive integer")),
    Row("size-absurd", flag("--sizes", "100000", "sizes: 100000 is absurdly large")),
    Row("weights-missing", _missing_weights),
    Row("weights-empty", _empty_weights),
    Row("weights-not-a-state-dict", _list_weights),
    Row("weights-wrong-architecture", _wrong_architecture),
    Row("data-missing", _missing_data),
    Row("data-empty-folder", _empty_data),
    Row("data-corrupt-jpgs", _corrupt_data),
    Row("toml-syntax-error", _toml_syntax),
    Row("toml-unknown-key", _toml_unknown_key),
    Row("toml-missing", _toml_missing),
    Row("out-unwritable", _out_under_a_file),
    Row("plan-batch-0", flag("--batches", "0", "batches: '0' is not a positive integer"),
        command="plan"),
]
if Path("/proc/meminfo").exists():  # the memory guard reads it; elsewhere this would run a sweep
    ROWS.append(Row("too-much-memory", lambda d, s: ({"--sizes": "8192", "--batches": "65536"},
                                                     None, "batch 65536 at 8192 px needs about")))

# A sweep file with `seed = inf`: int(inf) raised OverflowError, a traceback (exit 1) once.
BUGS = [pytest.param(Row("toml-seed-inf", _toml_seed_inf))]

CONTROL = Row("control-valid", lambda d, s: ({}, None, ""), command="plan")


def _shared_files(root: Path) -> dict:
    import torch
    import torchvision

    root.mkdir()
    files = {"list": root / "list.pt", "mobilenet": root / "mobilenet_v3_small.pt"}
    torch.save([1, 2, 3], files["list"])
    # Another architecture, small to save quickly (tests/test_models.py does resnet50 in-process).
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), files["mobilenet"])
    return files


def _run_row(row: Row, root: Path, shared: dict, env: dict) -> Outcome:
    folder = root / row.id
    folder.mkdir()
    changes, spec_file, needle = row.make(folder, shared)
    args = dict(BASE, **{"--out": str(folder / "out")})
    args.update(changes)
    argv = [sys.executable, "-m", "infersweep", row.command]
    if spec_file:
        argv.append(spec_file)
    for name, value in args.items():
        if value is not None:
            argv.append(f"{name}={value}")  # `=`: a value like -1 is not taken for a flag
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                          cwd=folder)
    return Outcome(row, folder, needle, proc, time.monotonic() - started)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """Run every row collected from this module at once, in parallel."""
    rows = {}
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module.__name__ == __name__ and callspec and "row" in callspec.params:
            rows[callspec.params["row"].id] = callspec.params["row"]
    root = tmp_path_factory.mktemp("bad-input")
    shared = _shared_files(root / "shared")
    env = dict(os.environ, INFERSWEEP_CACHE=str(root / "cache"), COLUMNS="80")
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        # The rows that also import torchvision (~2 s more) first: the pool ends sooner.
        heavy = sorted(rows, key=lambda rid: not rid.startswith(("weights", "model")))
        futures = {rid: pool.submit(_run_row, rows[rid], root, shared, env) for rid in heavy}
        return {rid: f.result() for rid, f in futures.items()}


@pytest.mark.parametrize("row", ROWS + BUGS, ids=lambda r: r.id)
def test_bad_input_exits_2_naming_the_value(row, outcomes):
    o = outcomes[row.id]
    stderr = o.proc.stderr
    assert o.proc.returncode == 2, o.describe()
    assert "Traceback" not in stderr, o.describe()
    assert stderr.lstrip().startswith("error:"), o.describe()
    # Verbatim: a long path must not be broken over lines (that would defeat copy and grep).
    assert o.needle in stderr, o.describe()
    assert not (o.folder / "out").exists(), o.describe()  # nothing created: not even the folder


@pytest.mark.parametrize("row", [CONTROL], ids=lambda r: r.id)
def test_base_arguments_are_valid(row, outcomes):
    """Without this, every row above could pass for a reason that has nothing to do with it."""
    o = outcomes[row.id]
    assert o.proc.returncode == 0, o.describe()
    assert "1 cases, 1 to run" in o.proc.stdout, o.describe()


def test_wrong_architecture_message_names_the_mismatch(outcomes):
    o = outcomes.get("weights-wrong-architecture")
    if o is None:
        pytest.skip("row not collected")
    assert "missing keys: bn1.bias, bn1.num_batches_tracked" in o.proc.stderr, o.describe()
    assert "unexpected keys: classifier.0.bias" in o.proc.stderr, o.describe()


# In-process (no subprocess, no torch start): values that build_spec must refuse with SpecError;
# anything else escapes the CLI's `except SpecError` as a traceback, or is accepted.
NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("raw", [
    {"batches": "0"}, {"batches": "-1"}, {"batches": "1.5"}, {"batches": "abc"},
    {"batches": ""}, {"batches": "1,,2"}, {"batches": [True]}, {"batches": 8},
    {"sizes": "0"}, {"sizes": "8193"}, {"sizes": [1.5]},
    {"backends": "torch,tensorflow"}, {"devices": "tpu"}, {"precisions": "fp8"},
    {"model": "resnet9000"}, {"colour": "red"},
    {"timeout": "abc"}, {"timeout": 0}, {"timeout": -1}, {"seed": -1}, {"seed": 1.5},
    {"opset": 6}, {"min_iterations": 0}, {"max_time": 0}, {"target_ci": 0},
    {"min_time": 5, "max_time": 1}, {"quick": "maybe"},
    {"batches": "\u00b2"},
    {"sizes": "++5"},
    {"seed": INF},
    {"min_iterations": INF},
    {"timeout": NAN},
    {"target_ci": NAN},
    {"max_time": NAN},
    {"min_time": NAN},
], ids=repr)
def test_build_spec_refuses_with_spec_error(raw):
    with pytest.raises(SpecError):
        build_spec(raw)
