"""Compiled bytecode for infersweep's processes where Python keeps none of its own.

Where ``PYTHONDONTWRITEBYTECODE`` is set (a Docker image's usual line; the lent H200's image sets
it) or site-packages is read-only, and the installed packages ship no ``__pycache__``, every
Python process compiles each module it imports from source, every time: ``import torchvision``
took 9.5-11.7 s on the H200 that way against ~2 s on this project's 2-core box, where
bytecode is cached. A sweep starts a worker per backend, a builder, Inductor's compile workers
and imports torch in its parent: each paid it again. These processes keep their bytecode under
infersweep's cache instead (``PYTHONPYCACHEPREFIX``, Python's own mechanism: nothing is written
beside the sources, so the image stays as its owner wanted it). A prefix the user chose is left
alone; where Python writes its own bytecode, or the packages were installed with theirs (pip
compiles at install), nothing changes: a prefix there would compile everything once more.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

# The user's own choice, before infersweep changed anything in this process.
USER_PREFIX = os.environ.get("PYTHONPYCACHEPREFIX") or sys.pycache_prefix
FOLDER = "pycache"
# The packages whose imports a worker pays for; the first one installed tells how they came.
HEAVY_PACKAGES = ("torch", "numpy")
# INFERSWEEP_PYCACHE: auto (the rule above), on (always, e.g. where the rule guesses wrong), off.
SWITCH = "INFERSWEEP_PYCACHE"
CHOICES = ("auto", "on", "off")


class PycacheSettingError(ValueError):
    """INFERSWEEP_PYCACHE holds something else than auto, on or off (the CLI exits with 2)."""


def python_writes_no_bytecode() -> bool:
    """Whether this interpreter was told to write no bytecode (``PYTHONDONTWRITEBYTECODE``,
    ``-B``) or cannot write it beside the installed packages (read-only site-packages)."""
    if sys.flags.dont_write_bytecode:  # the start-up flag: unchanged by use_in_this_process
        return True
    return not os.access(sysconfig.get_paths()["purelib"], os.W_OK)


@functools.cache
def installed_without_bytecode() -> bool:
    """Whether the heavy packages were installed without bytecode beside their sources (an
    image built with PYTHONDONTWRITEBYTECODE). Looked for where Python itself would, without
    the prefix: decided once, before this process sets one."""
    for name in HEAVY_PACKAGES:
        spec = importlib.util.find_spec(name)  # finds, does not import
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        folder, file = os.path.split(spec.origin)
        compiled = f"{file[:-3]}.{sys.implementation.cache_tag}.pyc"
        return not os.path.exists(os.path.join(folder, "__pycache__", compiled))
    return False


def switch() -> str:
    value = os.environ.get(SWITCH, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise PycacheSettingError(f"{SWITCH}={os.environ[SWITCH]!r}: expected one of "
                                  f"{', '.join(CHOICES)}")
    return value


def bytecode_prefix(cache_root: Path) -> Path | None:
    """Where infersweep's processes keep their bytecode, or None where Python already does (or
    the user chose: a prefix of their own, INFERSWEEP_PYCACHE=off)."""
    wanted = switch()
    if USER_PREFIX or wanted == "off":
        return None
    if wanted == "auto" and not (python_writes_no_bytecode() and installed_without_bytecode()):
        return None
    return Path(cache_root) / FOLDER


def child_env(env: dict[str, str], cache_root: Path) -> dict[str, str]:
    """``env`` for a child process of a sweep, with the bytecode prefix where one is needed.
    PYTHONDONTWRITEBYTECODE goes: with it Python would read the prefix but never fill it."""
    prefix = bytecode_prefix(cache_root)
    if prefix is None:
        return env
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    return env


def use_in_this_process(cache_root: Path) -> Path | None:
    """The same for the running process (the CLI's parent): the modules it imports from now on
    (torch for the plan's dry runs, matplotlib for the plots) are read from, and written to,
    the prefix, and so are those of every process it starts, which inherit its environment:
    workers, the builder, Inductor's compile workers, the plot pool (spawned by
    multiprocessing: each imported matplotlib from source on the H200). Returns the prefix, or
    None where nothing changed."""
    prefix = bytecode_prefix(cache_root)
    if prefix is not None:
        sys.pycache_prefix = str(prefix)
        sys.dont_write_bytecode = False
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ.update(child_env({}, cache_root))
    return prefix
