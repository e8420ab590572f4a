"""How a worker ends: as Python would, less the teardown of its modules.

A worker's successor gets its first group only once the worker is gone, so nothing is measured
beside either (run/local.py); the worker's exit is on the sweep's critical path at every switch
of backend. Most of it is the interpreter freeing, one object at a time, what torch and its
runtime built: 0.9 s of a torch-compile worker's 0.95 s exit on the 2-core box, the rest its exit
handlers; on the H200 a torch-compile worker took 1.5-1.8 s to exit. What must run still runs, in
Python's own order: non-daemon threads are joined and threading's exit hooks run (executors
finish their pending work), then the atexit handlers (Inductor's compile pool shut down,
torch.compile's late cache writes, weakref finalizers), then Python's and C's output buffers are
flushed. Only then does the process end without the teardown.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import sys
import threading


def exit_without_teardown(code: int) -> None:
    """End this process with ``code`` after its threads and exit handlers, skipping the
    teardown. Where this Python lacks the hook that joins threads, it exits as usual."""
    join_threads = getattr(threading, "_shutdown", None)  # what Py_Finalize calls first
    if join_threads is None:
        sys.exit(code)
    join_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:  # native libraries' stdio buffers (a log redirected to a file is fully buffered)
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
    os._exit(code)
