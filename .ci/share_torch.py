"""Link torch and torchvision, with every distribution they require, into one folder.

Run with .venv's Python: `share_torch.py FOLDER`. The wheel smoke check puts FOLDER on its fresh
venv's path through a .pth file, so pip there finds torch==2.14.1 installed and does not unpack a
second copy: torch with its CUDA libraries and triton is ~5.5 GB, and that second copy ran the CI
machine out of disk (stop 31). Only this closure is linked, never .venv's extras (openvino, timm,
ray, ...), so the smoke venv still holds exactly what a user's plain `pip install infersweep` gets.
"""
from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOTS = ("torch", "torchvision")


def closure(roots: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions `roots` need, following requirements whose markers hold here
    (no extras: `extra == "..."` markers are false for an empty extra)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        dist = metadata.distribution(name)  # PackageNotFoundError: .venv lacks a requirement
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The site-packages entries a distribution's RECORD names (its packages, modules and
    .dist-info); scripts outside site-packages (`../../../bin/...`), `__pycache__` and .pth files
    (a folder named in a .pth file has its own .pth files ignored) are left out."""
    return {f.parts[0] for f in dist.files or []
            if f.parts[0] not in ("..", "__pycache__") and not f.parts[0].endswith(".pth")}


def main(folder: str) -> int:
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    for dist in closure(ROOTS):
        for entry in top_level_entries(dist):
            source = Path(dist.locate_file(entry))
            link = target / entry
            # nvidia-* distributions share the `nvidia` namespace folder: one link serves them all.
            if source.exists() and not link.exists():
                link.symlink_to(source)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: share_torch.py FOLDER")
    sys.exit(main(sys.argv[1]))
