"""Torch-TensorRT (dynamo front end) on CUDA.

The batch profile comes from backend options: see tensorrt_common.py.

**Precision.** The graph carries it: fp16 compiles the half-precision model with a half input
(TensorRT's strongly typed networks, the only kind TensorRT 11 builds and Torch-TensorRT's
default since 2.12). Older Torch-TensorRT versions with weak typing by default also get
``enabled_precisions={torch.float16}`` so the builder may choose fp16 kernels; newer ones reject
that option, so it is passed only where the installed version's signature still takes it.
The first run of every batch checks that the engine returns the requested dtype.

**Engine cache.** The compiled program is saved with ``torch_tensorrt.save`` as an
ExportedProgram (``model.ep``, TensorRT engines embedded) in infersweep's cache, kind
``torch-tensorrt``, keyed by model, weights hash, image size, precision, profile, workspace,
the torch / Torch-TensorRT / TensorRT versions and the GPU (engines are not portable across
GPUs). Before an entry becomes visible it is loaded back and run at the profile's min and max
batch, so a saved program that lost its dynamic batch is never cached. The build (trace, compile,
save) happens in ``prepare``: setup time, never latency. TensorRT's timing cache lives in
``<cache>/trt/timing`` so a rebuild (another size, precision or profile) is faster.
"""

from __future__ import annotations

import copy
import inspect
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from infersweep.backends.base import (
    PrecisionError,
    Session,
    options_of,
)
from infersweep.backends.tensorrt.common import (
    INPUT_CHANNELS,
    PROFILE_DEFAULTS,
    TRT_PRECISIONS,
    BatchProfile,
    TensorRTBackend,
    engine_key,
    gpu_identity,
    profile_of,
    timing_cache_dir,
    workspace_of,
)
from infersweep.backends.torch_common import TORCH_DTYPES
from infersweep.case import Case

# --- Torch-TensorRT -------------------------------------------------------------------------

PROGRAM_FILE = "model.ep"
BUILD_INFO_FILE = "build_info.json"


def compile_parameters(func) -> dict:
    """Keyword parameters a function takes, with their defaults: settings are passed only
    where the installed Torch-TensorRT knows them (its API changed across releases)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.kind in kinds}


def compile_settings(precision: str, workspace_size: int, timing_cache: Path,
                     parameters: dict) -> dict:
    """Settings for ``torch_tensorrt.dynamo.compile`` given the parameters it takes."""
    import torch

    settings: dict = {}
    explicit_typing = parameters.get("use_explicit_typing", False) is True
    if "enabled_precisions" in parameters and not explicit_typing:
        # Weakly typed builds: the builder may only pick fp16 kernels where this allows it.
        settings["enabled_precisions"] = {torch.float16 if precision == "fp16" else torch.float32}
    if workspace_size > 0:
        if "workspace_size" not in parameters:
            raise ValueError("this torch_tensorrt has no workspace_size setting")
        settings["workspace_size"] = workspace_size
    if "timing_cache_path" in parameters:
        settings["timing_cache_path"] = str(timing_cache)
    for name in ("cache_built_engines", "reuse_cached_engines"):  # infersweep caches the program
        if name in parameters:
            settings[name] = False
    return settings


def typing_label(settings: dict) -> str:
    if "enabled_precisions" in settings:
        names = sorted(str(d).replace("torch.", "") for d in settings["enabled_precisions"])
        return f"weak (enabled_precisions={','.join(names)})"
    return "strong (precision from the graph)"


def segment_counts(child_names: Iterable[str]) -> dict[str, int]:
    """How the compiled graph was split: TensorRT engines vs. segments left to PyTorch."""
    names = list(child_names)
    return {"tensorrt": sum(n.startswith("_run_on_acc") for n in names),
            "pytorch": sum(n.startswith("_run_on_gpu") for n in names)}


def single_output(output):
    """The logits tensor, whether the program returns it bare or in a one-element sequence."""
    if isinstance(output, list | tuple):
        if len(output) != 1:
            raise ValueError(f"expected one output, got {len(output)}")
        return output[0]
    return output


def save_parameters(parameters: dict, example) -> dict:
    """Arguments for ``torch_tensorrt.save``: an ExportedProgram, saved by graph surgery on the
    compiled module (``retrace=False``) so its dynamic batch dimension is kept."""
    kwargs = {"output_format": "exported_program"}
    if "retrace" in parameters:
        kwargs["retrace"] = False
    name = "arg_inputs" if "arg_inputs" in parameters else "inputs"
    if name in parameters:
        kwargs[name] = [example]
    return kwargs


def load_program(path: Path):
    import torch_tensorrt

    return torch_tensorrt.load(str(path)).module()


def check_program(module, profile: BatchProfile, image_size: int, dtype) -> None:
    """Run the saved program at the profile's ends: a program that lost its dynamic batch (or
    its precision) on the way to disk fails here, before it is cached."""
    import torch

    for batch in sorted({profile.min, profile.max}):
        x = torch.randn(batch, INPUT_CHANNELS, image_size, image_size, device="cuda", dtype=dtype)
        with torch.no_grad():
            try:
                y = single_output(module(x))
            except Exception as exc:
                raise RuntimeError(f"the saved Torch-TensorRT program does not run at batch "
                                   f"{batch} ({profile.label}): {exc}") from exc
        torch.cuda.synchronize()
        if y.shape[0] != batch or y.dtype != dtype:
            raise RuntimeError(f"the saved Torch-TensorRT program returned {tuple(y.shape)} "
                               f"{y.dtype} for a batch of {batch} {dtype}")


def compile_program(model, case: Case, profile: BatchProfile, workspace_size: int,
                    timing_cache: Path, out_dir: Path):
    """Trace, compile, save, load back and check; returns the loaded module and build facts."""
    import torch
    import torch_tensorrt

    dtype = getattr(torch, TORCH_DTYPES[case.precision])
    shapes = profile.shapes(case.image_size)
    spec = torch_tensorrt.Input(min_shape=shapes["min"], opt_shape=shapes["opt"],
                                max_shape=shapes["max"], dtype=dtype)
    settings = compile_settings(case.precision, workspace_size, timing_cache,
                                compile_parameters(torch_tensorrt.dynamo.compile))
    start = time.perf_counter()
    model = copy.deepcopy(model).eval().to("cuda", dtype=dtype)
    exported = torch_tensorrt.dynamo.trace(model, [spec])
    compiled = torch_tensorrt.dynamo.compile(exported, [spec], **settings)
    build_s = time.perf_counter() - start
    segments = segment_counts(name for name, _ in compiled.named_children())
    example = torch.randn(*shapes["opt"], device="cuda", dtype=dtype)
    torch_tensorrt.save(compiled, str(out_dir / PROGRAM_FILE),
                        **save_parameters(compile_parameters(torch_tensorrt.save), example))
    del model, exported, compiled, example  # the build's GPU copies are not what is measured
    torch.cuda.empty_cache()
    module = load_program(out_dir / PROGRAM_FILE)
    check_program(module, profile, case.image_size, dtype)
    facts = {"engine_build_s": round(build_s, 2), "segments": segments,
             "typing": typing_label(settings), "workspace_size": workspace_size}
    (out_dir / BUILD_INFO_FILE).write_text(json.dumps(facts, indent=1))
    return module, facts


class TorchTensorRTSession(Session):
    """A loaded Torch-TensorRT program; inputs placed on the GPU at the requested dtype."""

    def __init__(self, module, case: Case, profile: BatchProfile, info: dict):
        import torch

        self.torch = torch
        self.module = module
        self.precision = case.precision
        self.dtype = getattr(torch, TORCH_DTYPES[case.precision])
        self.profile = profile
        self.first_run_s: dict[int, float] = {}
        self.info = info

    def place(self, batch: np.ndarray):
        x = self.torch.from_numpy(np.ascontiguousarray(batch)).to("cuda", dtype=self.dtype)
        self.torch.cuda.synchronize()
        return x

    def specialize(self, placed) -> None:
        """The first run at a batch size sets up TensorRT's execution context for that shape:
        setup, not latency. It also checks that the engine returns the requested dtype."""
        batch = placed.shape[0]
        if batch in self.first_run_s:
            return
        if not self.profile.contains(batch):
            raise ValueError(f"batch {batch} is outside the engine's profile "
                             f"({self.profile.label})")
        start = time.perf_counter()
        output = self.run(placed)
        self.first_run_s[batch] = time.perf_counter() - start
        if output.dtype != self.dtype:
            raise PrecisionError(f"asked for {self.precision} but the TensorRT engine returns "
                                 f"{output.dtype}")
        self.info["first_run_s"] = {str(k): round(v, 3) for k, v in self.first_run_s.items()}

    def launch(self, placed):
        with self.torch.no_grad():
            return single_output(self.module(placed))

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()

    def fetch(self, output) -> np.ndarray:
        self.info["output_dtype"] = str(output.dtype).replace("torch.", "")
        return output.float().cpu().numpy()

    def close(self) -> None:
        self.module = None


class TorchTensorRT(TensorRTBackend):
    def prepare(self, source, case: Case, cache) -> TorchTensorRTSession:
        import tensorrt
        import torch
        import torch_tensorrt

        options = options_of(case)
        profile, workspace = profile_of(options), workspace_of(options)
        versions = {"torch": torch.__version__, "torch_tensorrt": torch_tensorrt.__version__,
                    "tensorrt": tensorrt.__version__}
        key = engine_key(runtime=self.name, model=source.name, weights=source.weights_key,
                         image_size=case.image_size, precision=case.precision, profile=profile,
                         workspace_size=workspace, versions=versions, gpu=gpu_identity())
        timing = timing_cache_dir(cache.root) / "torch_tensorrt.bin"
        built = {}

        def build(out_dir: Path) -> None:
            built["module"], _ = compile_program(source.model(), case, profile, workspace,
                                                 timing, out_dir)

        entry, cached = cache.get_or_build(self.name, key, build)
        module = built.get("module") or load_program(entry / PROGRAM_FILE)
        facts = json.loads((entry / BUILD_INFO_FILE).read_text())
        info = {**versions, **facts, "program": str(entry / PROGRAM_FILE),
                "engine_cached": cached, "profile": profile.label, "gpu": key["gpu"]}
        return TorchTensorRTSession(module, case, profile, info)


BACKENDS = [TorchTensorRT(
    name="torch-tensorrt", devices=("cuda",), precisions=TRT_PRECISIONS,
    packages=("torch", "torch_tensorrt"),
    install_hint="pip install torch-tensorrt (from NVIDIA's index, matching your torch and CUDA)",
    option_defaults=dict(PROFILE_DEFAULTS),
    memory_allocator="torch",
)]
