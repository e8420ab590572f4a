"""The builder process: the next GPU group's artefacts built off the critical path, on cores and
at a priority of its own, never alongside a CPU measurement, never failing a case."""

import os

import pytest

from infersweep.artefacts.cache import ArtifactCache, entries
from infersweep.case import Case
from infersweep.measure.timing import MeasureSettings
from infersweep.run import builder as buildermod
from infersweep.run.builder import Builder, CoreSplit, split_cores
from infersweep.run.local import LocalExecutor
from infersweep.run.protocol import WorkerJob

FACTORY = """\
import torch.nn as nn

def tiny(image_size):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))
"""
SETTINGS = MeasureSettings(min_iterations=5, min_time_s=0.05, max_time_s=0.3, warmup_max_s=0.2)


def test_cores_are_split_only_where_there_are_enough():
    assert split_cores([0, 1]) is None
    assert split_cores([0, 1, 2]) is None
    assert split_cores([3, 1, 0, 2]) == CoreSplit(worker=(0, 1, 2), builder=(3,))
    assert split_cores(range(16)) == CoreSplit(worker=tuple(range(12)),
                                               builder=(12, 13, 14, 15))


def test_builder_exports_the_next_group_in_its_own_process(tmp_path):
    (tmp_path / "fac.py").write_text(FACTORY)
    model = str(tmp_path / "fac.py") + ":tiny"
    group = [Case(model, "random(seed=0)", "onnxruntime", "cuda", "fp32", 32, b, "synthetic")
             for b in (1, 4)]
    core = max(os.sched_getaffinity(0))
    job = WorkerJob(settings=SETTINGS, cache_dir=str(tmp_path / "cache"), log_dir=tmp_path)
    builder = Builder(job, (core,), tmp_path / "builder.log", nice=7)
    try:
        builder.submit(group)
        report = builder.wait_for(group, timeout_s=120)
        ready = builder.wait_ready(timeout_s=1)
    finally:
        builder.close()
    assert report is not None and report.error is None, (tmp_path / "builder.log").read_text()
    # Its own process, pinned to the core it was given, at the niceness it was given.
    assert ready["pid"] == builder.proc.pid != os.getpid()
    assert ready["cpus"] == [core]
    assert ready["nice"] == min(19, os.nice(0) + 7)
    (built,) = report.artefacts
    assert built["kind"] == "onnx" and built["cached"] is False
    assert [e["path"] for e in entries(tmp_path / "cache")] == [os.path.dirname(built["path"])]
    assert report.info()["artefacts_prebuilt"] is True
    # The worker's own prepare asks the cache with the same key: it finds the builder's file.
    from infersweep.artefacts.export import DEFAULT_OPSET, onnx_export
    from infersweep.artefacts.models import ModelSource

    path, cached = onnx_export(ModelSource(model, "random(seed=0)", 0, None, 32), 32,
                               DEFAULT_OPSET, ArtifactCache(tmp_path / "cache"))
    assert (str(path), cached) == (built["path"], True)


def _group(backend, device, size):
    return [Case("resnet18", "random(seed=0)", backend, device, "fp32", size, b, "synthetic")
            for b in (1, 3)]


@pytest.fixture
def two_cores_split(monkeypatch):
    """This 2-core machine splits like a big one: a worker core and a builder core."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    monkeypatch.setattr(buildermod, "MIN_CORES", 2)


def test_builder_runs_only_for_a_next_gpu_group_and_ends_before_cpu_groups(tmp_path,
                                                                          two_cores_split):
    # The fault backend runs its "cuda" cases on the CPU: the executor's scheduling is real.
    gpu1, gpu2, gpu3, cpu = (_group("fault-ok", "cuda", 8), _group("fault-ok", "cuda", 16),
                             _group("fault-ok", "cuda", 24), _group("fault-ok", "cpu", 8))
    executor = LocalExecutor(WorkerJob(settings=SETTINGS, timeout_s=30, log_dir=tmp_path),
                             usable_cores=2)
    results, builders, at_cpu, submitted = [], [], [], []

    def on_start(case):
        builder = executor.prebuilder.builder
        if case.device == "cuda":
            builders.append(builder)
            if not submitted:  # the first GPU case: every coming GPU group is with the builder
                submitted.append(set(builder.submitted))
        elif not at_cpu:  # the first CPU case: has the builder ended?
            at_cpu.append((builder, builders[-1].proc.poll()))

    executor.run([gpu1, gpu2, gpu3, cpu], on_start, results.append)
    assert len(results) == 8 and all(r.status == "ok" for r in results)
    # One builder, started for gpu2 and gpu3 before gpu1 was measured; closed (exit 0) before
    # the CPU group started.
    assert builders[0] is not None and builders == [builders[0]] * 6
    assert submitted == [{gpu2[0].case_id, gpu3[0].case_id}]
    assert at_cpu == [(None, 0)]
    info = {r.case.image_size: r.info for r in results if r.case.device == "cuda"}
    assert "builder" not in info[8]  # nothing built the first group ahead
    assert info[16]["builder"]["artefacts"] == []  # the fault backend has nothing to build
    assert info[16]["artefacts_prebuilt"] is False
    assert all("builder" not in r.info for r in results if r.case.device == "cpu")
    # The measured GPU worker runs on the core the builder does not have; CPU groups on all.
    worker_core, builder_core = sorted(os.sched_getaffinity(0))[:2]
    assert {tuple(r.info.get("worker_cpus", ())) for r in results if r.case.device == "cuda"} \
        == {(worker_core,)}
    assert all("worker_cpus" not in r.info for r in results if r.case.device == "cpu")


def test_no_builder_when_the_next_group_is_a_cpu_group(tmp_path, two_cores_split):
    executor = LocalExecutor(WorkerJob(settings=SETTINGS, timeout_s=30, log_dir=tmp_path),
                             usable_cores=2)
    results = []
    executor.run([_group("fault-ok", "cuda", 8), _group("fault-ok", "cpu", 8)],
                 lambda case: None, results.append)
    assert len(results) == 4 and all(r.status == "ok" for r in results)
    assert not (tmp_path / "builder.log").exists()  # never started
    assert all("builder" not in r.info for r in results)


def test_no_builder_below_four_cores_or_with_worker_per_group():
    job = WorkerJob()
    assert LocalExecutor(job, usable_cores=3, cores=(0, 1, 2)).split is None
    assert LocalExecutor(job, usable_cores=8, cores=tuple(range(8))).split == CoreSplit(
        tuple(range(6)), (6, 7))
    per_group = WorkerJob(worker_per_group=True)
    assert LocalExecutor(per_group, usable_cores=8, cores=tuple(range(8))).split is None


def test_the_next_backends_worker_starts_ahead_on_the_builder_core_and_measures_on_the_worker_core(
        tmp_path, two_cores_split):
    """While a backend's last group is measured, the next backend's worker already runs (its
    interpreter and imports) on the builder's core; it measures on the worker's core, and only
    after the worker before it has gone."""
    first, second = _group("fault-ok", "cuda", 8), _group("fault-raise", "cuda", 16)
    executor = LocalExecutor(WorkerJob(settings=SETTINGS, timeout_s=30, log_dir=tmp_path),
                             usable_cores=2)
    worker_core, builder_core = sorted(os.sched_getaffinity(0))[:2]
    seen = []  # at each case's start: the worker started ahead, and the cores it may run on

    def on_start(case):
        ahead = executor.slots[0].ahead
        seen.append((case.image_size, ahead and ahead.key,
                     ahead and os.sched_getaffinity(ahead.proc.pid)))

    results = []
    executor.run([first, second], on_start, results.append)
    assert [r.status for r in results] == ["ok"] * 4
    assert seen[:2] == [(8, ("fault-raise", "cuda"), {builder_core})] * 2
    assert [s[1] for s in seen[2:]] == [None, None]  # handed over: nothing more ahead
    info = [r.info for r in results if r.case.image_size == 16]
    start = info[0]["worker_start_s"]
    assert start["started_ahead"] > 0 and start["to_first_case"] >= start["close_previous"]
    assert {tuple(i["worker_cpus"]) for i in info} == {(worker_core,)}
    assert info[0]["worker_pid"] != [r.info for r in results][0]["worker_pid"]
    # Pipelined throughput (GPU cases) costs at most 5% of a briefly timed case's measuring
    for r in results:
        spent = r.info["spent_s"]
        assert spent["pipelined"] <= 0.05 * spent["measuring"] + 0.05, spent  # + scheduling noise


def test_the_successor_starts_two_groups_before_the_last_one(tmp_path, two_cores_split):
    """A worker's last group can be shorter than its successor's import (torch: 7.5-9.9 s on the
    H200): the successor is started while the worker still has two groups to go."""
    groups = [_group("fault-ok", "cuda", 8), _group("fault-ok", "cuda", 16),
              _group("fault-raise", "cuda", 24)]
    executor = LocalExecutor(WorkerJob(settings=SETTINGS, timeout_s=30, log_dir=tmp_path),
                             usable_cores=2)
    ahead_at = {}  # each case's size and batch -> the key of the worker started ahead then

    def on_start(case):
        ahead = executor.slots[0].ahead
        ahead_at[(case.image_size, case.batch_size)] = ahead and ahead.key

    results = []
    executor.run(groups, on_start, results.append)
    assert [r.status for r in results] == ["ok"] * 6
    assert ahead_at[(8, 1)] == ahead_at[(16, 1)] == ("fault-raise", "cuda")
    assert ahead_at[(24, 1)] is None  # handed over
    pids = {r.case.image_size: r.info["worker_pid"] for r in results}
    assert pids[8] == pids[16] != pids[24]


def test_a_worker_started_ahead_is_not_replaced_by_the_next_one_before_its_group(
        tmp_path, two_cores_split):
    """Backends of one group each (a cold run scouts so): the worker started ahead for the
    second group serves it, although the third group's worker is started before it begins."""
    groups = [_group("fault-ok", "cuda", 8), _group("fault-raise", "cuda", 16),
              _group("fault-garbage", "cuda", 24)]
    executor = LocalExecutor(WorkerJob(settings=SETTINGS, timeout_s=30, log_dir=tmp_path),
                             usable_cores=2)
    results = []
    executor.run(groups, lambda case: None, results.append)
    first = {r.case.image_size: r.info for r in results if r.case.batch_size == 1}
    assert "started_ahead" not in first[8]["worker_start_s"]  # nothing was running before it
    assert first[16]["worker_start_s"]["started_ahead"] > 0
    assert first[24]["worker_start_s"]["started_ahead"] > 0
    assert len({info["worker_pid"] for info in first.values()}) == 3


def test_the_builder_is_let_go_with_the_workers_when_no_cpu_group_follows(tmp_path, monkeypatch,
                                                                          two_cores_split):
    """After the last GPU group the builder is told to exit and waited for by close(), as the
    workers are: its teardown (an interpreter that imported torch and exported) overlaps the
    final reports instead of coming before them. Still waited for, never killed."""
    import json
    import time

    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("INFERSWEEP_FAULT_EXIT_MARK", str(marks))
    monkeypatch.setenv("INFERSWEEP_FAULT_EXIT_S", "3")
    executor = LocalExecutor(WorkerJob(settings=SETTINGS, timeout_s=30, log_dir=tmp_path),
                             usable_cores=2)
    results, builders = [], set()
    executor.run([_group("fault-slow-exit", "cuda", 8), _group("fault-slow-exit", "cuda", 16)],
                 lambda case: builders.add(executor.prebuilder.builder), results.append)
    returned = time.time()
    (builder,) = builders - {None}  # built for the second group while the first was measured
    assert len(results) == 4 and all(r.status == "ok" for r in results)
    executor.close()
    exits = {int(p.name): json.loads(p.read_text()) for p in marks.iterdir()}
    # Its exit ran to the end after the run returned: waited for by close(), not killed.
    assert exits[builder.proc.pid]["exited"] > returned
    assert builder.proc.returncode == 0
