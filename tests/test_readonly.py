"""No data is ever deleted or overwritten by a read-only command (issue 14, "Done when").

A run directory (the stored legacy run) and an artefact cache sit on a real read-only bind mount,
made in a private mount namespace with `unshare`; chmod would not do, since the tests run as root
and root writes through file modes. report, compare, plan, env and `cache list` run on it; every
file's bytes and modification time must be as before, and no file may appear.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LEGACY = Path(__file__).parent / "data" / "legacy-run-0.1"
MOUNT_SCRIPT = 'mount --bind "$1" "$2" && mount -o remount,ro,bind "$2" && cd "$2" && shift 2 ' \
               '&& exec "$@"'


def _unshare_works(tmp: Path) -> str | None:
    """None when a read-only bind mount can be made here, else why not."""
    if shutil.which("unshare") is None:
        return "the unshare command is not installed"
    src, mnt = tmp / "probe-src", tmp / "probe-mnt"
    src.mkdir()
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", MOUNT_SCRIPT, "sh", src, mnt,
                            "sh", "-c", "touch x"], capture_output=True, text=True)
    if "Read-only file system" not in probe.stderr:
        return f"cannot make a read-only bind mount here: {probe.stderr.strip() or probe}"
    return None


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_read_only_commands_change_nothing_on_a_read_only_mount(tmp_path):
    reason = _unshare_works(tmp_path)
    if reason:
        pytest.skip(reason)
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    mnt.mkdir()
    (src / "run").mkdir(parents=True)
    shutil.copy(LEGACY / "results.sqlite", src / "run" / "results.sqlite")
    entry = src / "cache" / "onnx" / "0123456789abcdef0123"  # one finished cache entry
    entry.mkdir(parents=True)
    (entry / "model.onnx").write_bytes(b"\0" * 2**20)
    (entry / "key.json").write_text(json.dumps({"model": "resnet18", "image_size": 32}))
    before = _snapshot(src)

    env = dict(os.environ, INFERSWEEP_CACHE=str(mnt / "cache"), COLUMNS="200")

    def on_mount(*args):
        return subprocess.run(["unshare", "-rm", "sh", "-c", MOUNT_SCRIPT, "sh", src, mnt,
                               sys.executable, "-m", "infersweep", *map(str, args)],
                              capture_output=True, text=True, timeout=300, env=env)

    run = mnt / "run"
    compare = on_mount("compare", run, "--a", "backend=torch", "--b", "backend=onnxruntime",
                       "--format", "json")
    plan = on_mount("plan", "--out", run, "--backends", "torch,onnxruntime", "--sizes", "32",
                    "--batches", "1,2", "--min-time", "0.05", "--max-time", "0.2",
                    "--min-iterations", "5")
    report = on_mount("report", run)
    elsewhere = tmp_path / "views"  # the way out the refusal names: the run is only read
    report_to = on_mount("report", run, "--to", elsewhere, "--format", "csv")
    environment = on_mount("env")
    cache = on_mount("cache", "list")

    for proc in (compare, plan, environment, cache, report_to):
        assert proc.returncode == 0, proc.args[-3:] + [proc.stdout, proc.stderr]
        assert "Traceback" not in proc.stderr, proc.stderr
    assert len(json.loads(compare.stdout)["pairs"]) == 2
    assert "4 cases, 0 to run" in plan.stdout, plan.stdout
    assert "backend torch" in environment.stdout
    assert "1 entries, 1.0 MB" in cache.stdout, cache.stdout
    assert report.returncode == 2, report.stdout + report.stderr
    assert report.stderr.strip() == (f"error: cannot write the reports to {run}: it is "
                                     "read-only; write them elsewhere with --to DIR")

    assert _snapshot(src) == before  # every byte and every mtime, and no new file
