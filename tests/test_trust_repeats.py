"""--repeats N: each case in N worker processes, round robin; the row from the process medians."""

import json
import os

import numpy as np
import pytest

from conftest import cli
from infersweep.case import Case
from infersweep.grid.plan import expand
from infersweep.grid.spec import build_spec
from infersweep.results.repeats import merge, process_stats
from infersweep.results.result import Result

ARGS = ["--backends", "fault-ok", "--batches", "1", "--min-time", "0.05", "--max-time", "0.1",
        "--min-iterations", "5", "--timeout", "60"]


def _rows(out) -> dict[str, dict]:
    return {r["case_id"]: r for r in json.loads((out / "results.json").read_text())["results"]}


def _history(cache) -> list[str]:
    lines = (cache / "history.jsonl").read_text().splitlines()
    return [json.loads(line)["case_id"] for line in lines]


def test_repeats_run_round_robin_and_the_row_is_the_median_of_process_medians(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "INFERSWEEP_CACHE": str(cache)}
    out = tmp_path / "run"
    # Two image sizes: two groups, so round robin (A B A B A B) differs from A A A B B B.
    done = cli("run", *ARGS, "--sizes", "8,16", "--repeats", "3", "--out", out, env=env)
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert len(rows) == 2
    for row in rows.values():
        assert row["repeats"] == 3
        medians = row["process_medians_ms"]
        assert len(medians) == 3
        assert row["latency_ms_median"] == pytest.approx(float(np.median(medians)))
        assert row["iterations"] == len(row["samples_ms"])
        assert row["latency_ms_ci_low"] <= row["latency_ms_median"] <= row["latency_ms_ci_high"]
    order = _history(cache)
    assert order[:2] != [order[0]] * 2 and order[0:2] == order[2:4] == order[4:6]
    csv_head = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert "repeats" in csv_head and "process_medians_ms" in csv_head


def test_resume_runs_only_the_missing_repeats(tmp_path):
    out = tmp_path / "run"
    first = cli("run", *ARGS, "--sizes", "8", "--repeats", "2", "--out", out)
    assert first.returncode == 0, first.stderr
    before = next(iter(_rows(out).values()))["process_medians_ms"]
    again = cli("run", *ARGS, "--sizes", "8", "--repeats", "3", "--out", out)
    assert again.returncode == 0, again.stderr
    assert "1 to run, 0 already done" in again.stdout
    after = next(iter(_rows(out).values()))["process_medians_ms"]
    assert len(after) == 3 and after[:2] == before  # the earlier processes are kept
    same = cli("run", *ARGS, "--sizes", "8", "--repeats", "3", "--out", out)
    assert "0 to run, 1 already done" in same.stdout


def test_repeats_change_neither_the_run_directory_nor_the_case_ids():
    plain, repeated = build_spec({}), build_spec({"repeats": 5})
    assert repeated.repeats == 5
    assert repeated.default_out() == plain.default_out()
    assert [c.case_id for c in expand(repeated)] == [c.case_id for c in expand(plain)]


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "x", "101"])
def test_bad_repeats_is_one_line_exit_2_and_creates_nothing(tmp_path, value):
    out = tmp_path / "run"
    done = cli("run", *ARGS, "--sizes", "8", "--repeats", value, "--out", out)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "repeats" in done.stderr
    assert not out.exists()


def test_process_interval_is_a_t_interval_over_process_medians():
    p = process_stats([10.0, 11.0, 12.0])
    half = 4.303 * 1.0 / np.sqrt(3)  # t(0.975, 2 df) * sd / sqrt(n)
    assert (p.median, p.ci_low, p.ci_high) == pytest.approx((11.0, 11 - half, 11 + half))
    assert p.spread_rel == pytest.approx(2 / 11)


def test_row_uses_process_medians_not_the_pooled_samples():
    case = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 8, 1, "synthetic")
    # Pooled, the median is 5.0; per process 1.0, 2.0, 9.0 -> 2.0.
    r = Result(case, "ok", samples_ms=[1.0] * 3 + [2.0] * 3 + [9.0] * 5,
               process_medians_ms=[1.0, 2.0, 9.0])
    row = r.row()
    assert row["latency_ms_median"] == 2.0
    assert row["repeats"] == 3
    assert row["throughput_ips"] == pytest.approx(500.0)


def test_a_failing_process_fails_the_row_and_keeps_earlier_medians():
    case = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 8, 1, "synthetic")
    first = merge(None, Result(case, "ok", samples_ms=[1.0, 1.0, 1.2]), 3)
    assert first.process_medians_ms == [1.0]
    second = merge(first, Result(case, "crashed", reason="worker killed by signal SIGKILL"), 3)
    assert second.status == "crashed"
    assert second.reason == "process 2 of 3: worker killed by signal SIGKILL"
    assert second.info["process_medians_ms"] == [1.0]


def test_a_process_the_contention_guard_flagged_keeps_the_row_flagged():
    """The row's median and interval pool every process's median: one process timed while
    disturbed is in them, so the row keeps its noise cell even when a later process was quiet
    (it took only the last process's cell before, and compare and the reports trusted it)."""
    case = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 8, 1, "synthetic")
    noisy = Result(case, "ok", samples_ms=[3.0, 3.1, 3.2], measured={"noise": "contended: 1.0"})
    quiet = Result(case, "ok", samples_ms=[1.0, 1.1, 1.2], measured={"noise": ""})
    row = merge(merge(merge(None, noisy, 3), quiet, 3), quiet, 3)
    assert row.process_medians_ms == [3.1, 1.1, 1.1]
    assert row.measured["noise"] == "process 1 of 3: contended: 1.0"
    both = merge(merge(None, noisy, 2), noisy, 2)
    assert both.measured["noise"] == ("process 1 of 2: contended: 1.0; "
                                      "process 2 of 2: contended: 1.0")
    clean = merge(merge(None, quiet, 2), quiet, 2)
    assert not clean.measured["noise"]
    # A row merged before the cells were kept per process holds its last process's cell.
    older = Result(case, "ok", samples_ms=[1.0] * 6, process_medians_ms=[1.0, 1.0],
                   measured={"noise": "throttled"})
    assert merge(older, quiet, 3).measured["noise"] == "process 2 of 3: throttled"
