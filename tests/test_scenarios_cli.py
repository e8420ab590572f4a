"""Scenario flags and keys (validated before anything runs), the cases they expand into, and one
real sweep of a tiny server scenario through the CLI."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import FAST, cli

from infersweep.grid.plan import expand
from infersweep.grid.spec import SpecError, build_spec
from infersweep.results import repeats
from infersweep.results.store import Store

BASE = {"backends": "fault-ok", "sizes": "32", "batches": "1,4"}


@pytest.mark.parametrize("raw, message", [
    ({"scenarios": "server,warp"}, "unknown scenario 'warp'; allowed: fixed, single-stream, "
                                   "offline, server"),
    ({"qps": "100"}, "qps: only for the server scenario; add --scenarios server"),
    ({"scenarios": "offline", "p99_ms": 20}, "p99_ms: only for the server scenario; add "
                                             "--scenarios server"),
    ({"scenarios": "server"}, "scenario server needs qps (target rates) or find_max_qps with "
                              "p99_ms"),
    ({"scenarios": "server", "find_max_qps": True}, "find_max_qps needs p99_ms, the bound the "
                                                    "p99 must stay under"),
    ({"scenarios": "server", "find_max_qps": True, "p99_ms": 20, "qps": "10"},
     "qps and find_max_qps: give one (the search finds the rate itself)"),
    ({"scenarios": "server", "qps": "100,-5"}, "qps: '-5' must be > 0"),
    ({"scenarios": "server", "qps": "fast"}, "qps: 'fast' is not a number"),
    ({"scenarios": "server", "qps": "10", "max_batch": "0"}, "max_batch: '0' is not a positive "
                                                             "integer"),
    ({"scenarios": "server", "qps": "10", "max_delay_ms": "-1"}, "max_delay_ms: '-1' must be "
                                                                  ">= 0"),
    ({"scenarios": "server", "qps": "10", "p99_ms": 0}, "p99_ms: 0 must be > 0"),
    ({"scenarios": "server", "qps": "10", "server_min_requests": 0},
     "server_min_requests: 0 must be >= 1"),
    ({"scenarios": "server", "qps": "10", "server_min_duration": "nan"},
     "server_min_duration: 'nan' is not a number"),
    ({"scenarios": "server", "find_max_qps": True, "p99_ms": 5, "qps_resolution": 0.9},
     "qps_resolution: 0.9 must be a fraction up to 0.5, e.g. 0.05 for 5%"),
])
def test_bad_scenario_values_name_the_value(raw, message):
    with pytest.raises(SpecError) as caught:
        build_spec({**BASE, **raw})
    assert str(caught.value) == message


def test_scenarios_expand_into_their_cases():
    spec = build_spec({**BASE, "scenarios": "fixed,single-stream,offline,server", "qps": "50,100",
                       "max_batch": "2,8", "max_delay_ms": "1", "server_min_duration": 0.5})
    cases = [(c.scenario, c.batch_size) for c in expand(spec)]
    assert cases == [("", 1), ("", 4), ("single-stream", 1), ("offline", 1), ("offline", 4),
                     ("server(max_batch=2,max_delay_ms=1,qps=50)", 2),
                     ("server(max_batch=2,max_delay_ms=1,qps=100)", 2),
                     ("server(max_batch=8,max_delay_ms=1,qps=50)", 8),
                     ("server(max_batch=8,max_delay_ms=1,qps=100)", 8)]
    assert spec.measure.server_min_duration_s == 0.5
    search = build_spec({**BASE, "scenarios": "server", "find_max_qps": True, "p99_ms": 20})
    assert [c.scenario for c in expand(search)] == ["server(max_batch=8,max_delay_ms=2,p99_ms=20)"]
    # without --scenarios the sweep and its run directory are what they were
    plain = build_spec(BASE)
    assert [c.scenario for c in expand(plain)] == ["", ""]
    assert "scenarios" not in plain.identity()
    assert "scenarios" in spec.identity() and spec.default_out() != plain.default_out()


def test_bad_flag_exits_2_with_one_line_and_creates_nothing(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--backends", "fault-ok", "--sizes", "32", "--scenarios", "server",
               "--max-batch", "4", "--out", out, *FAST, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: scenario server needs qps (target rates) or find_max_qps with p99_ms"]
    assert not out.exists()


def test_server_scenario_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--backends", "fault-ok", "--sizes", "32", "--scenarios", "server",
            "--qps", "150", "--max-batch", "4", "--max-delay-ms", "2", "--p99-ms", "200",
            "--server-min-duration", "0.5", "--server-min-requests", "60", "--out", out, *FAST]
    proc = cli(*args, timeout=180)
    assert proc.returncode == 0, proc.stderr
    with open(out / "results.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["scenario"] == "server(max_batch=4,max_delay_ms=2,p99_ms=200,qps=150)"
    assert row["status"] == "ok" and row["batch_size"] == "4"
    assert float(row["target_qps"]) == 150.0 and float(row["p99_bound_ms"]) == 200.0
    assert int(row["requests"]) >= 60 and float(row["run_s"]) >= 0.5
    assert 1.0 <= float(row["mean_batch"]) <= 4.0
    p50, p99 = float(row["request_ms_p50"]), float(row["request_ms_p99"])
    assert 1.0 <= p50 <= p99  # fault-ok sleeps 1 ms per batch
    # at most 200 requests: early stopping (459 needed with none over the bound) is broken
    assert row["valid"] == "False"
    assert "that the binomial rule at 99% confidence needs" in row["invalid_reason"]
    data = json.loads((out / "results.json").read_text())
    info = data["results"][0]["info"]
    assert info["schedule"] == {"kind": "poisson", "rate": 150.0, "seed": 0,
                                "count": int(row["requests"])}
    assert len(info["request_latencies_ms"]) == int(row["requests"])
    assert sorted(info["service_ms_by_batch"]) == ["1", "2", "3", "4"]
    # fault-ok sleeps the same for every size: a change of size measured, costing nothing
    assert 0 <= info["shape_switch_ms"] < 1.0
    assert not any("a change of batch size" in w for w in data["results"][0]["warnings"])
    report = (out / "report.md").read_text()
    assert "### Server runs at a fixed rate" in report
    # a sweep of server cases only: nothing to rank by fixed-batch latency, and it says why
    assert "No fixed-batch figure to rank: the 1 server case(s) that ran are under Scenarios" \
        in report and "No case ran successfully" not in report
    assert (out / "plots" / "p99_vs_qps.png").exists()
    assert "<h2>Scenarios</h2>" in (out / "report.html").read_text()
    # one process measured it, its median the requests': a resumed run counts it as done
    (stored,) = Store(out / "results.sqlite", readonly=True).results()
    assert repeats.repeats_done(stored) == 1
    assert stored.process_medians_ms == [pytest.approx(p50, abs=1e-9)]


def test_padded_server_runs_one_batch_size(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--backends", "fault-ok", "--sizes", "32", "--scenarios", "server",
               "--qps", "150", "--max-batch", "4", "--pad-batches", "--server-min-duration",
               "0.5", "--server-min-requests", "60", "--out", out, *FAST, timeout=180)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads((out / "results.json").read_text())["results"]
    assert row["scenario"] == "server(max_batch=4,max_delay_ms=2,pad_batches=true,qps=150)"
    assert row["status"] == "ok", row["reason"]
    assert list(row["info"]["service_ms_by_batch"]) == ["4"]
    assert row["info"]["shape_switch_ms"] is None
    # serving is measuring in the run's time split: at least the 0.5 s of arrivals
    assert row["info"]["spent_s"]["measuring"] >= 0.5
    assert "measuring 0.0 s" not in proc.stdout
    assert 1.0 <= row["mean_batch"] <= 4.0  # the batches formed; each ran padded to 4


@pytest.mark.gpu
def test_server_scenario_on_cuda_batches_placed_requests(tmp_path):
    """On the GPU each batch is placed on the device, run, synchronized and fetched in the loop.
    Padded to one shape: unpadded, ONNX Runtime CUDA re-plans at every change of batch size
    (75-600 ms each on an H200) and kept up with 180 of 300 QPS."""
    out = tmp_path / "run"
    proc = cli("run", "--backends", "torch,onnxruntime", "--devices", "cuda", "--precisions",
               "fp16", "--sizes", "32", "--scenarios", "server", "--qps", "300", "--max-batch",
               "8", "--pad-batches", "--server-min-duration", "1", "--server-min-requests", "300",
               "--out", out,
               *FAST, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["reason"] for r in rows]
    for row in rows:
        assert int(row["requests"]) >= 300 and float(row["request_ms_p50"]) > 0
        assert 1.0 <= float(row["mean_batch"]) <= 8.0
        assert float(row["achieved_qps"]) > 0.9 * 300 * 0.8  # kept up, Poisson noise aside
