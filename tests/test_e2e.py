"""End to end on the CPU: the real CLI, real torch and a real ONNX Runtime session."""

import csv
import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import FAST, cli

from infersweep.results.result import CSV_COLUMNS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def e2e_cache(tmp_path_factory) -> Path:
    """A cache of this module's own: the export count below must not see other tests' exports."""
    return tmp_path_factory.mktemp("e2e-cache")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, e2e_cache):
    out = tmp_path_factory.mktemp("e2e") / "run"
    proc = cli("run", "--model", "resnet18", "--backends", "torch,onnxruntime", "--devices", "cpu",
               "--precisions", "fp32", "--sizes", "32,64", "--batches", "1,2", "--out", out, *FAST,
               # A torch row the contention guard flags (another process busy on this 2-core box)
               # serves as no baseline and the speedup test below would fail: time it again.
               "--remeasure", "3",
               env={**os.environ, "INFERSWEEP_CACHE": str(e2e_cache)})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    return out, proc, rows


def test_every_case_ok_with_columns(sweep):
    out, _, rows = sweep
    assert len(rows) == 8
    assert list(rows[0]) == CSV_COLUMNS
    for r in rows:
        assert r["status"] == "ok", r
        for col in ("latency_ms_median", "latency_ms_ci_low", "latency_ms_ci_high",
                    "throughput_ips", "first_iter_ms", "setup_s", "peak_memory_mb"):
            assert float(r[col]) > 0, col
        assert float(r["latency_ms_ci_low"]) <= float(r["latency_ms_median"]) \
            <= float(r["latency_ms_ci_high"])


def test_images_really_have_the_requested_size(sweep):
    # FLOPs scale with pixels: 64 px has 4x the FLOPs of 32 px (the user's PyTorch rows were
    # always measured at 224 px whatever the sweep asked for).
    _, _, rows = sweep
    g = {(r["backend"], r["image_size"]): float(r["gflops_per_image"]) for r in rows}
    assert g[("torch", "64")] == pytest.approx(4 * g[("torch", "32")], rel=0.05)


def test_speedup_relative_to_torch(sweep):
    _, _, rows = sweep
    med = {(r["backend"], r["image_size"], r["batch_size"]): float(r["latency_ms_median"])
           for r in rows}
    for r in rows:
        key = (r["image_size"], r["batch_size"])
        assert r["baseline"] == "torch (channels_last=false)"  # the baseline and its options
        assert float(r["speedup"]) == pytest.approx(med[("torch", *key)] / med[(r["backend"], *key)])


def test_onnx_export_is_cached_once_per_size(sweep, e2e_cache):
    cache = e2e_cache / "onnx"
    exports = [p for p in cache.iterdir() if p.is_dir() and (p / "model.onnx").exists()]
    assert len(exports) == 2  # one per image size, shared by both batch sizes
    sizes = sorted(json.loads((p / "key.json").read_text())["image_size"] for p in exports)
    assert sizes == [32, 64]


def test_report_and_env(sweep):
    out, proc, _ = sweep
    md = (out / "report.md").read_text()
    assert "## Environment" in md and "torch" in md and "| onnxruntime | synthetic |" in md
    assert json.loads((out / "env.json").read_text())["cores_usable"] >= 1
    (out / "report.md").unlink()
    again = cli("report", out)
    assert again.returncode == 0 and (out / "report.md").read_text() == md


def test_plan_shows_done(sweep):
    out, _, _ = sweep
    proc = cli("plan", "--backends", "torch,onnxruntime", "--devices", "cpu", "--sizes", "32,64",
               "--batches", "1,2,4", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("done") >= 8 and "12 cases, 4 to run" in proc.stdout


def test_one_fp32_reference_per_size_shared_by_backends_and_batches(sweep, e2e_cache):
    entries = [json.loads(p.read_text()) for p in (e2e_cache / "reference").glob("*/key.json")]
    assert sorted((k["image_size"], k["batch_size"]) for k in entries) == [(32, 2), (64, 2)]


def test_the_run_says_where_its_time_went(sweep):
    out, proc, _ = sweep
    results = json.loads((out / "results.json").read_text())["results"]
    for r in results:  # the worker's own account covers at least the phases a Result keeps
        timed = (r["first_iter_ms"] + r["info"]["warmup_ms"] + sum(r["samples_ms"])) / 1000
        assert r["info"]["spent_s"]["measuring"] >= timed
        # the extras after the timed loop are timed apart: the probes (the fp32 reference's
        # agreement, memory, FLOPs) always run; pipelined throughput only where runs overlap
        assert r["info"]["spent_s"]["probes"] > 0
        assert r["info"]["spent_s"]["pipelined"] >= 0
        # the batch made and placed, the last output fetched: harness inside the case, named
        assert r["info"]["spent_s"]["data"] > 0 and r["info"]["spent_s"]["output"] >= 0
        # every probe hook's seconds that took a millisecond or more
        assert all(v >= 0.001 for v in r["info"]["probe_s"].values())
    # the agreement probe computes or reads its fp32 reference after the timed loop
    assert any(r["info"]["probe_s"].get("agreement.after", 0) > 0 for r in results)
    # the parent's own start, step by step, from its process's start to the first case
    con = sqlite3.connect(out / "results.sqlite")
    phases = json.loads(con.execute(
        "SELECT value FROM meta WHERE key = 'parent_phases'").fetchone()[0])
    con.close()
    # the first worker starts before the plan's dry runs, which import torch in this parent
    # with an empty cache (this fixture's): its own imports run meanwhile
    assert list(phases) == ["run_sweep", "first_worker_started", "plan", "cases_begin"]
    assert 0 < phases["run_sweep"] <= phases["first_worker_started"] <= phases["plan"] <= \
        phases["cases_begin"] < 60
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("time: wall ") and "harness per case" in last
    md = (out / "report.md").read_text()
    measuring = sum(r["info"]["spent_s"]["measuring"] for r in results)
    assert f"| measuring | {measuring:.1f} |" in md
