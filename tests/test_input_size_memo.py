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
    memo = json.loads((tmp_path / "input_sizes.json").read_text())
    assert len([k for k in memo if not k.startswith('["torchvision-models"')]) == 2


CHECK = """
import sys
from infersweep.artefacts.model_ref import ModelError, check_model, parse_model
from infersweep.artefacts.models import remember_input_sizes
check_model(parse_model("resnet18"))
try:
    check_model(parse_model("resnet19"))
    print("resnet19 accepted")
except ModelError as e:
    print("refused:", e)
print("torchvision" in sys.modules)
if sys.argv[1] == "remember":
    remember_input_sizes()
"""


def _check(cache, remember: bool = True) -> tuple[str, str]:
    env = {**os.environ, "INFERSWEEP_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", CHECK, "remember" if remember else "only"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    refused, imported = proc.stdout.strip().splitlines()
    return refused, imported


def test_a_run_keeps_torchvisions_model_names_so_the_next_parent_never_imports_it(tmp_path):
    # Checking `--model resnet18` imported torchvision, and with it torch, in a run's parent:
    # 2.6 s on the 2-core box, 7.4 s of the H200's warm start before its first worker was spawned.
    cache = tmp_path / "cache"
    refused, imported = _check(cache, remember=False)
    assert imported == "True" and not cache.exists()  # plan keeps nothing
    assert refused.startswith("refused:") and "resnet19" in refused and "resnet18" in refused
    assert _check(cache) == (refused, "True")
    assert _check(cache) == (refused, "False")  # the same answers from the memo, no import


def test_names_kept_for_another_torchvision_version_are_not_used(tmp_path):
    from importlib import metadata

    stale = json.dumps(["torchvision-models", "0.0.1-not-installed"])
    (tmp_path / "input_sizes.json").write_text(json.dumps({stale: ["resnet19"]}))
    refused, imported = _check(tmp_path)
    assert imported == "True" and refused.startswith("refused:")
    kept = json.loads((tmp_path / "input_sizes.json").read_text())
    assert kept[stale] == ["resnet19"]  # another installation's entry is left alone
    current = json.dumps(["torchvision-models", metadata.version("torchvision")])
    assert "resnet18" in kept[current] and "resnet19" not in kept[current]
