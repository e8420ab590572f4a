"""Where Python keeps no bytecode (PYTHONDONTWRITEBYTECODE, a Docker image's usual setting, and
packages installed without theirs), infersweep's processes keep theirs under infersweep's
cache: real interpreters, real imports."""

import json
import os
import subprocess
import sys
import types

import pytest
from conftest import FAST, cli

from infersweep.run import bytecode_cache
from infersweep.run.bytecode_cache import PycacheSettingError, bytecode_prefix, child_env


def _pycs(folder):
    return sorted(p.name for p in folder.rglob("*.pyc"))


def _import_in_child(env, src, name="deploymod"):
    done = subprocess.run([sys.executable, "-c", f"import {name}"],
                          env={**env, "PYTHONPATH": str(src)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def _source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "deploymod.py").write_text("VALUE = 1\n")
    return src


def _without_user_prefix(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPYCACHEPREFIX", "INFERSWEEP_PYCACHE")}
    return {**env, **extra}


@pytest.fixture
def auto(monkeypatch):
    """The rule's own inputs, set per test: no user prefix, INFERSWEEP_PYCACHE unset."""
    monkeypatch.setattr(bytecode_cache, "USER_PREFIX", None)
    monkeypatch.delenv("INFERSWEEP_PYCACHE", raising=False)
    return monkeypatch


def test_a_child_keeps_bytecode_in_the_cache_where_python_writes_none(tmp_path, auto):
    src, cache = _source(tmp_path), tmp_path / "cache"
    base = _without_user_prefix(PYTHONDONTWRITEBYTECODE="1")
    _import_in_child(base, src)  # as the user's environment has it: compiled, never kept
    assert _pycs(tmp_path) == []
    auto.setattr(bytecode_cache, "python_writes_no_bytecode", lambda: True)
    auto.setattr(bytecode_cache, "installed_without_bytecode", lambda: True)
    env = child_env(base, cache)
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["PYTHONPYCACHEPREFIX"] == str(
        cache / "pycache")
    _import_in_child(env, src)
    assert [p for p in _pycs(cache / "pycache") if p.startswith("deploymod.")]
    assert not (src / "__pycache__").exists()  # nothing written beside the sources


def test_nothing_changes_where_python_has_bytecode_or_the_user_chose(tmp_path, auto):
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}
    auto.setattr(bytecode_cache, "python_writes_no_bytecode", lambda: True)
    auto.setattr(bytecode_cache, "installed_without_bytecode", lambda: False)
    assert child_env(base, tmp_path) == base  # packages installed with their bytecode
    auto.setattr(bytecode_cache, "installed_without_bytecode", lambda: True)
    auto.setattr(bytecode_cache, "python_writes_no_bytecode", lambda: False)
    assert child_env(base, tmp_path) == base  # Python writes its own
    auto.setattr(bytecode_cache, "python_writes_no_bytecode", lambda: True)
    assert bytecode_prefix(tmp_path) == tmp_path / "pycache"
    auto.setenv("INFERSWEEP_PYCACHE", "off")
    assert child_env(base, tmp_path) == base
    auto.setenv("INFERSWEEP_PYCACHE", "auto")
    auto.setattr(bytecode_cache, "USER_PREFIX", "/users/own/prefix")
    assert child_env(base, tmp_path) == base


def test_on_forces_the_prefix_and_a_bad_value_is_refused(tmp_path, auto):
    auto.setattr(bytecode_cache, "python_writes_no_bytecode", lambda: False)
    auto.setenv("INFERSWEEP_PYCACHE", "on")
    assert bytecode_prefix(tmp_path) == tmp_path / "pycache"
    auto.setenv("INFERSWEEP_PYCACHE", "sometimes")
    with pytest.raises(PycacheSettingError, match="'sometimes'"):
        bytecode_prefix(tmp_path)
    done = cli("plan", "--backends", "fault-ok", "--sizes", "8", "--batches", "1",
               env={**os.environ, "INFERSWEEP_PYCACHE": "sometimes",
                    "INFERSWEEP_CACHE": str(tmp_path / "c")})
    assert done.returncode == 2 and "INFERSWEEP_PYCACHE='sometimes'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "c").exists()


def test_packages_installed_without_bytecode_are_told_from_those_with(tmp_path, auto):
    pkg = tmp_path / "site" / "heavypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    auto.syspath_prepend(str(tmp_path / "site"))
    auto.setattr(bytecode_cache, "HEAVY_PACKAGES", ("not_installed_anywhere", "heavypkg"))
    bytecode_cache.installed_without_bytecode.cache_clear()
    try:
        assert bytecode_cache.installed_without_bytecode()
        compiled = pkg / "__pycache__" / f"__init__.{sys.implementation.cache_tag}.pyc"
        compiled.parent.mkdir()
        compiled.write_bytes(b"")
        bytecode_cache.installed_without_bytecode.cache_clear()
        assert not bytecode_cache.installed_without_bytecode()
    finally:
        bytecode_cache.installed_without_bytecode.cache_clear()


def test_the_flag_or_a_read_only_site_packages_means_python_writes_none(monkeypatch):
    flag = subprocess.run(
        [sys.executable, "-B", "-c", "from infersweep.run.bytecode_cache import "
         "python_writes_no_bytecode as f; print(f())"], capture_output=True, text=True,
        timeout=60, env=_without_user_prefix())
    assert flag.stdout.strip() == "True", (flag.stdout, flag.stderr)
    # every flag as it is but this one (sysconfig may read others on its first call)
    flags = {name: getattr(sys.flags, name) for name in dir(sys.flags)
             if not name.startswith("_") and not callable(getattr(sys.flags, name))}
    monkeypatch.setattr(bytecode_cache.sys, "flags",
                        types.SimpleNamespace(**{**flags, "dont_write_bytecode": 0}))
    monkeypatch.setattr(bytecode_cache.os, "access", lambda path, mode: False)
    assert bytecode_cache.python_writes_no_bytecode()
    monkeypatch.setattr(bytecode_cache.os, "access", lambda path, mode: True)
    assert not bytecode_cache.python_writes_no_bytecode()


def test_a_sweep_keeps_its_processes_bytecode_in_the_cache(tmp_path):
    """The parent (the CLI) and its worker: their imports land in the cache's pycache.
    INFERSWEEP_PYCACHE=on stands in for an image installed without bytecode."""
    cache, out = tmp_path / "cache", tmp_path / "run"
    env = _without_user_prefix(PYTHONDONTWRITEBYTECODE="1", INFERSWEEP_CACHE=str(cache),
                               INFERSWEEP_PYCACHE="on")
    done = cli("run", "--backends", "fault-ok", "--devices", "cpu", "--sizes", "8", "--batches",
               "1", "--out", out, *FAST, env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [r["status"] for r in rows] == ["ok"]
    assert rows[0]["info"]["pycache_prefix"] == str(cache / "pycache")  # the worker's
    kept = _pycs(cache / "pycache")
    assert any(p.startswith("fault_backend.") for p in kept), kept
    assert any(p.startswith("store.") for p in kept), kept  # imported by the parent's run


def test_the_parent_hands_its_prefix_to_every_process_it_starts(tmp_path):
    """The CLI's parent: the plot pool's processes (multiprocessing, spawned with -B) and any
    other child read the bytecode the parent wrote."""
    env = _without_user_prefix(PYTHONDONTWRITEBYTECODE="1", INFERSWEEP_PYCACHE="on")
    code = ("import subprocess, sys; from pathlib import Path; "
            "from infersweep.run.bytecode_cache import use_in_this_process; "
            f"print(use_in_this_process(Path({str(tmp_path)!r}))); "
            "print(subprocess.run([sys.executable, '-B', '-c', 'import sys; "
            "print(sys.pycache_prefix)'], capture_output=True, text=True).stdout.strip())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "pycache")] * 2
