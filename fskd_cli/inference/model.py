"""A checkpoint's networks, rebuilt and ready: the one place that turns a :class:`Checkpoint` into a model.

:func:`build_backbone` and :func:`build_head` create the registered architecture and load the stored
tensors after checking every name and shape against it, so a checkpoint of another architecture, a
truncated state dict or a tensor of the wrong shape is one line naming the file and the first tensor that
does not fit. :func:`load_model` adds what running it needs: eval mode, no gradients, the device, the
input convention and the run's degradation (:class:`ReadyModel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.checkpoint import Checkpoint, load_checkpoint
from ..core.device import resolve_device
from ..core.errors import FskdError
from ..core.preprocess import Preprocess
from ..core.runs import RunSetting
from ..data.degrade import degrade_uint8
from ..models import create_model
from ..models.heads import create_head

SHOWN = 3  # tensor names listed in an error


def build_backbone(ck: Checkpoint) -> nn.Module:
    """The backbone of ``ck`` with its weights, in eval mode on the CPU."""
    model = _named(ck, lambda: create_model(ck.arch.name, **ck.arch.kwargs))
    load_weights(model, ck.weights, ck.path, "model")
    if getattr(model, "embedding_size", ck.embedding_size) != ck.embedding_size:
        raise FskdError(f"{ck.path}: the backbone gives {model.embedding_size}-d embeddings, the checkpoint "
                        f"records {ck.embedding_size}")
    return model.eval()


def build_head(ck: Checkpoint) -> nn.Module:
    """The classification head of ``ck`` with its weights, in eval mode on the CPU."""
    head = _named(ck, lambda: create_head(ck.head.name, ck.embedding_size, ck.num_classes, **ck.head.kwargs))
    load_weights(head, ck.head_weights, ck.path, "head")
    return head.eval()


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path | str, what: str) -> None:
    """``module.load_state_dict(state)`` after checking names and shapes: one line for the first misfit."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = ([f"missing {_names(missing)}"] if missing else []) + ([f"unexpected {_names(unexpected)}"] if unexpected else [])
        raise FskdError(f"{path}: the {what} weights do not fit {type(module).__name__} ({'; '.join(parts)})")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise FskdError(f"{path}: {what} weight {name} has shape {tuple(state[name].shape)}, the architecture "
                            f"needs {tuple(tensor.shape)}")
        if state[name].is_floating_point() != tensor.is_floating_point():  # load_state_dict would cast silently:
            # integer weights would lose their fractions, float counters would be truncated
            raise FskdError(f"{path}: {what} weight {name} holds {state[name].dtype} values, the architecture "
                            f"needs {tensor.dtype}")
    module.load_state_dict(dict(state))


@dataclass(frozen=True)
class ReadyModel:
    """A checkpoint's backbone (and head, when asked for) in eval mode on ``device``, with what running it needs.

    ``checkpoint.preprocess`` is the colour order and scaling the model was trained with (an imported
    AdaFace teacher and its students take BGR); ``checkpoint.degradation`` is how the run's LR images were
    made, so :meth:`degrade` makes a photo's LR copy as the run's training images were made.
    """

    checkpoint: Checkpoint
    backbone: nn.Module
    head: nn.Module | None
    device: torch.device

    @property
    def input_size(self) -> int:
        return self.checkpoint.input_size

    @property
    def embedding_size(self) -> int:
        return self.checkpoint.embedding_size

    @property
    def preprocess(self) -> Preprocess:
        return self.checkpoint.preprocess

    @property
    def setting(self) -> RunSetting:
        return RunSetting.of(self.checkpoint)

    def inputs(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops ``[N, 3, S, S]`` -> the model's float input on its device."""
        return self.preprocess.apply(crops, self.device)

    def degrade(self, crop: np.ndarray, factor: int) -> np.ndarray:
        """One ``S x S x 3`` uint8 crop as the run's LR copies at ``factor`` are made (:func:`degrade_uint8`)."""
        if factor == 1:
            return crop
        d = self.checkpoint.degradation
        return degrade_uint8(crop, factor, d.interpolation, d.antialias)


def load_model(source: str | Path | Checkpoint, *, kind: str | None = None, device: str | torch.device = "auto",
               head: bool = False) -> ReadyModel:
    """A run (its folder, ``checkpoint.pt`` or a loaded :class:`Checkpoint`) ready to embed: frozen, eval mode."""
    ck = source if isinstance(source, Checkpoint) else load_checkpoint(source, kind=kind)
    if kind and ck.kind != kind:
        raise FskdError(f"{ck.path}: a {ck.kind} checkpoint, but a {kind} checkpoint is needed here")
    device = resolve_device(device)
    backbone = build_backbone(ck).requires_grad_(False).to(device)
    classifier = build_head(ck).requires_grad_(False)  # built even when unused: a head that does not fit is refused
    return ReadyModel(ck, backbone, classifier.to(device) if head else None, device)


def _named(ck: Checkpoint, build):
    """Build an architecture the checkpoint names; an unknown name or argument is the file's problem."""
    try:
        return build()
    except FskdError as e:
        raise FskdError(f"{ck.path}: {e}") from None


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN]) + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")
