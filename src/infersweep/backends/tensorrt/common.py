"""What both TensorRT backends (torch-tensorrt, onnxruntime-trt) share: the batch profile
options, the engine cache key, the GPU identity and the timing-cache folder.

**Batch profile.** A TensorRT engine is built for a range of input shapes (an optimisation
profile: min, opt, max). Image size is static (an engine per size, like every other backend);
batch is dynamic, so one engine serves every batch of a size's case group, as a deployment
would. The worker sees one case at a time, so the range comes from backend options, which are
part of each case's identity (they show in every row):

    min_batch (default 1), opt_batch (default 0 = max_batch), max_batch (default 64)

TensorRT picks its kernels for ``opt`` and accepts anything in ``min..max``. A case whose batch is
outside the range is ``unsupported`` with a reason that names the option to set. To make the
profile follow a sweep's batches, fill the options with ``profile_options(spec.batches)``
(min = smallest batch, opt = max = largest): ``--option torch-tensorrt.max_batch=128`` by hand
does the same. ``workspace_size`` (bytes, 0 = TensorRT's default) caps the builder's scratch
memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from infersweep.backends.base import Backend, options_of
from infersweep.case import Case, format_options, parse_options

PROFILE_DEFAULTS = {"min_batch": 1, "opt_batch": 0, "max_batch": 64, "workspace_size": 0}
TRT_PRECISIONS = {"cuda": ("fp32", "fp16")}
INPUT_CHANNELS = 3  # the sweep feeds RGB images


@dataclass(frozen=True)
class BatchProfile:
    """The batch range one engine serves; TensorRT tunes its kernels for ``opt``."""

    min: int
    opt: int
    max: int

    def contains(self, batch: int) -> bool:
        return self.min <= batch <= self.max

    def shapes(self, image_size: int) -> dict[str, tuple[int, int, int, int]]:
        """NCHW input shapes at min/opt/max, as an optimisation profile takes them."""
        return {name: (batch, INPUT_CHANNELS, image_size, image_size)
                for name, batch in (("min", self.min), ("opt", self.opt), ("max", self.max))}

    @property
    def label(self) -> str:
        return f"batch {self.min}..{self.max}, opt {self.opt}"


def resolve_profile(min_batch: int, opt_batch: int, max_batch: int) -> BatchProfile:
    """The profile the options describe (opt_batch 0 = max_batch), or ValueError."""
    opt = opt_batch or max_batch
    if not 1 <= min_batch <= opt <= max_batch:
        shown = f"{opt_batch} (= max_batch)" if opt_batch == 0 else opt_batch
        raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                         f"min_batch={min_batch}, opt_batch={shown}, max_batch={max_batch}")
    return BatchProfile(min_batch, opt, max_batch)


def profile_of(options: dict[str, str]) -> BatchProfile:
    """The profile of a case's options (``options_of(case)``); defaults where absent."""
    value = {k: int(options.get(k, PROFILE_DEFAULTS[k]))
             for k in ("min_batch", "opt_batch", "max_batch")}
    return resolve_profile(value["min_batch"], value["opt_batch"], value["max_batch"])


def workspace_of(options: dict[str, str]) -> int:
    return int(options.get("workspace_size", PROFILE_DEFAULTS["workspace_size"]))


def profile_options(batches: Iterable[int]) -> dict[str, str]:
    """Backend options whose profile covers exactly these batch sizes: what a sweep fills in
    for the TensorRT backends so that one engine per image size serves all of its batches."""
    sizes = sorted({int(b) for b in batches})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {list(batches)!r}")
    return {"min_batch": str(sizes[0]), "opt_batch": str(sizes[-1]),
            "max_batch": str(sizes[-1])}


def engine_key(*, runtime: str, model: str, weights: str, image_size: int, precision: str,
               profile: BatchProfile, workspace_size: int, versions: dict, gpu: dict,
               **extra) -> dict:
    """Everything an engine depends on; ``cache.key_digest`` of it names the cache entry."""
    return {"runtime": runtime, "model": model, "weights": weights, "image_size": image_size,
            "precision": precision, "profile": [profile.min, profile.opt, profile.max],
            "workspace_size": workspace_size, "versions": dict(sorted(versions.items())),
            "gpu": dict(sorted(gpu.items())), **extra}


def gpu_identity() -> dict:
    """The GPU an engine is built for (engines are specific to the device model)."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"name": props.name, "capability": f"{props.major}.{props.minor}"}


def timing_cache_dir(root: Path) -> Path:
    """TensorRT's layer timing caches, shared by every engine built under this cache root."""
    path = Path(root) / "trt" / "timing"
    path.mkdir(parents=True, exist_ok=True)
    return path


class TensorRTBackend(Backend):
    """Profile options validated together, and batches outside the profile refused."""

    def canonical_options(self, given: dict[str, str], device: str) -> str:
        canonical = super().canonical_options(given, device)  # unknown names, types
        options = parse_options(canonical)
        try:
            profile = profile_of(options)
            if workspace_of(options) < 0:
                raise ValueError(f"workspace_size must be >= 0 bytes (0 = TensorRT's default), "
                                 f"got {options['workspace_size']}")
        except ValueError as exc:
            raise ValueError(f"backend {self.name}: {exc}") from None
        options["opt_batch"] = str(profile.opt)  # opt_batch=0 is spelled out in every row
        return format_options(options)

    def supports(self, case: Case) -> str | None:
        reason = super().supports(case)
        if reason:
            return reason
        profile = profile_of(options_of(case))
        if not profile.contains(case.batch_size):
            bound = "max_batch" if case.batch_size > profile.max else "min_batch"
            return (f"batch {case.batch_size} is outside the TensorRT profile ({profile.label}); "
                    f"set --option {self.name}.{bound}={case.batch_size}")
        return None
