"""Server scenario: arrival schedule, batcher, the serving loop on a fake clock, validity, and the
max-QPS search. All of it runs on fake time (instant, deterministic) except one short real run."""

from __future__ import annotations

import time

import numpy as np
import pytest

from infersweep.case import Case, scenario_parts, scenario_text
from infersweep.measure.arrivals import poisson_schedule
from infersweep.measure.batcher import Batcher
from infersweep.grid.values import SpecError
from infersweep.measure.maxqps import find_max_qps
from infersweep.measure.server import (ServerRules, ServerSummary, early_stopping_minimum,
                                       early_stopping_ok, serve, summarize_run)


class FakeTime:
    """A clock that moves only when the loop sleeps or a batch runs."""

    def __init__(self, service_s):
        self.now = 0.0
        self.service_s = service_s  # batch size -> seconds
        self.batches: list[int] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def run_batch(self, n: int) -> None:
        self.batches.append(n)
        self.now += self.service_s(n)


def fake_serve(schedule, max_batch, max_delay_s, service_s, **kw):
    fake = FakeTime(service_s)
    run = serve(fake.run_batch, schedule, max_batch, max_delay_s, clock=fake.clock,
                sleep=fake.sleep, **kw)
    return run, fake


# --- the arrival schedule -------------------------------------------------------------------

def test_poisson_schedule_has_the_rate_and_repeats_with_its_seed():
    a = poisson_schedule(200.0, seed=7, min_requests=20000)
    assert a.count == 20000
    # 20000 exponential gaps: the mean gap is within 3% of 1/rate (its sd is 0.7%)
    assert abs(np.mean(np.diff(a.arrivals_s)) * 200.0 - 1) < 0.03
    b = poisson_schedule(200.0, seed=7, min_requests=20000)
    assert np.array_equal(a.arrivals_s, b.arrivals_s)
    c = poisson_schedule(200.0, seed=8, min_requests=20000)
    assert not np.array_equal(a.arrivals_s[:10], c.arrivals_s[:10])
    assert a.record() == {"kind": "poisson", "rate": 200.0, "seed": 7, "count": 20000}


def test_poisson_schedule_meets_both_minimums_and_no_more():
    s = poisson_schedule(50.0, seed=1, min_requests=10, min_duration_s=4.0)
    assert s.duration_s >= 4.0 and s.arrivals_s[-2] < 4.0  # stops at the first arrival past 4 s
    assert s.count > 10
    many = poisson_schedule(50.0, seed=1, min_requests=500, min_duration_s=0.1)
    assert many.count == 500
    # a longer schedule with the same seed starts with the same arrivals
    assert np.array_equal(many.arrivals_s[:s.count], s.arrivals_s)


# --- the batcher ----------------------------------------------------------------------------

def test_batcher_releases_a_full_batch_at_once_in_arrival_order():
    b = Batcher(max_batch=3, max_delay_s=0.010)
    for i, t in enumerate([0.0, 0.001, 0.002, 0.003]):
        b.add(i, t)
    assert b.ready(0.003)  # 4 waiting >= 3, long before the delay
    assert b.take() == [0, 1, 2]
    assert len(b) == 1 and not b.ready(0.012)  # request 3 came at 0.003: due at 0.013
    assert b.deadline() == pytest.approx(0.013)
    assert b.ready(0.013) and b.take() == [3]
    assert b.deadline() is None and not b.ready(1.0)


def test_batcher_releases_a_partial_batch_when_the_oldest_waited_max_delay():
    b = Batcher(max_batch=8, max_delay_s=0.002)
    b.add(0, 1.000)
    b.add(1, 1.0015)
    assert not b.ready(1.0019)
    assert b.ready(1.002)
    assert b.take() == [0, 1]


# --- the loop, against queueing theory ------------------------------------------------------

def test_md1_mean_wait_matches_queueing_theory():
    """max_batch 1, deterministic service D, Poisson arrivals: an M/D/1 queue. At load
    rho = 0.5 its mean wait in the queue is rho*D / (2(1-rho)) = D/2 (Pollaczek-Khinchine)."""
    service = 0.010
    rate = 50.0  # rho = rate * D = 0.5
    schedule = poisson_schedule(rate, seed=3, min_requests=100_000)
    run, fake = fake_serve(schedule, 1, 0.0, lambda n: service)
    assert run.served == 100_000 and set(fake.batches) == {1}
    expected_wait_ms = 0.5 * service / (2 * (1 - 0.5)) * 1e3  # 5 ms
    assert np.mean(run.queue_ms) == pytest.approx(expected_wait_ms, rel=0.04)
    # latency = wait + service, to the float
    assert np.allclose(run.latency_ms - run.queue_ms, service * 1e3)


def test_a_lone_request_waits_max_delay_and_a_burst_is_batched():
    schedule = poisson_schedule(10.0, seed=0, min_requests=1)  # one request
    run, fake = fake_serve(schedule, 8, 0.005, lambda n: 0.001)
    assert run.queue_ms.tolist() == pytest.approx([5.0])  # nothing else came: full delay
    assert run.latency_ms.tolist() == pytest.approx([6.0])
    # Rate far above one batch of 1 per ms, service 1 ms + 0.1 ms per image: batches fill up.
    busy = poisson_schedule(20000.0, seed=0, min_requests=4000)
    run, fake = fake_serve(busy, 8, 0.005, lambda n: 0.0002 + 0.0001 * n)
    assert max(fake.batches) == 8 and np.mean(fake.batches) > 7
    summary = summarize_run(run, ServerRules(min_duration_s=0.0, min_requests=1))
    assert summary.mean_batch == pytest.approx(np.mean(fake.batches))


def test_the_loop_runs_with_the_garbage_collector_off_and_restores_it():
    """A gen-2 collection inside a server run would land on a few requests' latency."""
    import gc

    states = []
    fake = FakeTime(lambda n: 0.001)

    def run_batch(n):
        states.append(gc.isenabled())
        fake.run_batch(n)

    was = gc.isenabled()
    serve(run_batch, poisson_schedule(100.0, seed=0, min_requests=20), 1, 0.0,
          clock=fake.clock, sleep=fake.sleep)
    assert len(states) == 20 and not any(states)
    assert gc.isenabled() == was


def test_overloaded_server_is_stopped_and_marked_invalid():
    # capacity 100/s (10 ms per request), asked for 300/s
    schedule = poisson_schedule(300.0, seed=0, min_requests=3000)
    run, _ = fake_serve(schedule, 1, 0.0, lambda n: 0.010)
    assert run.stopped.startswith("stopped early: overloaded")
    assert run.served < 3000
    summary = summarize_run(run, ServerRules(min_duration_s=1.0, min_requests=100))
    assert not summary.valid
    assert "fell behind" in summary.invalid_reason


def test_certain_p99_failure_stops_the_run_early():
    schedule = poisson_schedule(95.0, seed=0, min_requests=5000)
    run, _ = fake_serve(schedule, 1, 0.0, lambda n: 0.010, p99_bound_s=0.012)
    assert run.stopped.startswith("stopped early:") and "p99 certainly above" in run.stopped
    assert run.served < 5000


# --- validity -------------------------------------------------------------------------------

def test_early_stopping_rule_matches_loadgen_numbers():
    # t = 0: 0.99^n <= 0.01 first at n = 459 (ceil(log 0.01 / log 0.99))
    assert early_stopping_minimum(0) == 459
    assert early_stopping_ok(459, 0) and not early_stopping_ok(458, 0)
    assert early_stopping_minimum(1) > 459 + 1
    assert early_stopping_ok(early_stopping_minimum(5), 5)
    assert not early_stopping_ok(early_stopping_minimum(5) - 1, 5)


def test_short_run_is_invalid_naming_each_rule_it_broke():
    schedule = poisson_schedule(100.0, seed=0, min_requests=50)
    run, _ = fake_serve(schedule, 4, 0.001, lambda n: 0.002)
    rules = ServerRules(min_duration_s=10.0, min_requests=100, p99_bound_ms=50.0)
    summary = summarize_run(run, rules)
    assert not summary.valid
    reasons = summary.invalid_reason.split("; ")
    assert reasons[0].startswith("ran ") and reasons[0].endswith("below the minimum 10 s")
    assert reasons[1] == "50 requests, below the minimum 100"
    assert reasons[2] == ("early stopping: 50 requests with 0 over the bound, fewer than the 459 "
                          "that the binomial rule at 99% confidence needs")
    assert len(reasons) == 3
    # the same run under rules it meets is valid
    ok = summarize_run(run, ServerRules(min_duration_s=0.1, min_requests=50))
    assert ok.valid and ok.invalid_reason == ""
    assert ok.requests == 50 and ok.schedule == schedule.record()


# --- the max-QPS search ---------------------------------------------------------------------

def _summary(rate: float, p99: float, bound: float) -> ServerSummary:
    return ServerSummary(rate, rate, rate, p99 / 2, p99 / 1.5, p99, p99, 1.0, 10.0, 1000, 10.0,
                         bound, valid=p99 <= bound)


def test_max_qps_search_finds_a_known_answer_within_its_resolution():
    # A fake server whose p99 grows linearly with the rate: 5 ms + rate/10 ms; bound 20 ms
    # -> the answer is 150 QPS.
    rates = []

    def trial(rate):
        rates.append(rate)
        return _summary(rate, 5 + rate / 10, 20.0)

    search = find_max_qps(trial, 20.0, start_qps=40.0, resolution=0.02)
    assert 150 / 1.02 <= search.max_qps <= 150
    assert search.failed_qps > 150 and (search.failed_qps - search.max_qps) / search.max_qps <= 0.02
    assert rates[:3] == [40.0, 80.0, 160.0]  # bracket by doubling, as LoadGen widens
    records = search.trial_records()
    assert len(records) == len(rates) and [r["qps"] for r in records] == rates
    assert [r["passed"] for r in records[:3]] == [True, True, False]


def test_max_qps_search_halves_a_failing_start_and_reports_no_answer():
    search = find_max_qps(lambda r: _summary(r, 5 + r / 10, 20.0), 20.0, start_qps=1000.0,
                          resolution=0.05)
    assert 150 / 1.05 <= search.max_qps <= 150
    assert [t.target_qps for t in search.trials[:4]] == [1000.0, 500.0, 250.0, 125.0]
    never = find_max_qps(lambda r: _summary(r, 30.0, 20.0), 20.0, start_qps=100.0)
    assert never.max_qps is None and never.note.startswith("no rate down to")


def test_max_qps_on_the_fake_clock_loop_is_below_capacity():
    # 10 ms per request, max_batch 1: capacity 100 QPS; bound 100 ms on the p99
    schedule_for = lambda rate: poisson_schedule(rate, seed=0, min_requests=3000)  # noqa: E731
    rules = ServerRules(min_duration_s=0.0, min_requests=100, p99_bound_ms=100.0)

    def trial(rate):
        run, _ = fake_serve(schedule_for(rate), 1, 0.0, lambda n: 0.010, p99_bound_s=0.1)
        return summarize_run(run, rules)

    search = find_max_qps(trial, 100.0, start_qps=20.0, resolution=0.05)
    # M/D/1: p99 of 100 ms = 10 service times is reached around rho 0.75-0.9
    assert 60 < search.max_qps < 95
    assert search.best.request_ms_p99 <= 100.0


# --- real time ------------------------------------------------------------------------------

def test_real_time_loop_serves_every_request_with_sane_latency():
    """The real clock and sleep: 1 ms of service, 200 QPS, 0.4 s of arrivals."""
    schedule = poisson_schedule(200.0, seed=0, min_requests=80)
    run = serve(lambda n: time.sleep(0.001), schedule, 4, 0.002)
    assert run.served == schedule.count and not run.stopped
    assert np.all(run.queue_ms >= 0)  # never started before it arrived
    assert np.all(run.latency_ms - run.queue_ms >= 1.0)  # each batch took its 1 ms of service
    assert sum(run.batch_sizes) == run.served


# --- case ids -------------------------------------------------------------------------------

def test_scenario_is_out_of_the_id_when_empty_and_canonical_when_not():
    base = dict(model="resnet18", weights="random(seed=0)", backend="torch", device="cpu",
                precision="fp32", image_size=64, batch_size=8, data="synthetic")
    plain = Case(**base)
    assert "scenario" not in plain.identity()
    # the id of a case without scenario is what it was before scenarios existed
    assert plain.case_id == Case(**base, scenario="").case_id
    text = scenario_text("server", {"qps": 200.0, "max_batch": 8, "max_delay_ms": 2.0})
    assert text == "server(max_batch=8,max_delay_ms=2,qps=200)"
    assert scenario_parts(text) == ("server", {"max_batch": "8", "max_delay_ms": "2",
                                               "qps": "200"})
    served = Case(**base, scenario=text)
    assert served.case_id != plain.case_id and served.group_key == plain.group_key
    assert served.label.endswith(text)


def test_a_search_trial_holds_the_requests_a_valid_pass_needs_and_a_fixed_rate_run_does_not():
    from infersweep.measure.timing import MeasureSettings
    from infersweep.run.serve import trial_schedule

    settings = MeasureSettings(server_min_duration_s=1.0, server_min_requests=100)
    # 20 QPS for 1 s is ~20 requests; the user's minimum makes it 100 at a fixed rate ...
    assert trial_schedule(20.0, 0, settings, searching=False).count == 100
    # ... and a search trial 459, the fewest with which none over the bound passes the rule
    searched = trial_schedule(20.0, 0, settings, searching=True)
    assert searched.count == early_stopping_minimum(0) == 459
    assert early_stopping_ok(searched.count, 0) and not early_stopping_ok(searched.count - 1, 0)
    # a larger minimum of the user's is kept
    many = MeasureSettings(server_min_duration_s=1.0, server_min_requests=2000)
    assert trial_schedule(20.0, 0, many, searching=True).count == 2000


# --- the batches the server runs -----------------------------------------------------------

class CountingSession:
    """Places, refills and runs, counting each: the server's use of a session."""

    def __init__(self):
        self.placed: list[int] = []
        self.refilled: list[int] = []

    def place(self, batch):
        self.placed.append(len(batch))
        return [batch.copy()]

    def refill(self, placed, batch):
        self.refilled.append(len(batch))
        placed[0][...] = batch
        return placed

    def specialize(self, placed):
        pass

    def run(self, placed):
        return placed[0].sum()

    def fetch(self, output):
        return output


def test_the_server_places_each_batch_size_once_and_refills_it_per_batch():
    """A real server allocates its input buffers once: a new device buffer per batch (an ONNX
    Runtime OrtValue is a cudaMalloc and a cudaFree) would be charged to every request."""
    from infersweep.run.serve import BatchRunner, warm_up_sizes

    host = {n: np.full((n, 3, 4, 4), n, np.float32) for n in (1, 2, 3)}
    session = CountingSession()
    runner = BatchRunner(session, host)
    assert sorted(warm_up_sizes(runner)) == [1, 2, 3]
    assert session.placed == [1, 2, 3]  # in setup, once per size
    for n in (3, 1, 3):
        assert runner(n) == host[n].sum()
    assert session.placed == [1, 2, 3]
    assert session.refilled == [1] * 5 + [2] * 5 + [3] * 5 + [3, 1, 3]


def test_torch_refills_the_tensor_it_placed(tmp_path):
    import torch

    from infersweep.artefacts.cache import ArtifactCache
    from infersweep.artefacts.models import ModelSource
    from infersweep.backends import get_backend

    (tmp_path / "fac.py").write_text(
        "import torch.nn as nn\n\ndef tiny(image_size):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())\n")
    case = Case(str(tmp_path / "fac.py") + ":tiny", "random(seed=0)", "torch", "cpu", "fp32",
                8, 2, "synthetic", options="channels_last=true")
    session = get_backend("torch").prepare(
        ModelSource(case.model, case.weights, 0, None, 8), case, ArtifactCache(tmp_path / "c"))
    first, second = np.zeros((2, 3, 8, 8), np.float32), np.ones((2, 3, 8, 8), np.float32)
    placed = session.place(first)
    pointer = placed.data_ptr()
    again = session.refill(placed, second)
    assert again is placed and placed.data_ptr() == pointer
    assert placed.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(placed, torch.ones(2, 3, 8, 8))
    np.testing.assert_array_equal(session.fetch(session.run(again)),
                                  session.fetch(session.run(session.place(second))))


def test_a_size_below_the_case_batch_that_fails_is_unsupported_and_the_case_batch_failing_raises():
    from infersweep.run.serve import BatchRunner, Unsupported, warm_up_sizes

    class FailsAt(CountingSession):
        def __init__(self, size):
            super().__init__()
            self.size = size

        def specialize(self, placed):
            if len(placed[0]) == self.size:
                raise RuntimeError(f"fixed batch: got {self.size}")

    host = {n: np.ones((n, 3, 4, 4), np.float32) for n in (1, 2, 3)}
    with pytest.raises(Unsupported, match="cannot run a batch of 2, which the batcher may form: "):
        warm_up_sizes(BatchRunner(FailsAt(2), host))
    with pytest.raises(RuntimeError, match="fixed batch: got 3"):
        warm_up_sizes(BatchRunner(FailsAt(3), host))


class SwitchCostSession(CountingSession):
    """Runs in 1 ms, but 30 ms when the batch size differs from the last run's: ONNX Runtime's
    CUDA provider since 1.20 re-plans its cuDNN convolutions on every change of input shape."""

    def __init__(self, switch_s=0.03):
        super().__init__()
        self.switch_s, self.last = switch_s, None

    def run(self, placed):
        size = len(placed[0])
        time.sleep(self.switch_s if self.last not in (None, size) else 0.001)
        self.last = size
        return placed[0].sum()


def test_a_costly_change_of_batch_size_is_measured_in_setup_and_named():
    from infersweep.run.serve import BatchRunner, shape_switch, warm_up_sizes

    host = {n: np.ones((n, 3, 4, 4), np.float32) for n in (1, 2, 4)}
    costly = BatchRunner(SwitchCostSession(), host)
    warm_up_sizes(costly)
    switch_ms, warning = shape_switch(costly)
    assert 20 < switch_ms < 60
    assert "a change of batch size costs" in warning and "--pad-batches" in warning
    steady = BatchRunner(SwitchCostSession(switch_s=0.001), host)
    warm_up_sizes(steady)
    switch_ms, warning = shape_switch(steady)
    assert switch_ms < 5 and warning is None
    # one batch size (max_batch 1, or padded batches): there is no change to measure
    single = BatchRunner(SwitchCostSession(), {1: host[1]})
    warm_up_sizes(single)
    assert shape_switch(single) == (None, None)


def test_padded_batches_place_and_run_only_the_max_batch():
    """--pad-batches: every batch the batcher forms runs as one of max_batch (the rest of the
    buffer is padding), as a server with one static input shape does: one shape to warm, plan
    or compile, never a change of shape."""
    from infersweep.run.serve import BatchRunner, shape_switch, warm_up_sizes

    host = {n: np.full((n, 3, 4, 4), n, np.float32) for n in (1, 2, 3)}
    session = SwitchCostSession()
    runner = BatchRunner(session, host, pad=True)
    assert sorted(warm_up_sizes(runner)) == [3]
    assert session.placed == [3]
    for n in (1, 2, 3, 1):
        assert runner(n) == host[3].sum()
    assert session.placed == [3] and session.refilled == [3] * 9
    assert shape_switch(runner) == (None, None)


def test_pad_batches_is_a_server_key_in_the_scenario_only_when_asked():
    from infersweep.grid.spec import build_spec

    base = {"backends": "torch", "devices": "cpu", "scenarios": "server", "qps": "10",
            "max_batch": "4"}
    plain = build_spec(base, gpus_visible=0)
    padded = build_spec({**base, "pad_batches": True}, gpus_visible=0)
    assert plain.scenario_points() == [("server(max_batch=4,max_delay_ms=2,qps=10)", (4,))]
    assert padded.scenario_points() == [
        ("server(max_batch=4,max_delay_ms=2,pad_batches=true,qps=10)", (4,))]
    from infersweep.run.serve import ServerCase

    assert ServerCase.of(Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 64, 4,
                              "synthetic", scenario=padded.scenario_points()[0][0])).pad
    with pytest.raises(SpecError, match="pad_batches: only for the server scenario"):
        build_spec({"backends": "torch", "devices": "cpu", "pad_batches": True}, gpus_visible=0)
