import os
import signal
import tempfile
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"

# Workers inherit these: they must see the same registry (with the fault backends) as the parent.
os.environ["INFERSWEEP_BACKEND_MODULES"] = "fault_backend,wrong_backends"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(TESTS), str(SRC)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
sys.path.insert(0, str(TESTS))

# Measurement settings that keep test sweeps short; correctness, not precision, is tested here.
FAST = ["--min-time", "0.05", "--max-time", "0.3", "--min-iterations", "5"]


# One artefact cache for the whole test session, never the user's own.
os.environ["INFERSWEEP_CACHE"] = tempfile.mkdtemp(prefix="infersweep-test-cache-")


def cli(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `infersweep` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "infersweep", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def workers_of(parent_pid: int) -> list[str]:
    """Worker processes started by one infersweep parent (others may run beside the tests)."""
    ps = subprocess.run(["pgrep", "-af", "infersweep.run.worker"], capture_output=True, text=True)
    return [line for line in ps.stdout.splitlines() if f"--parent {parent_pid}" in line]


def cli_popen(*args, timeout=300) -> tuple[subprocess.CompletedProcess, int]:
    """Like cli(), and also the parent's pid, to look for its workers afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "infersweep", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def _sigint_at_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interruptible_cli(*args, env=None) -> subprocess.Popen:
    """``infersweep ARGS`` started for a test that sends it SIGINT (Ctrl-C). SIGINT starts at its
    default: a suite started in the background (nohup, ``&`` without job control) has SIGINT
    ignored, children inherit that, and Python then never raises KeyboardInterrupt."""
    return subprocess.Popen([sys.executable, "-m", "infersweep", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_sigint_at_default)


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def stored(out, column: str, where: str = "") -> dict[str, str]:
    """{case_id: column} of DIR/results.sqlite, opened read-only while a sweep may be writing;
    {} before the file exists or while it cannot be read."""
    import sqlite3

    path = Path(out) / "results.sqlite"
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        rows = db.execute(f"SELECT case_id, {column} FROM results {where}").fetchall()
        db.close()
        return dict(rows)
    except sqlite3.OperationalError:
        return {}
