"""Backbones, margin heads and the feature tap.

Every backbone is registered by name and built with :func:`create_model` from the ``model`` section of
a recipe, so a checkpoint can rebuild it from ``{"name": ..., "kwargs": ...}``. A backbone maps an image
batch to an embedding and names, in ``feature_layers``, the modules whose outputs are distilled; the
models themselves know nothing about distillation (:class:`~fskd_cli.models.tap.FeatureTap` hooks them).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from torch import nn

from ..core.errors import FskdError, check_options

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def model_names() -> list[str]:
    """Every registered backbone: what a recipe's ``model.name`` may be (checked when the recipe is resolved)."""
    _import_all()
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone; it gets ``arch = {"name", "kwargs"}`` so checkpoints can rebuild it."""
    _import_all()
    if name not in _MODELS:
        raise FskdError(f"unknown model {name!r}; choose from {', '.join(sorted(_MODELS))}")
    _check_kwargs(name, _MODELS[name], kwargs)
    model = _MODELS[name](**kwargs)  # a model refuses a value of its arguments itself (FskdError: from a recipe)
    model.arch = {"name": name, "kwargs": dict(kwargs)}
    return model


def _check_kwargs(name: str, fn: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    """Recipe kwargs must fit the builder, or, when it forwards ``**kwargs`` (``def iresnet50(**kwargs) -> IResNet``,
    as timm writes them), the class it returns, less the arguments the builder fixes (those without defaults)."""
    if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
        check_options(fn, kwargs, f"model {name!r}")
        return
    init = typing.get_type_hints(fn)["return"].__init__
    fixed = tuple(p.name for p in inspect.signature(init).parameters.values() if p.default is p.empty)
    check_options(init, kwargs, f"model {name!r}", skip=fixed)


def _import_all() -> None:
    from . import ir_adaface, iresnet, resnet_cifar  # noqa: F401  (they register their builders on import)
