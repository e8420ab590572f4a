"""Models from real torchvision builds and real checkpoint files (resnet18: ~0.2 s a build)."""

import re

import pytest
import torch
import torch.nn as nn
import torchvision

from infersweep.artefacts.models import WeightsError, build_model, load_state_dict

pytestmark = pytest.mark.slow


class Wrapper(nn.Module):
    """How fine-tunes are often saved: the backbone as an attribute, a new 10-class head."""

    def __init__(self):
        super().__init__()
        self.resnet = torchvision.models.resnet18()
        self.resnet.fc = nn.Linear(512, 10)

    def forward(self, x):
        return self.resnet(x)


def _randomize_bn_stats(model: nn.Module, gen: torch.Generator) -> None:
    """Non-default running stats, so that a checkpoint whose buffers are not loaded shows."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.fixture(scope="module")
def wrapper():
    torch.manual_seed(12345)  # not build_model's seed: a model not loaded would not match
    w = Wrapper()
    _randomize_bn_stats(w, torch.Generator().manual_seed(1))
    return w.eval()


@pytest.fixture(scope="module")
def plain_state():
    torch.manual_seed(777)
    m = torchvision.models.resnet18()
    _randomize_bn_stats(m, torch.Generator().manual_seed(2))
    return m.state_dict()


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("r50") / "resnet50.pt"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


def _same_state(model: nn.Module, state: dict) -> None:
    got = model.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k


def _x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


# --- random init ----------------------------------------------------------------------------

def test_random_init_is_deterministic_for_a_seed():
    torch.manual_seed(999)  # the global RNG state before the call must not matter
    a = build_model("resnet18", None, seed=0)
    torch.randn(1000)
    b = build_model("resnet18", None, seed=0)
    c = build_model("resnet18", None, seed=1)
    _same_state(b, a.state_dict())
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert not a.training and not c.training
    with torch.no_grad():
        torch.testing.assert_close(a(_x()), b(_x()), rtol=0, atol=0)
    assert a.fc.out_features == 1000


def test_unknown_model_name():
    with pytest.raises(WeightsError, match="unknown model 'resnet9000'"):
        build_model("resnet9000")


# --- checkpoints that load ------------------------------------------------------------------

def test_wrapper_checkpoint_loads_with_its_10_classes_and_same_outputs(wrapper, tmp_path):
    path = tmp_path / "finetune.pt"
    torch.save(wrapper.state_dict(), path)
    assert all(k.startswith("resnet.") for k in torch.load(path, weights_only=True))

    model = build_model("resnet18", str(path), seed=0)
    assert model.fc.out_features == 10
    assert not model.training
    _same_state(model, {k[len("resnet."):]: v for k, v in wrapper.state_dict().items()})
    with torch.no_grad():
        want = wrapper(_x())
        got = model(_x())
    assert got.shape == (2, 10)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # And it is not just any 10-class resnet18: a fresh one gives other outputs.
    fresh = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(_x()), want)


@pytest.mark.parametrize("layout", ["state_dict", "model_state_dict", "model"])
def test_checkpoint_nested_under_a_key_loads(plain_state, tmp_path, layout):
    path = tmp_path / "nested.pt"
    torch.save({layout: plain_state, "epoch": 7, "best_acc": 0.9}, path)
    model = build_model("resnet18", str(path))
    _same_state(model, plain_state)


def test_checkpoint_with_module_prefix_loads(plain_state, tmp_path):
    path = tmp_path / "ddp.pt"
    torch.save({"module." + k: v for k, v in plain_state.items()}, path)
    _same_state(build_model("resnet18", str(path)), plain_state)


def test_nested_checkpoint_with_module_prefix_loads(plain_state, tmp_path):
    path = tmp_path / "ddp_nested.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in plain_state.items()}}, path)
    _same_state(build_model("resnet18", str(path)), plain_state)


def test_plain_checkpoint_loads(plain_state, tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(plain_state, path)
    model = build_model("resnet18", str(path))
    _same_state(model, plain_state)
    assert model.fc.out_features == 1000
    assert load_state_dict(path).keys() == plain_state.keys()


# --- checkpoints that do not ----------------------------------------------------------------

def _raises(path, *patterns, model="resnet18"):
    with pytest.raises(WeightsError) as info:
        build_model(model, str(path))
    message = str(info.value)
    assert str(path) in message, message
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)
    return message


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.pt", "not found")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    _raises(path, "empty")


def test_list_of_ints_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    _raises(path, "does not hold a state_dict", "list")


def test_dict_without_tensors_is_not_a_state_dict(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    _raises(path, "state_dict")


def test_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    message = _raises(path, "not a readable state_dict", "is it a PyTorch checkpoint")
    assert "pop from empty list" not in message  # torch's internals are not the user's problem


def test_truncated_checkpoint(plain_state, tmp_path):
    full = tmp_path / "full.pt"
    torch.save(plain_state, full)
    data = full.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    _raises(path, "not a readable state_dict")


def test_pickled_module_is_refused_not_executed(tmp_path):
    # weights_only=True: a whole pickled nn.Module is not a state_dict and is not unpickled.
    path = tmp_path / "module.pt"
    torch.save(torchvision.models.resnet18(), path)
    message = _raises(path, "looks like a pickled model", "torchvision.models.resnet.ResNet",
                      r"torch\.save\(model\.state_dict\(\), 'weights\.pt'\)")
    assert "weights_only" not in message and "\x1b" not in message  # no unsafe advice, no ANSI


def test_wrong_architecture_names_the_shape_mismatches(resnet50_file):
    _raises(resnet50_file, "does not fit resnet18", "shape mismatches",
             r"layer1\.0\.conv1\.weight: checkpoint \(64, 64, 1, 1\) vs model "
             r"\(64, 64, 3, 3\)", "unexpected keys")


def test_missing_key_is_named(plain_state, tmp_path):
    path = tmp_path / "partial.pt"
    state = dict(plain_state)
    del state["layer3.1.bn2.running_var"]
    torch.save(state, path)
    _raises(path, "does not fit resnet18", r"missing keys: layer3\.1\.bn2\.running_var")


def test_smaller_checkpoint_for_bigger_model_names_missing_keys(plain_state, tmp_path):
    # A resnet18 checkpoint given for resnet34: resnet34's extra blocks are missing.
    path = tmp_path / "r18.pt"
    torch.save(plain_state, path)
    _raises(path, "does not fit resnet34", "missing keys", r"layer1\.2\.", model="resnet34")


def test_input_size_problem_finds_fixed_size_models_without_running_them():
    from infersweep.artefacts.models import input_size_problem

    assert input_size_problem("vit_b_16", 224) is None
    problem = input_size_problem("vit_b_16", 256)
    assert problem.startswith("vit_b_16 does not take 256 px inputs (")
    assert "Expected 224 but got 256" in problem
    assert input_size_problem("resnet18", 256) is None
    assert input_size_problem("inception_v3", 32).startswith("inception_v3 does not take 32 px")
