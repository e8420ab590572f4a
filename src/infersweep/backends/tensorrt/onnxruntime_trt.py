"""ONNX Runtime with the TensorRT execution provider, on CUDA, from the cached ONNX export.

**Providers.** ``[TensorRT (options), CUDA (nodes TensorRT cannot take), CPU]``. ONNX Runtime falls
back silently when the TensorRT provider fails to load, so the session checks that TensorRT is
really first in ``session.get_providers()`` and fails the case otherwise; after the first run it
also checks that TensorRT wrote an engine (a graph that ran entirely on CUDA writes none).

**Profile.** The same options as torch-tensorrt (``min_batch``, ``opt_batch``, ``max_batch``,
``workspace_size``; see ``backends/torch_tensorrt.py``), passed as ``trt_profile_min_shapes`` /
``opt`` / ``max`` (``input:1x3x224x224``): one engine per image size serves the profile's batches.

**Precision.** TensorRT < 11 (weakly typed): the fp32 graph with ``trt_fp16_enable``, read back
from the session to make sure it was applied. TensorRT >= 11 has no such builder flag (every
network is strongly typed and takes its precision from the graph), so fp16 runs the fp16 export,
verified to hold float16 weights and input like the CUDA provider's fp16 rows.

**Caches.** Engines are stored in infersweep's cache, kind ``trt``: the entry directory is the
provider's ``trt_engine_cache_path``, keyed by the ONNX export (model, weights, size, opset),
precision, profile, workspace, the ONNX Runtime / TensorRT versions and the GPU. ONNX Runtime
names its engine files from the model file's name and graph, not from its weights, so a directory
per content key is what keeps two checkpoints of one architecture from sharing an engine. The
engine is built into a fresh directory that appears (renamed) only once it is complete, so an
engine half-written by a killed worker is never loaded. Layer timing caches
(``trt_timing_cache_path``) are shared in ``<cache>/trt/timing``. Session creation and the engine
build happen in ``prepare``; the first run at each batch size in ``specialize``: setup, not
latency.

**IO binding.** Exactly as the CUDA provider's session (``OrtCudaSession``, subclassed): input and
output live in device buffers bound once, so no host copy is timed.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from infersweep.backends.base import PrecisionError, options_of
from infersweep.backends.onnxruntime import (
    DEFAULT_OPSET,
    NUMPY_DTYPES,
    OrtCudaSession,
    _session_options,
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
from infersweep.case import Case
from infersweep.artefacts.export import (ONNX_INPUT, onnx_export, onnx_input_names,
                                         onnx_precision_report)

TRT_PROVIDER = "TensorrtExecutionProvider"
INSTALL_HINT = "pip install onnxruntime-gpu tensorrt"
NO_PROVIDER = (f"this onnxruntime has no {TRT_PROVIDER}; install with: {INSTALL_HINT} "
               "(onnxruntime-gpu in place of onnxruntime)")
NO_LIBRARY = ("TensorRT's library (libnvinfer) cannot be loaded; install with: "
              f"{INSTALL_HINT}, or put TensorRT's lib folder on LD_LIBRARY_PATH")
LIBNVINFER_NAMES = ("libnvinfer.so.11", "libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so")
FIRST_STRONGLY_TYPED_MAJOR = 11  # TensorRT 11 removed weak typing and the fp16 builder flag


@dataclass(frozen=True)
class TensorRTLibrary:
    path: str
    version: str
    major: int


def decode_trt_version(code: int) -> tuple[int, int, int]:
    """``getInferLibVersion()``: MAJOR*10000 + MINOR*100 + PATCH from TensorRT 10 on,
    MAJOR*1000 + MINOR*100 + PATCH before."""
    major, rest = divmod(code, 10000) if code >= 100000 else divmod(code, 1000)
    minor, patch = divmod(rest, 100)
    return major, minor, patch


_LOADED: list = []  # handles kept for the process's life: ONNX Runtime resolves TensorRT by them


def _load_library(name: str | Path) -> TensorRTLibrary | None:
    try:
        lib = ctypes.CDLL(str(name), mode=ctypes.RTLD_GLOBAL)
        get_version = lib.getInferLibVersion
    except (OSError, AttributeError):
        return None
    get_version.restype, get_version.argtypes = ctypes.c_int32, []
    major, minor, patch = decode_trt_version(get_version())
    _LOADED.append(lib)
    return TensorRTLibrary(str(name), f"{major}.{minor}.{patch}", major)


def _package_folder(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def nvinfer_soname_in(library_bytes: bytes) -> str | None:
    """The ``libnvinfer.so.N`` a shared library was linked against (its dynamic strings)."""
    match = re.search(rb"libnvinfer\.so\.\d+", library_bytes)
    return match.group().decode() if match else None


def tensorrt_names() -> tuple[str, ...]:
    """libnvinfer names to try, the one ONNX Runtime's TensorRT provider links against first, so
    the version read (and the precision plan chosen from it) is the one the provider runs."""
    import onnxruntime

    provider = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_tensorrt.so"
    try:
        needed = nvinfer_soname_in(provider.read_bytes())
    except OSError:
        needed = None
    return tuple(dict.fromkeys(([needed] if needed else []) + list(LIBNVINFER_NAMES)))


@lru_cache(maxsize=None)
def find_tensorrt(names: tuple[str, ...] = LIBNVINFER_NAMES,
                  wheel_folders: tuple[str, ...] = ("tensorrt_libs",),
                  python_modules: tuple[str, ...] = ("tensorrt",)) -> TensorRTLibrary | None:
    """TensorRT's runtime library, loaded into this process (so that ONNX Runtime's TensorRT
    provider finds it), or None. Looked for by name on the loader path; then in the pip wheel's
    folder, with the plugin and ONNX parser libraries beside it; then by importing TensorRT's
    Python package, which loads its own libraries."""
    for name in names:
        if found := _load_library(name):
            return found
    for package in wheel_folders:
        folder = _package_folder(package)
        if folder is None:
            continue
        for path in [folder / n for n in names] + sorted(folder.glob("libnvinfer.so.*")):
            if path.is_file() and (found := _load_library(path)):
                for other in ("libnvinfer_plugin.so.*", "libnvonnxparser.so.*"):
                    for extra in sorted(folder.glob(other)):
                        try:
                            _LOADED.append(ctypes.CDLL(str(extra), mode=ctypes.RTLD_GLOBAL))
                        except OSError:
                            pass  # a provider that still cannot load is caught after creation
                return found
    for module in python_modules:
        if importlib.util.find_spec(module) is None:
            continue
        try:
            importlib.import_module(module)
        except Exception:
            continue
        for name in names:
            if found := _load_library(name):
                return found
    return None


def availability_reason(providers: list[str], library: TensorRTLibrary | None) -> str | None:
    if TRT_PROVIDER not in providers:
        return NO_PROVIDER
    if library is None:
        return NO_LIBRARY
    return None


def onnx_plan(precision: str, trt_major: int) -> tuple[str, bool | None]:
    """(precision of the ONNX graph to load, trt_fp16_enable) for a requested precision.
    None: TensorRT has no fp16 builder flag, the option is left out."""
    weakly_typed = trt_major < FIRST_STRONGLY_TYPED_MAJOR
    if precision == "fp32":
        return "fp32", False if weakly_typed else None
    if precision == "fp16":
        return ("fp32", True) if weakly_typed else ("fp16", None)
    raise ValueError(f"no TensorRT plan for precision {precision}")


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def profile_shape_options(profile: BatchProfile, image_size: int,
                          input_name: str = ONNX_INPUT) -> dict[str, str]:
    shapes = profile.shapes(image_size)
    return {f"trt_profile_{end}_shapes": f"{input_name}:{shape_text(shapes[end])}"
            for end in ("min", "opt", "max")}


def tensorrt_provider_options(*, profile: BatchProfile, image_size: int, engine_dir: Path,
                              timing_dir: Path, fp16_enable: bool | None, workspace_size: int,
                              input_name: str = ONNX_INPUT,
                              device_id: int = 0) -> dict:
    options = {
        "device_id": device_id,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(engine_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(timing_dir),
        **profile_shape_options(profile, image_size, input_name),
    }
    if fp16_enable is not None:
        options["trt_fp16_enable"] = fp16_enable
    if workspace_size > 0:  # 0: leave ONNX Runtime's and TensorRT's own default
        options["trt_max_workspace_size"] = workspace_size
    return options


def cuda_provider_options(device_id: int = 0) -> dict:
    """For the nodes TensorRT cannot take: as the CUDA provider's own rows run them."""
    return {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE"}


def provider_list(trt_options: dict, cuda_options: dict) -> list:
    return [(TRT_PROVIDER, trt_options), ("CUDAExecutionProvider", cuda_options),
            "CPUExecutionProvider"]


def check_tensorrt_first(providers: list[str]) -> None:
    if not providers or providers[0] != TRT_PROVIDER:
        raise RuntimeError(
            f"{TRT_PROVIDER} did not load (providers: {providers}): ONNX Runtime fell back "
            "silently, and a TensorRT row must never be CUDA or CPU work; is onnxruntime-gpu "
            "installed with TensorRT support, and TensorRT's libraries of the version it was "
            "built for loadable?")


def option_enabled(value) -> bool:
    return str(value).strip().lower() in ("1", "true")


def check_fp16_flag(applied: dict, expected: bool | None) -> None:
    """The fp16 flag the session really runs with, read back from ONNX Runtime."""
    if expected is None:
        return
    actual = option_enabled(applied.get("trt_fp16_enable", "0"))
    if actual != expected:
        raise PrecisionError(f"asked TensorRT for trt_fp16_enable={expected} but the session "
                             f"runs with trt_fp16_enable={applied.get('trt_fp16_enable')}")


def engine_files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).glob("*.engine"))


class OrtTensorrtSession(OrtCudaSession):
    """The CUDA session's IO binding, launch and fetch, on a TensorRT-first provider list."""

    def __init__(self, path, info: dict, io_precision: str, trt_options: dict,
                 cuda_options: dict, fp16_enable: bool | None):
        import onnxruntime as ort

        self.ort = ort
        self.dtype = NUMPY_DTYPES[io_precision]  # the graph's input and output type
        self.session = ort.InferenceSession(str(path), _session_options(),
                                            providers=provider_list(trt_options, cuda_options))
        providers = self.session.get_providers()
        check_tensorrt_first(providers)
        applied = self.session.get_provider_options().get(TRT_PROVIDER, {})
        check_fp16_flag(applied, fp16_enable)
        # As in OrtCudaSession: launch() skips the end-of-run synchronisation so back-to-back
        # launches keep the queue full; run() keeps it.
        self.async_options = ort.RunOptions()
        self.async_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self.first_run_s: dict[int, float] = {}
        self.info = {**info, "onnxruntime": ort.__version__, "providers": providers,
                     "provider_options": applied or trt_options, "io_binding": True}

    def build_engine(self, batch: int, image_size: int) -> None:
        """One run at the profile's opt batch: TensorRT builds its engine (if creating the
        session did not) and writes it to the engine cache before prepare returns."""
        host_batch = np.zeros((batch, INPUT_CHANNELS, image_size, image_size), dtype=self.dtype)
        self.run(self.place(host_batch))

    def specialize(self, placed) -> None:
        _, x, _ = placed
        batch = x.shape()[0]
        if batch in self.first_run_s:
            return
        start = time.perf_counter()
        self.run(placed)
        self.first_run_s[batch] = time.perf_counter() - start
        self.info["first_run_s"] = {str(k): round(v, 3) for k, v in self.first_run_s.items()}


class OnnxRuntimeTensorRT(TensorRTBackend):
    def available(self, device: str) -> str | None:
        missing = super().available(device)
        if missing:
            return missing
        import onnxruntime as ort

        providers = ort.get_available_providers()
        # Loading TensorRT costs time and only matters where the provider exists.
        library = find_tensorrt(tensorrt_names()) if TRT_PROVIDER in providers else None
        return availability_reason(providers, library)

    def prepare(self, source, case: Case, cache) -> OrtTensorrtSession:
        import onnxruntime as ort

        library = find_tensorrt(tensorrt_names())
        if library is None:
            raise RuntimeError(NO_LIBRARY)
        options = options_of(case)
        profile, workspace = profile_of(options), workspace_of(options)
        opset = source.opset or DEFAULT_OPSET
        graph_precision, fp16_enable = onnx_plan(case.precision, library.major)
        path, _ = onnx_export(source, case.image_size, opset, cache, graph_precision)
        report = onnx_precision_report(path)
        if graph_precision == "fp16" and not report["is_fp16"]:
            raise PrecisionError(f"fp16 requested but {path} is not float16: {report}")
        key = engine_key(runtime=self.name, model=source.name, weights=source.weights_key,
                         image_size=case.image_size, precision=case.precision, profile=profile,
                         workspace_size=workspace,
                         versions={"onnxruntime": ort.__version__, "tensorrt": library.version},
                         gpu=gpu_identity(), onnx=path.parent.name, opset=opset,
                         graph_precision=graph_precision, trt_fp16_enable=fp16_enable)
        timing = timing_cache_dir(cache.root)
        info = {"onnx_file": str(path), "opset": opset, "onnx_precision": report,
                "tensorrt": library.version, "graph_precision": graph_precision,
                "trt_fp16_enable": fp16_enable, "profile": profile.label, "gpu": key["gpu"]}

        def open_session(engine_dir: Path) -> OrtTensorrtSession:
            trt_options = tensorrt_provider_options(
                profile=profile, image_size=case.image_size, engine_dir=engine_dir,
                timing_dir=timing, fp16_enable=fp16_enable, workspace_size=workspace,
                input_name=onnx_input_names(path)[0])
            return OrtTensorrtSession(path, info, graph_precision, trt_options,
                                      cuda_provider_options(), fp16_enable)

        built = {}

        def build(out_dir: Path) -> None:
            start = time.perf_counter()  # TensorRT may build at session creation or first run
            session = open_session(out_dir)
            session.build_engine(profile.opt, case.image_size)
            session.info["engine_build_s"] = round(time.perf_counter() - start, 2)
            if not engine_files(out_dir):
                raise RuntimeError(f"TensorRT wrote no engine to {out_dir}: the graph ran on "
                                   "the CUDA or CPU provider, not in TensorRT")
            built["session"] = session

        entry, cached = cache.get_or_build("trt", key, build)
        session = built.get("session") or open_session(entry)
        session.info.update({"engine_cache": str(entry), "engine_cached": cached,
                             "engine_files": engine_files(entry)})
        return session


BACKENDS = [OnnxRuntimeTensorRT(
    name="onnxruntime-trt", devices=("cuda",), precisions=TRT_PRECISIONS, runs_onnx_files=True,
    packages=("onnxruntime", "onnx", "onnxscript"),
    install_hint=INSTALL_HINT + " onnx onnxscript",
    option_defaults=dict(PROFILE_DEFAULTS),
)]
