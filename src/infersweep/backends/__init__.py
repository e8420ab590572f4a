"""Registry of backends. Adding a runtime = one module + one line in BUILTIN.

Extra backends (for example the misbehaving test backend) are loaded from the modules named in
$INFERSWEEP_BACKEND_MODULES (comma separated); each such module exposes ``BACKENDS``, a list.
The variable is inherited by worker processes, so parent and workers see the same registry.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache

from infersweep.backends.base import Backend

BUILTIN = (
    "infersweep.backends.torch_eager",
    "infersweep.backends.onnxruntime",
    "infersweep.backends.torch_compile",
    "infersweep.backends.openvino",
    "infersweep.backends.torch_tensorrt",
    "infersweep.backends.onnxruntime_trt",
)


@lru_cache(maxsize=1)
def registry() -> dict[str, Backend]:
    modules = list(BUILTIN)
    extra = os.environ.get("INFERSWEEP_BACKEND_MODULES", "")
    modules += [m.strip() for m in extra.split(",") if m.strip()]
    found: dict[str, Backend] = {}
    for module_name in modules:
        for backend in importlib.import_module(module_name).BACKENDS:
            found[backend.name] = backend
    return found


def get_backend(name: str) -> Backend:
    return registry()[name]
