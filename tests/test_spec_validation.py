"""The sweep specification (issue 14: items 3, 4, 8, 13, 14, 15, 20): sweep files that are not
TOML or hold a bad [options], scope as an axis of the grid, conflicting flags, values out of
range, one run directory per set of cases, and the command line's own errors, help and version.

Bad input goes through the real `infersweep` command (each row a subprocess; the rows of one
session run together, in parallel, the first time one is asked for): exit 2, exactly one line
on stderr naming the value, and the --out folder not created.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

import infersweep
from conftest import FAST, cli
from infersweep.flags import SPEC_FLAGS, SweepArgs
from infersweep.grid.spec import SpecError, build_spec

# Valid, and tiny in case a row is wrongly accepted and a sweep starts after all.
BASE = ["--backends", "torch", "--devices", "cpu", "--precisions", "fp32", "--sizes", "32",
        "--batches", "1", "--min-time", "0.01", "--max-time", "0.05", "--min-iterations", "2",
        "--timeout", "60"]
WIDE = dict(os.environ, COLUMNS="200")  # tables and help not cut to the width of a terminal


@dataclass
class Row:
    id: str
    # the row's own empty folder -> (arguments after `infersweep run`, text stderr must hold);
    # the arguments come after BASE, so a flag given again overrides BASE's.
    make: Callable[[Path], tuple[list[str], str]]


def flags(*args: str, needle: str) -> Callable[[Path], tuple[list[str], str]]:
    return lambda d: (BASE + list(args), needle)


def sweep_file(text: str | bytes, needle: str, name: str = "sweep.toml"):
    def make(d: Path):
        path = d / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return [str(path)] + BASE, needle.format(path=path)
    return make


def _checkpoint(d: Path):
    """A real PyTorch checkpoint where the sweep file goes (tab completion makes it easy)."""
    import torch

    path = d / "model.pt"
    torch.save({"conv.weight": torch.ones(8, 3, 3, 3)}, path)
    return [str(path)] + BASE, f"{path} is not a TOML sweep file: byte 0x"


ROWS = [
    # 3: [options] holds a table per backend; anything else was a ValueError/TypeError traceback.
    Row("options-string", sweep_file('[options]\ntorch = "x"\n',
                                      "options: torch = 'x' is not a table")),
    Row("options-number", sweep_file("[options]\ntorch = 5\n",
                                      "options: torch = 5 is not a table")),
    # 4: not a text file at all: a UnicodeDecodeError traceback.
    Row("spec-checkpoint", _checkpoint),
    Row("spec-latin1", sweep_file('model = "r\u00e9snet"\n'.encode("latin-1"),
                                  "{path} is not a TOML sweep file: byte 0xe9 at offset 10")),
    # 13: two flags that say opposite things; an option flag for a backend not in the sweep.
    Row("channels-last-vs-option", flags(
        "--channels-last", "--option", "torch.channels_last=false",
        needle="--channels-last conflicts with --option torch.channels_last=false")),
    Row("compile-mode-vs-option", flags(
        "--backends", "torch-compile", "--compile-mode", "max-autotune",
        "--option", "torch-compile.mode=default",
        needle="--compile-mode max-autotune conflicts with --option torch-compile.mode=default")),
    Row("compile-mode-without-torch-compile", flags(
        "--compile-mode", "max-autotune",
        needle="--compile-mode max-autotune: torch-compile is not among the sweep's backends "
               "(torch)")),
    Row("option-for-backend-not-in-sweep", flags(
        "--option", "onnxruntime.cudnn_conv_algo_search=DEFAULT",
        needle="--option onnxruntime.cudnn_conv_algo_search=DEFAULT: onnxruntime is not among "
               "the sweep's backends (torch)")),
    Row("channels-last-without-torch", flags(
        "--backends", "onnxruntime", "--channels-last",
        needle="--channels-last: neither torch nor torch-compile is among the sweep's backends "
               "(onnxruntime)")),
    # 14: out of range.
    Row("target-ci-5", flags("--target-ci", "5", needle="target_ci: 5.0 must be a fraction below "
                                                        "0.5")),
    Row("min-iterations-1e20", flags("--min-iterations", str(10**20),
                                     needle=f"min_iterations: {10**20} is absurdly large")),
    Row("gpus-negative", sweep_file("gpus = [-1]\n", "gpus: [-1] is not a list of GPU indexes")),
    Row("opset-99", sweep_file("opset = 99\n", "opset: 99 is newer than the installed onnx knows")),
    Row("opset-17", sweep_file("opset = 17\n", "opset: 17 is below 18")),
    # 20: the argument parser's own errors: one line like every other bad input, not a box.
    Row("usage-unknown-flag", flags("--bogus", needle="No such option: --bogus")),
    Row("usage-missing-value", flags("--batches",
                                     needle="Option '--batches' requires an argument")),
    Row("usage-not-an-int", flags("--min-iterations=abc",
                                  needle="Invalid value for '--min-iterations'")),
]


@dataclass
class Outcome:
    folder: Path
    needle: str
    proc: subprocess.CompletedProcess

    def describe(self) -> str:
        return (f"rc={self.proc.returncode}\n--- stderr ---\n{self.proc.stderr}\n"
                f"--- stdout ---\n{self.proc.stdout[-2000:]}")


def _run_row(row: Row, root: Path, env: dict) -> Outcome:
    folder = root / row.id
    folder.mkdir()
    args, needle = row.make(folder)
    # --out before the row's arguments: a row whose last flag lacks its value stays last.
    proc = subprocess.run([sys.executable, "-m", "infersweep", "run",
                           "--out", str(folder / "out"), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=folder)
    return Outcome(folder, needle, proc)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("spec-bad-input")
    env = dict(os.environ, INFERSWEEP_CACHE=str(root / "cache"), COLUMNS="80")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {row.id: pool.submit(_run_row, row, root, env) for row in ROWS}
        return {rid: f.result() for rid, f in futures.items()}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(row, outcomes):
    o = outcomes[row.id]
    assert o.proc.returncode == 2, o.describe()
    lines = o.proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), o.describe()
    assert o.needle in lines[0], o.describe()  # verbatim: not broken over lines
    assert not (o.folder / "out").exists(), o.describe()


def test_the_base_arguments_are_valid(tmp_path):
    """Without this, every row above could fail for a reason that has nothing to do with it."""
    proc = cli("plan", *BASE, cwd=tmp_path, env=WIDE)
    assert proc.returncode == 0, proc.stderr
    assert "1 cases, 1 to run" in proc.stdout


# 3 (in-process, many shapes): a sweep file of the wrong types is a SpecError, never another
# exception, which would escape the CLI's `except SpecError` as a traceback.
@pytest.mark.parametrize("text", [
    '[options]\ntorch = "x"\n', "[options]\ntorch = 5\n", "options = 5\n", 'options = ["a"]\n',
    "[options]\ntorch = [1, 2]\n", "[options.torch]\nchannels_last = [[1]]\n",
    "[options.torch]\nchannels_last = []\n", "[options.torch]\nchannels_last = [true, 2]\n",
    "[options.torch]\nchannels_last = {a = 1}\n", "[options.nosuch]\nx = 1\n",
    "[options.torch]\nnosuch = 1\n", "scope = 5\n", "scope = [[1]]\n", "gpus = [true]\n",
    "gpus = [-1]\n", "gpus = [1.5]\n", "opset = 99\n", 'opset = "x"\n', "target_ci = 5\n",
    "min_iterations = 100000000000000000000\n",
], ids=repr)
def test_a_sweep_file_of_the_wrong_types_is_a_spec_error(tmp_path, text):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    sweep = SweepArgs(spec_file=path, flags={name: None for name in SPEC_FLAGS}, only=None)
    with pytest.raises(SpecError):
        sweep.spec()


def test_a_bad_table_of_the_sweep_file_is_refused_with_option_flags_too(tmp_path):
    """Merging --option into [options] must neither crash on it nor drop it unseen."""
    path = tmp_path / "sweep.toml"
    path.write_text('backends = ["torch"]\n[options]\ntorch = "x"\n')
    given = {name: None for name in SPEC_FLAGS} | {"option": ["torch.channels_last=true"]}
    with pytest.raises(SpecError, match="options: torch = 'x' is not a table"):
        SweepArgs(spec_file=path, flags=given, only=None).spec()


# 14: the edges of each range, both sides.
@pytest.mark.parametrize("raw", [
    {"target_ci": 0.5}, {"target_ci": 5}, {"min_iterations": 100_001}, {"min_iterations": 10**20},
    {"gpus": [-1]}, {"gpus": "-1"}, {"gpus": [True]}, {"opset": 17}, {"opset": 99},
], ids=repr)
def test_out_of_range_values_are_refused(raw):
    with pytest.raises(SpecError):
        build_spec(raw, gpus_visible=2)


def test_the_largest_values_in_range_are_accepted():
    import onnx.defs

    spec = build_spec({"target_ci": 0.49, "min_iterations": 100_000, "gpus": [0, 1],
                       "opset": onnx.defs.onnx_opset_version()}, gpus_visible=2)
    assert (spec.measure.target_ci, spec.measure.min_iterations, spec.gpus) == \
        (0.49, 100_000, (0, 1))
    assert build_spec({"opset": 18}).opset == 18


# 15: one run directory per set of cases, whatever order or spelling they were given in.
DEFAULT_CPU, DEFAULT_GPU = "runs/resnet18-ce76ec99", "runs/resnet18-d29751b4"


def test_the_default_sweeps_keep_their_run_directories():
    """Run directories made before the identity became canonical resume under the same name."""
    assert str(build_spec({}, gpus_visible=0).default_out()) == DEFAULT_CPU
    assert str(build_spec({}, gpus_visible=1).default_out()) == DEFAULT_GPU
    assert str(build_spec({"scope": "e2e"}).default_out()) == "runs/resnet18-31aacc10"
    assert str(build_spec({"options": {"torch": {"channels_last": "true"}}}).default_out()) == \
        "runs/resnet18-1368b98b"


@pytest.mark.parametrize("a, b", [
    ({"backends": "onnxruntime,torch"}, {"backends": "torch,onnxruntime"}),
    ({"batches": "32,8,1"}, {"batches": "1,8,32"}),
    ({"sizes": "224,160"}, {"sizes": [160, 224]}),
    ({"devices": "cuda,cpu"}, {"devices": "cpu,cuda"}),
    ({"precisions": "fp16,fp32"}, {"precisions": "fp32,fp16"}),
    ({"scope": "e2e,compute"}, {"scope": ["compute", "e2e"]}),
    ({"options": {"torch": {"channels_last": "1"}}},
     {"options": {"torch": {"channels_last": "true"}}}),
    ({"options": {"torch": {"channels_last": "True"}}},
     {"options": {"torch": {"channels_last": True}}}),
    # An option given at its default changes no case.
    ({"options": {"torch": {"channels_last": "false"}}}, {}),
    ({"opset": 18}, {}),
], ids=repr)
def test_equivalent_sweeps_share_a_run_directory(a, b):
    assert build_spec(a).default_out() == build_spec(b).default_out()


@pytest.mark.parametrize("raw", [{"opset": 19}, {"scope": "compute,e2e"},
                                 {"options": {"torch": {"channels_last": "true"}}}], ids=repr)
def test_a_sweep_that_measures_something_else_has_another_run_directory(raw):
    assert build_spec(raw).default_out() != build_spec({}).default_out()


def _plan_title(*args: str, cwd: Path) -> str:
    proc = cli("plan", *args, cwd=cwd, env=WIDE)
    assert proc.returncode == 0, proc.stderr
    return next(line.strip() for line in proc.stdout.splitlines() if "plan for " in line)


def test_the_command_names_one_run_directory_for_reordered_flags(tmp_path):
    reordered = _plan_title("--backends", "onnxruntime,torch", "--batches", "32,8,1", cwd=tmp_path)
    default = _plan_title(cwd=tmp_path)
    assert reordered == default
    assert default in (f"plan for {DEFAULT_CPU}", f"plan for {DEFAULT_GPU}")


# 8: scope is an axis of the grid, like sizes.
def _plan_rows(stdout: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("│")[1:-1]]
            for line in stdout.splitlines() if line.startswith("│")]


def test_a_list_of_scopes_plans_a_case_per_scope(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('scope = ["e2e", "compute"]\n')
    proc = cli("plan", path, *BASE, cwd=tmp_path, env=WIDE)
    assert proc.returncode == 0, proc.stderr
    rows = _plan_rows(proc.stdout)
    assert [(r[1], r[5], r[7], r[8]) for r in rows] == [("torch", "1", "e2e", "run"),
                                                         ("torch", "1", "compute", "run")]
    assert len({r[0] for r in rows}) == 2  # two case ids


def test_a_list_of_scopes_runs_both(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--backends", "fault-ok", "--sizes", "8", "--batches", "1,3",
               "--scope", "compute,e2e", *FAST, "--out", out)
    assert proc.returncode == 0, proc.stderr
    db = sqlite3.connect(out / "results.sqlite")
    rows = sorted(db.execute("SELECT json_extract(result, '$.case.scope'), "
                             "json_extract(result, '$.case.batch_size'), status FROM results"))
    db.close()
    assert rows == [("compute", 1, "ok"), ("compute", 3, "ok"), ("e2e", 1, "ok"), ("e2e", 3, "ok")]


# 20: plan shows what `run` with --fresh, --retry-failed, --force would do.
def _actions(stdout: str) -> dict[str, str]:
    """batch -> action of a plan table (one backend, one size)."""
    return {r[5]: r[7] for r in _plan_rows(stdout)}


def test_plan_takes_the_flags_that_change_what_run_does(tmp_path):
    out = tmp_path / "run"
    args = ["--backends", "fault-raise", "--sizes", "8", "--batches", "1,2", *FAST, "--out", out]
    ran = cli("run", *args)  # batch 2 fails (tests/fault_backend.py)
    assert ran.returncode == 0, ran.stderr
    plans = {}
    for extra in ((), ("--retry-failed",), ("--fresh",)):
        proc = cli("plan", *args, *extra, env=WIDE)
        assert proc.returncode == 0, proc.stderr
        plans[extra] = _actions(proc.stdout)
    assert plans[()] == {"1": "done", "2": "done"}
    assert plans[("--retry-failed",)] == {"1": "done", "2": "run"}
    assert plans[("--fresh",)] == {"1": "run", "2": "run"}


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="the memory guard reads it")
def test_plan_force_passes_the_memory_guard_as_run_force_does(tmp_path):
    args = ["--backends", "torch", "--sizes", "8192", "--batches", "65536"]
    refused = cli("plan", *args, cwd=tmp_path, env=WIDE)
    assert refused.returncode == 2 and "batch 65536 at 8192 px needs about" in refused.stderr
    forced = cli("plan", *args, "--force", cwd=tmp_path, env=WIDE)
    assert forced.returncode == 0, forced.stderr
    assert [r[7] for r in _plan_rows(forced.stdout)] == ["run"]


# 20: --version, and help text that reads as written.
def test_version():
    proc = cli("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == \
        (0, f"infersweep {infersweep.__version__}\n", "")


def test_help_keeps_bracketed_text():
    proc = cli("run", "--help", env=WIDE)
    assert "or a local Ray instance (pip install 'infersweep[ray]')" in proc.stdout
    assert "e.g. 'torch[channels_last=true]'" in proc.stdout  # markup ate it once
    assert "(default: runs/MODEL-HASH)" in proc.stdout  # markdown would eat a <model>


@pytest.mark.parametrize("command,sentence", [
    ("run", "1 when none has (every case failed, unsupported or unavailable)"),
    ("recommend", "Flags override the sweep file's [constraints]. Exit code: 0 with a "
                  "recommendation, 1 when no case meets the constraints"),
])
def test_help_paragraphs_are_not_broken_where_the_docstring_wraps(command, sentence):
    """rich kept each docstring line break, so a wide terminal showed "1 when none has (every" /
    "case failed, ...": a paragraph is one line on a terminal wide enough for it."""
    proc = cli(command, "--help", env=WIDE)
    assert proc.returncode == 0, proc.stderr
    assert sentence in proc.stdout, proc.stdout


def test_each_command_summary_is_one_unbroken_line():
    """A line break inside a docstring's first paragraph was kept in the command list, so a
    sentence broke off mid-way ("with a large matrix" / "product and cached")."""
    proc = cli("--help", env=WIDE)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Commands" in line)
    panel = [line.strip("│ ") for line in lines[start + 1:] if line.startswith("│")]
    names = [line.split()[0] for line in panel]
    assert names == ["run", "plan", "report", "peak", "compare", "recommend", "env", "cache"], \
        panel
