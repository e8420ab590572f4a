"""The worker calls the probes' hooks in order, never inside the timed region, and contains them."""

import time

import pytest

from infersweep.measure.timing import MeasureSettings
from infersweep.run.protocol import GroupRequest

from infersweep.backends.base import Backend, Session
from infersweep.case import Case
from infersweep.probes import Column, Probe, Reading
from infersweep.run import worker

HOOKS = ["start_group", "begin", "before", "after_warmup", "after", "end"]
SETTINGS = {"min_iterations": 5, "min_time_s": 0.02, "max_time_s": 0.1, "warmup_max_s": 0.1}


class Timeline:
    """Launches and probe hooks in one list, each with the perf_counter time it happened at."""

    def __init__(self):
        self.events: list[tuple[str, float, float]] = []


class RecordingSession(Session):
    def __init__(self, timeline):
        self.timeline, self.info = timeline, {"recording": True}

    def place(self, batch):
        return batch

    def launch(self, placed):
        start = time.perf_counter()
        time.sleep(0.001)
        self.timeline.events.append(("launch", start, time.perf_counter()))
        return placed.sum(axis=(1, 2, 3))[:, None]


class RecordingBackend(Backend):
    def prepare(self, source, case, cache):
        return RecordingSession(self.timeline)


def _probe(timeline, fail_in: str | None = None):
    class Recorder(Probe):
        name = "recorder"
        columns = (Column("recorder_calls", "calls", "d"),)

        def _hook(self, hook):
            now = time.perf_counter()
            timeline.events.append((hook, now, now))
            if hook == fail_in:
                raise RuntimeError(f"broken in {hook}")

        def start_group(self, ctx):
            self._hook("start_group")

        def begin(self, ctx):
            self._hook("begin")

        def before(self, ctx):
            assert ctx.session is not None and ctx.host_batch.shape == ctx.placed.shape
            self._hook("before")

        def after_warmup(self, ctx):
            self._hook("after_warmup")

        def after(self, ctx):
            self._hook("after")
            assert ctx.output.shape == (ctx.case.batch_size, 1)
            return Reading({"recorder_calls": len(timeline.events)}, ["recorder ran"])

        def end(self, ctx):
            self._hook("end")

    return Recorder


def _run(monkeypatch, tmp_path, fail_in=None):
    timeline = Timeline()
    backend = RecordingBackend("recording", ("cpu",), {"cpu": ("fp32",)}, needs_model=False)
    backend.timeline = timeline
    monkeypatch.setattr("infersweep.backends.get_backend", lambda name: backend)
    monkeypatch.setattr(worker, "registry", lambda: (_probe(timeline, fail_in),))
    case = Case("resnet18", "random(seed=0)", "recording", "cpu", "fp32", 8, 2, "synthetic")
    runner = worker.GroupRunner(GroupRequest((case,), MeasureSettings(**SETTINGS),
                                             cache_dir=str(tmp_path)))
    return runner.run_case(case), timeline.events


def test_hooks_in_order_and_none_inside_the_timed_region(monkeypatch, tmp_path):
    result, events = _run(monkeypatch, tmp_path)
    assert result.status == "ok", result.reason
    assert [e[0] for e in events if e[0] != "launch"] == HOOKS
    launches = [e for e in events if e[0] == "launch"]
    timed = launches[-len(result.samples_ms):]  # measure's last runs are the timed ones
    first, last = timed[0][1], timed[-1][2]
    hook_times = {name: t for name, t, _ in events if name != "launch"}
    assert hook_times["after_warmup"] < first and hook_times["after"] > last
    assert not [h for h, t in hook_times.items() if first <= t <= last]
    assert result.measured == {"recorder_calls": len(events) - 1}  # `end` comes after after
    assert "recorder ran" in result.warnings and result.info["recording"] is True


@pytest.mark.parametrize("fail_in", HOOKS)
def test_a_probe_that_raises_leaves_the_case_ok_and_timed(monkeypatch, tmp_path, fail_in):
    result, events = _run(monkeypatch, tmp_path, fail_in)
    assert result.status == "ok", result.reason
    assert len(result.samples_ms) >= SETTINGS["min_iterations"]
    called = [e[0] for e in events if e[0] != "launch"]
    if fail_in == "end":  # after the result was made: the worker's log has it
        assert result.measured and called == HOOKS
        return
    assert f"probe recorder failed in {fail_in}: RuntimeError: broken in {fail_in}" \
        in result.warnings
    assert result.measured == {}
    # No hook of the failed probe after the failure, but `end` where `begin` was reached.
    failed_at = HOOKS.index(fail_in)
    expected = HOOKS[:failed_at + 1] + (["end"] if fail_in != "start_group" else [])
    assert called == expected


def test_a_failing_case_still_ends_its_probes(monkeypatch, tmp_path):
    monkeypatch.setattr(RecordingSession, "launch",
                        lambda self, placed: (_ for _ in ()).throw(RuntimeError("boom")))
    result, events = _run(monkeypatch, tmp_path)
    assert result.status == "failed" and "boom" in result.reason
    assert [e[0] for e in events] == ["start_group", "begin", "before", "end"]
