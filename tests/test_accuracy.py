"""Top-1 accuracy is a property of the model, precision and data: the whole folder, every batch."""

import csv
import os

import numpy as np
from PIL import Image

from conftest import FAST, cli


def _folder(root, counts: dict[str, int]):
    rng = np.random.default_rng(0)
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def _accuracy(tmp_path, counts, batches="1,3"):
    data = _folder(tmp_path / "data", counts)
    out = tmp_path / "run"
    env = {**os.environ, "INFERSWEEP_PLUGINS": "constant_backend",
           "INFERSWEEP_CONSTANT_CLASSES": str(len(counts))}
    done = cli("run", "--backends", "constant-class0", "--sizes", "8", "--batches", batches,
               "--data", data, "--out", out, *FAST, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    with open(out / "results.csv", newline="") as f:
        return {int(r["batch_size"]): (r["top1_accuracy"], r["accuracy_images"])
                for r in csv.DictReader(f)}


def test_half_the_folder_in_class_zero_is_exactly_one_half_at_every_batch(tmp_path):
    # 4 images: batch 3 needs a padded second batch, whose padding must not be counted
    assert _accuracy(tmp_path, {"a": 2, "b": 2}) == {1: ("0.5", "4"), 3: ("0.5", "4")}


def test_other_labels_give_another_accuracy(tmp_path):
    assert _accuracy(tmp_path, {"a": 3, "b": 1}) == {1: ("0.75", "4"), 3: ("0.75", "4")}


def test_class_zero_is_the_first_folder_in_sorted_order(tmp_path):
    assert _accuracy(tmp_path, {"b": 1, "c": 2, "a": 1}, batches="2") == {2: ("0.25", "4")}
