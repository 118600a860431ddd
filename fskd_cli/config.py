"""Recipes (YAML) plus command-line overrides, resolved into one typed :class:`RunConfig`.

A recipe may start with ``base: other.yaml`` (a path relative to the recipe) and override only what
differs, like arcface_torch's per-experiment configs over a shared base. Unknown keys and wrong types are
errors that name the recipe file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import FskdError


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


SCALE_CHOICES = ("2", "4", "8", "multi")


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe and the chain of ``base:`` recipes under it, merged (the recipe wins)."""
    path = Path(path)
    if not path.exists():
        raise FskdError(f"{path}: recipe not found")
    if path.resolve() in _seen:
        raise FskdError(f"{path}: 'base' recipes form a cycle")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise FskdError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FskdError(f"{path}: a recipe must be a mapping of sections")
    base = data.pop("base", None)
    if base:
        data = merge(load_recipe(path.parent / base, (*_seen, path.resolve())), data)
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("kwargs", "head_kwargs", "options", "teacher_options") else v
    return out


def resolve(recipe: str | Path | None, overrides: dict[str, Any] | None = None,
            base: dict[str, Any] | None = None) -> RunConfig:
    """Recipe file (or ``base`` dict) + dotted overrides (``{"distill.method": "f-skd"}``) -> RunConfig.

    Overrides whose value is ``None`` are ignored, so CLI options left unset keep the recipe's value.
    """
    source = str(recipe) if recipe else "the command line"
    data = load_recipe(recipe) if recipe else dict(base or {})
    overrides = dict(overrides or {})
    _rescale_run_length(data, overrides)
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    cfg = _build(RunConfig, data, source, "")
    _validate(cfg, source)
    return cfg


def _rescale_run_length(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """A run length given on the command line (``train.epochs`` or ``train.steps``) replaces the recipe's,
    in either unit, and the recipe's milestones keep their place as fractions of the run."""
    train = data.setdefault("train", {})
    old = train.get("epochs") or train.get("steps")
    for key in ("epochs", "steps"):
        new = overrides.pop(f"train.{key}", None)
        if new is None:
            continue
        train.pop("epochs", None), train.pop("steps", None)
        train[key] = new
        if old and train.get("milestones") and "train.milestones" not in overrides:
            scaled = [max(1, min(new, round(m * new / old))) for m in train["milestones"]]
            train["milestones"] = sorted(set(scaled))


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise FskdError(f"{source}: '{prefix.rstrip('.') or 'recipe'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise FskdError(f"{source}: unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, source, prefix + name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key + ".")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, source, key)
    if origin is list:
        if not isinstance(value, list):
            raise FskdError(f"{source}: '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, source, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise FskdError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and (tp is bool or not isinstance(value, bool))):
        raise FskdError(f"{source}: '{key}' must be {tp.__name__}, got {value!r}")
    return value


def _validate(cfg: RunConfig, source: str) -> None:
    t = cfg.train
    if (t.epochs is None) == (t.steps is None):
        raise FskdError(f"{source}: set exactly one of train.epochs and train.steps")
    total = t.epochs if t.epochs is not None else t.steps
    if total <= 0 or t.batch_size <= 0 or t.lr <= 0:
        raise FskdError(f"{source}: train.epochs/steps, batch_size and lr must be positive")
    if sorted(t.milestones) != t.milestones or any(not 0 < m <= total for m in t.milestones):
        raise FskdError(f"{source}: train.milestones must be increasing and within the run ({total})")
    if cfg.distill.scale not in SCALE_CHOICES:
        raise FskdError(f"{source}: distill.scale must be one of {', '.join(SCALE_CHOICES)}, got {cfg.distill.scale!r}")
    if cfg.data.degrade not in ("disk", "device"):
        raise FskdError(f"{source}: data.degrade must be disk or device, got {cfg.data.degrade!r}")
    if t.amp not in ("auto", "off", "bf16", "fp16"):
        raise FskdError(f"{source}: train.amp must be auto, off, bf16 or fp16")
