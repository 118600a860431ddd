"""Backbones, margin heads and the feature tap.

Every backbone is registered by name and built with :func:`create_model` from the ``model`` section of
a recipe, so a checkpoint can rebuild it from ``{"name": ..., "kwargs": ...}``. A backbone maps an image
batch to an embedding and names, in ``feature_layers``, the modules whose outputs are distilled; the
models themselves know nothing about distillation (:class:`~fskd_cli.models.tap.FeatureTap` hooks them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..core.errors import FskdError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def model_names() -> list[str]:
    _import_all()
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered backbone; it gets ``arch = {"name", "kwargs"}`` so checkpoints can rebuild it."""
    _import_all()
    if name not in _MODELS:
        raise FskdError(f"unknown model {name!r}; choose from {', '.join(sorted(_MODELS))}")
    try:
        model = _MODELS[name](**kwargs)
    except TypeError as e:
        raise FskdError(f"model {name!r}: {e}") from None
    model.arch = {"name": name, "kwargs": dict(kwargs)}
    return model


def _import_all() -> None:
    from . import ir_adaface, iresnet, resnet_cifar  # noqa: F401  (they register their builders on import)
