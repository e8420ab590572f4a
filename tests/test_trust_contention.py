"""The contention guard with real processes: busy loops beside a case flag it, a quiet run is clean.

Real processes, not mocks: two `while True: pass` interpreters compete for this machine's cores.
The thresholds are generous (probes/contention.py); a quiet run is tried a few times at most,
since other people's work on a shared machine is contention too.
"""

import csv
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import cli

from infersweep.probes.contention import ContentionGuard, CpuWindow, cpu_snapshot

CASE = ["--backends", "torch", "--sizes", "32", "--batches", "1", "--min-time", "0.5",
        "--max-time", "1.5", "--min-iterations", "5"]
CAUSES = {"starved", "contended", "steal"}


@contextmanager
def busy_processes(n=2):
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.3)  # running, not starting
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def wait_for_quiet(timeout_s=30.0) -> bool:
    """True once a 1 s look at /proc/stat shows the rest of the machine idle enough."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_snapshot()
        time.sleep(1.0)
        window = CpuWindow.between(before, cpu_snapshot())
        if window.others_cores < 0.2:
            return True
    return False


def causes(noise: str) -> set[str]:
    return {cause.split(":")[0] for cause in noise.split("; ") if cause}


def spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def guarded(seconds: float = 1.0) -> str:
    guard = ContentionGuard()
    guard.after_warmup(None)
    spin(seconds)
    return guard.noise(None)


def test_guard_flags_a_phase_with_busy_processes_beside_it():
    with busy_processes(2 * len(__import__("os").sched_getaffinity(0))):
        noise = guarded()
    # one spinning thread against twice as many busy loops as cores: both signs show
    assert causes(noise) == {"starved", "contended"}, noise


def test_guard_leaves_a_quiet_phase_clean():
    for _attempt in range(3):
        if not wait_for_quiet():
            pytest.skip("the machine never went quiet: a quiet run cannot be tested now")
        noise = guarded()
        if noise == "":
            return
    pytest.fail(f"a quiet phase was flagged three times: {noise}")


def _rows(out: Path) -> tuple[dict, dict]:
    with open(out / "results.csv") as f:
        row = next(csv.DictReader(f))
    (result,) = json.loads((out / "results.json").read_text())["results"]
    return row, result


def test_case_run_beside_two_busy_processes_is_flagged_and_remeasured(tmp_path):
    out = tmp_path / "busy"
    with busy_processes(2):
        proc = cli("run", *CASE, "--out", out)
    assert proc.returncode == 0, proc.stderr
    row, result = _rows(out)
    assert causes(row["noise"]) and causes(row["noise"]) <= CAUSES, row["noise"]
    assert result["info"]["remeasured"] == 1  # timed again once (the default), still busy
    assert len(result["info"]["noise_remeasured"]) == 1


def test_case_run_quietly_is_not_flagged(tmp_path):
    for attempt in range(3):
        if not wait_for_quiet():
            pytest.skip("the machine never went quiet: a quiet run cannot be tested now")
        out = tmp_path / f"quiet{attempt}"
        proc = cli("run", *CASE, "--remeasure", "0", "--out", out)
        assert proc.returncode == 0, proc.stderr
        row, result = _rows(out)
        if row["noise"] == "":
            assert "remeasured" not in result["info"]
            return
    pytest.fail(f"a quiet case was flagged three times: {row['noise']}")


def _snap(wall_s, own_s=0.0, wait_s=0.0, busy_s=0.0, steal_s=0.0, cpus=2):
    from infersweep.probes.contention import CpuSnapshot

    ns = 1_000_000_000
    return CpuSnapshot(int(wall_s * ns), int(own_s * ns), int(wait_s * ns), 3, busy_s * ns,
                       steal_s * ns, cpus)


@pytest.mark.parametrize("end, expected", [
    # 1 s, we used 2 cores, nobody else: clean
    (_snap(1.0, own_s=2.0, wait_s=0.01, busy_s=2.0), []),
    # a backend that sleeps: little CPU and little wait is not starvation
    (_snap(1.0, own_s=0.01, wait_s=0.005, busy_s=0.05), []),
    # others used 1.2 cores, our threads waited 0.8 s per s
    (_snap(1.0, own_s=0.8, wait_s=0.8, busy_s=2.0),
     ["starved: our threads waited 0.80 s per s for a CPU",
      "contended: other processes used 1.2 of 2 cores"]),
    (_snap(1.0, own_s=1.0, busy_s=1.0, steal_s=0.3),
     ["steal: the hypervisor took 0.3 of 2 cores"]),
    # a phase of 50 ms says nothing at 10 ms ticks, however busy
    (_snap(0.05, own_s=0.01, wait_s=0.04, busy_s=0.1), []),
])
def test_window_causes_from_snapshots(end, expected):
    assert CpuWindow.between(_snap(0.0), end).causes() == expected


def test_on_many_cores_half_a_core_of_others_is_not_contention():
    # 16 cores: others must use a quarter of them (4) before it counts
    end = _snap(1.0, own_s=1.0, busy_s=4.0, cpus=16)
    assert CpuWindow.between(_snap(0.0, cpus=16), end).causes() == []
