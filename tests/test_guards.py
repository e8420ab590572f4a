"""Guards that refuse a doomed sweep before anything runs (exit 2), and their escape hatches."""

import shutil

import torch
import torchvision
from conftest import cli

from infersweep.artefacts.inputs import sample_photos


def test_absurd_memory_estimate_is_refused(tmp_path):
    proc = cli("run", "--sizes", "4096", "--batches", "4096", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "GiB is available" in proc.stderr and "--force" in proc.stderr
    assert not (tmp_path / "run" / "results.sqlite").exists()
    plan = cli("plan", "--sizes", "4096", "--batches", "4096", "--out", tmp_path / "run")
    assert plan.returncode == 2


def test_checkpoint_classes_must_match_a_labelled_folder(tmp_path):
    for cls in ("a", "b", "c"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        shutil.copy(sample_photos()[0], tmp_path / "data" / cls / "x.png")
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "w.pth")
    proc = cli("run", "--weights", tmp_path / "w.pth", "--data", tmp_path / "data",
               "--sizes", "32", "--batches", "1", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert "10 classes" in proc.stderr and "3 class folders" in proc.stderr


def test_full_disk_mid_sweep_is_a_clear_error_and_loses_nothing(tmp_path):
    import sqlite3
    import subprocess

    import pytest

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        out = mnt / "run"
        proc = cli("run", "--backends", "fault-ok", "--sizes", "8", "--batches",
                   ",".join(str(b) for b in range(1, 41)), "--min-time", "0.05", "--max-time",
                   "0.1", "--min-iterations", "200", "--out", out)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "cannot write results" in proc.stderr and "resume" in proc.stderr
        db = sqlite3.connect(out / "results.sqlite")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        db.close()
        assert 0 < stored < 40
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
