"""Where a run's time went: the split of a session's wall time into measuring, setup and harness,
on results with known numbers; sessions summed; the terminal line and report.md section."""

import pytest

from infersweep.case import Case
from infersweep.reports.markdown import time_section
from infersweep.results.result import Result
from infersweep.results.time_split import TimeSplit, case_spent, time_split, total
from infersweep.terminal import time_line


def _case(backend="torch", batch=1) -> Case:
    return Case("resnet18", "random(seed=0)", backend, "cpu", "fp32", 32, batch, "synthetic")


def _session() -> list[Result]:
    spent = lambda m, s: {"spent_s": {"measuring": m, "setup": s}}  # noqa: E731
    return [
        # torch group: prepared by its first case (3 s), specialised again for bs8 (0.5 s)
        Result(_case(batch=1), "ok", setup_s=3.0, samples_ms=[1.0], info=spent(2.0, 3.0)),
        Result(_case(batch=8), "ok", setup_s=3.5, samples_ms=[1.0], info=spent(4.0, 0.5)),
        # a failed case: no measuring, its group's setup_s counted once
        Result(_case("onnxruntime", 1), "failed", reason="boom", setup_s=1.0),
        # a row from a worker that did not record spent_s: cold run + warmup + samples; the
        # torch group's setup is already counted
        Result(_case(batch=16), "ok", setup_s=7.0, first_iter_ms=100.0,
               samples_ms=[250.0] * 4, info={"warmup_ms": 900.0}),
    ]


def test_the_split_of_a_session_in_exact_seconds_and_percent():
    split = time_split(_session(), wall_s=25.0)
    assert (split.measuring_s, split.setup_s, split.harness_s) == (8.0, 4.5, 12.5)
    assert [split.percent(s) for _, s in split.parts()] == [32.0, 18.0, 50.0]
    assert split.cases == 4 and split.harness_per_case_s() == 12.5 / 4
    assert split.line() == ("wall 25.0 s: measuring 8.0 s (32%), setup 4.5 s (18%), "
                            "harness 12.5 s (50%)")


def test_a_legacy_row_counts_its_setup_when_it_prepared_the_group():
    legacy = _session()[3]
    assert case_spent(legacy, first_of_group=True) == (2.0, 7.0)
    assert case_spent(legacy, first_of_group=False) == (2.0, 0.0)


def test_parallel_workers_share_workers_times_wall_and_harness_is_never_negative():
    split = time_split(_session(), wall_s=5.0, workers=2)
    assert split.capacity_s == 10.0 and split.harness_s == 0.0  # 12.5 s of work in 10 s
    assert split.line().startswith("wall 5.0 s x 2 workers: measuring 8.0 s (80%)")


def test_resumed_runs_sum_their_sessions():
    first = time_split(_session(), wall_s=25.0)
    second = TimeSplit(wall_s=15.0, measuring_s=9.0, setup_s=0.5, cases=3)
    both = total([first, TimeSplit.from_dict(second.to_dict())])
    assert both == TimeSplit(40.0, 17.0, 5.0, workers=1, sessions=2, cases=7)
    assert both.harness_s == 18.0
    assert both.line() == ("wall 40.0 s over 2 sessions: measuring 17.0 s (42%), setup 5.0 s "
                           "(12%), harness 18.0 s (45%)")
    assert total([]) is None


def test_terminal_line_and_report_section_show_the_same_split():
    split = time_split(_session(), wall_s=25.0)
    assert time_line(split) == ("time: wall 25.0 s: measuring 8.0 s (32%), setup 4.5 s (18%), "
                                "harness 12.5 s (50%); harness per case 3.12 s")
    section = time_section([split.to_dict()])
    assert section[:2] == ["## Where the time went", ""]
    table = [line for line in section if line.startswith("| ")]
    assert table == ["| | seconds | share |", "| measuring | 8.0 | 32% |",
                     "| setup | 4.5 | 18% |", "| harness | 12.5 | 50% |", "| wall | 25.0 | |"]


def test_no_sessions_recorded_says_so_instead_of_inventing_a_split():
    assert time_section([]) == ["## Where the time went", "",
                                "Not recorded: this run directory was written by a version of "
                                "infersweep that did not record its wall time.", ""]


@pytest.mark.parametrize("bad", [None, [{"wall_s": "x"}], [{"nothing": 1}]])
def test_a_damaged_sessions_record_is_not_recorded(bad):
    assert time_section(bad)[2].startswith("Not recorded")


def _compiled(batch: int, cache: dict) -> Result:
    return Result(_case("torch-compile", batch), "ok", samples_ms=[1.0],
                  info={"fx_graph_cache": cache})


def test_the_section_says_how_many_torch_compile_graphs_came_from_inductors_cache():
    # Each row counts its own shape: a group's rows repeat the shapes compiled before them.
    rows = [_compiled(16, {"16": {"hit": 1}}),
            _compiled(32, {"16": {"hit": 1}, "32": {"miss": 2}}),
            _compiled(64, {"16": {"hit": 1}, "32": {"miss": 2}, "64": {"hit": 1, "bypass": 1}}),
            Result(_case(batch=16), "ok", samples_ms=[1.0])]
    split = time_split(_session(), wall_s=25.0)
    section = time_section([split.to_dict()], rows)
    assert ("- torch-compile graphs: 2 loaded from Inductor's FX-graph cache, 2 compiled anew, "
            "1 not cacheable (a rerun on this cache loads the ones compiled anew).") in section
    assert not any("torch-compile" in line for line in time_section([split.to_dict()], rows[3:]))


def test_the_section_splits_the_cases_time_by_backend():
    """Per (backend, device): the cases' wall, measuring, the cold first runs in it, setup (the
    group's counted once, as in the run's split)."""
    rows = _session()
    rows[0].wall_s, rows[1].wall_s, rows[2].wall_s, rows[3].wall_s = 6.0, 5.0, 1.5, 3.0
    rows[0].first_iter_ms, rows[1].first_iter_ms = 400.0, 200.0
    split = time_split(rows, wall_s=25.0)
    table = [line for line in time_section([split.to_dict()], rows)
             if line.startswith("| ") and "device" not in line and "seconds" not in line][4:]
    assert table == [
        "| torch | cpu | 3 | 14.0 | 8.0 | 0.7 | 3.5 | 1.17 |",
        "| onnxruntime | cpu | 1 | 1.5 | 0.0 | 0.0 | 1.0 | 1.00 |"]
    assert not any(line.startswith("By backend") for line in time_section([split.to_dict()]))
