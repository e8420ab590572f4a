"""The plan's dry run (does the model take this image size?) imports torch and torchvision: its
answer for a library model is kept in the cache by `run` (`plan` builds nothing there), so that a
warm run's parent never imports them."""

import json
import os
import subprocess
import sys

ASK = """
import sys
from infersweep.artefacts.models import input_size_problem, remember_input_sizes
print(repr(input_size_problem("vit_b_16", 256)), repr(input_size_problem("resnet18", 256)),
      "torch" in sys.modules)
if sys.argv[1] == "remember":
    remember_input_sizes()
"""


def _ask(cache, remember: bool = True) -> list[str]:
    env = {**os.environ, "INFERSWEEP_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", ASK, "remember" if remember else "only"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    answers, imported = proc.stdout.strip().rsplit(" ", 1)  # ... 'torch' in sys.modules
    return [answers, imported]


def test_a_second_process_gets_the_answer_without_importing_torch(tmp_path):
    cache = tmp_path / "cache"
    first, imported = _ask(cache, remember=False)
    assert not cache.exists()  # asking alone keeps nothing (plan builds nothing)
    assert _ask(cache) == [first, imported]
    assert first.startswith("'vit_b_16 does not take 256 px inputs") and first.endswith(" None")
    assert imported == "True"
    assert _ask(cache) == [first, "False"]


def test_a_damaged_memo_is_answered_again_and_rewritten(tmp_path):
    (tmp_path / "input_sizes.json").write_text('{"torn')
    first, imported = _ask(tmp_path)
    assert imported == "True" and first.endswith(" None")
    assert len(json.loads((tmp_path / "input_sizes.json").read_text())) == 2
