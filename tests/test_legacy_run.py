"""A run directory written before the stage-folder layout is still read, to the same rows."""

import csv
import shutil
from pathlib import Path

from conftest import cli

LEGACY = Path(__file__).parent / "data" / "legacy-run-0.1"


def _rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["case_id"]: r for r in csv.DictReader(f)}


def test_report_rebuilds_the_same_rows_from_a_legacy_store(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(LEGACY / "results.sqlite", run / "results.sqlite")
    done = cli("report", run, "--format", "csv,md")
    assert done.returncode == 0, done.stderr
    old, new = _rows(LEGACY / "results.csv.expected"), _rows(run / "results.csv")
    assert set(new) == set(old) and len(old) == 4
    for case_id, before in old.items():
        after = new[case_id]
        for column, value in before.items():  # every column the old version wrote, same value
            if column == "baseline" and value:
                # Issue 15: the baseline column now names the baseline's options as well
                assert after[column] == f"{value} (channels_last=false)", (case_id, column)
                continue
            assert after[column] == value, (case_id, column)


def test_compare_reads_a_legacy_store(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(LEGACY / "results.sqlite", run / "results.sqlite")
    done = cli("compare", run, "--a", "backend=torch", "--b", "backend=onnxruntime",
               "--format", "json")
    assert done.returncode == 0, done.stderr
    import json

    pairs = json.loads(done.stdout)["pairs"]
    assert len(pairs) == 2  # batch 1 and batch 2, torch vs onnxruntime
