"""Long-lived workers: one worker process serves group after group of its (backend, device), and
is replaced only after a crash, a timeout or an OOM; --worker-per-group keeps the old isolation.
Real worker processes throughout (the fault backends of tests/fault_backend.py)."""

import json
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import FAST, cli, cli_popen, stored, workers_of
from fault_backend import FAULT_BATCH

from infersweep.case import Case
from infersweep.grid.spec import SpecError, build_spec
from infersweep.measure.timing import MeasureSettings
from infersweep.results.result import Result
from infersweep.run.local import WorkerSlot
from infersweep.run.protocol import WorkerJob

SETTINGS = MeasureSettings(min_iterations=5, min_time_s=0.05, max_time_s=0.3, warmup_max_s=0.2)
SIZES = (8, 16, 24)  # one group per size


def _groups(backend: str) -> list[list[Case]]:
    return [[Case("resnet18", "random(seed=0)", backend, "cpu", "fp32", size, batch, "synthetic")
             for batch in (1, FAULT_BATCH, 3)] for size in SIZES]


def _serve(tmp_path, groups, **job) -> dict[tuple[int, int], object]:
    """Every group on one slot, as the local executor does; {(size, batch): result}."""
    slot = WorkerSlot(WorkerJob(settings=SETTINGS, timeout_s=30, log_dir=tmp_path, **job))
    results = []
    try:
        for group in groups:
            slot.run_group(group, lambda case: None, results.append)
    finally:
        slot.close()
    assert len(results) == sum(map(len, groups))  # each case exactly once
    return {(r.case.image_size, r.case.batch_size): r for r in results}


def test_a_crash_in_the_second_group_costs_only_its_case(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERSWEEP_FAULT_SIZE", "16")  # the abort strikes in the second group only
    found = _serve(tmp_path, _groups("fault-abort"))
    crashed = found.pop((16, FAULT_BATCH))
    assert crashed.status == "crashed" and "SIGABRT" in crashed.reason
    assert {key: r.status for key, r in found.items()} == {key: "ok" for key in found}
    pid = {key: r.info["worker_pid"] for key, r in found.items()}
    # One worker served the first group and the second up to the crash; a fresh one the rest
    # of the second group and the third.
    before = {pid[(8, 1)], pid[(8, FAULT_BATCH)], pid[(8, 3)], pid[(16, 1)]}
    after = {pid[(16, 3)], pid[(24, 1)], pid[(24, FAULT_BATCH)], pid[(24, 3)]}
    assert len(before) == 1 and len(after) == 1 and before != after


def test_a_worker_that_ran_out_of_memory_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERSWEEP_FAULT_SIZE", "8")
    found = _serve(tmp_path, _groups("fault-oom")[:2])
    assert found[(8, FAULT_BATCH)].status == "oom"
    assert "MemoryError" in found[(8, FAULT_BATCH)].reason
    assert all(r.status == "ok" for key, r in found.items() if key != (8, FAULT_BATCH))
    pid = {key: r.info["worker_pid"] for key, r in found.items()}
    # The worker that hit the limit reported its case, then a fresh one took over (the fault
    # left an address-space limit behind that no later case may inherit).
    assert pid[(8, 1)] == pid[(8, FAULT_BATCH)] != pid[(8, 3)]
    assert pid[(8, 3)] == pid[(16, 1)] == pid[(16, 3)]


def test_a_group_of_another_backend_gets_its_own_worker(tmp_path):
    ok, other, ok_again = _groups("fault-ok")[0], _groups("fault-raise")[1], _groups("fault-ok")[2]
    found = _serve(tmp_path, [ok, other, ok_again])
    pid = {size: {r.info["worker_pid"] for (s, _), r in found.items() if s == size}
           for size in SIZES}
    assert all(len(pids) == 1 for pids in pid.values())  # one worker per group here...
    assert len(set.union(*pid.values())) == 3  # ...and a new one at each change of backend
    # Each worker's first result tells its start; no other result does.
    for size in SIZES:
        first, *rest = (found[(size, batch)] for batch in (1, FAULT_BATCH, 3))
        start = first.info["worker_start_s"]
        assert set(start) == {"imports", "runtime", "runner", "close_previous", "to_first_case"}
        assert 0 < start["imports"] and 0 <= start["runtime"] and 0 <= start["runner"]
        # one clock for the worker's parts and the parent's whole
        assert start["imports"] + start["runtime"] + start["runner"] <= \
            start["to_first_case"] + 0.01
        # the first worker had none to close; the others waited for the one before to exit
        assert (start["close_previous"] < 0.05) if size == SIZES[0] else \
            (start["close_previous"] > 0.001)
        assert not any("worker_start_s" in r.info for r in rest)
        # the imports are out of the collector's sight: a collection after a group skips them
        assert first.info["worker_gc_frozen"] > 1000
        assert not any("worker_gc_frozen" in r.info for r in rest)
    # One log per group, as before: each group's output is in its own file.
    assert sorted(p.name for p in tmp_path.glob("worker-*.log")) == sorted(
        f"worker-{g[0].case_id}.log" for g in (ok, other, ok_again))
    assert "deliberate failure" in (tmp_path / f"worker-{other[0].case_id}.log").read_text()
    assert "deliberate failure" not in (tmp_path / f"worker-{ok[0].case_id}.log").read_text()


def test_a_new_worker_starts_while_the_old_one_exits_and_measures_only_after(tmp_path):
    """A worker's exit (a runtime's teardown) and its successor's start overlap; the successor's
    first case still begins only once the old worker is gone."""
    from fault_backend import SLOW_EXIT_S

    slow, ok = _groups("fault-slow-exit")[0], _groups("fault-ok")[1]
    found = _serve(tmp_path, [slow, ok])
    assert all(r.status == "ok" for r in found.values())
    start = found[(16, 1)].info["worker_start_s"]
    assert start["close_previous"] >= SLOW_EXIT_S - 0.1  # it waited for the old one's exit...
    # ...counted from the new worker's spawn (spawned after the old exit, as before, the
    # first case would come imports + runner after the spawn, well under the 2.5 s exit)...
    assert start["to_first_case"] >= start["close_previous"]
    # ...and the new worker's interpreter and imports were done before the old one had gone
    assert start["imports"] < start["close_previous"]


def _exits(marks) -> dict[int, dict]:
    return {int(p.name): json.loads(p.read_text()) for p in marks.iterdir()}


def test_the_final_reports_are_written_while_the_last_worker_exits(tmp_path, monkeypatch):
    """The last worker is told to exit as the last case ends and waited for after the final
    reports (on the H200 the last worker's teardown was 5.7 s of a warm run); still waited for,
    not killed, and gone when the run returns."""
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("INFERSWEEP_FAULT_EXIT_MARK", str(marks))
    monkeypatch.setenv("INFERSWEEP_FAULT_EXIT_S", "8")  # longer than the reports take
    out = tmp_path / "run"
    done = cli("run", "--backends", "fault-slow-exit", "--sizes", "8", "--batches", "1",
               "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    pid = _pids(out)[(8, 1)]
    exits = _exits(marks)
    assert list(exits) == [pid]  # its exit ran to the end: waited for, not killed
    assert (out / "report.html").stat().st_mtime < exits[pid]["exited"]  # written meanwhile
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_a_repeats_round_starts_only_after_the_last_rounds_worker_is_gone(tmp_path, monkeypatch):
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("INFERSWEEP_FAULT_EXIT_MARK", str(marks))
    monkeypatch.setenv("INFERSWEEP_FAULT_EXIT_S", "2")
    done = cli("run", "--backends", "fault-slow-exit", "--sizes", "8", "--batches", "1",
               "--repeats", "2", "--out", tmp_path / "run", *FAST)
    assert done.returncode == 0, done.stderr
    first, second = sorted(_exits(marks).values(), key=lambda e: e["prepared"])
    assert second["prepared"] > first["exited"]


def test_worker_per_group_is_a_spec_key_that_must_be_a_boolean():
    assert build_spec({"worker_per_group": True}).worker_per_group is True
    assert build_spec({}).worker_per_group is False
    with pytest.raises(SpecError) as refused:
        build_spec({"worker_per_group": "sometimes"})
    assert str(refused.value) == "worker_per_group: 'sometimes' is not true or false"


def _pids(out) -> dict[tuple[int, int], int]:
    data = json.loads((out / "results.json").read_text())
    return {(r["image_size"], r["batch_size"]): r["info"]["worker_pid"] for r in data["results"]}


def test_worker_per_group_flag_gives_each_group_a_fresh_worker(tmp_path):
    out = tmp_path / "run"
    done = cli("run", "--backends", "fault-ok", "--sizes", "8,16", "--batches", "1",
               "--worker-per-group", "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    pid = _pids(out)
    assert pid[(8, 1)] != pid[(16, 1)]  # (without the flag: one worker, see the next test)


def test_the_first_worker_starts_while_the_sweep_describes_the_machine(tmp_path):
    """The first group's worker is spawned right after the plan, before the parent collects
    the machine's description and writes its first reports, and serves the first group as a
    worker started ahead; the next group of its backend stays with it."""
    out = tmp_path / "run"
    done = cli("run", "--backends", "fault-ok", "--sizes", "8,16", "--batches", "1",
               "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    starts = [r["info"]["worker_start_s"] for r in rows if "worker_start_s" in r["info"]]
    assert len(starts) == 1 and starts[0]["started_ahead"] > 0
    assert len({r["info"]["worker_pid"] for r in rows}) == 1


ARGS = ["--backends", "fault-ok", "--sizes", "8,16", "--batches", "1,3,4",
        "--min-time", "0.25", "--max-time", "0.25", "--min-iterations", "5", "--timeout", "30"]


def test_sigkill_mid_sweep_resumes_with_every_case_once(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "infersweep", "run", *ARGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(stored(out, "finished_at", "WHERE status='ok'")) < 4:  # into the second group
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    before = stored(out, "finished_at", "WHERE status='ok'")
    assert 4 <= len(before) < 6
    time.sleep(0.5)
    assert workers_of(proc.pid) == []  # the long-lived worker died with its parent

    again = cli("run", *ARGS, "--out", out)
    assert again.returncode == 0, again.stderr
    db = sqlite3.connect(out / "results.sqlite")
    rows = [Result.from_json(text) for (text,) in db.execute("SELECT result FROM results")]
    db.close()
    grid = sorted((s, b, "ok") for s in (8, 16) for b in (1, 3, 4))
    # every case of the grid, each once
    assert sorted((r.case.image_size, r.case.batch_size, r.status) for r in rows) == grid
    after = stored(out, "finished_at")
    assert {cid: after[cid] for cid in before} == before  # finished cases did not run again
    pid = _pids(out)
    # The killed sweep's worker had served the first group and went on into the second.
    assert pid[(8, 1)] == pid[(8, 4)] == pid[(16, 1)]


@pytest.mark.gpu
def test_gpu_groups_share_a_worker_and_find_their_export_prebuilt(tmp_path):
    import os

    out = tmp_path / "run"
    done = cli("run", "--backends", "onnxruntime", "--devices", "cuda", "--precisions", "fp32",
               "--sizes", "32,48", "--batches", "1,2", "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert len({r["info"]["worker_pid"] for r in rows}) == 1  # one CUDA context for both groups
    if len(os.sched_getaffinity(0)) >= 4:  # a builder exported the second group's model
        info = {r["image_size"]: r["info"] for r in rows if r["batch_size"] == 1}
        assert "builder" not in info[32]  # the cheaper group runs first
        assert info[48]["artefacts_prebuilt"] is True
        assert [a["kind"] for a in info[48]["builder"]["artefacts"]] == ["onnx"]
        assert len(info[48]["worker_cpus"]) < len(os.sched_getaffinity(0))


def test_a_first_worker_started_for_sizes_the_dry_runs_then_refuse_is_let_go(tmp_path):
    """The first worker starts on a plan made before the dry runs (sweep.py): when they refuse
    every size (vit_b_16 takes 224 px only), nothing runs, and that worker ends with the run."""
    proc, pid = cli_popen("run", "--model", "vit_b_16", "--backends", "torch", "--devices", "cpu",
                          "--sizes", "32", "--batches", "1", "--out", tmp_path / "run", *FAST)
    assert proc.returncode == 1, proc.stderr
    assert "1 unsupported" in proc.stdout
    assert workers_of(pid) == []
    con = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    phases = json.loads(con.execute(
        "SELECT value FROM meta WHERE key = 'parent_phases'").fetchone()[0])
    con.close()
    assert phases["first_worker_started"] <= phases["plan"]  # it was started, before the plan
