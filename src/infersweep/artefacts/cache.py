"""A content-keyed cache of expensive artefacts (ONNX exports, later engines and compiled blobs).

An entry is a directory named by the hash of its key; it appears atomically (built in a temporary
directory, then renamed), and a file lock makes concurrent workers build it once. A half-built
entry from a killed worker is never visible, so the cache can be trusted after any crash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("INFERSWEEP_CACHE"):
        return Path(os.environ["INFERSWEEP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "infersweep"


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


def clear(kind: str | None = None, root: Path | None = None) -> int:
    """Remove entries (of one kind, or all, with compiler caches and peaks); bytes freed."""
    root = Path(root) if root else cache_root()
    if not root.exists():
        return 0
    targets = [root / kind] if kind else [p for p in root.iterdir()]
    freed = 0
    for target in targets:
        if target.is_dir():
            freed += sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target, ignore_errors=True)
        elif target.is_file():
            freed += target.stat().st_size
            target.unlink()
    return freed
