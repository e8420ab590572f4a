"""The fp32 reference for agreement is computed once per (model, weights, size, data) and shared
by every backend and batch: at the largest batch of the group, each case reading its first rows.
Real components: a real cache, a real torch model, the real data source."""


import numpy as np
import pytest
import torch
import torch.nn as nn

from infersweep.artefacts.cache import ArtifactCache
from infersweep.artefacts.inputs import BatchSource
from infersweep.backends.base import Backend
from infersweep.case import Case
from infersweep.probes.agreement import ReferenceAgreement
from infersweep.probes.base import ProbeContext

SIZE = 16


class CountedModel:
    """A tiny fp32 model source that counts how often the reference model is built."""

    def __init__(self):
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, 10)).eval()
        self.built = 0
        self.weights_key = "tiny-counted"

    def model(self):
        self.built += 1
        return self.net


def _ctx(source, cache, backend: str, batch: int, batches, group=(1, 4)) -> ProbeContext:
    case = Case("tiny", "random(seed=0)", backend, "cpu", "fp32", SIZE, batch, "synthetic")
    cases = tuple(Case("tiny", "random(seed=0)", backend, "cpu", "fp32", SIZE, b, "synthetic")
                  for b in group)
    host = batches.batch(batch, SIZE)
    with torch.inference_mode():
        output = source.net(torch.from_numpy(host)).numpy()
    return ProbeContext(backend=Backend(backend, ("cpu",), {}), source=source, cache=cache,
                        settings=None, seed=0, case=case, group=cases, batches=batches,
                        host_batch=host, output=output)


def _entries(cache: ArtifactCache) -> list:
    return sorted((cache.root / "reference").glob("*/logits.npy"))


def test_two_backends_and_two_batches_build_one_reference(tmp_path):
    source, cache, batches = CountedModel(), ArtifactCache(tmp_path), BatchSource("synthetic")
    readings = [ReferenceAgreement().after(_ctx(source, cache, backend, batch, batches))
                for backend in ("torch", "onnxruntime") for batch in (1, 4)]
    assert len(_entries(cache)) == 1 and source.built == 1
    assert np.load(_entries(cache)[0]).shape == (4, 10)  # at the group's largest batch
    for reading in readings:  # each case read its own rows: the outputs agree
        assert reading.fields["top1_agreement"] == 1.0 and not reading.fields["disagrees"]
        assert reading.fields["max_abs_err"] < 1e-5


def test_the_sliced_rows_are_the_reference_of_the_smaller_batch(tmp_path):
    source, cache, batches = CountedModel(), ArtifactCache(tmp_path), BatchSource("synthetic")
    ReferenceAgreement().after(_ctx(source, cache, "torch", 4, batches))
    shared = np.load(_entries(cache)[0])
    with torch.inference_mode():
        alone = source.net(torch.from_numpy(batches.batch(1, SIZE))).numpy()
    np.testing.assert_allclose(shared[:1], alone, rtol=1e-5, atol=1e-6)


class Shuffled(BatchSource):
    """A data source whose larger batch does not begin with the smaller one."""

    def batch(self, batch_size, image_size):
        return super().batch(batch_size, image_size)[::-1].copy()


def test_a_data_source_without_prefixes_gets_a_reference_per_batch(tmp_path):
    source, cache, batches = CountedModel(), ArtifactCache(tmp_path), Shuffled("synthetic")
    reading = ReferenceAgreement().after(_ctx(source, cache, "torch", 1, batches))
    assert reading.fields["max_abs_err"] < 1e-5  # against its own batch, not a wrong slice
    keys = [p.parent / "key.json" for p in _entries(cache)]
    assert [k.read_text().count('"batch_size": 1') for k in keys] == [1]


@pytest.mark.parametrize("group", [(), (1,)])
def test_without_a_larger_batch_in_the_group_the_case_keys_its_own_batch(tmp_path, group):
    source, cache, batches = CountedModel(), ArtifactCache(tmp_path), BatchSource("synthetic")
    ReferenceAgreement().after(_ctx(source, cache, "torch", 1, batches, group=group))
    assert np.load(_entries(cache)[0]).shape == (1, 10)


def test_a_gpu_groups_batches_are_the_first_rows_of_one_array_with_the_same_values():
    """Made once at the group's largest batch: each smaller batch holds exactly the values a
    batch made on its own holds (the reference and agreement see the same data as before)."""
    from infersweep.artefacts.inputs import BatchSource

    kept, alone = BatchSource("synthetic", seed=3, keep_rows=8), BatchSource("synthetic", seed=3)
    first = kept.batch(2, 16)
    for rows in (2, 5, 8):
        batch = kept.batch(rows, 16)
        assert np.array_equal(batch, alone.batch(rows, 16)) and batch.shape == (rows, 3, 16, 16)
        assert np.shares_memory(batch, first)  # not made again
    assert np.array_equal(kept.batch(12, 16), alone.batch(12, 16))  # beyond it: made anew
    assert not alone.kept  # a CPU case's data is its own, as before


def test_a_gpu_groups_synthetic_batch_is_drawn_once_and_read_back_by_other_groups(
        tmp_path, monkeypatch):
    """The kept batch goes to the artefact cache: another group of that size (another backend,
    precision, worker) reads the very values instead of drawing 64 x 512 px again."""
    from infersweep.artefacts import inputs
    from infersweep.artefacts.cache import ArtifactCache

    cache = ArtifactCache(tmp_path)
    first = inputs.BatchSource("synthetic", seed=3, keep_rows=8, cache=cache)
    alone = inputs.BatchSource("synthetic", seed=3)
    assert np.array_equal(first.batch(2, 16), alone.batch(2, 16))
    assert len(list((tmp_path / "inputs").glob("*/batch.npy"))) == 1

    def no_drawing(*args):
        raise AssertionError("drawn again")

    monkeypatch.setattr(inputs, "synthetic_batch", no_drawing)
    again = inputs.BatchSource("synthetic", seed=3, keep_rows=8, cache=cache)
    for rows in (2, 8):
        assert np.array_equal(again.batch(rows, 16), first.kept[16][:rows])
    with pytest.raises(AssertionError, match="drawn again"):  # another seed is not the same data
        inputs.BatchSource("synthetic", seed=4, keep_rows=8, cache=cache).batch(2, 16)
