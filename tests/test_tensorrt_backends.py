"""TensorRT backends (torch-tensorrt, onnxruntime-trt): everything that needs no TensorRT here
(options, profiles, cache keys, provider options, availability, the silent-fallback guard, plan);
the real runs are GPU tests, skipped unless the runtimes are installed."""

import inspect
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import cli

from infersweep.backends import get_backend, registry
from infersweep.backends.base import PrecisionError
from infersweep.backends.tensorrt.onnxruntime_trt import (
    NO_LIBRARY,
    NO_PROVIDER,
    TRT_PROVIDER,
    OrtTensorrtSession,
    TensorRTLibrary,
    _load_library,
    availability_reason,
    check_fp16_flag,
    check_tensorrt_first,
    cuda_provider_options,
    decode_trt_version,
    engine_files,
    find_tensorrt,
    nvinfer_soname_in,
    onnx_plan,
    profile_shape_options,
    provider_list,
    tensorrt_names,
    tensorrt_provider_options,
)
from infersweep.backends.tensorrt.common import (
    BatchProfile,
    engine_key,
    profile_of,
    profile_options,
    resolve_profile,
    timing_cache_dir,
)
from infersweep.backends.tensorrt.torch_tensorrt import (
    compile_parameters,
    compile_settings,
    save_parameters,
    segment_counts,
    single_output,
    typing_label,
)
from infersweep.artefacts.cache import key_digest
from infersweep.case import Case
from infersweep.artefacts.export import ONNX_INPUT, ONNX_OUTPUT

TRT_BACKENDS = ("torch-tensorrt", "onnxruntime-trt")


def case(backend="torch-tensorrt", batch=8, device="cuda", precision="fp32", options=None):
    options = get_backend(backend).canonical_options(options or {}, device)
    return Case("resnet18", "random(seed=0)", backend, device, precision, 224, batch,
                "synthetic", options=options)


# --- options and profiles -----------------------------------------------------------------

@pytest.mark.parametrize("name", TRT_BACKENDS)
def test_both_backends_are_registered_for_cuda_fp32_fp16(name):
    backend = registry()[name]
    assert backend.devices == ("cuda",)
    assert backend.precisions == {"cuda": ("fp32", "fp16")}


@pytest.mark.parametrize("name", TRT_BACKENDS)
def test_default_options_spell_out_the_profile(name):
    assert get_backend(name).canonical_options({}, "cuda") == \
        "max_batch=64,min_batch=1,opt_batch=64,workspace_size=0"


@pytest.mark.parametrize("name", TRT_BACKENDS)
def test_given_options_are_parsed_and_opt_zero_means_max(name):
    backend = get_backend(name)
    assert backend.canonical_options({"min_batch": "16", "max_batch": "128"}, "cuda") == \
        "max_batch=128,min_batch=16,opt_batch=128,workspace_size=0"
    assert backend.canonical_options(
        {"min_batch": "1", "opt_batch": "32", "max_batch": "64",
         "workspace_size": str(4 << 30)}, "cuda") == \
        f"max_batch=64,min_batch=1,opt_batch=32,workspace_size={4 << 30}"
    # The same engine, whether opt was given or defaulted: the same case identity.
    assert backend.canonical_options({"opt_batch": "64"}, "cuda") == \
        backend.canonical_options({}, "cuda")


@pytest.mark.parametrize("given,message", [
    ({"min_batch": "8", "max_batch": "4"}, "min_batch <= opt_batch <= max_batch"),
    ({"opt_batch": "128"}, "opt_batch=128, max_batch=64"),
    ({"min_batch": "0"}, "min_batch=0"),
    ({"min_batch": "8", "opt_batch": "4"}, "opt_batch=4"),
    ({"workspace_size": "-1"}, "workspace_size must be >= 0"),
    ({"max_batch": "lots"}, "invalid literal"),
    ({"fp16": "true"}, "has no option fp16"),
])
@pytest.mark.parametrize("name", TRT_BACKENDS)
def test_bad_options_are_refused_with_a_reason(name, given, message):
    with pytest.raises(ValueError, match=message):
        get_backend(name).canonical_options(given, "cuda")


def test_profile_options_cover_the_sweeps_batches():
    assert profile_options([32, 16, 64, 16]) == \
        {"min_batch": "16", "opt_batch": "64", "max_batch": "64"}
    assert profile_options([8]) == {"min_batch": "8", "opt_batch": "8", "max_batch": "8"}
    for bad in ([], [0, 4]):
        with pytest.raises(ValueError):
            profile_options(bad)
    backend = get_backend("torch-tensorrt")
    canonical = backend.canonical_options(profile_options([16, 32, 64]), "cuda")
    assert profile_of(dict(kv.split("=") for kv in canonical.split(","))) == \
        BatchProfile(16, 64, 64)


def test_profile_resolution_and_shapes():
    assert resolve_profile(1, 0, 64) == BatchProfile(1, 64, 64)
    assert profile_of({}) == BatchProfile(1, 64, 64)
    profile = BatchProfile(1, 16, 64)
    assert profile.contains(1) and profile.contains(64) and not profile.contains(65)
    # torch_tensorrt.Input(min_shape=..., opt_shape=..., max_shape=...)
    assert profile.shapes(224) == {"min": (1, 3, 224, 224), "opt": (16, 3, 224, 224),
                                   "max": (64, 3, 224, 224)}
    assert profile.label == "batch 1..64, opt 16"


def test_ort_profile_shapes_are_strings_for_the_input():
    assert profile_shape_options(BatchProfile(1, 16, 64), 256) == {
        "trt_profile_min_shapes": f"{ONNX_INPUT}:1x3x256x256",
        "trt_profile_opt_shapes": f"{ONNX_INPUT}:16x3x256x256",
        "trt_profile_max_shapes": f"{ONNX_INPUT}:64x3x256x256",
    }


@pytest.mark.parametrize("name", TRT_BACKENDS)
def test_supports_batches_inside_the_profile_only(name):
    backend = get_backend(name)
    assert backend.supports(case(name, batch=1)) is None
    assert backend.supports(case(name, batch=64)) is None
    too_big = backend.supports(case(name, batch=128))
    assert "outside the TensorRT profile (batch 1..64, opt 64)" in too_big
    assert f"--option {name}.max_batch=128" in too_big
    too_small = backend.supports(case(name, batch=8, options={"min_batch": "16"}))
    assert f"--option {name}.min_batch=8" in too_small
    assert backend.supports(case(name, batch=128, options={"max_batch": "128"})) is None


@pytest.mark.parametrize("name", TRT_BACKENDS)
def test_supports_refuses_other_devices_and_precisions(name):
    backend = get_backend(name)
    assert "runs on cuda, not cpu" in backend.supports(case(name, device="cpu"))
    assert "not bf16" in backend.supports(case(name, precision="bf16"))


# --- cache keys -----------------------------------------------------------------------------

def _key(**change):
    values = dict(runtime="torch-tensorrt", model="resnet18", weights="random-seed0",
                  image_size=224, precision="fp16", profile=BatchProfile(1, 64, 64),
                  workspace_size=0, versions={"torch": "2.14.1", "tensorrt": "10.9.0"},
                  gpu={"name": "NVIDIA H200", "capability": "9.0"})
    values.update(change)
    return key_digest(engine_key(**values))


def test_same_inputs_same_engine_key():
    assert _key() == _key()
    assert _key(versions={"tensorrt": "10.9.0", "torch": "2.14.1"}) == _key()  # order-free


@pytest.mark.parametrize("change", [
    {"precision": "fp32"}, {"profile": BatchProfile(1, 32, 64)},
    {"profile": BatchProfile(2, 64, 64)},
    {"weights": "0123456789abcdef"}, {"image_size": 256}, {"workspace_size": 1 << 30},
    {"versions": {"torch": "2.14.1", "tensorrt": "11.4.0"}},
    {"gpu": {"name": "NVIDIA A100-SXM4-80GB", "capability": "8.0"}},
    {"runtime": "onnxruntime-trt"}, {"onnx": "another-export"},
])
def test_anything_an_engine_depends_on_changes_its_key(change):
    assert _key(**change) != _key()


# --- torch-tensorrt compile settings --------------------------------------------------------

# Keyword parameters of torch_tensorrt.dynamo.compile across its releases (the defaults matter).
WEAK = {"enabled_precisions": None, "workspace_size": 0, "timing_cache_path": "/tmp/t.bin"}
EXPLICIT_OFF = {**WEAK, "use_explicit_typing": False, "cache_built_engines": False,
                "reuse_cached_engines": False}
EXPLICIT_ON = {**EXPLICIT_OFF, "use_explicit_typing": True}  # 2.12: enabled_precisions rejected
STRONG_ONLY = {"workspace_size": 0, "timing_cache_path": "/tmp/t.bin",
               "cache_built_engines": False, "reuse_cached_engines": False}


@pytest.mark.parametrize("parameters,expected", [
    (WEAK, {torch.float16}), (EXPLICIT_OFF, {torch.float16}), (EXPLICIT_ON, None),
    (STRONG_ONLY, None)])
def test_enabled_precisions_only_where_the_api_still_uses_it(parameters, expected, tmp_path):
    settings = compile_settings("fp16", 0, tmp_path / "timing.bin", parameters)
    assert settings.get("enabled_precisions") == expected
    assert typing_label(settings).startswith("weak" if expected else "strong")
    fp32 = compile_settings("fp32", 0, tmp_path / "timing.bin", parameters)
    assert fp32.get("enabled_precisions") in (None, {torch.float32})


def test_workspace_timing_cache_and_own_engine_cache(tmp_path):
    timing = timing_cache_dir(tmp_path) / "torch_tensorrt.bin"
    assert timing.parent == tmp_path / "trt" / "timing" and timing.parent.is_dir()
    settings = compile_settings("fp32", 1 << 30, timing, STRONG_ONLY)
    assert settings["workspace_size"] == 1 << 30
    assert settings["timing_cache_path"] == str(timing)
    assert settings["cache_built_engines"] is False and settings["reuse_cached_engines"] is False
    assert "workspace_size" not in compile_settings("fp32", 0, timing, STRONG_ONLY)
    with pytest.raises(ValueError, match="workspace_size"):
        compile_settings("fp32", 1 << 30, timing, {})


def test_compile_parameters_reads_keyword_defaults():
    def compile_like(exported_program, inputs=None, *, enabled_precisions=None,
                     use_explicit_typing=True, **kwargs):
        pass

    assert compile_parameters(compile_like) == {
        "exported_program": inspect.Parameter.empty, "inputs": None,
        "enabled_precisions": None, "use_explicit_typing": True}


def test_save_keeps_the_dynamic_graph_and_names_the_inputs_as_the_api_does():
    example = object()
    assert save_parameters({"output_format": 0, "retrace": 0, "inputs": 0, "arg_inputs": 0},
                           example) == {"output_format": "exported_program", "retrace": False,
                                        "arg_inputs": [example]}
    assert save_parameters({"output_format": 0, "inputs": 0}, example) == \
        {"output_format": "exported_program", "inputs": [example]}


def test_segments_and_single_output():
    names = ["_run_on_acc_0", "_run_on_gpu_1", "_run_on_acc_2", "fc"]
    assert segment_counts(names) == {"tensorrt": 2, "pytorch": 1}
    logits = torch.zeros(2, 10)
    assert single_output(logits) is logits and single_output((logits,)) is logits
    with pytest.raises(ValueError):
        single_output([logits, logits])


# --- onnxruntime-trt provider options -------------------------------------------------------

def test_provider_options_and_cache_paths(tmp_path):
    engine_dir = tmp_path / "trt" / "0123abcd"
    timing = timing_cache_dir(tmp_path)
    options = tensorrt_provider_options(profile=BatchProfile(1, 32, 64), image_size=224,
                                        engine_dir=engine_dir, timing_dir=timing,
                                        fp16_enable=True, workspace_size=2 << 30)
    assert options == {
        "device_id": 0,
        "trt_engine_cache_enable": True, "trt_engine_cache_path": str(engine_dir),
        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(tmp_path / "trt" / "timing"),
        "trt_profile_min_shapes": "input:1x3x224x224",
        "trt_profile_opt_shapes": "input:32x3x224x224",
        "trt_profile_max_shapes": "input:64x3x224x224",
        "trt_fp16_enable": True, "trt_max_workspace_size": 2 << 30,
    }
    for path in (options["trt_engine_cache_path"], options["trt_timing_cache_path"]):
        assert Path(path).is_relative_to(tmp_path / "trt")
    # TensorRT 11 has no fp16 flag; workspace 0 keeps the runtime's own default.
    plain = tensorrt_provider_options(profile=BatchProfile(1, 64, 64), image_size=64,
                                      engine_dir=engine_dir, timing_dir=timing,
                                      fp16_enable=None, workspace_size=0)
    assert "trt_fp16_enable" not in plain and "trt_max_workspace_size" not in plain


def test_provider_list_puts_tensorrt_first_with_cuda_and_cpu_behind():
    trt = {"trt_fp16_enable": False}
    providers = provider_list(trt, cuda_provider_options())
    assert providers == [(TRT_PROVIDER, trt),
                         ("CUDAExecutionProvider",
                          {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"}),
                         "CPUExecutionProvider"]


def test_silent_fallback_is_an_error():
    check_tensorrt_first([TRT_PROVIDER, "CUDAExecutionProvider", "CPUExecutionProvider"])
    for providers in (["CUDAExecutionProvider", "CPUExecutionProvider"],
                      ["CPUExecutionProvider"], []):
        with pytest.raises(RuntimeError, match="TensorrtExecutionProvider did not load"):
            check_tensorrt_first(providers)


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", [ONNX_INPUT], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], [ONNX_OUTPUT])], "tiny",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_real_session_without_tensorrt_refuses_to_run(tmp_path):
    """This ONNX Runtime has no TensorRT provider: it creates the session on the CPU, silently.
    The TensorRT session must refuse it instead of timing CPU work as TensorRT."""
    import onnxruntime as ort

    if TRT_PROVIDER in ort.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    options = tensorrt_provider_options(
        profile=BatchProfile(1, 2, 4), image_size=8, engine_dir=tmp_path / "engines",
        timing_dir=timing_cache_dir(tmp_path), fp16_enable=False, workspace_size=0)
    with pytest.raises(RuntimeError, match=r"did not load \(providers: \['CPUExecutionProvider'\]"):
        OrtTensorrtSession(_tiny_onnx(tmp_path / "model.onnx"), {}, "fp32", options,
                           cuda_provider_options(), False)


@pytest.mark.parametrize("precision,major,plan", [
    ("fp32", 10, ("fp32", False)), ("fp16", 10, ("fp32", True)), ("fp16", 8, ("fp32", True)),
    ("fp32", 11, ("fp32", None)), ("fp16", 11, ("fp16", None)), ("fp16", 12, ("fp16", None))])
def test_fp16_is_the_builder_flag_before_tensorrt_11_and_the_fp16_graph_after(precision, major,
                                                                              plan):
    assert onnx_plan(precision, major) == plan


def test_fp16_flag_is_read_back_from_the_session():
    check_fp16_flag({"trt_fp16_enable": "1"}, True)
    check_fp16_flag({"trt_fp16_enable": "0"}, False)
    check_fp16_flag({}, None)
    with pytest.raises(PrecisionError, match="trt_fp16_enable=True"):
        check_fp16_flag({"trt_fp16_enable": "0"}, True)
    with pytest.raises(PrecisionError):
        check_fp16_flag({"trt_fp16_enable": "True"}, False)


def test_engine_files_are_what_tensorrt_wrote(tmp_path):
    stem = "TensorrtExecutionProvider_TRTKernel_graph_main_123_0_sm90"
    (tmp_path / f"{stem}.engine").write_bytes(b"x")
    (tmp_path / f"{stem}.profile").write_bytes(b"")
    (tmp_path / "key.json").write_text("{}")
    assert engine_files(tmp_path) == [f"{stem}.engine"]
    assert engine_files(tmp_path / "missing") == []


# --- availability ---------------------------------------------------------------------------

@pytest.mark.parametrize("code,version", [(8601, (8, 6, 1)), (100900, (10, 9, 0)),
                                          (101300, (10, 13, 0)), (110400, (11, 4, 0))])
def test_tensorrt_version_codes(code, version):
    assert decode_trt_version(code) == version


def test_tensorrt_library_lookup_gives_none_when_absent():
    assert find_tensorrt(("libinfersweep-no-such-nvinfer.so.10",), (), ()) is None
    assert _load_library("libinfersweep-no-such-nvinfer.so.10") is None
    assert _load_library("libm.so.6") is None  # loadable, but not TensorRT


def test_the_provider_s_own_libnvinfer_is_tried_first():
    dynstr = b"\0libcudart.so.12\0libnvinfer.so.10\0libnvinfer_plugin.so.10\0"
    assert nvinfer_soname_in(dynstr) == "libnvinfer.so.10"
    assert nvinfer_soname_in(b"\0libcudart.so.12\0") is None
    names = tensorrt_names()  # here: no TensorRT provider library, the default order
    assert names[-1] == "libnvinfer.so" and len(names) == len(set(names))


def test_availability_reasons():
    library = TensorRTLibrary("libnvinfer.so.10", "10.9.0", 10)
    assert availability_reason(["CPUExecutionProvider"], library) == NO_PROVIDER
    assert availability_reason([TRT_PROVIDER, "CPUExecutionProvider"], None) == NO_LIBRARY
    assert availability_reason([TRT_PROVIDER], library) is None
    for reason in (NO_PROVIDER, NO_LIBRARY):
        assert "install with: pip install onnxruntime-gpu tensorrt" in reason


def test_here_both_backends_are_unavailable_with_an_install_hint():
    import importlib.util

    import onnxruntime as ort

    if importlib.util.find_spec("torch_tensorrt") is None:
        reason = get_backend("torch-tensorrt").available("cuda")
        assert reason == ("python package torch_tensorrt is not installed; install with: pip "
                          "install torch-tensorrt (from NVIDIA's index, matching your torch "
                          "and CUDA)")
    if TRT_PROVIDER not in ort.get_available_providers():
        assert get_backend("onnxruntime-trt").available("cuda") == NO_PROVIDER


def test_plan_lists_the_tensorrt_cases_without_running_them(tmp_path):
    env = {**os.environ, "INFERSWEEP_CACHE": str(tmp_path / "cache"), "COLUMNS": "300"}
    proc = cli("plan", "--backends", ",".join(TRT_BACKENDS), "--devices", "cuda",
               "--precisions", "fp32,fp16", "--batches", "1,64,128", "--sizes", "64",
               "--out", tmp_path / "run", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = [line for line in proc.stdout.splitlines() if "synthetic" in line]
    assert len(rows) == 12
    for name in TRT_BACKENDS:
        mine = [r for r in rows if f" {name} " in r]
        assert len(mine) == 6
        for row in mine:
            if " 128 " in row:  # refused by the profile before the GPU is even looked for
                assert "unsupported" in row and f"{name}.max_batch=128" in row
            else:  # no GPU here, or no TensorRT: never run
                assert "unavailable" in row
    assert "12 cases, 0 to run" in proc.stdout
    assert not (tmp_path / "cache").exists()  # planning builds nothing


def test_inconsistent_profile_options_exit_2(tmp_path):
    proc = cli("plan", "--backends", "onnxruntime-trt", "--devices", "cuda", "--option",
               "onnxruntime-trt.min_batch=32", "--option", "onnxruntime-trt.max_batch=16",
               env={**os.environ, "INFERSWEEP_CACHE": str(tmp_path)}, cwd=tmp_path)
    assert proc.returncode == 2
    assert "onnxruntime-trt: need 1 <= min_batch <= opt_batch <= max_batch" in proc.stderr


# --- on hardware with TensorRT (skipped elsewhere) ------------------------------------------

def _gpu_run(tmp_path, name, *extra):
    backend = get_backend(name)
    if not torch.cuda.is_available() or backend.available("cuda"):
        pytest.skip(f"{name} needs a CUDA GPU and TensorRT: "
                    f"{backend.available('cuda') or 'no GPU'}")
    out = tmp_path / "run"
    args = ["run", "--backends", name, "--devices", "cuda", "--precisions", "fp32,fp16",
            "--sizes", "64", "--batches", "2,8", "--option", f"{name}.max_batch=8",
            "--min-time", "0.2", "--max-time", "1", "--min-iterations", "10", "--out", out,
            *extra]
    rows = []
    for _ in range(2):  # the second sweep must reuse the cached engines
        (out / "results.sqlite").unlink(missing_ok=True)
        proc = cli(*args, timeout=1800)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        rows.append({(r["precision"], r["batch_size"]): r
                     for r in json.loads((out / "results.json").read_text())["results"]})
    return rows


@pytest.mark.gpu
@pytest.mark.parametrize("name", TRT_BACKENDS)
def test_tensorrt_on_the_gpu(tmp_path, name):
    first, second = _gpu_run(tmp_path, name)
    for key, row in first.items():
        assert row["status"] == "ok", (key, row["reason"])
        assert row["cosine"] > 0.99, key
        assert row["info"]["profile"] == "batch 1..8, opt 8"
        # One engine per (size, precision) serves batches 2 and 8; built once, then reused.
        assert row["info"]["engine_cached"] is False, key
        assert second[key]["info"]["engine_cached"] is True, key
        assert row["setup_s"] > second[key]["setup_s"], key
    if name == "torch-tensorrt":
        assert first[("fp16", 8)]["info"]["output_dtype"] == "float16"
        assert first[("fp32", 8)]["info"]["output_dtype"] == "float32"
        assert first[("fp32", 8)]["info"]["segments"]["tensorrt"] >= 1
    else:
        for row in first.values():
            assert row["info"]["providers"][0] == TRT_PROVIDER and row["info"]["io_binding"]
            assert row["info"]["engine_files"]


def test_gpu_helper_runs_nothing_here(tmp_path):
    """The GPU test's own guard: without TensorRT it skips instead of failing."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real test runs")
    with pytest.raises(pytest.skip.Exception):
        _gpu_run(tmp_path, "torch-tensorrt")
    assert not (tmp_path / "run").exists()
