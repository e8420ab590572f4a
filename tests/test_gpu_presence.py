"""Whether a GPU is present is decided without importing torch where no driver exists
(env.gpu_count): importing torch only to hear "none" was 3 s of every command's start on the
2-core box, the parent's largest cost before its first worker."""

import subprocess
import sys

import pytest

from infersweep import env

SCRIPT = """
import sys
from infersweep.env import gpu_count
print(gpu_count(), "torch" in sys.modules)
"""


def test_without_a_driver_no_gpu_is_counted_and_torch_is_not_imported():
    if env.gpus() or env._gpu_device_nodes():
        pytest.skip("this machine has a GPU driver: the question is answered by NVML or torch")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "False"]


def test_a_driver_node_without_nvml_asks_torch(monkeypatch):
    """A device node but no NVML answer (the package missing, another vendor): torch decides."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(env, "gpus", lambda: [])
    monkeypatch.setattr(env, "_gpu_device_nodes", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert env.gpu_count() == 3
    monkeypatch.setattr(env, "_gpu_device_nodes", lambda: False)
    assert env.gpu_count() == 0
