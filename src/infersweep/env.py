"""Facts about the machine and software, saved with every run and shown at the top of report.md."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path

from infersweep import __version__

# The optional extras (pyproject.toml) and the module each one brings: what `env` reports as
# missing, with the exact line that installs it.
EXTRAS = {"openvino": "openvino", "gpu": "pynvml", "timm": "timm", "ray": "ray",
          "samples": "skimage"}


def install_line(extra: str) -> str:
    return f"pip install 'infersweep[{extra}]'"


def extras() -> dict[str, bool]:
    """Which extras are installed here."""
    import importlib.util

    found = {}
    for extra, module in EXTRAS.items():
        try:
            found[extra] = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found[extra] = False
    return found


PACKAGES = ("torch", "torchvision", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxscript",
            "openvino", "torch-tensorrt", "tensorrt", "numpy", "nvidia-ml-py")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Instruction-set extensions that decide whether INT8 and bf16 pay off on a CPU.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [f for f in CPU_FLAGS if f in present]
    except OSError:
        pass
    return []


def has_int8_dot_product(env: dict) -> bool:
    return any(f in env.get("cpu_flags", []) for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def gpus() -> list[dict]:
    """GPUs through NVML (nvidia-ml-py); empty when there is no driver or no package."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            found.append({"index": i, "name": pynvml.nvmlDeviceGetName(h), "driver": driver,
                          "memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30, 1)})
        return found
    finally:
        pynvml.nvmlShutdown()


def _gpu_device_nodes() -> bool:
    """Whether a GPU driver's device node exists (NVIDIA's, ROCm's, WSL's): without one no CUDA
    runtime can see a GPU, whatever torch was built for."""
    return any(Path("/dev").glob("nvidia[0-9]*")) or any(
        Path(node).exists() for node in ("/dev/kfd", "/dev/dxg"))


def gpu_count() -> int:
    """How many CUDA GPUs this machine shows: the one place that decides whether a GPU is
    present. NVML first (no CUDA context is created); torch where NVML is missing, unless no
    driver's device node exists: importing torch only to hear "none" was 3 s of every command's
    start on the 2-core box."""
    found = gpus()
    if found:
        return len(found)
    if not _gpu_device_nodes():
        return 0
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def collect() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "infersweep": __version__,
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores_usable": usable_cores(),
        "cores_logical": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "gpus": gpus(),
        "extras": extras(),
    }


def describe(env: dict) -> list[tuple[str, str]]:
    """(label, value) pairs for terminal and Markdown output."""
    flags = ", ".join(env.get("cpu_flags", [])) or "none of " + ", ".join(CPU_FLAGS)
    pairs = [("infersweep", env.get("infersweep", "?")), ("Host", env["host"]), ("CPU", f"{env['cpu']} ({env['cores_usable']} usable cores; "
                                            f"{flags})"),
             ("Memory", f"{env['memory_gib']} GiB"), ("OS", env["os"]), ("Python", env["python"])]
    pairs += [(name, version) for name, version in env["packages"].items()]
    if "extras" in env:  # runs stored before extras existed have no such entry
        pairs.append(("Extras", ", ".join(
            f"{extra}: installed" if present else f"{extra}: missing ({install_line(extra)})"
            for extra, present in env["extras"].items())))
    if env["gpus"]:
        for g in env["gpus"]:
            pairs.append((f"GPU {g['index']}", f"{g['name']}, {g['memory_gib']} GiB, "
                                               f"driver {g['driver']}"))
    else:
        pairs.append(("GPU", "none visible"))
    return pairs
