"""The plan's dry run (does the model take this image size?) imports torch and torchvision: its
answer for a library model is kept in the cache by `run` (`plan` builds nothing there), so that a
warm run's parent never imports them. Checking a torchvision model's name imports neither."""

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
    assert len(memo) == 2  # the two dry runs' answers


CHECK = """
import sys
from infersweep.artefacts.model_ref import ModelError, check_model, parse_model
try:
    check_model(parse_model(sys.argv[1]))
    print("accepted")
except ModelError as e:
    print("refused:", e)
print("torchvision" in sys.modules, "torch" in sys.modules)
"""


def _check(cache, name: str) -> tuple[str, str]:
    env = {**os.environ, "INFERSWEEP_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", CHECK, name], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    verdict, imported = proc.stdout.strip().splitlines()
    return verdict, imported


def test_checking_a_torchvision_model_imports_neither_torchvision_nor_torch(tmp_path):
    # Checking `--model resnet18` imported torchvision, and with it torch, in a run's parent:
    # 2.6 s on the 2-core box, 7-10 s on the H200 before its first worker was spawned; the
    # names are now read from torchvision's source, with an empty cache too.
    assert _check(tmp_path / "empty-cache", "resnet18") == ("accepted", "False False")
    assert not (tmp_path / "empty-cache").exists()


def test_an_unknown_name_is_refused_with_the_closest_ones_torchvision_has(tmp_path):
    verdict, _ = _check(tmp_path, "resnet19")
    assert verdict.startswith("refused: unknown model 'resnet19': not a torchvision model")
    assert "resnet18" in verdict


def test_the_names_read_from_the_source_are_the_ones_torchvision_registers():
    from infersweep.artefacts.models import registered_models
    from infersweep.artefacts.torchvision_names import names_in_source

    found = names_in_source()
    assert "resnet18" in found and "vit_b_16" in found
    assert found == registered_models()


def test_a_name_the_source_reader_misses_is_asked_of_torchvision(monkeypatch):
    from infersweep.artefacts import models
    from infersweep.artefacts.model_ref import check_model, parse_model

    models.available_models.cache_clear()
    monkeypatch.setattr(models, "names_in_source", lambda: ("alexnet",))
    try:
        check_model(parse_model("resnet18"))  # not among the names read: torchvision decides
        monkeypatch.setattr(models, "names_in_source", lambda: ())
        models.available_models.cache_clear()
        assert models.available_models() == models.registered_models()  # no sources: asked
    finally:
        models.available_models.cache_clear()
