"""A combination that ended ok in a run is proven for the next run with the same cache: that run
does not scout it again (grid/order.py), so a warm sweep starts one worker per backend."""

import json
import os

from conftest import cli

from infersweep.case import Case
from infersweep.results import history
from infersweep.results.result import Result


def test_only_combinations_that_ended_ok_are_proven(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERSWEEP_CACHE", str(tmp_path / "cache"))
    ok = Result(Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 8, 1, "synthetic"),
                "ok", samples_ms=[1.0], wall_s=1.0)
    failed = Result(Case("resnet18", "random(seed=0)", "onnxruntime", "cpu", "fp16", 8, 1,
                         "synthetic"), "failed", wall_s=1.0)
    for result in (ok, failed):
        history.record(result)
    with open(tmp_path / "cache" / "history.jsonl", "a") as f:
        f.write(json.dumps({"case_id": "older", "wall_s": 1, "status": "ok"}) + "\n")  # no combo
    assert history.proven_combinations() == {("torch", "cpu", "fp32")}


def test_a_second_run_with_the_same_cache_does_not_scout(tmp_path):
    """Two backends x two sizes: a fresh cache scouts each backend's cheapest group first, so the
    backends alternate (3 workers); the second run, with the same cache, goes backend by backend
    (2 workers). The rows' start times give the order the cases ran in."""
    env = {**os.environ, "INFERSWEEP_CACHE": str(tmp_path / "cache")}
    args = ["--backends", "fault-ok,fault-raise", "--devices", "cpu", "--sizes", "8,16",
            "--batches", "1", "--quick"]

    def workers(run: str) -> list[str]:
        proc = cli("run", *args, "--out", tmp_path / run, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = json.loads((tmp_path / run / "results.json").read_text())["results"]
        assert [r["status"] for r in rows] == ["ok"] * 4
        backends = [r["backend"] for r in sorted(rows, key=lambda r: r["info"]["started_at"])]
        return [b for i, b in enumerate(backends) if i == 0 or backends[i - 1] != b]

    assert len(workers("first")) == 3
    assert sorted(workers("second")) == ["fault-ok", "fault-raise"]
