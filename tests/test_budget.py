"""--budget: the planner picks timing whose estimated wall time fits, keeps the timing flags the
user gave, and refuses a budget that cannot fit (exit 2, one line, nothing created)."""

import json
import os
from dataclasses import asdict

import pytest
from conftest import cli

from infersweep.case import Case
from infersweep.flags import SPEC_FLAGS, SweepArgs
from infersweep.grid.budget import (BudgetError, choose, fit, given_settings, parse_duration,
                                    upper_measuring)
from infersweep.grid.plan import expand
from infersweep.grid.spec import SpecError, build_spec
from infersweep.measure.timing import MeasureSettings
from infersweep.results.history import CaseCost


def _cases(backends=("torch", "onnxruntime"), batches=(1, 8, 32)) -> list[Case]:
    return [Case("resnet18", "random(seed=0)", b, "cpu", "fp32", 224, n, "synthetic")
            for b in backends for n in batches]


@pytest.mark.parametrize("text, seconds", [("300", 300), ("300s", 300), ("5m", 300),
                                           ("1.5h", 5400), (".5m", 30), (" 2m ", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "0", "0m", "-5m", "", "m", "5 minutes", "1e3"])
def test_a_budget_that_is_not_a_duration_names_the_value(text):
    with pytest.raises(BudgetError, match=f"^--budget {text!r}: expected a duration such as "
                                          "300s, 5m or 1.5h$"):
        parse_duration(text)


def test_a_generous_budget_keeps_the_default_timing():
    plan = fit(3600, _cases(), 1, MeasureSettings(), (), {})
    assert plan.settings == MeasureSettings()
    # 5 s fixed + 2 groups x 3 s worker start + 6 cases x 1 s setup/harness (CPU default);
    # each case at most 5 s warmup + (1 + 1 re-measure) x 10 s timed
    assert plan.overhead_s == 17.0 and plan.upper_s == 17.0 + 6 * 25.0


def test_a_tight_budget_shares_what_is_left_and_its_estimate_fits():
    plan = fit(41, _cases(), 1, MeasureSettings(), (), {})  # 24 s left: 4 s per case
    s = plan.settings
    assert (s.min_time_s, s.max_time_s, s.warmup_max_s) == pytest.approx((1.0, 1.5, 1.0), abs=1e-6)
    assert (s.target_ci, s.min_iterations) == (0.01, 10)
    assert plan.upper_s <= 41 and plan.upper_s == pytest.approx(41, abs=1e-6)
    assert plan.line().startswith("budget 41s: min-time 1 s, max-time 1.5 s, warmup at most 1 s, "
                                  "target CI ±1%, at least 10 runs; estimated 29-41 s for 6 cases "
                                  "(setup and harness ~2.0 s each; 0 of 6 cases known")


@pytest.mark.parametrize("budget", [23, 25, 30, 60, 120, 166])
def test_every_feasible_budget_gets_an_estimate_within_it_and_more_buys_more(budget):
    plan = fit(budget, _cases(), 1, MeasureSettings(), (), {})
    more = fit(budget + 10, _cases(), 1, MeasureSettings(), (), {})
    assert plan.upper_s <= budget
    assert plan.settings.min_time_s <= more.settings.min_time_s
    assert plan.settings.max_time_s < more.settings.max_time_s
    assert plan.settings.target_ci >= more.settings.target_ci


def test_a_budget_below_the_floor_is_refused_with_what_the_grid_needs():
    with pytest.raises(BudgetError) as refused:
        fit(20, _cases(), 1, MeasureSettings(), (), {}, "20s")
    # 17 s of setup and harness + 6 x (0.2 s warmup + 2 x 0.3 s timed) at the floor
    assert str(refused.value) == ("--budget 20s: the 6 cases need at least 22 s (setup and "
                                  "harness ~2.0 s each, measuring up to 5 s in all); raise it "
                                  "or shrink the grid")


def test_the_history_gives_setup_and_run_time_and_slow_runs_raise_the_bound():
    history = {c.case_id: CaseCost(overhead_s=0.5, median_ms=1000.0) for c in _cases()}
    plan = fit(60, _cases(), 1, MeasureSettings(), (), history)
    assert plan.overhead_s == 5 + 2 * 3 + 6 * 0.5
    # one run takes 1 s: cold run, >= 2 warmup runs, each phase overruns its cap by one run
    assert upper_measuring(choose(0, MeasureSettings(), ()), run_s=1.0) == 1 + 2 + 2 * 1.3
    assert plan.upper_s <= 60 and "6 of 6 cases known" in plan.line()
    with pytest.raises(BudgetError, match="need at least 48 s"):  # 14 + 6 x 5.6 at the floor
        fit(45, _cases(), 1, MeasureSettings(), (), history)


def test_repeats_count_every_worker_process():
    plan = fit(3600, _cases(), 3, MeasureSettings(), (), {})
    assert plan.overhead_s == 5 + 3 * (2 * 3 + 6 * 1.0)
    assert "for 6 cases x 3 processes" in plan.line()


def test_timing_flags_the_user_gave_win_and_can_make_a_budget_impossible():
    given = given_settings({"max_time": 3, "target_ci": 0.03, "min_time": None})
    assert given == ("max_time_s", "target_ci")
    current = MeasureSettings(max_time_s=3, target_ci=0.03)
    plan = fit(60, _cases(), 1, current, given, {})
    assert (plan.settings.max_time_s, plan.settings.target_ci) == (3, 0.03)
    assert plan.upper_s <= 60 and "(--max-time 3, --target-ci 0.03 as given)" in plan.line()
    with pytest.raises(BudgetError, match=r"^--budget 40s: the 6 cases need at least 54 s with "
                                          r"--max-time 3, --target-ci 0.03 as given \("):
        fit(40, _cases(), 1, current, given, {}, "40s")  # 17 + 6 x (0.2 + 2 x 3) = 54.2


def test_budget_and_quick_together_are_refused():
    flags = {name: None for name in SPEC_FLAGS} | {"quick": True}
    with pytest.raises(SpecError, match="^--budget and --quick both choose"):
        SweepArgs(spec_file=None, flags=flags, only=None, budget="5m").spec()
    with pytest.raises(SpecError, match="^--budget '5x': expected a duration"):
        SweepArgs(spec_file=None, flags=flags | {"quick": None}, only=None, budget="5x").spec()


ARGS = ["--backends", "fault-ok", "--devices", "cpu", "--sizes", "8", "--batches", "1,3"]


@pytest.fixture
def own_history(tmp_path):
    """A cache of its own: no other test's history changes the estimate."""
    return {**os.environ, "INFERSWEEP_CACHE": str(tmp_path / "cache")}


def test_plan_and_run_refuse_an_impossible_budget_and_create_nothing(tmp_path, own_history):
    out = tmp_path / "run"
    expected = "error: --budget 10s: the 2 cases need at least 12 s (setup and harness ~2.5 s " \
               "each, measuring up to 2 s in all); raise it or shrink the grid"
    for command in ("plan", "run"):
        proc = cli(command, *ARGS, "--out", out, "--budget", "10s", env=own_history)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.strip() == expected
        assert not out.exists()


def test_run_measures_with_the_timing_the_budget_chose(tmp_path, own_history):
    out = tmp_path / "run"
    proc = cli("run", *ARGS, "--out", out, "--budget", "12s", env=own_history)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = build_spec({"backends": "fault-ok", "devices": "cpu", "sizes": "8", "batches": "1,3"})
    plan = fit(12, expand(spec), 1, MeasureSettings(), (), {}, "12s")  # 1 s per case
    assert plan.line() in proc.stdout.splitlines()
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [r["info"]["settings"] for r in rows] == [asdict(plan.settings)] * 2
    assert plan.settings.min_time_s < MeasureSettings().min_time_s  # the budget did choose


def test_worker_starts_are_counted_from_the_run_order_at_their_device_cost():
    """The original grid on a GPU: 24 groups, but one long-lived worker per backend after the
    scouts (grid/order.py): 5 worker starts at the GPU's cost, not 24 at the CPU's."""
    grid = [Case("resnet18", "random(seed=0)", b, "cuda", p, size, n, "synthetic")
            for b in ("torch", "torch-compile", "onnxruntime") for p in ("fp32", "fp16")
            for size in (224, 256, 384, 512) for n in (16, 32, 64)]
    plan = fit(36000, grid, 1, MeasureSettings(), (), {})
    assert plan.groups == 24 and plan.starts == ("cuda",) * 5
    # 5 s fixed + 5 x 10 s worker starts + 48 cases x 2 s + 24 torch-compile cases x 10 s
    assert plan.overhead_s == 5 + 5 * 10 + 48 * 2 + 24 * 10
    twice = fit(36000, grid, 2, MeasureSettings(), (), {})
    assert twice.overhead_s == 5 + 2 * (5 * 10 + 48 * 2 + 24 * 10)  # each round starts anew


def test_combinations_this_machine_saw_work_are_not_scouted_so_fewer_workers_are_counted():
    """A warm run of the grid (its combinations ended ok here before) runs one worker per
    backend: 3 starts, not the 5 of a machine that never saw them."""
    grid = [Case("resnet18", "random(seed=0)", b, "cuda", p, size, n, "synthetic")
            for b in ("torch", "torch-compile", "onnxruntime") for p in ("fp32", "fp16")
            for size in (224, 256, 384, 512) for n in (16, 32, 64)]
    proven = {(b, "cuda", p) for b in ("torch", "torch-compile", "onnxruntime")
              for p in ("fp32", "fp16")}
    warm = fit(36000, grid, 1, MeasureSettings(), (), {}, proven=proven)
    assert warm.starts == ("cuda",) * 3
    assert fit(36000, grid, 1, MeasureSettings(), (), {}).overhead_s - warm.overhead_s == 2 * 10
