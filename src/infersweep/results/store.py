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
        if not any(self.path.with_name(self.path.name + s).exists() for s in ("-wal", "-journal")):
            # No writer is active and none died mid-write: the file alone is the whole store.
            # Read it as immutable: mode=ro on a WAL store would create -wal and -shm files
            # beside it (and leave them), and a read-only command must create nothing.
            return sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, **options)
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

    def _read(self, sql: str, params: tuple = ()) -> list:
        """Rows of a query; a page that cannot be read is a StoreError (found by a query, not
        when opening: a truncated store opens fine and fails on its first full scan)."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise _damaged(self.path, exc) from None

    def results(self) -> list[Result]:
        rows = self._read("SELECT result FROM results ORDER BY rowid")
        try:
            return [Result.from_json(r[0]) for r in rows]
        except (ValueError, KeyError, TypeError) as exc:  # a row that is not a Result's JSON
            raise StoreError(f"{self.path} holds a result that cannot be read ({exc}); keep the "
                             f"file and inspect it with `sqlite3 {self.path}`") from None

    def statuses(self) -> dict[str, str]:
        return dict(self._read("SELECT case_id, status FROM results"))

    def finished(self, retry_failed: bool = False, quick: bool = False) -> dict[str, str]:
        """Cases that need no run, with their status: measured (ok), or failed and not to be
        retried. A quick result does not satisfy a full run (it is re-measured properly).
        unsupported/unavailable rows are re-decided by every plan (an install may have fixed them).
        """
        keep = ("ok",) if retry_failed else ("ok",) + FAILED_STATUSES
        rows = self._read("SELECT case_id, status, quick FROM results")
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
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def close(self) -> None:
        self.db.close()


class RunDirBusy(RuntimeError):
    pass


class RunDirLock:
    """An exclusive lock on a run directory: two runs writing one store would interleave cases.

    ``acquire(create=False)`` takes the lock only where a lock file is already there (a run
    directory that was used before), so it can be tried first thing, before anything heavy is
    imported and before the arguments are validated, without creating anything."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / ".infersweep.lock"
        self.file = None

    @property
    def held(self) -> bool:
        return self.file is not None

    def acquire(self, create: bool = True) -> bool:
        """True once held; False when ``create`` is False and no lock file exists. RunDirBusy
        when another process holds it."""
        if self.held:
            return True
        try:
            lock = open(self.path, "a+" if create else "r+")
        except FileNotFoundError:
            if create:
                raise
            return False
        except OSError:
            if create:
                raise
            return False  # e.g. a read-only run directory: the full check comes later
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise RunDirBusy(f"another infersweep run (pid {holder}) is using {self.out_dir}; "
                             "wait for it or choose another --out") from None
        self.file = lock
        return True

    def sign(self) -> None:
        """Write our pid into the lock file, for the message of a run that is refused. Done
        when the run starts, not on ``acquire``: a command refused later (bad input) leaves
        the file as it was."""
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the file drops the flock
            self.file = None


@contextmanager
def exclusive_run(out_dir: Path, lock: RunDirLock | None = None):
    """Hold the run directory's lock (``lock``: one already taken early) for the block."""
    lock = lock or RunDirLock(out_dir)
    lock.acquire()
    lock.sign()
    try:
        yield
    finally:
        lock.release()
