"""Each built-in probe on its own, the column placement, and Result's storage of probe figures."""

import json
import os
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from infersweep.backends.base import Backend
from infersweep.case import Case
from infersweep.probes import Column, Probe, ProbeContext
from infersweep.probes.accuracy import Accuracy
from infersweep.probes.agreement import ReferenceAgreement, measure_agreement
from infersweep.probes.cpu_memory import SOURCE_CPU_PEAK, CpuMemory, rss_mb
from infersweep.probes.flops import Flops
from infersweep.probes.gpu_memory import GpuMemory
from infersweep.results import result as result_module
from infersweep.results.result import Result
from resident import resident_block

CPU = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 32, 4, "synthetic")
CUDA = Case("resnet18", "random(seed=0)", "torch", "cuda", "fp16", 32, 4, "synthetic")


def _ctx(case=CPU, backend=None, **fields) -> ProbeContext:
    backend = backend or Backend("torch", ("cpu", "cuda"), {}, memory_allocator="torch")
    return ProbeContext(**{"backend": backend, "source": None, "cache": None, "settings": None,
                           "seed": 0, "case": case, **fields})


def test_agreement_of_identical_and_of_swapped_outputs():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    same = measure_agreement(ref.copy(), ref)
    assert (same.max_abs_err, same.top1_agreement) == (0.0, 1.0)
    assert same.cosine == pytest.approx(1.0)
    assert same.warnings("fp32") == []
    swapped = measure_agreement(ref[::-1], ref)  # each image gets the other's logits
    assert swapped.top1_agreement == 0.0 and swapped.cosine < 0.5
    assert "disagree with the fp32 reference" in swapped.warnings("fp16")[0]
    assert np.isnan(measure_agreement(ref * np.nan, ref).cosine)
    with pytest.raises(ValueError, match="differs from the reference"):
        measure_agreement(ref[:, :2], ref)


def test_agreement_probe_reads_the_output_against_the_cached_reference(monkeypatch):
    ref = np.eye(4, 10)
    monkeypatch.setattr("infersweep.probes.agreement.reference_logits",
                        lambda source, host_batch, key, cache: ref)
    ctx = _ctx(source=SimpleNamespace(weights_key="w"), host_batch=np.zeros((4, 3, 32, 32)),
               output=ref + 0.5 * np.eye(4, 10, k=1))
    reading = ReferenceAgreement().after(ctx)
    assert reading.fields["top1_agreement"] == 1.0 and reading.fields["max_abs_err"] == 0.5
    assert 0.8 < reading.fields["cosine"] < 0.9
    assert reading.warnings and "cosine" in reading.warnings[0]  # fp32 wants 0.9999


def test_cpu_memory_baseline_and_peak_on_the_cpu_only_baseline_on_cuda():
    probe = CpuMemory()
    probe.start_group(_ctx())
    probe.before(_ctx())
    before_hog = rss_mb()  # the test process's RSS moves: compare with it here, not at start
    hog = resident_block(64)  # fresh pages: 64 MB more resident than just before
    cpu = probe.after(_ctx()).fields
    hog.close()
    assert cpu["peak_memory_mb"] > before_hog + 60
    assert cpu["memory_source"] == SOURCE_CPU_PEAK or cpu["memory_source"].startswith("cpu:")
    assert probe.after(_ctx(CUDA)).fields == {"baseline_memory_mb": cpu["baseline_memory_mb"]}


class _FakeCuda:
    def is_initialized(self):
        return True

    def max_memory_allocated(self):
        return 300 * 2**20

    def max_memory_reserved(self):
        return 512 * 2**20


@pytest.mark.parametrize("allocator", ["torch", ""])
def test_gpu_memory_without_nvml_falls_back_only_for_a_torch_allocator(monkeypatch, allocator):
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=_FakeCuda()))
    backend = Backend("x", ("cuda",), {}, memory_allocator=allocator)
    probe = GpuMemory()  # no sampler: as when NVML is unavailable
    assert probe.applies(_ctx(CUDA)) and not probe.applies(_ctx(CPU))
    reading = probe.after(_ctx(CUDA, backend))
    if allocator == "torch":
        assert reading.fields["allocator_peak_mb"] == 300
        assert reading.fields["peak_memory_mb"] == 512
        assert reading.fields["memory_source"].startswith("gpu:torch allocator reserved peak")
        assert reading.warnings == []
    else:  # torch's allocator is not where this runtime's memory lives: no figure from it
        assert reading.fields == {}
        assert reading.warnings == ["GPU memory not measured: nvidia-ml-py (NVML) unavailable; "
                                    "install with: pip install 'infersweep[gpu]'"]


def test_flops_counted_once_per_model_and_size_and_achieved_tflops_derived(monkeypatch, tmp_path):
    from infersweep.artefacts.cache import ArtifactCache

    calls = []
    monkeypatch.setattr("infersweep.probes.flops.gflops_per_image",
                        lambda model, size: calls.append(size) or 3.63)
    source = SimpleNamespace(model=lambda: "model", name="resnet18", weights_key="random-seed0",
                             onnx_file=None)
    probe, ctx = Flops(), _ctx(source=source, cache=ArtifactCache(tmp_path))
    for _ in range(3):
        probe.begin(ctx)
    assert calls == [32] and probe.after(ctx).fields == {"gflops_per_image": 3.63}
    # the next group (another worker, another run) on this cache reads the count: no model built
    again = Flops()
    again.begin(ctx)
    assert calls == [32] and again.after(ctx).fields == {"gflops_per_image": 3.63}
    # another size, or other weights, is counted anew
    Flops().begin(_ctx(case=replace(CPU, image_size=64), source=source, cache=ctx.cache))
    Flops().begin(_ctx(source=SimpleNamespace(**{**vars(source), "weights_key": "w2"}),
                       cache=ctx.cache))
    assert calls == [32, 64, 32]
    row = {"gflops_per_image": 3.63, "batch_size": 8, "latency_ms_median": 100.0}
    assert Flops.derive(row) == {"achieved_tflops": pytest.approx(3.63 * 8 / 100.0)}
    assert Flops.derive({**row, "latency_ms_median": None}) == {}
    assert not Flops().applies(_ctx(backend=Backend("fake", ("cpu",), {}, needs_model=False)))


class _FixedSession:
    """run() returns the next of a list of logit batches: predictions known in advance."""

    def __init__(self, logits):
        self.logits = list(logits)

    def place(self, batch):
        return batch

    def run(self, placed):
        return self.logits.pop(0)

    def fetch(self, output):
        return output


def test_accuracy_over_every_chunk_once_per_group_and_padding_not_counted():
    chunks = [(np.zeros((2, 3, 8, 8)), np.array([0, 1])), (np.zeros((2, 3, 8, 8)), np.array([1]))]
    images = SimpleNamespace(classes=["cat", "dog"], labels=[0, 1, 1])
    labelled = SimpleNamespace(images=images, labelled_chunks=lambda b, s, limit: iter(chunks))
    # predictions: cat, cat | dog, (padding: cat) -> right on images 1 and 3 of 3
    session = _FixedSession([np.array([[2.0, 1.0], [3.0, 0.0]]), np.array([[0.0, 1.0], [5., 0.]])])
    probe = Accuracy()
    ctx = _ctx(batches=labelled, output=np.zeros((2, 2)), session=session)
    expected = {"top1_accuracy": 2 / 3, "accuracy_images": 3}
    assert probe.after(ctx).fields == expected
    assert probe.after(ctx).fields == expected  # the second case of the group: no second pass
    unlabelled = SimpleNamespace(images=None)
    assert Accuracy().after(_ctx(batches=unlabelled, output=np.zeros((2, 2)))).fields == {}
    wide = Accuracy().after(_ctx(batches=labelled, output=np.zeros((4, 10)), session=session))
    assert wide.fields == {} and "10 classes" in wide.info["accuracy_skipped"]


class _Extra(Probe):
    name = "extra"
    columns = (Column("peak_memory_mb", "memory (MB)", ".1f", " MB"), Column("extra_a", "a"),
               Column("extra_b", "b"))
    place_after = "cosine"


class _Nowhere(Probe):
    name = "nowhere"
    columns = (Column("nowhere_x", "x"),)
    place_after = "no_such_column"


@pytest.fixture
def extra_probes(monkeypatch):
    from infersweep.probes import registry

    for cached in (result_module._columns, result_module.probe_columns):
        cached.cache_clear()
    monkeypatch.setattr(result_module, "registry", lambda: registry() + (_Extra, _Nowhere))
    yield
    monkeypatch.undo()
    for cached in (result_module._columns, result_module.probe_columns):
        cached.cache_clear()


def test_probe_columns_are_placed_where_declared(extra_probes):
    names = [c.name for c in result_module.columns()]
    assert names.count("peak_memory_mb") == 1  # declared by three probes, listed once
    at = names.index("cosine")
    assert names[at + 1:at + 3] == ["extra_a", "extra_b"]
    assert names[-2:] == ["nowhere_x", "warnings"]
    assert result_module.CSV_COLUMNS == names
    row = Result(CPU, "ok", samples_ms=[1.0] * 5, extra_b=7).row()
    assert row["extra_b"] == 7 and row["extra_a"] is None and list(row) == names


def test_legacy_top_level_probe_figures_load_into_measured():
    old = {"case": CPU.to_dict(), "status": "ok", "samples_ms": [2.0] * 5,
           "peak_memory_mb": 1041.4, "memory_source": "", "gflops_per_image": 0.075,
           "pipelined_ips": None, "allocator_peak_mb": None, "cosine": 1.0,
           "top1_accuracy": None, "warnings": [], "info": {}}
    result = Result.from_json(json.dumps(old))
    assert result.measured == {"peak_memory_mb": 1041.4, "gflops_per_image": 0.075,
                               "cosine": 1.0}
    assert result.peak_memory_mb == 1041.4 and result.top1_accuracy is None
    row = result.row()
    assert row["memory_source"] is None and row["cosine"] == 1.0
    assert row["achieved_tflops"] == pytest.approx(0.075 * 4 / 2.0)
    assert Result.from_json(result.to_json()) == result  # the new form round-trips
    with pytest.raises(AttributeError):
        result.no_such_field  # noqa: B018


def test_plugins_variable_reaches_the_registry_of_a_fresh_process(tmp_path):
    import subprocess

    code = ("from infersweep.probes import registry; "
            "print(','.join(p.name for p in registry()))")
    env = {**os.environ, "INFERSWEEP_PLUGINS": "toy_probe"}
    names = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.strip().split(",")
    assert names == ["cpu_memory", "gpu_memory", "energy", "contention", "flops", "model_size",
                     "agreement", "accuracy", "scenario", "toy"]


def test_parameters_counted_once_per_model_and_weights_in_the_cache(tmp_path):
    """An ONNX Runtime group's export is cached: counting the torch model's parameters would
    build that model for nothing (2.5 s of the first such case on the H200). The count is kept."""
    import torch

    from infersweep.artefacts.cache import ArtifactCache
    from infersweep.probes.model_size import ModelSize

    built = []

    def model():
        built.append(1)
        return torch.nn.Linear(3, 2)  # 8 parameters

    source = SimpleNamespace(model=model, name="tiny", weights_key="random-seed0", onnx_file=None)
    ctx = _ctx(source=source, cache=ArtifactCache(tmp_path), session=None)
    assert ModelSize().after(ctx).fields == {"params_m": 8 / 1e6}
    assert ModelSize().after(ctx).fields == {"params_m": 8 / 1e6}  # another group, from the cache
    assert built == [1]
    other = SimpleNamespace(**{**vars(source), "weights_key": "w2"})
    ModelSize().after(_ctx(source=other, cache=ctx.cache, session=None))
    assert built == [1, 1]
