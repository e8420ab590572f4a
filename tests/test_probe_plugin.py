"""A probe from test code alone (tests/toy_probe.py), through the real CLI and worker processes."""

import csv
import json
import os

import pytest
from conftest import FAST, cli
from toy_probe import pixels

BATCHES = (1, 3)
SIZE = 8


def _sweep(out, **env):
    proc = cli("run", "--backends", "fault-ok", "--batches", ",".join(map(str, BATCHES)),
               "--sizes", SIZE, "--out", out, *FAST,
               env={**os.environ, "INFERSWEEP_PLUGINS": "toy_probe", **env})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    with open(out / "results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    return csv_rows, json.loads((out / "results.json").read_text())["results"]


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    return _sweep(tmp_path_factory.mktemp("toy") / "run")


def test_the_toy_column_and_its_values_reach_csv_and_json(toy_sweep):
    csv_rows, json_rows = toy_sweep
    assert list(csv_rows[0])[-2:] == ["toy_pixels", "warnings"]  # placed before warnings
    for rows in (csv_rows, json_rows):
        assert sorted((int(r["batch_size"]), int(r["toy_pixels"])) for r in rows) == [
            (b, pixels(b, SIZE)) for b in BATCHES]
    assert all(r["info"]["toy_batch_shape"] == [r["batch_size"], 3, SIZE, SIZE]
               for r in json_rows)


def test_without_the_plugin_there_is_no_toy_column(tmp_path):
    proc = cli("run", "--backends", "fault-ok", "--batches", "1", "--sizes", SIZE,
               "--out", tmp_path / "run", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "toy_pixels" not in (tmp_path / "run" / "results.csv").read_text()


@pytest.mark.parametrize("hook", ["start_group", "before", "after_warmup", "after"])
def test_a_failing_probe_costs_a_warning_not_the_timing(tmp_path, hook):
    csv_rows, _ = _sweep(tmp_path / "run", TOY_PROBE_FAIL=hook)
    assert len(csv_rows) == len(BATCHES)
    for row in csv_rows:
        assert row["status"] == "ok", row
        assert float(row["latency_ms_median"]) > 0 and int(row["iterations"]) >= 5
        assert f"probe toy failed in {hook}: RuntimeError: toy probe" in row["warnings"]
        assert row["toy_pixels"] == ""
