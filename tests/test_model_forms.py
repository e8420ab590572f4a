"""Every --model form through the real CLI: timm, a factory file, ONNX files, several models;
and every bad model entry: exit 2, one line naming it, nothing created."""

import csv
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import FAST, cli, cli_popen

HERE = os.getcwd()

pytestmark = pytest.mark.slow

FACTORY = """\
import torch.nn as nn

def tiny(image_size):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))

def gray():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

def broken():
    raise RuntimeError("no GPU in the factory")

def not_a_module():
    return 42
"""


class Tiny(nn.Module):
    def __init__(self, channels=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def export(path: Path, fixed_size: int | None, channels: int = 3) -> Path:
    """A real ONNX file: dynamic batch, and dynamic H/W unless ``fixed_size``."""
    size = fixed_size or 48
    dims = {0: torch.export.Dim("batch", min=1)}
    if fixed_size is None:
        dims.update({2: torch.export.Dim("h", min=16, max=512),
                     3: torch.export.Dim("w", min=16, max=512)})
    torch.onnx.export(Tiny(channels).eval(), (torch.randn(2, channels, size, size),), str(path),
                      input_names=["pixels"], dynamic_shapes=(dims,), dynamo=True)
    return path


def rows(out: Path) -> list[dict]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def cell(found: list[dict], **match) -> list[dict]:
    return [r for r in found if all(r[k] == v for k, v in match.items())]


def test_factory_and_torchvision_in_one_sweep_group_by_model(tmp_path):
    (tmp_path / "fac.py").write_text(FACTORY)
    out = tmp_path / "out"
    done = cli("run", "--model", "resnet18,fac.py:tiny", "--backends", "torch,onnxruntime",
               "--sizes", "32", "--batches", "1", "--out", out, *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = rows(out)
    factory = str(tmp_path / "fac.py") + ":tiny"
    assert sorted({r["model"] for r in found}) == sorted(["resnet18", factory])
    assert {r["status"] for r in found} == {"ok"}
    # params: the factory's 3*4*9+4 + 4*10+10 = 162 parameters; resnet18's 11.69 M
    assert float(cell(found, model=factory, backend="torch")[0]["params_m"]) == 162 / 1e6
    assert round(float(cell(found, model="resnet18", backend="torch")[0]["params_m"]), 2) == 11.69
    assert cell(found, model="resnet18", backend="torch")[0]["artifact_mb"] == ""
    assert float(cell(found, model="resnet18", backend="onnxruntime")[0]["artifact_mb"]) > 40
    report = (out / "report.md").read_text()
    # findings name the model when a sweep has several
    assert f"{factory}: onnxruntime" in report
    assert "resnet18: onnxruntime" in report


def test_onnx_files_dynamic_and_fixed(tmp_path):
    dynamic, fixed = export(tmp_path / "dyn.onnx", None), export(tmp_path / "fix.onnx", 48)
    out = tmp_path / "out"
    done = cli("run", "--model", f"{dynamic},{fixed}", "--backends", "torch,onnxruntime",
               "--sizes", "32,48", "--batches", "1,2", "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    found = rows(out)
    assert {r["status"] for r in cell(found, backend="torch")} == {"unsupported"}
    assert cell(found, backend="torch")[0]["reason"].startswith("torch runs torch models;")
    assert {r["status"] for r in cell(found, model=str(dynamic), backend="onnxruntime")} == {"ok"}
    at32 = cell(found, model=str(fixed), backend="onnxruntime", image_size="32")
    assert {r["reason"] for r in at32} == {"fix is an ONNX file with a fixed 48x48 px input"}
    at48 = cell(found, model=str(fixed), backend="onnxruntime", image_size="48")
    assert {r["status"] for r in at48} == {"ok"}
    # the user's file is what ran, and its size is reported (with its external weights, if any)
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("fix.onnx*"))
    assert float(at48[0]["artifact_mb"]) == pytest.approx(on_disk / 2**20, rel=1e-9)
    # FLOPs from the graph: conv 2*4*46*46*27 + linear 2*4*10 at 48 px
    assert float(at48[0]["gflops_per_image"]) == pytest.approx((2 * 4 * 46 * 46 * 27 + 80) / 1e9)


def test_timm_model_runs_and_matches_its_params(tmp_path):
    timm = pytest.importorskip("timm")
    out = tmp_path / "out"
    done = cli("run", "--model", "timm:test_resnet", "--backends", "torch,onnxruntime",
               "--sizes", "64", "--batches", "1", "--out", out, *FAST)
    assert done.returncode == 0, done.stderr
    found = rows(out)
    assert {r["status"] for r in found} == {"ok"}
    expected = sum(p.numel() for p in timm.create_model("test_resnet").parameters()) / 1e6
    assert float(found[0]["params_m"]) == pytest.approx(expected)


def test_timm_checkpoint_with_wrapper_prefix(tmp_path):
    timm = pytest.importorskip("timm")
    model = timm.create_model("test_resnet", num_classes=7)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               tmp_path / "ckpt.pt")
    done = cli("plan", "--model", "timm:test_resnet", "--weights", tmp_path / "ckpt.pt",
               "--backends", "torch", "--sizes", "64", "--batches", "1")
    assert done.returncode == 0, done.stderr


def _fake_missing_timm(tmp_path) -> dict:
    shadow = tmp_path / "shadow" / "timm"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'timm'\")\n")
    return {**os.environ, "PYTHONPATH": f"{shadow.parent}{os.pathsep}{os.environ['PYTHONPATH']}"}


BAD = {
    "torchvision-typo": ("resnet19", None, "unknown model 'resnet19': not a torchvision model; "
                                           "closest: resnet18, resnet152, resnet101, "
                                           "resnet50, resnet34"),
    "factory-file-missing": ("nothere.py:tiny", None,
                             "factory file {tmp}/nothere.py does not exist"),
    "factory-no-function": ("fac.py:nope", None, "{tmp}/fac.py defines no function 'nope'"),
    "factory-function-not-named": ("fac.py", None, "name the function that builds the model: "
                                                   "'fac.py:FUNCTION'"),
    "factory-raises": ("fac.py:broken", None,
                       "the factory raised RuntimeError: no GPU in the factory"),
    "factory-not-module": ("fac.py:not_a_module", None,
                           "the factory returned a int, not a torch nn.Module"),
    "factory-gray": ("fac.py:gray", None, "its first convolution takes 1 input channels; "
                                          "image classification feeds 3 (RGB)"),
    "onnx-missing": ("gone.onnx", None, "ONNX file does not exist"),
    "onnx-not-model": ("junk.onnx", "junk", "not an ONNX model (DecodeError)"),
    "onnx-gray": ("gray.onnx", "gray", "its input takes 1 channels; image classification "
                                       "feeds 3 (RGB)"),
    "timm-missing": ("timm:resnet18", "no-timm", "timm is not installed; install it with: "
                                                 "pip install 'infersweep[timm]'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_model_entry(tmp_path, case):
    entry, setup, expected = BAD[case]
    (tmp_path / "fac.py").write_text(FACTORY)
    env = None
    if setup == "junk":
        (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot protobuf at all" * 10)
    elif setup == "gray":
        export(tmp_path / "gray.onnx", 48, channels=1)
    elif setup == "no-timm":
        env = _fake_missing_timm(tmp_path)
    out = tmp_path / "out"
    done = cli("run", "--model", entry, "--backends", "torch", "--sizes", "32", "--batches",
               "1", "--out", out, *FAST, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected.replace("{tmp}", str(tmp_path)) in lines[0]
    assert entry.split(":")[0].removesuffix(".py").removesuffix(".onnx") in lines[0]
    assert not out.exists()


def test_unknown_timm_name_suggests(tmp_path):
    pytest.importorskip("timm")
    done = cli("plan", "--model", "timm:resnet9t", "--backends", "torch")
    assert done.returncode == 2
    line = done.stderr.strip()
    assert line.startswith("error: unknown model 'timm:resnet9t': not a timm model; closest: ")
    assert "resnet10t" in line


def test_factory_is_never_imported_by_the_parent(tmp_path):
    """The factory writes a marker when imported; plan (which only plans) must not import it."""
    (tmp_path / "fac.py").write_text(
        "import os\nopen(os.environ['MARK'], 'a').write(f'{os.getpid()}\\n')\n"
        + FACTORY)
    mark = tmp_path / "mark"
    os.environ["MARK"] = str(mark)
    try:
        os.chdir(tmp_path)
        done, parent = cli_popen("plan", "--model", "fac.py:tiny", "--backends", "torch",
                                 "--sizes", "32")
    finally:
        os.chdir(HERE)
        del os.environ["MARK"]
    assert done.returncode == 0, done.stderr
    # imported once, by the preflight's checking subprocess: not by the parent
    importers = [int(pid) for pid in mark.read_text().split()]
    assert len(importers) == 1 and parent not in importers
