"""`infersweep cache clear` deletes only inside the cache, and only the kinds it knows."""

import os

import pytest

from conftest import cli


@pytest.fixture
def cache(tmp_path):
    root = tmp_path / "cache"
    (root / "onnx" / "abc").mkdir(parents=True)
    (root / "onnx" / "abc" / "model.onnx").write_bytes(b"x" * (2 << 20))
    (root / "reference" / "def").mkdir(parents=True)
    (root / "reference" / "def" / "logits.npy").write_bytes(b"y" * 10)
    (root / "peaks.json").write_text("{}")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "thesis.tex").write_text("years of work")
    env = {**os.environ, "INFERSWEEP_CACHE": str(root)}
    return root, outside, env


@pytest.mark.parametrize("kind", ["{outside}", "../precious", "bogus", "onnx/../..", ""])
def test_a_kind_that_is_not_a_known_name_is_refused_and_nothing_is_deleted(cache, kind):
    root, outside, env = cache
    kind = kind.format(outside=outside)
    done = cli("cache", "clear", "--kind", kind, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"unknown cache kind {kind!r}" in done.stderr
    assert "allowed: onnx, onnx-int8, reference" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (outside / "thesis.tex").read_text() == "years of work"
    assert (root / "onnx" / "abc" / "model.onnx").is_file()
    assert (root / "peaks.json").is_file()


def test_one_kind_is_cleared_and_the_others_stay(cache):
    root, outside, env = cache
    done = cli("cache", "clear", "--kind", "onnx", env=env)
    assert done.returncode == 0, done.stderr
    assert f"cleared onnx in {root}: 2.0 MB freed" in done.stdout
    assert not (root / "onnx").exists()
    assert (root / "reference" / "def" / "logits.npy").is_file()
    assert (root / "peaks.json").is_file()


@pytest.mark.parametrize("kind, name", [("peaks", "peaks.json"),
                                        ("input-sizes", "input_sizes.json")])
def test_a_file_kind_is_cleared(cache, kind, name):
    root, _, env = cache
    (root / "input_sizes.json").write_text("{}")
    assert cli("cache", "clear", "--kind", kind, env=env).returncode == 0
    assert not (root / name).exists()
    assert {p.name for p in root.glob("*.json")} == {"peaks.json", "input_sizes.json"} - {name}
    assert (root / "onnx" / "abc" / "model.onnx").is_file()


def test_symlinks_out_of_the_cache_are_removed_not_followed(cache):
    root, outside, env = cache
    (root / "onnx" / "abc" / "link-to-precious").symlink_to(outside)
    (root / "triton").symlink_to(outside)  # a whole kind that is a link out of the cache
    assert cli("cache", "clear", "--kind", "triton", env=env).returncode == 0
    assert not (root / "triton").is_symlink()
    assert (outside / "thesis.tex").read_text() == "years of work"
    assert cli("cache", "clear", env=env).returncode == 0  # everything: links inside too
    assert list(root.iterdir()) == []
    assert (outside / "thesis.tex").read_text() == "years of work"
