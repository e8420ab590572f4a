"""The multi-GPU scheduler: one thread per GPU executor, never two groups on one GPU at once."""

import threading
import time

from infersweep.case import Case
from infersweep.run.local import run_in_parallel
from infersweep.results.result import Result


class RecordingExecutor:
    """Stands in for a GPU's LocalExecutor: records when it serves which group."""

    def __init__(self, gpu):
        self.gpu = gpu
        self.stopping = False
        self.spans = []
        self.busy = threading.Lock()

    def run_group(self, group, on_start, on_result):
        assert self.busy.acquire(blocking=False), f"GPU {self.gpu} got two groups at once"
        try:
            start = time.monotonic()
            for case in group:
                on_start(case)
                time.sleep(0.05)
                on_result(Result(case, "ok", info={"gpu_index": self.gpu}))
            self.spans.append((start, time.monotonic()))
        finally:
            self.busy.release()

    def stop(self):
        self.stopping = True


def _groups(n):
    return [[Case("resnet18", "random(seed=0)", "torch", "cuda", "fp16", 64 + i, b, "synthetic")
             for b in (1, 2)] for i in range(n)]


def test_groups_spread_over_gpus_without_sharing():
    executors = [RecordingExecutor(0), RecordingExecutor(1)]
    results = []
    lock = threading.Lock()

    def on_result(result):
        with lock:
            results.append(result)

    start = time.monotonic()
    run_in_parallel(_groups(6), executors, lambda case: None, on_result)
    elapsed = time.monotonic() - start
    assert len(results) == 12 and len({r.case for r in results}) == 12
    assert all(len(e.spans) >= 2 for e in executors)  # both GPUs worked
    # In parallel: the two GPUs' spans overlap, and the whole took well under the sum of the
    # spans (what a serial run of the same groups would take, measured here).
    (s0, e0), (s1, e1) = min(executors[0].spans), min(executors[1].spans)
    assert max(s0, s1) < min(e0, e1)
    serial = sum(end - begin for e in executors for begin, end in e.spans)
    assert elapsed < 0.85 * serial


def test_error_in_one_executor_surfaces():
    class Broken(RecordingExecutor):
        def run_group(self, group, on_start, on_result):
            raise RuntimeError("executor bug")

    try:
        run_in_parallel(_groups(2), [Broken(0), RecordingExecutor(1)], lambda c: None,
                        lambda r: None)
    except RuntimeError as exc:
        assert "executor bug" in str(exc)
    else:
        raise AssertionError("the error was swallowed")
