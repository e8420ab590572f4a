"""torchvision's classification models by name, without importing torchvision.

Checking ``--model resnet18`` needs the list of names, and ``torchvision.models.list_models``
imports torchvision and torch: 2.6 s of a run's parent on the 2-core box, 7-10 s on the H200,
before the parent could plan and spawn its first worker. torchvision registers each builder with
``@register_model()`` (``@register_model(name=...)`` where the name differs) in the modules of
``torchvision/models/``; the classification models are the ones in that folder itself (detection,
segmentation, video, ... live in subfolders, as ``list_models(module=torchvision.models)`` tells
them apart). Reading those files' syntax trees gives the same names in well under a second
(80 names, 0.08 s on the 2-core box). An installation without the sources, or a registration this
reader does not recognise, gives no names: the caller then asks torchvision itself.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

REGISTER = "register_model"


def names_in_source() -> tuple[str, ...]:
    """The registered classification models, sorted; () where the sources cannot tell."""
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        return ()
    if spec is None or not spec.origin:
        return ()
    names: set[str] = set()
    for path in sorted((Path(spec.origin).parent / "models").glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            return ()  # a file we cannot read might hold names: do not guess
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                names.update(_registered_as(node))
    return tuple(sorted(names))


def _registered_as(function: ast.FunctionDef) -> list[str]:
    """The names a builder is registered under: its own, or the decorator's ``name``."""
    found = []
    for decorator in function.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call else decorator
        called = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
        if called != REGISTER:
            continue
        name = function.name
        for value in ([*call.args[:1], *(k.value for k in call.keywords if k.arg == "name")]
                      if call else []):
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                name = value.value
        found.append(name)
    return found
