"""torch.compile's caches live in infersweep's cache, whatever the parent imported.

Importing torch._dynamo (torchvision does) sets TORCHINDUCTOR_CACHE_DIR in os.environ (torch's
default, under /tmp). Every parent that imported torchvision (to check a model's name, for a dry
run) handed that to its workers, so
Inductor's FX-graph cache sat under /tmp, not in infersweep's cache: `cache clear` missed it, a
"cold" run on a machine that had compiled before was warm, and once a warm parent stopped
importing torch its workers looked in infersweep's cache and found nothing (the H200's warm grid
compiled all 24 shapes again: setup 150.9 s instead of ~40 s). A directory the user set before
infersweep started is kept."""

import json
import os
import subprocess
import sys

ASK = """
import json
from infersweep.run.local import WorkerSlot
from infersweep.run.protocol import WorkerJob
import torchvision  # through torch._dynamo, sets TORCHINDUCTOR_CACHE_DIR in os.environ
assert "TORCHINDUCTOR_CACHE_DIR" in __import__("os").environ
env = WorkerSlot(WorkerJob())._worker_env()
print(json.dumps({k: env.get(k) for k in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}))
"""


def _worker_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    env.update(INFERSWEEP_CACHE=str(tmp_path / "cache"), **extra)
    proc = subprocess.run([sys.executable, "-c", ASK], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_worker_compiles_into_infersweeps_cache_after_the_parent_imported_torchvision(tmp_path):
    assert _worker_env(tmp_path) == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache/inductor"),
                                     "TRITON_CACHE_DIR": str(tmp_path / "cache/triton")}


def test_directories_the_user_set_before_infersweep_started_are_kept(tmp_path):
    mine = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "my-inductor"),
            "TRITON_CACHE_DIR": str(tmp_path / "my-triton")}
    assert _worker_env(tmp_path, **mine) == mine


FACTORY = """\
import torch.nn as nn

def tiny(image_size):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))
"""


def test_a_second_run_of_torch_compile_hits_the_fx_graph_cache_and_its_rows_say_so(tmp_path):
    """Each torch-compile row tells what Inductor's FX-graph cache did for the shapes its group
    compiled (info.fx_graph_cache): a warm run that compiles again (the H200's did, unseen, for
    24 shapes) shows misses instead of hits."""
    from conftest import FAST, cli

    (tmp_path / "fac.py").write_text(FACTORY)
    # An empty cache of its own: not a directory this test process holds (another test's
    # import of torch._dynamo may have set torch's default, shared by every test's runs).
    env = {k: v for k, v in os.environ.items()
           if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    env["INFERSWEEP_CACHE"] = str(tmp_path / "cache")
    caches = []
    for run in ("cold", "warm"):
        done = cli("run", "--model", f"{tmp_path / 'fac.py'}:tiny", "--backends", "torch-compile",
                   "--sizes", "16", "--batches", "2", "--out", tmp_path / run, *FAST, env=env)
        assert done.returncode == 0, done.stderr
        (row,) = json.loads((tmp_path / run / "results.json").read_text())["results"]
        assert row["status"] == "ok", row
        caches.append(row["info"]["fx_graph_cache"])
    assert caches == [{"2": {"miss": 1}}, {"2": {"hit": 1}}]
    for run, said in (("cold", "0 loaded from Inductor's FX-graph cache, 1 compiled anew"),
                      ("warm", "1 loaded from Inductor's FX-graph cache, 0 compiled anew")):
        assert f"- torch-compile graphs: {said}" in (tmp_path / run / "report.md").read_text()
