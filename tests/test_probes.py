"""Probes that make every column trustworthy: FLOPs, memory, agreement, real images, accuracy."""

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from conftest import FAST, cli

from infersweep.artefacts.inputs import BatchSource, preprocess, sample_photos
from infersweep.artefacts.models import ModelSource
from infersweep.probes.flops import gflops_per_image

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("size,expected", [(224, 3.63), (256, 4.74), (384, 10.66), (512, 18.95)])
def test_resnet18_flops(size, expected):
    model = torchvision.models.resnet18().eval()
    assert round(gflops_per_image(model, size), 2) == expected


def _rows(out):
    return json.loads((out / "results.json").read_text())["results"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A 2-class folder of real photos with one corrupt file, and a matching 2-class checkpoint."""
    root = tmp_path_factory.mktemp("labelled")
    photos = sample_photos()
    for i, cls in enumerate(["cat", "coffee"]):
        (root / "data" / cls).mkdir(parents=True)
        for photo in photos[i::2][:2]:
            shutil.copy(photo, root / "data" / cls / photo.name)
    (root / "data" / "coffee" / "broken.jpg").write_bytes(b"not a jpeg at all")

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.resnet = torchvision.models.resnet18()
            self.resnet.fc = nn.Linear(512, 2)

    torch.manual_seed(1)
    torch.save(Wrapper().state_dict(), root / "two_classes.pth")
    return root


@pytest.fixture(scope="module")
def probe_sweep(labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("probes") / "run"
    proc = cli("run", "--backends", "torch,onnxruntime,torch-perturbed", "--sizes", "64",
               "--batches", "1,4", "--data", f"samples,{labelled / 'data'}", "--weights",
               labelled / "two_classes.pth", "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return _rows(out)


def test_every_case_ok_on_real_images(probe_sweep):
    assert len(probe_sweep) == 3 * 2 * 2
    assert all(r["status"] == "ok" for r in probe_sweep)
    assert {r["data"] for r in probe_sweep} >= {"samples"}


def test_agreement_of_a_faithful_runtime(probe_sweep):
    for r in probe_sweep:
        if r["backend"] == "onnxruntime":
            assert r["cosine"] > 0.9999 and r["top1_agreement"] == 1.0
            assert r["max_abs_err"] < 1e-3
            assert "disagree" not in (r["warnings"] or "")


def test_agreement_catches_a_perturbed_model(probe_sweep):
    perturbed = [r for r in probe_sweep if r["backend"] == "torch-perturbed"]
    assert perturbed
    for r in perturbed:
        assert r["cosine"] < 0.99
        assert "disagree with the fp32 reference" in r["warnings"]


def test_corrupt_file_skipped_and_counted(probe_sweep):
    folder_rows = [r for r in probe_sweep if r["data"] != "samples"]
    assert all("1 unreadable image(s) skipped" in r["warnings"] for r in folder_rows)


def test_top1_accuracy_for_a_labelled_folder(probe_sweep, labelled):
    # Worked out here: the checkpoint's argmax on every readable image of the folder against
    # its label; the same figure for every batch size (accuracy is the model's, not a batch's).
    batches = BatchSource(str(labelled / "data"))
    model = ModelSource("resnet18", str(labelled / "two_classes.pth")).model()
    images = torch.from_numpy(np.stack([preprocess(f, 64) for f in batches.images.files]))
    with torch.inference_mode():
        answers = model(images).numpy().argmax(1)
    expected = float((answers == np.array(batches.images.labels)).mean())
    for r in probe_sweep:
        if r["data"] == "samples":
            assert r["top1_accuracy"] is None  # no labels
        elif r["backend"] in ("torch", "onnxruntime"):
            assert (r["top1_accuracy"], r["accuracy_images"]) == (
                expected, len(batches.images.files)), (r, expected)


def test_cpu_memory_grows_with_batch_and_baseline_does_not(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--backends", "torch", "--sizes", "128", "--batches", "1,64", "--out", out,
               *FAST)
    assert proc.returncode == 0, proc.stderr
    rows = {r["batch_size"]: r for r in _rows(out)}
    assert rows[64]["peak_memory_mb"] > rows[1]["peak_memory_mb"] + 20
    assert rows[64]["baseline_memory_mb"] == rows[1]["baseline_memory_mb"]
    assert rows[1]["baseline_memory_mb"] < rows[1]["peak_memory_mb"]
    assert rows[1]["memory_source"].startswith("cpu:VmHWM")
