"""The order groups run in: every new backend/device/precision early (fail fast), then each
(backend, device) in a row, so that a long-lived worker serves group after group."""

from __future__ import annotations

from infersweep.case import Case, group_cases
from infersweep.grid.order import order_groups, worker_starts

BACKENDS = ("torch", "torch-compile", "onnxruntime")


def _grid() -> list[list[Case]]:
    """The original grid: 3 backends x fp32/fp16 x 4 sizes x 3 batches on CUDA, 24 groups."""
    cases = [Case("resnet18", "random(seed=0)", backend, "cuda", precision, size, batch,
                  "synthetic")
             for size in (224, 256, 384, 512) for backend in BACKENDS
             for precision in ("fp32", "fp16") for batch in (16, 32, 64)]
    return group_cases(cases)


def _workers(order: list[list[Case]]) -> list[str]:
    """The backend of each worker process the order starts."""
    return [backend for backend, device in worker_starts(order)]


def test_a_worker_starts_at_every_change_of_backend_or_device():
    def group(backend, device):
        return [Case("resnet18", "random(seed=0)", backend, device, "fp32", 32, 1, "synthetic")]

    order = [group("torch", "cuda"), group("torch", "cuda"), group("torch", "cpu"),
             group("onnxruntime", "cpu"), group("torch", "cpu")]
    assert worker_starts(order) == [("torch", "cuda"), ("torch", "cpu"), ("onnxruntime", "cpu"),
                                    ("torch", "cpu")]


def test_a_new_run_scouts_every_combination_first_then_starts_each_worker_once():
    groups = _grid()
    order = order_groups(groups, proven=set())
    assert sorted(id(g) for g in order) == sorted(id(g) for g in groups)  # each once
    scouts = order[:6]
    assert {(g[0].backend, g[0].precision) for g in scouts} == {
        (b, p) for b in BACKENDS for p in ("fp32", "fp16")}
    assert all(g[0].image_size == 224 for g in scouts)  # the cheapest of each
    # 3 workers for the scouts, then the last scout's backend goes on: 5, not 24 (or 11)
    assert _workers(order) == ["torch", "torch-compile", "onnxruntime", "torch",
                               "torch-compile"]
    for backend in BACKENDS:  # within a backend, cheap groups first
        sizes = [g[0].image_size for g in order[6:] if g[0].backend == backend]
        assert sizes == sorted(sizes)


def test_a_run_that_has_seen_every_combination_work_runs_one_worker_per_backend():
    proven = {(b, "cuda", p) for b in BACKENDS for p in ("fp32", "fp16")}
    order = order_groups(_grid(), proven)
    assert _workers(order) == ["torch", "torch-compile", "onnxruntime"]
    assert [g[0].image_size for g in order[:8]] == [224, 224, 256, 256, 384, 384, 512, 512]


def test_only_the_unproven_combination_is_scouted():
    proven = {(b, "cuda", p) for b in BACKENDS for p in ("fp32", "fp16")} - {
        ("onnxruntime", "cuda", "fp16")}
    order = order_groups(_grid(), proven)
    first = order[0][0]
    assert (first.backend, first.precision, first.image_size) == ("onnxruntime", "fp16", 224)
    assert _workers(order) == ["onnxruntime", "torch", "torch-compile"]
