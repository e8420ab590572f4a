"""Agreement with the fp32 reference at each precision's threshold, and top-1 accuracy on a real
labelled folder: exact values from outputs whose answers are known."""

import math

import numpy as np
import pytest
from PIL import Image

from infersweep.artefacts.inputs import BatchSource
from infersweep.probes.accuracy import Accuracy
from infersweep.probes.agreement import MIN_COSINE, Agreement, measure_agreement
from infersweep.probes.base import ProbeContext


def at_cosine(c: float) -> np.ndarray:
    """A logit vector whose cosine similarity to [1, 0, 0] is exactly c (argmax stays 0 for c > 0.71)."""
    return np.array([c, math.sqrt(1 - c * c), 0.0])


REF = np.array([[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("precision", sorted(MIN_COSINE))
def test_agreement_threshold_of_each_precision_on_both_sides(precision):
    threshold = MIN_COSINE[precision]
    gap = 1 - threshold
    above = measure_agreement(at_cosine(1 - gap / 2)[None], REF)
    below = measure_agreement(at_cosine(1 - 2 * gap)[None], REF)
    assert above.cosine == pytest.approx(1 - gap / 2, abs=1e-12)
    assert above.warnings(precision) == []
    assert len(below.warnings(precision)) == 1
    assert f"< {threshold} for {precision}" in below.warnings(precision)[0]


def test_agreement_thresholds_are_the_documented_ones():
    assert MIN_COSINE == {"fp32": 0.9999, "fp16": 0.99, "amp": 0.99, "bf16": 0.98, "int8": 0.95}


def test_an_unknown_precision_is_held_to_0_95():
    assert Agreement(0.0, 0.951, 1.0).warnings("fp8") == []
    assert len(Agreement(0.0, 0.949, 1.0).warnings("fp8")) == 1


def test_exactly_at_the_threshold_is_agreement():
    assert Agreement(0.0, 0.9999, 1.0).warnings("fp32") == []


def test_the_worst_image_decides_not_the_mean():
    ref = np.repeat(REF, 4, axis=0)
    out = ref.copy()
    out[2] = at_cosine(0.9990)  # one image of four is off; the mean cosine 0.99975 would pass
    a = measure_agreement(out, ref)
    assert a.cosine == pytest.approx(0.9990, abs=1e-12)
    assert a.max_abs_err == pytest.approx(math.sqrt(1 - 0.999 ** 2), abs=1e-12)
    assert a.top1_agreement == 1.0
    assert a.warnings("fp32") == [
        "outputs disagree with the fp32 reference: cosine 0.99900 < 0.9999 for fp32 "
        "(max abs err 0.0447, top-1 agreement 100.0%)"]


def test_top1_agreement_is_the_share_of_matching_argmax():
    ref = np.array([[3.0, 1.0], [3.0, 1.0], [1.0, 3.0], [1.0, 3.0]])
    out = np.array([[3.0, 1.0], [1.0, 3.0], [1.0, 3.0], [1.0, 3.0]])
    a = measure_agreement(out, ref)
    assert a.top1_agreement == 0.75 and a.max_abs_err == 2.0
    assert a.cosine == pytest.approx(6 / 10)  # (3*1 + 1*3) / (sqrt(10) * sqrt(10))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_outputs_are_flagged(bad):
    out = np.repeat(REF, 2, axis=0)
    out[1, 2] = bad
    a = measure_agreement(out, np.repeat(REF, 2, axis=0))
    assert math.isnan(a.cosine)
    assert a.warnings("int8") and "cosine nan" in a.warnings("int8")[0]


def test_a_zero_output_has_cosine_zero_not_nan():
    a = measure_agreement(np.zeros((1, 3)), REF)
    assert a.cosine == 0.0 and a.max_abs_err == 1.0


def test_outputs_of_any_layout_are_compared_per_image():
    ref = np.arange(1.0, 13.0).reshape(2, 2, 3)
    out = ref.copy()
    out[1] *= -1  # image 1 points the other way
    a = measure_agreement(out, ref)
    assert a.cosine == pytest.approx(-1.0) and a.top1_agreement == 0.5
    with pytest.raises(ValueError, match=r"output shape \(2, 4\) differs from the reference "
                                         r"\(2, 6\)"):
        measure_agreement(ref[:, :, :2], ref)


# --- top-1 accuracy on a real folder with one subfolder per class -----------------------------

def labelled_folder(root, counts: dict[str, int]):
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / cls / f"{i}.png")
    return BatchSource(str(root))


class AlwaysSession:
    """A model that answers the same class for every image, through the Session interface."""

    def __init__(self, output: np.ndarray):
        self.answer = int(output[0].argmax()) if len(output) else 0
        self.classes = output.shape[-1]

    def place(self, batch):
        return batch

    def run(self, placed):
        return always(self.answer, len(placed), self.classes)

    def fetch(self, output):
        return output


def accuracy(batches, output):
    from infersweep.backends.base import Backend
    from infersweep.case import Case

    case = Case("m", "w", "torch", "cpu", "fp32", 8, len(output), "folder")
    ctx = ProbeContext(backend=Backend("torch", ("cpu",), {}), source=None, cache=None,
                       settings=None, seed=0, case=case, batches=batches, output=output,
                       session=AlwaysSession(output))
    return Accuracy().after(ctx)


def always(cls: int, n: int, classes: int = 2) -> np.ndarray:
    out = np.zeros((n, classes))
    out[:, cls] = 1.0
    return out


@pytest.mark.parametrize("counts, answer, expected", [
    ({"cat": 2, "dog": 2}, 0, 0.5),
    ({"cat": 1, "dog": 3}, 0, 0.25),  # the labels permuted: fewer images of class 0
    ({"cat": 1, "dog": 3}, 1, 0.75),
])
@pytest.mark.parametrize("batch", [1, 3, 4])
def test_top1_accuracy_of_a_model_that_always_answers_one_class(tmp_path, counts, answer,
                                                                  expected, batch):
    batches = labelled_folder(tmp_path / "data", counts)
    assert batches.images.classes == ["cat", "dog"]
    assert accuracy(batches, always(answer, batch)).fields == {"top1_accuracy": expected,
                                                               "accuracy_images": 4}


def test_a_batch_larger_than_the_folder_counts_each_image_once(tmp_path):
    batches = labelled_folder(tmp_path / "data", {"cat": 1, "dog": 3})
    assert list(batches.labels(6)) == [0, 1, 1, 1, 0, 1]  # the timed batch repeats images...
    # ... but accuracy is over the folder: 1 of 4 images is a cat, not 2 of 6
    assert accuracy(batches, always(0, 6)).fields == {"top1_accuracy": 0.25,
                                                      "accuracy_images": 4}


def test_no_accuracy_without_labels_or_with_another_class_count(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    assert accuracy(BatchSource(str(flat)), always(0, 1)).fields == {}
    batches = labelled_folder(tmp_path / "data", {"cat": 1, "dog": 1})
    skipped = accuracy(batches, always(0, 2, classes=10))
    assert skipped.fields == {}
    assert skipped.info == {"accuracy_skipped": "model has 10 classes, data has 2"}


def test_the_agreement_probe_keys_the_reference_on_the_batch_it_ran(monkeypatch):
    from types import SimpleNamespace

    from infersweep.backends.base import Backend
    from infersweep.case import Case
    from infersweep.probes import agreement

    seen = []
    ref = np.repeat(REF, 2, axis=0)
    monkeypatch.setattr(agreement, "reference_logits",
                        lambda source, batch, key, cache: seen.append((source, batch, key, cache))
                        or ref)
    case = Case("resnet18", "random(seed=3)", "onnxruntime", "cpu", "fp16", 48, 2, "samples")
    batch = np.zeros((2, 3, 48, 48))
    ctx = ProbeContext(backend=Backend("onnxruntime", ("cpu",), {}), case=case, seed=3,
                       source=SimpleNamespace(weights_key="random-seed3"), cache="the cache",
                       settings=None, host_batch=batch, output=np.array([REF[0], at_cosine(0.98)]))
    reading = agreement.ReferenceAgreement().after(ctx)
    (source, got_batch, key, cache), = seen
    assert got_batch is batch and cache == "the cache" and source is ctx.source
    assert key == {"model": "resnet18", "weights": "random-seed3", "data": "samples",
                   "image_size": 48, "batch_size": 2, "seed": 3}
    assert reading.fields == {"max_abs_err": pytest.approx(math.sqrt(1 - 0.98 ** 2)),
                              "cosine": pytest.approx(0.98), "top1_agreement": 1.0,
                              "disagrees": True}  # 0.98 < fp16's 0.99: the row is untrusted
    assert len(reading.warnings) == 1 and "< 0.99 for fp16" in reading.warnings[0]
    assert agreement.ReferenceAgreement().applies(ctx)
    assert not agreement.ReferenceAgreement().applies(
        ProbeContext(backend=Backend("fake", ("cpu",), {}, needs_model=False), case=case, seed=0,
                     source=None, cache=None, settings=None))
