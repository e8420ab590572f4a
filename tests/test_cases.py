"""The sweep grid: expansion, stable case ids, grouping by prepared model, weights labels."""

import random
from dataclasses import fields, replace
from itertools import product

import pytest

from infersweep.case import Case, group_cases, weights_label
from infersweep.grid.plan import expand
from infersweep.grid.spec import Spec

FIXED = Case(model="resnet18", weights="random(seed=0)", backend="torch", device="cpu",
             precision="fp32", image_size=224, batch_size=8, data="synthetic")


def _spec(**kw) -> Spec:
    base = dict(models=("resnet18",), backends=("torch", "onnxruntime"), devices=("cpu", "cuda"),
                precisions=("fp32", "fp16", "bf16"), sizes=(32, 224), batches=(1, 8, 32),
                data=("synthetic", "/imgs"), seed=3)
    base.update(kw)
    return Spec(**base)


# --- expansion ------------------------------------------------------------------------------

def test_expand_is_the_full_product_of_the_axes():
    spec = _spec()
    cases = expand(spec)
    assert len(cases) == 2 * 2 * 3 * 2 * 3 * 2  # 144
    assert len(set(cases)) == len(cases)
    got = {(c.backend, c.device, c.precision, c.image_size, c.batch_size, c.data) for c in cases}
    want = set(product(spec.backends, spec.devices, spec.precisions, spec.sizes, spec.batches,
                       spec.data))
    assert got == want
    for c in cases:
        assert c.model == "resnet18"
        assert c.weights == "random(seed=3)"
        assert c.scope == "compute"


@pytest.mark.parametrize("axes, count", [
    (dict(backends=("torch",), devices=("cpu",), precisions=("fp32",), sizes=(224,),
          batches=(1,), data=("synthetic",)), 1),
    (dict(backends=("torch",), devices=("cpu",), precisions=("fp32",), sizes=(32, 64, 128),
          batches=(1, 2), data=("synthetic",)), 6),
    (dict(backends=("torch", "onnxruntime"), devices=("cpu",), precisions=("fp32", "int8"),
          sizes=(224,), batches=(1, 8, 32, 64), data=("synthetic",)), 16),
])
def test_expand_count(axes, count):
    assert len(expand(_spec(**axes))) == count


def test_expand_order_is_stable():
    spec = _spec()
    assert expand(spec) == expand(spec)


def test_expand_adds_gpu_extra_precisions_to_cuda_cases_only():
    spec = _spec(devices=("cpu", "cuda"), precisions=("fp32",), gpu_extra_precisions=("fp16",),
                 backends=("torch",), sizes=(32,), batches=(1, 2), data=("synthetic",))
    got = sorted((c.device, c.precision, c.batch_size) for c in expand(spec))
    assert got == [("cpu", "fp32", 1), ("cpu", "fp32", 2),
                   ("cuda", "fp16", 1), ("cuda", "fp16", 2),
                   ("cuda", "fp32", 1), ("cuda", "fp32", 2)]


def test_expand_fills_size_into_weights():
    spec = _spec(weights="/ckpt/model_{size}.pt", sizes=(32, 224), backends=("torch",),
                 devices=("cpu",), precisions=("fp32",), data=("synthetic",), batches=(1,))
    assert sorted((c.image_size, c.weights) for c in expand(spec)) == [
        (32, "/ckpt/model_32.pt"), (224, "/ckpt/model_224.pt")]


# --- case ids -------------------------------------------------------------------------------

def test_case_id_is_a_fixed_value():
    # Computed once; a change here breaks resume of every existing run directory.
    assert FIXED.case_id == "0ae736b18b1e"
    # Empty options are left out of the hash: the id is the one from before options existed.
    assert replace(FIXED, options="").case_id == "0ae736b18b1e"
    assert replace(FIXED, options="channels_last=true").case_id != "0ae736b18b1e"


def test_case_id_is_the_same_for_equal_cases():
    twin = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 224, 8, "synthetic",
                "compute")
    assert twin is not FIXED and twin == FIXED
    assert twin.case_id == FIXED.case_id
    assert Case.from_dict(FIXED.to_dict()).case_id == FIXED.case_id
    # Extra keys in a stored row are ignored, they do not change the id.
    row = dict(FIXED.to_dict(), status="ok", median_ms=1.0)
    assert Case.from_dict(row).case_id == FIXED.case_id


def _changed(value):
    return value + 1 if isinstance(value, int) else value + "x"


@pytest.mark.parametrize("name", [f.name for f in fields(Case)])
def test_case_id_changes_with_any_field(name):
    other = replace(FIXED, **{name: _changed(getattr(FIXED, name))})
    assert other != FIXED
    assert other.case_id != FIXED.case_id


def test_case_ids_are_unique_over_a_grid():
    cases = expand(_spec())
    ids = [c.case_id for c in cases]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 12 and all(ch in "0123456789abcdef" for ch in i) for i in ids)


def test_case_id_does_not_depend_on_measurement_settings():
    from infersweep.measure.timing import MeasureSettings

    a = expand(_spec())
    b = expand(_spec(measure=MeasureSettings(min_time_s=0.01, max_time_s=0.02),
                     timeout_s=5.0, out=None))
    assert [c.case_id for c in a] == [c.case_id for c in b]


# --- grouping -------------------------------------------------------------------------------

def test_group_cases_groups_by_everything_but_batch_with_batches_ascending():
    spec = _spec(batches=(32, 1, 8))
    cases = expand(spec)
    shuffled = cases[:]
    random.Random(5).shuffle(shuffled)
    groups = group_cases(shuffled)
    assert len(groups) == len(cases) // 3
    assert sorted(c for g in groups for c in g) == sorted(cases)
    for g in groups:
        assert [c.batch_size for c in g] == [1, 8, 32]
        assert len({c.group_key for c in g}) == 1
        first = g[0]
        for c in g:
            assert replace(c, batch_size=first.batch_size) == first
    assert len({g[0].group_key for g in groups}) == len(groups)
    # First-seen order of the groups is kept.
    first_seen = list(dict.fromkeys(c.group_key for c in shuffled))
    assert [g[0].group_key for g in groups] == first_seen


def test_group_cases_separates_cases_differing_in_any_other_field():
    # batch size and scenario: a server case batches on the session of its fixed-batch siblings
    others = [f.name for f in fields(Case) if f.name not in ("batch_size", "scenario")]
    cases = [FIXED] + [replace(FIXED, **{n: _changed(getattr(FIXED, n))}) for n in others]
    groups = group_cases(cases)
    assert len(groups) == len(cases)
    served = replace(FIXED, scenario="server(max_batch=8,max_delay_ms=2,qps=10)")
    assert group_cases([served, FIXED]) == [[served, FIXED]]
    assert group_cases([replace(FIXED, batch_size=b) for b in (4, 2, 64, 1)]) == [
        [replace(FIXED, batch_size=b) for b in (1, 2, 4, 64)]]
    assert group_cases([]) == []


# --- weights labels -------------------------------------------------------------------------

def test_weights_label():
    assert weights_label(None, 224, 0) == "random(seed=0)"
    assert weights_label(None, 32, 7) == "random(seed=7)"
    assert weights_label("/w/model_{size}.pt", 224, 0) == "/w/model_224.pt"
    assert weights_label("/w/{size}/m_{size}.pt", 64, 0) == "/w/64/m_64.pt"
    assert weights_label("/w/model.pt", 224, 9) == "/w/model.pt"
