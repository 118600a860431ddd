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
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from .errors import FskdError
from .preprocess import Preprocess
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
    # input convention {color, mean, std} (uint8 units; mean/std one number or one per channel), see
    # core/preprocess.py; empty: RGB in [-1, 1]. A student always takes its teacher's (from its checkpoint)
    preprocess: dict[str, Any] = field(default_factory=dict)


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
    scale: Scale = Scale.x4  # 1 | 2 | 4 | 8 | multi; written as its value ("4") in YAML and checkpoints
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
        """Plain data for YAML and checkpoints: a scale is its value (``"4"``), as a recipe writes it."""
        return asdict(self, dict_factory=lambda items: {k: v.value if isinstance(v, Scale) else v for k, v in items})


RECIPES = Path(__file__).resolve().parents[1] / "recipes"
#: the recipe of ``fskd train-teacher`` and ``fskd distill`` when none is given: the paper's face settings
DEFAULT_RECIPE = "faces-base.yaml"
#: keys that ``--resume`` accepts changed (they change how a run is executed or logged, not what it
#: computes); any other change is refused, so a checkpoint never continues under other settings
RESUME_SAFE_KEYS = ("device", "data.workers", "data.cache", "train.log_every", "train.ckpt_every", "train.tensorboard")
_DICT_KEYS = ("kwargs", "head_kwargs", "preprocess", "options", "teacher_options")  # free-form mappings, replaced whole
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def find_recipe(recipe: str | Path) -> Path:
    """A recipe path as given, else the packaged recipe of that name (``.yaml`` optional)."""
    path = Path(recipe)
    if path.is_file():
        return path
    for candidate in (RECIPES / path, RECIPES / f"{path}.yaml"):
        if candidate.is_file() and candidate.resolve().is_relative_to(RECIPES):
            return candidate
    raise FskdError(f"{recipe}: recipe not found (neither a file nor a packaged recipe under {RECIPES}; "
                    "e.g. paper/table1a-f-skd-x8)")


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe and the chain of ``base:`` recipes under it, merged (the recipe wins)."""
    path = Path(path)
    if not path.is_file():
        raise FskdError(f"{path}: recipe not found")
    if path.resolve() in _seen:
        raise FskdError(f"{path}: 'base' recipes form a cycle")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise FskdError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FskdError(f"{path}: a recipe must be a mapping of sections")
    _check_sections(data, str(path))
    base = data.pop("base", None)
    if base:
        data = merge(load_recipe(path.parent / str(base), (*_seen, path.resolve())), data)
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        nested = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in _DICT_KEYS
        out[k] = merge(out[k], v) if nested else v
    return out


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=0.05", "model.kwargs={width: 8}"]`` -> dotted overrides, each value read as YAML."""
    sets: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FskdError(f"--set {item}: expected KEY=VALUE, e.g. --set train.lr=0.05")
        try:
            sets[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise FskdError(f"--set {item}: the value is not valid YAML") from None
        check_key(key, f"--set {item}")
    return sets


def check_key(key: str, source: str) -> None:
    """FskdError naming ``source`` unless the dotted ``key`` names a recipe key (or lies in a free-form mapping)."""
    cls: Any = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(cls)}
        if part not in names:
            raise FskdError(f"{source}: unknown key '{'.'.join(parts[:i + 1])}' (known: {', '.join(sorted(names))})")
        tp = typing.get_type_hints(cls)[part]
        if dataclasses.is_dataclass(tp):
            cls = tp
        elif typing.get_origin(tp) is dict:
            return
        elif i < len(parts) - 1:
            raise FskdError(f"{source}: '{'.'.join(parts[:i + 1])}' is a value, not a section")


def resolve(recipe: str | Path | None, overrides: dict[str, Any] | None = None,
            base: dict[str, Any] | None = None, sets: dict[str, Any] | None = None) -> RunConfig:
    """Recipe (path or packaged name; or a ``base`` dict) + dotted overrides -> a checked RunConfig.

    ``overrides`` are typed CLI options: those whose value is ``None`` were not given and keep the
    recipe's value. ``sets`` (from ``--set``, see :func:`parse_sets`) apply as given, ``null`` included.
    """
    path = find_recipe(recipe) if recipe else None
    source = str(path) if path else "the command line"
    data = load_recipe(path) if path else dict(base or {})
    given = {**(sets or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    _rescale_run_length(data, given)
    for key, value in given.items():
        _set_key(data, key, value, source)
    _check_sections(data, source)
    cfg = _build(RunConfig, data, source, "")
    _validate(cfg, source)
    return cfg


def _set_key(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise FskdError(f"{source}: cannot set {key}: '{p}' is not a mapping")
    node[leaf] = value


def _check_sections(data: dict[str, Any], source: str) -> None:
    for f in dataclasses.fields(RunConfig):
        if f.name in data and dataclasses.is_dataclass(typing.get_type_hints(RunConfig)[f.name]):
            if not isinstance(data[f.name], dict):
                raise FskdError(f"{source}: section '{f.name}' must be a mapping of keys, got {data[f.name]!r}")


def _rescale_run_length(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """A run length given on the command line (``train.epochs`` or ``train.steps``) replaces the recipe's,
    in either unit, and the recipe's milestones keep their place as fractions of the run."""
    train = data.setdefault("train", {})
    if not isinstance(train, dict):
        return  # reported by _check_sections
    old = train.get("epochs") or train.get("steps")
    for key in ("epochs", "steps"):
        new = overrides.pop(f"train.{key}", None)
        if new is None:
            continue
        train.pop("epochs", None), train.pop("steps", None)
        train[key] = new
        if _positive_int(old) and _positive_int(new) and isinstance(train.get("milestones"), list) \
                and "train.milestones" not in overrides:
            scaled = [max(1, min(new, round(m * new / old))) for m in train["milestones"] if _positive_int(m)]
            train["milestones"] = sorted(set(scaled))


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise FskdError(f"{source}: '{prefix.rstrip('.') or 'recipe'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        raise FskdError(f"{source}: unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, source, prefix + name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key + ".")
    if tp is Scale:
        try:
            return Scale.parse(value)
        except ValueError as e:
            raise FskdError(f"{source}: {key}: {e}") from None
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
    if tp is float and not math.isfinite(value):
        raise FskdError(f"{source}: '{key}' must be a finite number, got {value!r}")
    return value


# (dotted key, the least value allowed, whether that value itself is allowed)
_RANGES = (("seed", 0, True), ("data.workers", 0, True), ("train.batch_size", 1, True), ("train.lr", 0, False),
           ("train.momentum", 0, True), ("train.weight_decay", 0, True), ("train.gamma", 0, False),
           ("train.log_every", 1, True), ("train.ckpt_every", 0, True), ("train.epochs", 1, True),
           ("train.steps", 1, True), ("distill.weight", 0, True), ("distill.teacher_weight", 0, True))
_CHOICES = (("data.degrade", ("disk", "device")), ("train.amp", ("auto", "off", "bf16", "fp16")))


def _validate(cfg: RunConfig, source: str) -> None:
    """Ranges and choices, each error naming the recipe and the key."""
    for key, least, inclusive in _RANGES:
        value = _get(cfg, key)
        if value is not None and not (value >= least if inclusive else value > least):
            raise FskdError(f"{source}: {key} must be {'>=' if inclusive else '>'} {least}, got {value!r}")
    for key, choices in _CHOICES:
        if _get(cfg, key) not in choices:
            raise FskdError(f"{source}: {key} must be one of {', '.join(choices)}, got {_get(cfg, key)!r}")
    if not _DEVICE.fullmatch(cfg.device):
        raise FskdError(f"{source}: device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    t = cfg.train
    if (t.epochs is None) == (t.steps is None):
        raise FskdError(f"{source}: set exactly one of train.epochs and train.steps")
    total = t.epochs if t.epochs is not None else t.steps
    if any(b <= a for a, b in pairwise(t.milestones)) or any(not 0 < m <= total for m in t.milestones):
        raise FskdError(f"{source}: train.milestones must be increasing and within the run (1..{total}), got {t.milestones}")
    try:
        Preprocess.from_dict(cfg.model.preprocess)
    except (TypeError, ValueError) as e:
        raise FskdError(f"{source}: model.preprocess: {e}") from None


def _get(cfg: RunConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (free-form mappings such as kwargs stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and key not in _DICT_KEYS:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def resume_changes(old: dict[str, Any], new: RunConfig) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """The (key, old, new) differences between a checkpoint's config and ``new``: (refused, safe) ones."""
    a, b = flatten(old), flatten(new.to_dict())
    changes = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ([c for c in changes if c[0] not in RESUME_SAFE_KEYS], [c for c in changes if c[0] in RESUME_SAFE_KEYS])
