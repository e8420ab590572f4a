"""Processes that need no torch do not import it: an ONNX Runtime worker whose export, fp32
reference and model figures are cached reads torch's version for the cache keys from the
installed file (artefacts/cache.py, torch_version) instead of importing torch (3 s on the 2-core
box, 6-8 s on the H200)."""

import os
import subprocess
import sys

from conftest import FAST, cli

VERSION = """
import sys
from infersweep.artefacts.cache import torch_version
found = torch_version()
print("torch" in sys.modules)
import torch
print(found == torch.__version__)
"""


def test_torch_version_is_read_without_importing_torch():
    proc = subprocess.run([sys.executable, "-c", VERSION], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


def test_a_warm_onnxruntime_worker_does_not_import_torch(tmp_path):
    env = {**os.environ, "INFERSWEEP_CACHE": str(tmp_path / "cache")}
    args = ["run", "--backends", "onnxruntime", "--devices", "cpu", "--sizes", "32",
            "--batches", "1", *FAST]
    imports = {}
    for run in ("cold", "warm"):
        done = cli(*args, "--out", tmp_path / run, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
        assert done.returncode == 0, done.stderr
        logs = "".join(p.read_text() for p in (tmp_path / run / "logs").glob("worker-*.log"))
        imports[run] = [line for line in logs.splitlines() if line.endswith("| torch")]
    assert imports["cold"] and not imports["warm"]  # the cold one exported the model
