"""Registry of backends. Adding a runtime = one module + one line in BUILTIN.

Backends from outside the package (for example the misbehaving test backends) come from plugin
modules that list ``BACKENDS`` (see plugins.py); workers inherit the variable, so the parent and
its workers see the same registry.
"""

from __future__ import annotations

from functools import lru_cache

from infersweep import plugins
from infersweep.backends.base import Backend

BUILTIN = (
    "infersweep.backends.torch_eager",
    "infersweep.backends.onnxruntime",
    "infersweep.backends.torch_compile",
    "infersweep.backends.openvino",
    "infersweep.backends.tensorrt.torch_tensorrt",
    "infersweep.backends.tensorrt.onnxruntime_trt",
)


@lru_cache(maxsize=1)
def registry() -> dict[str, Backend]:
    return {backend.name: backend for backend in plugins.collect(BUILTIN, "BACKENDS")}


def get_backend(name: str) -> Backend:
    return registry()[name]
