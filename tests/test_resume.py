"""Never lose work: SIGKILL of the parent, Ctrl-C, resume, and a second run on the same --out."""

import signal
import sqlite3
import subprocess
import sys
import time

from conftest import cli, interruptible_cli, stored, workers_of

ARGS = ["--backends", "fault-ok", "--sizes", "8", "--batches", "1,3,4,5,6,7,8,9",
        "--min-time", "0.4", "--max-time", "0.4", "--min-iterations", "5", "--timeout", "30"]


def _start(out):
    return interruptible_cli("run", *ARGS, "--out", out)


def _finished(out) -> dict[str, str]:
    return stored(out, "finished_at", "WHERE status='ok'")


def _wait_for(out, n, proc, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_finished(out)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} cases finished; {proc.poll()=}")


def test_sigkill_of_parent_loses_nothing_and_resume_completes(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for(out, 2, proc)
    proc.kill()
    proc.wait()
    before = _finished(out)
    assert 2 <= len(before) < 8
    time.sleep(0.5)
    assert workers_of(proc.pid) == []  # the worker died with its parent (PR_SET_PDEATHSIG)

    again = cli("run", *ARGS, "--out", out)
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} already done" in again.stdout
    after = _finished(out)
    assert len(after) == 8
    # Finished cases were not run again: their rows are untouched.
    assert {cid: after[cid] for cid in before} == before
    db = sqlite3.connect(out / "results.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT case_id) FROM results").fetchone() == (8, 8)
    csv_lines = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 8


def test_ctrl_c_stops_quickly_without_orphans(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for(out, 1, proc)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=15)  # a hang fails here; no absolute-time assert
    assert proc.returncode == 130
    assert "resume" in stdout
    assert workers_of(proc.pid) == []
    assert 1 <= len(_finished(out)) < 8


def test_second_run_on_same_out_is_refused(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    try:
        _wait_for(out, 1, proc)
        second = cli("run", *ARGS, "--out", out)
        assert second.returncode == 2
        assert "another infersweep run" in second.stderr
    finally:
        proc.kill()
        proc.wait()


def test_fresh_starts_over(tmp_path):
    out = tmp_path / "run"
    args = ["--backends", "fault-ok", "--sizes", "8", "--batches", "1", "--min-time", "0.05",
            "--max-time", "0.1", "--min-iterations", "5"]
    assert cli("run", *args, "--out", out).returncode == 0
    first = _finished(out)
    rerun = cli("run", *args, "--out", out)
    assert "1 already done" in rerun.stdout and _finished(out) == first
    time.sleep(1.1)  # finished_at has one-second resolution
    fresh = cli("run", *args, "--out", out, "--fresh")
    assert fresh.returncode == 0 and "1 to run" in fresh.stdout
    assert _finished(out) != first


def test_busy_out_is_refused_before_torch_is_imported(tmp_path):
    """The refused command must not spend seconds of CPU (torch's import) beside the case that
    the first run is measuring."""
    out = tmp_path / "run"
    proc = _start(out)
    try:
        _wait_for(out, 1, proc)
        second = subprocess.run([sys.executable, "-X", "importtime", "-m", "infersweep", "run",
                                 *ARGS, "--out", str(out)], capture_output=True, text=True,
                                timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    errors = [line for line in second.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == [f"error: another infersweep run (pid {proc.pid}) is using {out}; wait for "
                      "it or choose another --out"]
    imported = {line.rsplit("|", 1)[1].strip() for line in second.stderr.splitlines()
                if line.startswith("import time:")}
    assert "infersweep.results.store" in imported  # the import trace is really there
    assert not {"torch", "torchvision"} & imported
