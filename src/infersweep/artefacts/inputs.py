"""Input batches: synthetic noise, bundled sample photographs, or a folder of images.

- ``synthetic``: seeded standard-normal noise (the default; no files needed).
- ``samples``: real photographs that ship inside installed packages (scikit-image's and
  matplotlib's sample data): the real-image path works out of the box, with no download.
- a folder: every image below it; with one subfolder per class (``data/test/<class>/*.jpg``) the
  images are labelled by their subfolder, in sorted order, and top-1 accuracy can be reported.

Images are decoded with Pillow, the shorter side resized to size*256/224, centre-cropped and
normalised with ImageNet's mean and std: torchvision's ImageNet preset. Batches cycle through the
images, so a batch of b is always the first b images of the cycle (a smaller batch is a prefix of a
larger one). Unreadable files are skipped and counted.

In the default ``compute`` scope the batch is made before timing and reused; in the ``e2e``
scope, decoding and preprocessing of real images are inside the timed region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)

# Colour photographs bundled with scikit-image (skimage/data) and matplotlib (sample_data).
SAMPLE_PHOTOS = {
    "skimage": ("data", ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                         "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg"]),
    "matplotlib": ("mpl-data/sample_data", ["grace_hopper.jpg"]),
}


class DataError(ValueError):
    pass


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def sample_photos() -> list[Path]:
    """The bundled photographs that are present in this environment."""
    import importlib.util

    found = []
    for package, (subdir, names) in SAMPLE_PHOTOS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        base = Path(list(spec.submodule_search_locations)[0]) / subdir
        found += [base / n for n in names if (base / n).is_file()]
    return found


def preprocess(path: Path, size: int, normalisation=None) -> np.ndarray:
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
    if normalisation is None:
        return (arr - IMAGENET_MEAN) / IMAGENET_STD
    mean, std = (np.array(v, dtype=np.float32).reshape(3, 1, 1) for v in normalisation)
    return (arr - mean) / std


@dataclass
class ImageSet:
    """The readable images of a data source, with labels when the folder layout gives them."""
    files: list[Path]
    labels: list[int] | None = None  # index into classes, per file
    classes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable files, named for the report


def open_images(data: str, size: int = 32) -> ImageSet:
    """Find and check the images of a real data source; unreadable ones are skipped and listed."""
    if data == "samples":
        files = sample_photos()
        if not files:
            raise DataError("no bundled sample photographs found; install them with: "
                            "pip install 'infersweep[samples]'")
        folder = None
    else:
        folder = Path(data)
        if not folder.is_dir():
            raise DataError(f"data {data!r} is not 'synthetic', 'samples' or an existing folder")
        files = image_files(folder)
        if not files:
            raise DataError(f"data folder {data} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    readable, skipped = [], []
    for path in files:
        try:
            preprocess(path, size)
            readable.append(path)
        except Exception:
            skipped.append(str(path))
    if not readable:
        raise DataError(f"none of the {len(files)} images in {data} can be decoded")
    images = ImageSet(readable, skipped=skipped)
    if folder is not None:
        classes = sorted({p.relative_to(folder).parts[0] for p in readable
                          if len(p.relative_to(folder).parts) == 2})
        if classes and all(len(p.relative_to(folder).parts) == 2 for p in readable):
            images.classes = classes
            images.labels = [classes.index(p.relative_to(folder).parts[0]) for p in readable]
    return images


def synthetic_batch(seed: int, rows: int, image_size: int) -> np.ndarray:
    """Standard-normal float32 NCHW images from the seed's own generator: the first k rows of
    ``rows`` are the batch of k rows, value for value (the generator fills the array in order)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 3, image_size, image_size), dtype=np.float32)


class BatchSource:
    """Makes the host batches of one data source (float32 NCHW) and their labels."""

    def __init__(self, data: str, seed: int = 0, normalisation=None, keep_rows: int = 0,
                 cache=None):
        self.data = data
        self.seed = seed
        self.normalisation = normalisation  # (mean, std) of the model's own config; None: ImageNet
        self.images = None if data == "synthetic" else open_images(data)
        # Synthetic data: made once with ``keep_rows`` rows (a GPU group's largest batch) and
        # each batch its first rows. The generator fills the array in order, so these are the
        # very values a batch of its own would hold. (On the H200 a case of the original grid at
        # 384-512 px spent 0.3-0.7 s besides measuring and setup, growing with the batch; one
        # 64 x 512 px batch takes 1.4 s to make on the 2-core box.) Never on a CPU case: its
        # peak resident memory is a figure, and the kept array would be in it.
        self.keep_rows = keep_rows
        self.kept: dict[int, np.ndarray] = {}
        # The kept array is also kept in the artefact cache (kind "inputs"): every backend's and
        # precision's group of a size reads it instead of drawing it again (a 64 x 512 px batch
        # was 0.7-0.9 s of its group's first case on the H200; reading it back is a copy).
        self.cache = cache

    def batch(self, batch_size: int, image_size: int) -> np.ndarray:
        if self.images is None:
            kept = self.kept.get(image_size)
            if kept is not None and batch_size <= len(kept):
                return kept[:batch_size]
            rows = max(batch_size, self.keep_rows)
            if self.keep_rows and self.cache is not None:
                made = self._cached_synthetic(rows, image_size)
            else:
                made = synthetic_batch(self.seed, rows, image_size)
            if self.keep_rows:
                self.kept[image_size] = made
            return made[:batch_size]
        files = self.images.files
        arrays = [preprocess(files[i % len(files)], image_size, self.normalisation)
                  for i in range(batch_size)]
        return np.ascontiguousarray(np.stack(arrays))

    def _cached_synthetic(self, rows: int, image_size: int) -> np.ndarray:
        def draw(out_dir: Path) -> None:
            np.save(out_dir / "batch.npy", synthetic_batch(self.seed, rows, image_size))

        key = {"seed": self.seed, "rows": rows, "image_size": image_size,
               "generator": "numpy default_rng standard_normal float32", "numpy": np.__version__}
        entry, _ = self.cache.get_or_build("inputs", key, draw)
        return np.load(entry / "batch.npy")

    def labelled_chunks(self, batch_size: int, image_size: int, limit: int):
        """The first ``limit`` labelled images, in batches of exactly ``batch_size`` (runtimes
        compiled for one shape get that shape): yields (batch, labels of its real images). The
        last batch is padded with the first images; only its real images have labels."""
        if self.images is None or self.images.labels is None:
            return
        files, labels = self.images.files[:limit], self.images.labels[:limit]
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            padded = chunk + [files[i % len(files)] for i in range(batch_size - len(chunk))]
            batch = np.stack([preprocess(path, image_size, self.normalisation) for path in padded])
            yield np.ascontiguousarray(batch), np.array(labels[start:start + len(chunk)])

    def labels(self, batch_size: int) -> np.ndarray | None:
        if self.images is None or self.images.labels is None:
            return None
        n = len(self.images.files)
        return np.array([self.images.labels[i % n] for i in range(batch_size)])
