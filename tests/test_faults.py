"""Failure classes, driven by misbehaving backends inside real worker processes."""

import csv
import sqlite3
import subprocess
import time

import pytest
from conftest import FAST, cli, cli_popen, stored, workers_of
from fault_backend import FAULT_BATCH, ORPHAN_SLEEP

EXPECTED = {
    "fault-raise": ("failed", "deliberate failure"),
    "fault-segfault": ("crashed", "SIGSEGV"),
    "fault-abort": ("crashed", "SIGABRT"),
    "fault-exit": ("crashed", "code 3"),
    "fault-hang": ("timeout", "--timeout 3"),
    "fault-oom": ("oom", "MemoryError"),
    "fault-garbage": ("ok", ""),
    "fault-child": ("ok", ""),
    "fault-close-channel": ("crashed", "exited with code 1"),
}


def _rows(out):
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def _orphans() -> list[str]:
    out = subprocess.run(["pgrep", "-af", f"sleep {ORPHAN_SLEEP}"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()


@pytest.fixture(scope="module")
def fault_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "run"
    backends = ",".join(["fault-ok", *EXPECTED])
    proc, pid = cli_popen("run", "--backends", backends, "--batches", f"1,{FAULT_BATCH},3",
                          "--sizes", "8", "--timeout", "3", "--out", out, *FAST, timeout=240)
    return out, proc, pid


def test_sweep_reaches_the_end(fault_sweep):
    out, proc, _ = fault_sweep
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = _rows(out)
    assert len(rows) == 3 * (1 + len(EXPECTED))
    assert len({r["case_id"] for r in rows}) == len(rows)


@pytest.mark.parametrize("backend", sorted(EXPECTED))
def test_only_the_faulty_case_is_charged(fault_sweep, backend):
    out, _, _ = fault_sweep
    rows = {int(r["batch_size"]): r for r in _rows(out) if r["backend"] == backend}
    status, reason_part = EXPECTED[backend]
    assert rows[FAULT_BATCH]["status"] == status, rows[FAULT_BATCH]
    assert reason_part in rows[FAULT_BATCH]["reason"]
    # The cases before and after the faulty one, in the same group, still ran.
    for batch in (1, 3):
        assert rows[batch]["status"] == "ok", rows[batch]
        assert float(rows[batch]["latency_ms_median"]) > 0


def test_healthy_backend_unaffected(fault_sweep):
    out, _, _ = fault_sweep
    assert all(r["status"] == "ok" for r in _rows(out) if r["backend"] == "fault-ok")


def test_no_process_left_behind(fault_sweep):
    _, _, pid = fault_sweep
    assert _orphans() == []
    assert workers_of(pid) == []


def test_failed_case_keeps_its_log(fault_sweep):
    out, _, _ = fault_sweep
    logs = list((out / "logs").glob("worker-*.log"))
    assert any("deliberate failure" in p.read_text(errors="replace") for p in logs)


def test_report_lists_failures_with_reasons(fault_sweep):
    out, _, _ = fault_sweep
    report = (out / "report.md").read_text()
    assert "## Cases that did not run cleanly" in report
    for status in ("failed", "crashed", "timeout", "oom"):
        assert f"| {status} |" in report


def test_store_is_sound(fault_sweep):
    out, _, _ = fault_sweep
    db = sqlite3.connect(out / "results.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_retry_failed_reruns_only_failures(fault_sweep, tmp_path):
    out, _, _ = fault_sweep
    before = {r["case_id"]: r for r in _rows(out)}
    finished_before = stored(out, "finished_at")
    time.sleep(1.1)  # finished_at has one-second resolution: a re-run must show a new stamp
    proc = cli("run", "--backends", "fault-ok,fault-raise", "--batches", f"1,{FAULT_BATCH},3",
               "--sizes", "8", "--timeout", "3", "--out", out, "--retry-failed", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "1 to run" in proc.stdout  # only fault-raise at the faulty batch
    after = {r["case_id"]: r for r in _rows(out)}
    assert set(after) == set(before)
    finished_after = stored(out, "finished_at")
    rerun = {cid for cid in finished_after if finished_after[cid] != finished_before[cid]}
    failed = {cid for cid, r in before.items()
              if r["backend"] == "fault-raise" and r["batch_size"] == str(FAULT_BATCH)}
    assert len(failed) == 1 and rerun == failed  # the failed case ran again, and only it


def test_unavailable_and_unsupported_are_rows_not_crashes(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--backends", "fault-ok", "--devices", "cpu,cuda", "--precisions",
               "fp32,fp16", "--batches", "1", "--sizes", "8", "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["device"], r["precision"]): r for r in _rows(out)}
    assert rows[("cpu", "fp32")]["status"] == "ok"
    assert rows[("cpu", "fp16")]["status"] == "unsupported"
    assert "fp16" in rows[("cpu", "fp16")]["reason"]
    assert rows[("cuda", "fp32")]["status"] in ("unsupported", "unavailable")
    assert rows[("cuda", "fp32")]["reason"]
