"""Recipes (YAML) plus command-line overrides, resolved into one typed :class:`RunConfig`.

A recipe may start with ``base: other.yaml`` (a path relative to the recipe) and override only what
differs, like arcface_torch's per-experiment configs over a shared base. Unknown keys and wrong types are
errors that name the recipe file, so a typo never silently falls back to a default; so are values out
of range, checked here, when the recipe is loaded, before any data is read.

A recipe is a path, or a name under the packaged ``fskd_cli/recipes/`` folder (``paper/table1a-f-skd-x8``),
so the paper's recipes work from any folder. ``--set key=value`` overrides any key, checked the same way.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import FskdError
from .scale import Scale


@dataclass
class DataConfig:
    path: str = "data/digits"
    train_split: str = "train"
    eval_split: str = "test"
    flip: bool = False  # one horizontal flip shared by the HR/LR pair (faces; not digits)
    workers: int = 0
    cache: bool = True  # decode every image once into memory (small sets); false streams from disk
    degrade: str = "disk"  # disk: read the prepared LR copies; device: degrade each HR batch on the device


@dataclass
class ModelConfig:
    name: str = "resnet_32"
    kwargs: dict[str, Any] = field(default_factory=dict)
    head: str = "softmax"  # softmax | cosface | arcface
    head_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    epochs: int | None = None  # exactly one of epochs / steps; milestones are in the same unit
    steps: int | None = None
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    log_every: int = 50  # steps between log rows (and the only points where the loss is read)
    ckpt_every: int = 0  # steps between checkpoints; 0 = end of every epoch and the end of the run
    amp: str = "auto"  # auto (bf16 on CUDA if supported) | off | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    tensorboard: bool = False  # also write the log rows as TensorBoard scalars under RUN/tb


@dataclass
class DistillConfig:
    method: str = "base"
    scale: str = "4"  # 2 | 4 | 8 | multi
    weight: float = 5.0  # lambda, paper Section 4.3
    teacher: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # an auxiliary loss for the teacher run itself (e.g. qualnet-decoder), with its own weight and options,
    # so one recipe can hold a teacher run and its students
    teacher_method: str | None = None
    teacher_weight: float = 1.0
    teacher_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@@TAIL@@
