"""Between groups a worker lets go of the group (run/worker.py, release_memory): torch.compile's
compiled code is reset only in a worker that compiled something: torch imports torch._dynamo in
every torch worker, and a first reset there imports Inductor (2.4-2.9 s per worker on the H200)."""

import ast
import subprocess
import sys

SCRIPT = """
import torch, torch._dynamo
from infersweep.run.worker import release_memory
steps = [sorted(release_memory())]
compiled = torch.compile(lambda x: x + 1, backend="eager")
compiled(torch.ones(2))
steps.append(sorted(release_memory()))
compiled(torch.ones(2))  # after a reset the frame is compiled again
from torch._dynamo.utils import counters
print(steps, counters["frames"]["total"])
"""


def test_only_a_worker_that_compiled_resets_torch_compile():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    steps, frames = proc.stdout.strip().rsplit(" ", 1)
    assert frames == "2"
    # Where a GPU is seen, torch.compile initialises CUDA and a release empties its cache too
    # (the H200): only the reset is this test's business.
    released = [[step for step in group if step != "empty_cache"]
                for group in ast.literal_eval(steps)]
    assert released == [["gc", "malloc_trim"], ["dynamo_reset", "gc", "malloc_trim"]]


PRELOAD = """
import sys
from infersweep.run.worker import preload
preload("onnxruntime", sys.argv[1])
print("onnxruntime" in sys.modules, "torch" in sys.modules)
"""


def test_a_cuda_worker_imports_torch_before_its_first_group_for_the_memory_probe():
    """An ONNX Runtime worker on CUDA needs torch for the GPU memory probe where NVML sees a GPU:
    imported while it waits (started ahead), not in its first group. Without a GPU (this CPU
    box: the test backends' "cuda" cases) and on the CPU it does not need it."""
    from infersweep.env import gpus

    found = {}
    for device in ("cuda", "cpu"):
        proc = subprocess.run([sys.executable, "-c", PRELOAD, device], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        found[device] = proc.stdout.split()
    assert found == {"cuda": ["True", str(bool(gpus()))], "cpu": ["True", "False"]}


PRELOAD_COMPILE = """
import sys
import torch._inductor.codecache as codecache
keyed, present = [], [n for n in ("torch_key", "triton_key") if hasattr(codecache, n)]
for name in present:  # this torch's (2.11 on the H200 may lack one)
    def counted(original=getattr(codecache, name), name=name):
        keyed.append(name)
        return original()
    setattr(codecache, name, counted)
from infersweep.run.worker import preload
preload("torch-compile", "cpu")
import torch
loaded = "torch._inductor.compile_fx" in sys.modules
print(loaded, torch.cuda.is_initialized(), keyed == present and bool(present))
"""


def test_a_torch_compile_worker_imports_inductor_before_its_first_group():
    """torch.compile's first call in a process imports Inductor (2.4-2.9 s of the first group's
    setup on the H200): a torch-compile worker does it in preload, while it waits for its turn
    (started ahead), without compiling anything or touching a device; and computes the keys of
    Inductor's caches (0.5 s of the first shape's setup on the 2-core box)."""
    proc = subprocess.run([sys.executable, "-c", PRELOAD_COMPILE], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-3:] == ["True", "False", "True"]
