"""results.sqlite: the source of truth of a run directory. One row per case, committed at once.

SQLite in WAL mode with synchronous=FULL: a row is on disk when ``put`` returns, and a SIGKILL at
any moment leaves either the old or the new state, never a torn one. Every other output file is
derived from this one.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from infersweep.results.result import FAILED_STATUSES, Result

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    case_id     TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    quick       INTEGER NOT NULL DEFAULT 0,  -- measured with --quick: exploratory precision
    result      TEXT NOT NULL,  -- Result as JSON, raw samples included
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(RuntimeError):
    """The store cannot be opened or read: damaged, or not a store. The CLI exits with 2."""


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    return StoreError(
        f"{path} is damaged or not an infersweep store ({exc}). Keep the file: `sqlite3 {path} "
        f"'PRAGMA integrity_check'` shows what is intact, and `sqlite3 {path} .recover` copies out "
        "the rows that can be read")


class Store:
    """``readonly``: open without ever writing (compare, plan, reports of a read-only mount)."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        try:
            self.db = self._connect()
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(SCHEMA)
            self.db.execute("SELECT count(*) FROM results").fetchone()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc).replace(
                    "-", "").replace(" ", ""):
                raise
            raise _damaged(self.path, exc) from None

    def _connect(self) -> sqlite3.Connection:
        # Used from the executor threads of a multi-GPU sweep, always under the sweep's lock.
        options = dict(timeout=30, isolation_level=None, check_same_thread=False)
        if not self.readonly:
            return sqlite3.connect(self.path, **options)
        if not self.path.is_file():
            raise StoreError(f"{self.path} does not exist")
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, **options)
            db.execute("SELECT 1 FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            # A WAL store on a read-only mount cannot create its -shm file: read it as an
            # immutable file (nobody can be writing to a read-only mount).
            return sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, **options)

    def put(self, result: Result) -> None:
        with self.db:  # BEGIN ... COMMIT: durable when this returns
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT OR REPLACE INTO results (case_id, status, quick, result, finished_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (result.case.case_id, result.status, int(result.quick), result.to_json(),
                 result.finished_at))

    def results(self) -> list[Result]:
        rows = self.db.execute("SELECT result FROM results ORDER BY rowid").fetchall()
        return [Result.from_json(r[0]) for r in rows]

    def statuses(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT case_id, status FROM results").fetchall())

    def finished(self, retry_failed: bool = False, quick: bool = False) -> dict[str, str]:
        """Cases that need no run, with their status: measured (ok), or failed and not to be
        retried. A quick result does not satisfy a full run (it is re-measured properly).
        unsupported/unavailable rows are re-decided by every plan (an install may have fixed them).
        """
        keep = ("ok",) if retry_failed else ("ok",) + FAILED_STATUSES
        rows = self.db.execute("SELECT case_id, status, quick FROM results").fetchall()
        return {cid: status for cid, status, was_quick in rows
                if status in keep and (quick or not was_quick)}

    def delete_all(self) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM results")

    def set_meta(self, key: str, value) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def close(self) -> None:
        self.db.close()


class RunDirBusy(RuntimeError):
    pass


@contextmanager
def exclusive_run(out_dir: Path):
    """Hold a lock on the run directory: two runs writing one store would interleave cases."""
    lock_path = Path(out_dir) / ".infersweep.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise RunDirBusy(f"another infersweep run (pid {holder}) is using {out_dir}; "
                             "wait for it or choose another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
