"""The grid stage's single sources: the sweep flags (declared once, shared by run and plan), the
options string (one reader, one writer), the canonical options of a Spec (computed once)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from infersweep.case import Case, OptionsError, format_options, parse_options
from infersweep.cli import app
from infersweep.flags import FLAGS, SPEC_FLAGS, SweepArgs
from infersweep.grid.plan import expand
from infersweep.grid.spec import KEYS, Spec, SpecError, build_spec


def _params(command: str) -> list[str]:
    group = typer.main.get_command(app)
    return [p.name for p in group.commands[command].params]


def test_run_and_plan_take_the_shared_flags_in_one_order():
    shared = [f.name for f in FLAGS]
    executor = [f.name for f in FLAGS if f.executor]
    resume = ["fresh", "retry_failed", "force"]  # plan takes them to show what run would do
    assert _params("run") == shared + resume
    assert _params("plan") == [n for n in shared if n not in executor] + resume + ["list_models"]


def test_spec_flags_derive_from_the_declaration():
    assert "only" not in SPEC_FLAGS and "spec_file" not in SPEC_FLAGS
    # Every sweep flag is a sweep.toml key, or one of the shortcuts that fill "options".
    assert set(SPEC_FLAGS) - set(KEYS) == {"option", "channels_last", "compile_mode"}


def test_help_shows_every_shared_flag_with_its_text():
    text = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    for flag in ("--model", "--channels-last", "--only", "--ray-address", "--fresh", "--force"):
        assert flag in text
    # rich wraps the help text at its own width: compare it with the wrapping undone
    assert "one worker per GPU" in " ".join(text.replace("│", " ").split())


def test_sweep_args_lay_flags_over_the_sweep_file(tmp_path):
    toml = tmp_path / "sweep.toml"
    toml.write_text('backends = ["torch"]\nbatches = [4]\n[options.torch]\nchannels_last = false\n')
    flags = {name: None for name in SPEC_FLAGS}
    flags.update(batches="1,2", channels_last=True, compile_mode="max-autotune", quick=False)
    raw = SweepArgs(spec_file=toml, flags=flags, only=None).raw()
    assert raw["backends"] == ["torch"] and raw["batches"] == "1,2"
    assert raw["options"] == {"torch": {"channels_last": "true"},
                              "torch-compile": {"channels_last": "true", "mode": "max-autotune"}}
    assert "quick" not in raw and "channels_last" not in raw and "compile_mode" not in raw


@pytest.mark.parametrize("text, pairs", [
    ("", {}),
    ("channels_last=true", {"channels_last": "true"}),
    ("max_batch=64,min_batch=1", {"max_batch": "64", "min_batch": "1"}),
    ("mode=a=b", {"mode": "a=b"}),
])
def test_parse_options_reads_the_canonical_string(text, pairs):
    assert parse_options(text) == pairs
    assert format_options(pairs) == text


@pytest.mark.parametrize("text, item", [("channels_last", "channels_last"), ("a=1,,b=2", ""),
                                        ("=1", "=1")])
def test_parse_options_names_a_bad_item(text, item):
    with pytest.raises(OptionsError) as caught:
        parse_options(text)
    assert caught.value.item == item


def test_format_options_sorts_and_spells_booleans_lowercase():
    assert format_options({"b": True, "a": 3}) == "a=3,b=true"


def test_case_options_are_computed_once_and_fill_every_case():
    spec = build_spec({"backends": "torch,onnxruntime", "devices": "cpu,cuda",
                       "options": {"torch": {"channels_last": "true"}}})
    assert spec.case_options is spec.case_options  # cached on the Spec, not recomputed
    assert spec.case_options["torch", "cpu"] == ("channels_last=true",)
    for case in expand(spec):
        assert (case.options,) == spec.case_options[case.backend, case.device]
    assert "case_options" not in spec.identity()


def test_bad_option_value_is_a_spec_error_naming_it():
    with pytest.raises(SpecError, match="torch-compile.mode"):
        build_spec({"backends": "torch-compile", "options": {"torch-compile": {"mode": "fast"}}})


def test_gpu_indexes_are_checked_against_the_visible_count():
    assert build_spec({"gpus": "0,1"}, gpus_visible=2).gpus == (0, 1)
    with pytest.raises(SpecError, match="no GPU 2 on this machine \\(2 visible\\)"):
        build_spec({"gpus": "0,2"}, gpus_visible=2)
    assert "cuda" in build_spec({}, gpus_visible=1).devices
    assert build_spec({}, gpus_visible=0).devices == ("cpu",)


def test_a_spec_made_directly_expands_like_a_built_one():
    built = build_spec({"backends": "torch", "batches": "1"})
    direct = Spec(backends=("torch",), batches=(1,), backend_options={"torch": {}})
    assert expand(built) == expand(direct)
    assert all(isinstance(c, Case) for c in expand(direct))
