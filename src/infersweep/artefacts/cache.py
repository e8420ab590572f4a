"""A content-keyed cache of expensive artefacts (ONNX exports, later engines and compiled blobs).

An entry is a directory named by the hash of its key; it appears atomically (built in a temporary
directory, then renamed), and a file lock makes concurrent workers build it once. A half-built
entry from a killed worker is never visible, so the cache can be trusted after any crash.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path


# pragma: no mutate start (make mutate: where the cache lives)
def cache_root() -> Path:
    if os.environ.get("INFERSWEEP_CACHE"):
        return Path(os.environ["INFERSWEEP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "infersweep"


# pragma: no mutate end
def torch_version() -> str:
    """``torch.__version__`` for cache keys, without importing torch (3 s on the 2-core box,
    6-8 s on the H200) in a worker that needs no torch once its artefacts are cached (ONNX
    Runtime): read from the installed ``torch/version.py``; torch's own where it is imported
    already or the file says nothing readable."""
    loaded = sys.modules.get("torch")
    if loaded is not None:
        return loaded.__version__
    found = importlib.util.find_spec("torch")
    for folder in (found.submodule_search_locations or []) if found else []:
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
        if match:
            return match.group(1)
    import torch

    return torch.__version__


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


class ArtifactCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_root()

    def get_or_build(self, kind: str, key: dict, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """Return (entry directory, was_cached). ``build(tmp_dir)`` fills a fresh directory."""
        kind_dir = self.root / kind
        kind_dir.mkdir(parents=True, exist_ok=True)
        entry = kind_dir / key_digest(key)
        if entry.is_dir():
            return entry, True
        with open(kind_dir / f"{entry.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if entry.is_dir():  # another worker built it while we waited
                return entry, True
            tmp = kind_dir / f"{entry.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                build(tmp)
                (tmp / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1))
                os.replace(tmp, entry)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return entry, False


# pragma: no mutate start (make mutate: listing and clearing, not keys)
def entries(root: Path | None = None) -> list[dict]:
    """Every finished entry: kind, key, size on disk, last modified."""
    root = Path(root) if root else cache_root()
    found = []
    for key_file in sorted(root.glob("*/*/key.json")):
        entry = key_file.parent
        size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
        found.append({"kind": entry.parent.name, "path": str(entry), "bytes": size,
                      "key": json.loads(key_file.read_text()),
                      "modified": entry.stat().st_mtime})
    return found


# What lives under the cache root, by folder (or file) name. `cache clear --kind` accepts only
# these: a kind is a name, never a path, so a clear can only ever delete inside the cache.
KINDS = {
    "onnx": "ONNX exports",
    "onnx-int8": "INT8-quantized ONNX models",
    "reference": "fp32 reference outputs (agreement)",
    "flops": "FLOPs per image of a model at a size (the FLOPs probe)",
    "params": "parameter count of a model (the model size probe)",
    "inputs": "synthetic input batches of GPU groups, shared by backends and precisions",
    "trt": "ONNX Runtime TensorRT engines and timing caches",
    "torch-tensorrt": "Torch-TensorRT programs",
    "openvino": "OpenVINO compiled-model cache",
    "inductor": "torch.compile (Inductor) kernels",
    "triton": "Triton kernels",
    "peaks": "measured peak TFLOP/s (peaks.json)",
    "history": "wall time of earlier cases, for plan's estimate (history.jsonl)",
    "input-sizes": "which image sizes a library model takes, for plan (input_sizes.json)",
    "pycache": ("Python bytecode of infersweep's processes, where Python keeps none of its own "
                "(PYTHONDONTWRITEBYTECODE, a read-only site-packages)"),
}
KIND_FILES = {"peaks": "peaks.json", "history": "history.jsonl", "input-sizes": "input_sizes.json"}


class CacheError(ValueError):
    """A bad cache request (unknown kind): the CLI prints it and exits with 2."""


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    # rglob does not follow symlinked folders: a link out of the cache is counted, not entered
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()  # a link is removed itself, never what it points to
    elif path.is_dir():
        shutil.rmtree(path)  # refuses to follow a symlinked root; links inside are unlinked


def clear(kind: str | None = None, root: Path | None = None) -> int:
    """Remove one kind of entries, or everything in the cache; bytes freed. Deletes only inside
    the cache root: ``kind`` must be one of KINDS (a name, not a path)."""
    if kind is not None and kind not in KINDS:
        raise CacheError(f"unknown cache kind {kind!r}; allowed: {', '.join(KINDS)}")
    root = Path(root) if root else cache_root()
    if not root.is_dir():
        return 0
    if kind is None:
        targets = list(root.iterdir())
    else:
        targets = [root / KIND_FILES.get(kind, kind)]
    freed = 0
    for target in targets:
        if not (target.exists() or target.is_symlink()):
            continue
        freed += _size(target)
        _remove(target)
    return freed
# pragma: no mutate end
