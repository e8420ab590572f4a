"""Input batches: synthetic (seeded normal noise) or real images from a folder.

Batches are made before timing and reused for every timed iteration: the data axis changes what
is computed (and later, agreement and accuracy), never what is timed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


class DataError(ValueError):
    pass


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def preprocess(path: Path, size: int) -> np.ndarray:
    """Resize the shorter side to size*256/224, centre-crop to size, normalise: torchvision's recipe."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        short = round(size * 256 / 224)
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                         Image.Resampling.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (arr - IMAGENET_MEAN) / IMAGENET_STD


def make_batch(data: str, batch_size: int, image_size: int, seed: int = 0) -> np.ndarray:
    """A float32 NCHW batch on the host."""
    if data == "synthetic":
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch_size, 3, image_size, image_size), dtype=np.float32)
    folder = Path(data)
    images = []
    for path in image_files(folder):
        try:
            images.append(preprocess(path, image_size))
        except Exception:  # a corrupt file is skipped; a folder of only corrupt files is an error
            continue
        if len(images) == batch_size:
            break
    if not images:
        raise DataError(f"no readable image in {folder}")
    # Fewer images than the batch: cycle them so that every batch size can be measured.
    picked = [images[i % len(images)] for i in range(batch_size)]
    return np.ascontiguousarray(np.stack(picked))
