"""Capture the outputs of named modules with forward hooks, so models are never edited for distillation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FeatureTap:
    """Records the output of each module in ``names`` on every forward pass of ``model``.

    >>> tap = FeatureTap(model, model.feature_layers)
    >>> emb = model(x); feats = tap.features  # list, in the order of ``names``
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"model has no modules {missing}")
        self.names = list(names)
        self._out: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def hook(_module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            self._out[name] = out

        return hook

    @property
    def features(self) -> list[torch.Tensor]:
        """The outputs of the last forward pass, in the order of ``names``."""
        return [self._out[n] for n in self.names]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._out.clear()
