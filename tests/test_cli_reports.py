"""`report`, `compare` and `plan` on an existing run directory, through the real CLI: a filtered
report never replaces the run's own outputs, a damaged store is a message (exit 2) and stays as it
was, an unknown baseline is refused. The run is the stored legacy run (tests/data), copied."""

import csv
import shutil
from pathlib import Path

import pytest

from conftest import cli

LEGACY = Path(__file__).parent / "data" / "legacy-run-0.1"
# The legacy run's cases (torch and onnxruntime, batches 1 and 2, 32 px), by backend.
TORCH_IDS = {"aa6113a7918f", "ced6102d56f7"}
ALL_IDS = TORCH_IDS | {"fbcfb9d3423e", "6937ef2f7ba6"}


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(LEGACY / "results.sqlite", run / "results.sqlite")
    return run


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _case_ids(path: Path) -> set[str]:
    with open(path, newline="") as f:
        return {row["case_id"] for row in csv.DictReader(f)}


def _one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_filtered_report_is_a_view_beside_the_full_outputs(tmp_path):
    run = _run_dir(tmp_path)
    full = cli("report", run, "--format", "csv,md,json")
    assert full.returncode == 0, full.stderr
    before = _snapshot(run)

    view = cli("report", run, "--only", "backend=torch", "--format", "csv,md")
    assert view.returncode == 0, view.stderr
    assert _snapshot(run).items() >= before.items()  # nothing of the run's own changed
    assert _case_ids(run / "results.csv") == ALL_IDS
    folder = run / "views" / "backend=torch"
    assert _case_ids(folder / "results.csv") == TORCH_IDS
    assert str(folder) in view.stdout

    elsewhere = tmp_path / "somewhere" / "torch-only"
    to = cli("report", run, "--only", "backend=torch", "--format", "csv", "--to", elsewhere)
    assert to.returncode == 0, to.stderr
    assert _case_ids(elsewhere / "results.csv") == TORCH_IDS
    assert _case_ids(run / "results.csv") == ALL_IDS


def test_filter_matching_nothing_writes_nothing(tmp_path):
    run = _run_dir(tmp_path)
    assert cli("report", run, "--format", "csv").returncode == 0
    before = _snapshot(run)
    proc = cli("report", run, "--only", "batch=7")
    assert proc.returncode == 2
    assert _one_error_line(proc) == f"error: no case in {run} matches --only 'batch=7': nothing " \
                                    "written"
    assert _snapshot(run) == before


def test_unknown_baseline_is_refused(tmp_path):
    run = _run_dir(tmp_path)
    before = _snapshot(run)
    proc = cli("report", run, "--baseline", "tensorflow")
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert line.startswith("error: unknown baseline 'tensorflow'; allowed: torch, onnxruntime")
    assert _snapshot(run) == before
    control = cli("report", run, "--baseline", "onnxruntime", "--format", "csv")
    assert control.returncode == 0, control.stderr


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite file\n" * 200)


def _truncated(path: Path) -> None:
    path.write_bytes((LEGACY / "results.sqlite").read_bytes()[:24576])


@pytest.mark.parametrize("damage", [_garbage, _truncated], ids=["garbage", "truncated"])
@pytest.mark.parametrize("command", [
    ["report", "{run}"],
    ["compare", "{run}", "--a", "backend=torch", "--b", "backend=onnxruntime"],
    ["plan", "--out", "{run}", "--backends", "torch,onnxruntime", "--sizes", "32", "--batches",
     "1,2"],
], ids=lambda c: c[0])
def test_damaged_store_is_a_message_and_stays_untouched(tmp_path, command, damage):
    run = tmp_path / "run"
    run.mkdir()
    damage(run / "results.sqlite")
    before = _snapshot(run)
    proc = cli(*[a.format(run=run) for a in command])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = _one_error_line(proc)
    store = run / "results.sqlite"
    assert line.startswith(f"error: {store} is damaged or not an infersweep store ("), line
    assert f"`sqlite3 {store} 'PRAGMA integrity_check'`" in line
    assert _snapshot(run) == before  # nothing written, nothing created beside it
