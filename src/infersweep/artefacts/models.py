"""Model zoo: torchvision classification models by name, random-init or from a local checkpoint.

Nothing is ever downloaded. Checkpoints are the ones users actually have: a plain state_dict, one
nested under "state_dict"/"model_state_dict", or one saved from a wrapper module whose keys carry a
prefix (``resnet.conv1.weight``, ``module.fc.bias``). The number of classes is read from the
checkpoint's classifier, so a 10-class fine-tune loads without being told it has 10 classes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from infersweep.artefacts.cache import cache_root
from infersweep.artefacts.model_ref import (FACTORY, ONNX, TIMM, TORCHVISION, ModelError,
                                            factory_digest, onnx_input, parse_model)
from infersweep.artefacts.torchvision_names import names_in_source


class WeightsError(ValueError):
    """A checkpoint that cannot be used for the model; the message says exactly why."""


@lru_cache(maxsize=1)
def available_models() -> tuple[str, ...]:
    """torchvision's classification models by name, read from torchvision's source without
    importing it (artefacts/torchvision_names.py); where the source cannot tell, from
    torchvision itself."""
    return names_in_source() or registered_models()


@lru_cache(maxsize=1)
def registered_models() -> tuple[str, ...]:
    """torchvision's own list of its classification models (imports torchvision and torch)."""
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def _classifier_key(model) -> str:
    """The weight key of the model's last Linear layer: where num_classes lives."""
    import torch.nn as nn

    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise WeightsError("model has no Linear classifier; cannot infer the number of classes")
    return f"{last}.weight"


def load_state_dict(path: str | Path) -> dict:
    """Read a checkpoint file into a flat {name: tensor} dict, or raise WeightsError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file is empty: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or non-tensor pickles
        raise WeightsError(_unreadable(path, exc)) from None
    if isinstance(obj, Mapping):
        for nested in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(nested), Mapping):
                obj = obj[nested]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} does not hold a state_dict (found {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or not all(isinstance(k, str) for k in tensors):
        raise WeightsError(f"{path} does not hold a state_dict of named tensors")
    return tensors


# torch's own message is for torch users: colour codes, and advice to load with weights_only=False,
# which runs whatever code the file holds. Ours names what the file is and the safe way out.
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _unreadable(path: Path, exc: Exception) -> str:
    found = _UNSAFE_GLOBAL.search(str(exc))
    if found:
        return (f"{path} looks like a pickled model (it holds a {found.group(1)} object, not a "
                "state_dict); infersweep reads only tensors, never code. Save the weights with "
                "torch.save(model.state_dict(), 'weights.pt') and pass that file")
    return (f"{path} is not a readable state_dict: torch.load could not read it "
            f"({type(exc).__name__}); is it a PyTorch checkpoint, whole and not truncated?")


def _strip_wrapper_prefix(state: dict, model_keys: set[str]) -> dict:
    """Drop a wrapper's prefix ("resnet.", "module.", "model.") while it makes the keys fit better."""
    while True:
        if sum(k in model_keys for k in state) == len(state):
            return state
        firsts = {k.split(".", 1)[0] for k in state}
        if len(firsts) != 1 or any("." not in k for k in state):
            return state
        prefix = firsts.pop() + "."
        stripped = {k[len(prefix):]: v for k, v in state.items()}
        if sum(k in model_keys for k in stripped) <= sum(k in model_keys for k in state):
            return state
        state = stripped


def _describe_mismatch(model, state: dict) -> str:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in sorted(set(expected) & set(state))
                   if tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", wrong_shape)):
        if items:
            shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
            parts.append(f"{title}: {shown}")
    return "; ".join(parts)


def _constructor(ref, image_size: int | None):
    """A function num_classes -> fresh random-init model (num_classes None: the default)."""
    import torchvision

    if ref.kind == TORCHVISION:
        if ref.target not in registered_models():  # torchvision is imported here anyway
            raise WeightsError(f"unknown model {ref.target!r}")
        return lambda n=None: torchvision.models.get_model(
            ref.target, weights=None, **({} if n is None else {"num_classes": n}))
    if ref.kind == TIMM:
        import timm

        return lambda n=None: timm.create_model(
            ref.target, pretrained=False, **({} if n is None else {"num_classes": n}))
    if ref.kind == FACTORY:
        return lambda n=None: call_factory(ref, image_size)
    raise WeightsError(f"{ref.text} is an ONNX file, not a torch model")


def call_factory(ref, image_size: int | None):
    """Import the user's factory (worker side only) and call it, with the image size where it
    takes an argument; ModelError when it raises or returns something that is not a module."""
    import importlib
    import importlib.util
    import inspect
    import sys

    import torch.nn as nn

    try:
        if ref.target.endswith(".py"):
            name = f"infersweep_factory_{hashlib.sha256(ref.target.encode()).hexdigest()[:8]}"
            spec = importlib.util.spec_from_file_location(name, ref.target)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(ref.target)
        function = getattr(module, ref.function, None)
        if not callable(function):
            raise ModelError(f"--model {ref.text!r}: {ref.function!r} is not a function")
        params = [p for p in inspect.signature(function).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        model = function(image_size) if params and image_size is not None else function()
    except ModelError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise ModelError(f"--model {ref.text!r}: the factory raised {type(exc).__name__}"
                         f"{': ' + text if text else ''}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"--model {ref.text!r}: the factory returned a {type(model).__name__}, "
                         "not a torch nn.Module")
    return model


def build_model(name: str, weights_path: str | None = None, seed: int = 0,
                image_size: int | None = None):
    """An eval-mode fp32 CPU model: random-init with a fixed seed, or loaded from a checkpoint.
    ``name`` is any torch-side --model entry (torchvision, timm:NAME, a factory)."""
    import torch

    make = _constructor(parse_model(name), image_size)
    if weights_path is None:
        torch.manual_seed(seed)
        return make().eval()

    state = load_state_dict(weights_path)
    torch.manual_seed(seed)
    probe = make()
    state = _strip_wrapper_prefix(state, set(probe.state_dict()))
    classifier = _classifier_key(probe)
    num_classes = state[classifier].shape[0] if classifier in state else None
    model = probe
    if num_classes is not None and parse_model(name).kind != FACTORY and \
            probe.state_dict()[classifier].shape[0] != num_classes:
        torch.manual_seed(seed)
        model = make(int(num_classes))
    mismatch = _describe_mismatch(model, state)
    if mismatch:
        raise WeightsError(f"{weights_path} does not fit {name}: {mismatch}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def file_digest(path: str | Path) -> str:
    """Content hash of a weights file, for cache keys: a changed checkpoint never reuses an export."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class ModelSource:
    """The model of one case group, built lazily once per worker (fault backends never build it)."""

    def __init__(self, name: str, weights: str, seed: int = 0, opset: int | None = None,
                 image_size: int | None = None):
        self.name = name
        self.opset = opset  # for backends that go through ONNX; None = export.DEFAULT_OPSET
        self.ref = parse_model(name)
        self.weights_path = None if weights.startswith(("random(", "onnx(")) else weights
        self.seed = seed
        self.image_size = image_size  # for factories that take it (a group has one size)
        self._model = None

    @property
    def onnx_file(self) -> str | None:
        """The user's ONNX file, run as is; None for torch-side models."""
        return self.ref.target if self.ref.kind == ONNX else None

    @property
    def weights_key(self) -> str:
        if self.onnx_file:
            return f"onnx-{onnx_input(self.onnx_file).digest}"
        key = file_digest(self.weights_path) if self.weights_path else f"random-seed{self.seed}"
        if self.ref.kind == FACTORY:  # the factory's code is part of what the model is
            key += f"-factory{factory_digest(self.ref)}-size{self.image_size}"
        return key

    def model(self):
        if self.onnx_file:
            raise WeightsError(f"{self.name} is an ONNX file: no torch model to run")
        if self._model is None:
            self._model = build_model(self.name, self.weights_path, self.seed, self.image_size)
        return self._model

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) from a timm model's pretrained config; None: ImageNet's."""
        if self.ref.kind != TIMM:
            return None
        import timm

        cfg = timm.get_pretrained_cfg(self.ref.target)
        if cfg is None or not getattr(cfg, "mean", None):
            return None
        return tuple(cfg.mean), tuple(cfg.std)


# The dry runs this process made: `run` keeps them in the cache (remember_input_sizes); `plan`
# builds nothing there.
_ANSWERED: dict[str, str | None] = {}


def _input_sizes_file() -> Path:
    return cache_root() / "input_sizes.json"


def _input_size_key(name: str, image_size: int) -> str:
    return json.dumps([name, image_size, *(_version(p) for p in ("torch", "torchvision", "timm"))])


def _remembered() -> dict:
    try:
        known = json.loads(_input_sizes_file().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


@lru_cache(maxsize=256)
def input_size_problem(name: str, image_size: int) -> str | None:
    """Why the model cannot take ``image_size`` x ``image_size`` inputs, or None. A library
    model's answer is read from the cache (``input_sizes.json``, keyed by the libraries'
    versions) where a run kept it: the dry run imports torch and torchvision, 6 s of a sweep's
    start on the H200, and a rerun's parent then never imports them."""
    ref = parse_model(name)
    if ref.kind not in (TORCHVISION, TIMM):  # files and user code may change under one name
        return _dry_run(name, image_size)
    key = _input_size_key(name, image_size)
    known = _remembered().get(key, "")
    if known is None or (isinstance(known, str) and known):
        return known
    _ANSWERED[key] = problem = _dry_run(name, image_size)
    return problem


def remember_input_sizes() -> None:
    """Keep this process's dry-run answers in the cache (a whole file or none:
    written aside, then renamed over the old one); a read-only cache only does not remember them."""
    if not _ANSWERED:
        return
    memo = _input_sizes_file()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        aside = memo.with_name(f".input_sizes.{os.getpid()}.json")
        aside.write_text(json.dumps({**_remembered(), **_ANSWERED}))
        aside.replace(memo)
    except OSError:
        pass


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _dry_run(name: str, image_size: int) -> str | None:
    """Why the model cannot take ``image_size`` x ``image_size`` inputs, or None.

    A dry run on PyTorch's meta device: shapes are propagated, nothing is allocated or computed,
    so a ViT's fixed 224 px or an input too small for the kernels is found in milliseconds at
    plan time instead of as a failed case after a long export.
    """
    import torch

    ref = parse_model(name)
    if ref.kind == ONNX:
        fixed = onnx_input(ref.target).fixed_size
        if fixed is not None and fixed != image_size:
            return f"{ref.short} is an ONNX file with a fixed {fixed}x{fixed} px input"
        return None
    if ref.kind == FACTORY:  # user code is never run in the planning process
        return None
    try:
        with torch.device("meta"), torch.no_grad():
            model = _constructor(ref, image_size)().eval()
            model(torch.empty(1, 3, image_size, image_size))
    except Exception as exc:  # the models' own checks: AssertionError, RuntimeError, ...
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        return f"{ref.short} does not take {image_size} px inputs ({text})"
    return None
