"""SIGKILL of the parent at random moments, again and again: nothing finished is ever lost,
nothing is duplicated, and the store always passes SQLite's integrity check."""

import os
import random
import sqlite3
import subprocess
import sys
import time

from conftest import cli, workers_of

BATCHES = ",".join(str(b) for b in range(1, 13))
ARGS = ["--backends", "fault-ok,fault-garbage", "--sizes", "8", "--batches", BATCHES,
        "--min-time", "0.1", "--max-time", "0.15", "--min-iterations", "5", "--timeout", "30"]
TOTAL = 2 * 12
KILLS = int(os.environ.get("INFERSWEEP_KILL_LOOPS", "8"))


def _snapshot(out):
    db = sqlite3.connect(out / "results.sqlite", timeout=10)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT case_id, finished_at FROM results").fetchall()
        count, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT case_id) FROM results").fetchone()
        assert count == distinct
        return dict(rows)
    finally:
        db.close()


def test_random_sigkill_loop(tmp_path):
    out = tmp_path / "run"
    seed = int(os.environ.get("INFERSWEEP_KILL_SEED", random.randrange(1 << 30)))
    print(f"kill loop seed: {seed} (INFERSWEEP_KILL_SEED={seed} reproduces it)")
    rng = random.Random(seed)
    finished: dict[str, str] = {}
    for i in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-m", "infersweep", "run", *ARGS, "--out",
                                 str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        delay = rng.uniform(0.3, 5.0)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.wait()
        time.sleep(0.3)
        assert workers_of(proc.pid) == [], f"seed {seed}, kill {i}: orphan worker"
        if not (out / "results.sqlite").exists():
            continue
        now = _snapshot(out)
        lost = {cid for cid in finished if cid not in now}
        assert not lost, f"seed {seed}, kill {i} after {delay:.2f}s: lost {lost}"
        changed = {cid for cid in finished if now[cid] != finished[cid]}
        assert not changed, f"seed {seed}, kill {i}: finished cases ran again: {changed}"
        finished = now
    final = cli("run", *ARGS, "--out", out)
    assert final.returncode == 0, final.stderr
    now = _snapshot(out)
    assert len(now) == TOTAL
    assert all(now[cid] == finished[cid] for cid in finished)
