"""Extension modules: a backend, probe or report format that lives outside the package.

``$INFERSWEEP_PLUGINS`` names modules (comma separated); each may define ``BACKENDS``, ``PROBES``
and ``REPORT_FORMATS``, lists that the registries add to the built-in ones. The variable is
inherited by worker processes, so the parent and its workers always see the same registries.
``$INFERSWEEP_BACKEND_MODULES`` is its older name and still read.
"""

from __future__ import annotations

import importlib
import os

ENV_VARS = ("INFERSWEEP_PLUGINS", "INFERSWEEP_BACKEND_MODULES")


def plugin_modules() -> list[str]:
    names: list[str] = []
    for var in ENV_VARS:
        names += [m.strip() for m in os.environ.get(var, "").split(",") if m.strip()]
    return list(dict.fromkeys(names))


def collect(builtin: tuple[str, ...], attribute: str) -> list:
    """Everything the built-in modules and the plugin modules list under ``attribute``."""
    found = []
    for module_name in list(builtin) + plugin_modules():
        found += list(getattr(importlib.import_module(module_name), attribute, ()))
    return found
