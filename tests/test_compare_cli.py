"""`infersweep compare` and `--only` through the real CLI, on real run directories."""

import json
import os

from conftest import cli

ARGS = ["--backends", "fault-ok", "--sizes", "8", "--batches", "1,3", "--min-time", "0.3",
        "--max-time", "0.3", "--min-iterations", "10"]


def _run(out, slowdown="1"):
    env = {**os.environ, "INFERSWEEP_FAULT_SLEEP_MS": "5", "INFERSWEEP_FAULT_SLOWDOWN": slowdown}
    proc = cli("run", *ARGS, "--out", out, env=env)
    assert proc.returncode == 0, proc.stderr
    return out


def test_slowed_run_is_slower_and_fails_the_gate(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", slowdown="1.3")
    proc = cli("compare", a, b, "--format", "json", "--fail-if-slower", "5%")
    assert proc.returncode == 1
    pairs = json.loads(proc.stdout)["pairs"]
    assert len(pairs) == 2 and all(p["verdict"] == "slower" for p in pairs)
    assert all(1.2 < p["ratio"] < 1.4 for p in pairs)


def test_identical_runs_show_no_significant_difference(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    proc = cli("compare", a, b, "--fail-if-slower", "5%")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no significant difference" in proc.stdout
    assert "**slower**" not in proc.stdout


def test_groups_of_one_run_and_only(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--backends", "fault-ok,fault-garbage", *ARGS[2:], "--out", out)
    assert proc.returncode == 0, proc.stderr
    both = cli("compare", out, "--a", "backend=fault-ok", "--b", "backend=fault-garbage",
               "--format", "json")
    assert both.returncode == 0, both.stderr
    assert len(json.loads(both.stdout)["pairs"]) == 2
    one = cli("compare", out, "--a", "backend=fault-ok", "--b", "backend=fault-garbage",
              "--only", "batch>=3", "--format", "json")
    assert len(json.loads(one.stdout)["pairs"]) == 1


def test_bad_filters_exit_2_and_empty_filters_exit_0(tmp_path):
    bad = cli("plan", *ARGS, "--out", tmp_path / "run", "--only", "batch>>3")
    assert bad.returncode == 2 and "--only" in bad.stderr
    none = cli("run", *ARGS, "--out", tmp_path / "run", "--only", "batch>100")
    assert none.returncode == 0 and "matches" in none.stdout
    only = cli("run", *ARGS, "--out", tmp_path / "run", "--only", "batch=3")
    assert only.returncode == 0 and "1 cases: 1 to run" in only.stdout
    report = cli("report", tmp_path / "run", "--only", "batch=1")
    assert report.returncode == 0 and "no case" in report.stdout
