"""compare with --repeats judges by the spread between processes; without, it says so, shows
the noise this machine has shown before, and --fail-if-slower asks for repeats."""

import json
import os

import pytest

from conftest import cli
from infersweep.case import Case
from infersweep.reports.compare import NO_DIFFERENCE, SLOWER, compare_pair, to_markdown
from infersweep.reports.compare import compare as compare_results
from infersweep.results.repeats import ratio_interval
from infersweep.results.result import Result

CASE = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 64, 1, "synthetic")
ARGS = ["--backends", "fault-ok", "--sizes", "8", "--batches", "1,3", "--min-time", "0.1",
        "--max-time", "0.2", "--min-iterations", "10"]


def _result(process_medians, per_process=20, spread=0.001):
    samples = [m * (1 + spread * ((i % 5) - 2)) for m in process_medians
               for i in range(per_process)]
    return Result(CASE, "ok", samples_ms=samples,
                  process_medians_ms=list(process_medians) if len(process_medians) > 1 else [])


def test_repeats_judge_by_the_spread_between_processes():
    # Each process is precise, processes differ by several percent: the same build twice.
    a, b = _result([10.0, 10.6, 10.2]), _result([10.5, 10.1, 10.7])
    pair = compare_pair(a, b)
    assert pair.between_processes and (pair.a_repeats, pair.b_repeats) == (3, 3)
    assert (pair.ci_low, pair.ci_high) == pytest.approx(ratio_interval([10.0, 10.6, 10.2],
                                                                       [10.5, 10.1, 10.7]))
    assert pair.ratio == pytest.approx(10.5 / 10.2)
    assert pair.verdict == NO_DIFFERENCE
    # One process per side with the same precise samples: the bootstrap calls it slower.
    single = compare_pair(_result([10.0]), _result([10.5]))
    assert not single.between_processes and single.verdict == SLOWER


def test_a_real_difference_between_processes_is_still_found():
    a, b = _result([10.0, 10.1, 10.05, 9.95]), _result([12.0, 12.1, 11.9, 12.05])
    assert compare_pair(a, b).verdict == SLOWER


def test_without_repeats_compare_says_so_and_shows_this_machines_noise(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERSWEEP_CACHE", str(tmp_path))
    single = compare_results([_result([10.0])], [_result([10.05])])
    text = to_markdown(single)
    assert ("**process-to-process noise is not accounted for** in 1 of 1 compared pair(s)"
            in text)
    assert "This machine has no record of that noise yet" in text
    (tmp_path / "history.jsonl").write_text(
        json.dumps({"case_id": "c1", "wall_s": 1, "process_medians_ms": [10.0, 11.0, 10.5]})
        + "\n" + json.dumps({"case_id": "c2", "wall_s": 1, "process_medians_ms": [4.0, 4.2]})
        + "\n")
    text = to_markdown(compare_results([_result([10.0])], [_result([10.05])]))
    # spreads: 1/10.5 = 9.5% and 0.2/4.1 = 4.9%: median 7.2%, at most 9.5%
    assert ("per-process medians of one case have moved by 7.2% (median over 2 case(s) run "
            "with --repeats; at most 9.5%)") in text
    both = to_markdown(compare_results([_result([10.0, 10.2])], [_result([10.1, 10.0])]))
    assert "not accounted for" not in both and "Welch t interval between processes" in both


def _run(out, *extra):
    proc = cli("run", *ARGS, *extra, "--out", out,
               env={**os.environ, "INFERSWEEP_FAULT_SLEEP_MS": "3"})
    assert proc.returncode == 0, proc.stderr
    return out


def test_fail_if_slower_asks_for_repeats(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    refused = cli("compare", a, b, "--fail-if-slower", "5%")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: --fail-if-slower needs both runs measured with --repeats 2 or more: 2 compared "
        "pair(s) come from one worker process per case, whose noise between processes would "
        "pass for a regression; re-run with --repeats 3, or add --ignore-process-noise to "
        "judge them anyway")
    assert cli("compare", a, b, "--fail-if-slower", "5%",
               "--ignore-process-noise").returncode == 0
    ra, rb = _run(tmp_path / "ra", "--repeats", "2"), _run(tmp_path / "rb", "--repeats", "2")
    gated = cli("compare", ra, rb, "--fail-if-slower", "5%", "--format", "json")
    assert gated.returncode == 0, gated.stderr
    pairs = json.loads(gated.stdout)["pairs"]
    assert [p["interval_from"] for p in pairs] == ["between processes"] * 2
    assert [(p["a_repeats"], p["b_repeats"]) for p in pairs] == [(2, 2)] * 2
    mixed = cli("compare", a, rb, "--fail-if-slower", "5%")  # one side without repeats
    assert mixed.returncode == 2
