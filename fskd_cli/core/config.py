"""Recipes (YAML) plus command-line overrides, resolved into one typed :class:`RunConfig`.

A recipe may start with ``base: other.yaml`` (a path relative to the recipe) and override only what
differs, like arcface_torch's per-experiment configs over a shared base. Unknown keys and wrong types are
errors that name the recipe file, so a typo never silently falls back to a default; so are values out
of range, checked here, when the recipe is loaded, before any data is read.

A recipe is a path, or a name under the packaged ``fskd_cli/recipes/`` folder (``paper/table1a-f-skd-x8``),
so the paper's recipes work from any folder. ``--set key=value`` overrides any key, checked the same way;
an error in a value given on the command line names the option, not the recipe.

Recipes are read by :mod:`.strict_yaml` (no duplicate keys, bounded aliases). Numbers are read as a person
writes them: where a number is expected, ``1e-3`` is 0.001 (YAML 1.1 reads it as a string) and ``1e4`` steps
are 10000; where a string is expected (a name, ``scale: "4"``) a value stays the text it was.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from .errors import FskdError
from .guard import safe_name
from .preprocess import Preprocess
from .scale import Scale
from .strict_yaml import load as load_yaml


@dataclass
class DataConfig:
    path: str = "data/digits"
    train_split: str = "train"
    eval_split: str = "test"
    flip: bool = False  # one horizontal flip shared by the HR/LR pair (faces; not digits)
    # loader processes; None: 0 for a cached set, else what the machine has (train.distributed.Dist.loader_workers)
    workers: int | None = None
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
    if os.path.isfile(path):  # os.path: a name too long is "not found", not an OSError
        return path
    for candidate in (RECIPES / path, RECIPES / f"{path}.yaml"):
        if os.path.isfile(candidate) and candidate.resolve().is_relative_to(RECIPES):
            return candidate
    raise FskdError(f"{recipe}: recipe not found (neither a file nor a packaged recipe under {RECIPES}; "
                    "e.g. paper/table1a-f-skd-x8)")


#: a recipe file larger than this is not a recipe (the packaged ones are under 2 KB)
MAX_RECIPE_BYTES = 1 << 20


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe and the chain of ``base:`` recipes under it, merged (the recipe wins)."""
    path = Path(path)
    if not os.path.isfile(path):
        raise FskdError(f"{path}: recipe not found")
    if path.resolve() in _seen:
        raise FskdError(f"{path}: 'base' recipes form a cycle")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise FskdError(f"{path}: {path.stat().st_size:,} bytes, too large for a recipe (at most {MAX_RECIPE_BYTES:,})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FskdError(f"{path}: not valid YAML (not UTF-8 text)") from None
    except OSError as e:
        raise FskdError(f"{path}: cannot read the recipe ({e.strerror})") from None
    data = load_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise FskdError(f"{path}: a recipe must be a mapping of sections")
    _check_sections(data, lambda _key: str(path))
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise FskdError(f"{path}: base must be the path of another recipe (relative to this one), got {base!r}")
        if not os.path.isfile(path.parent / base):
            raise FskdError(f"{path}: base {base}: recipe not found (looked for {path.parent / base})")
        data = merge(load_recipe(path.parent / base, (*_seen, path.resolve())), data)
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
        check_key(key, f"--set {item}")
        sets[key] = load_yaml(text, f"--set {item}")
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
            base: dict[str, Any] | None = None, sets: dict[str, Any] | None = None,
            names: Mapping[str, Iterable[str]] | None = None, options: Mapping[str, str] | None = None) -> RunConfig:
    """Recipe (path or packaged name; or a ``base`` dict) + dotted overrides -> a checked RunConfig.

    ``overrides`` are typed CLI options: those whose value is ``None`` were not given and keep the
    recipe's value. ``sets`` (from ``--set``, see :func:`parse_sets`) apply as given, ``null`` included.
    ``names``: the values a key may take that registries above the core define (``distill.method``,
    ``model.name``, ...), so a misspelt one is refused naming the recipe and key, even where this run does not
    use it (a teacher run of a recipe whose students' method is unknown). ``options``: the command-line option
    that gave each key of ``overrides`` (``{"seed": "--seed"}``), named by an error in its value.
    """
    path = find_recipe(recipe) if recipe else None
    data = load_recipe(path) if path else dict(base or {})
    typed = {k: v for k, v in (overrides or {}).items() if v is not None}
    where = _Where(str(path) if path else "the command line",
                   {**{k: f"--set {k}" for k in sets or {}},
                    **{k: (options or {}).get(k, "the command line") for k in typed}})
    given = {**(sets or {}), **typed}
    _rescale_run_length(data, given)
    for key, value in given.items():
        _set_key(data, key, value, where(key))
    _check_sections(data, where)
    cfg = _build(RunConfig, data, where, "")
    _validate(cfg, where)
    for key, allowed in (names or {}).items():
        value, allowed = _get(cfg, key), list(allowed)
        if value is not None and value not in allowed:
            raise FskdError(f"{where(key)}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    return cfg


class _Where:
    """Who gave a key: the option that set it (or a mapping above it) on the command line, else the recipe."""

    def __init__(self, recipe: str, given: dict[str, str]) -> None:
        self.recipe, self.given = recipe, given

    def __call__(self, key: str) -> str:
        parts = key.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in self.given:
                return self.given[".".join(parts[:i])]
        return self.recipe


def _set_key(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise FskdError(f"{source}: cannot set {key}: '{p}' is not a mapping")
    node[leaf] = value


def _check_sections(data: dict[str, Any], where: Callable[[str], str]) -> None:
    for f in dataclasses.fields(RunConfig):
        if f.name in data and dataclasses.is_dataclass(typing.get_type_hints(RunConfig)[f.name]):
            if not isinstance(data[f.name], dict):
                raise FskdError(f"{where(f.name)}: section '{f.name}' must be a mapping of keys, got {data[f.name]!r}")


def _rescale_run_length(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """A run length given on the command line (``train.epochs`` or ``train.steps``) replaces the recipe's,
    in either unit, and the recipe's milestones keep their place as fractions of the run."""
    train = data.setdefault("train", {})
    if not isinstance(train, dict):
        return  # reported by _check_sections
    old = _count(train.get("epochs") or train.get("steps"))
    for key in ("epochs", "steps"):
        new = overrides.pop(f"train.{key}", None)
        if new is None:
            continue
        train.pop("epochs", None), train.pop("steps", None)
        train[key] = new
        if old and _count(new) and isinstance(train.get("milestones"), list) and "train.milestones" not in overrides:
            scaled = [max(1, min(_count(new), round(_count(m) * _count(new) / old)))
                      for m in train["milestones"] if _count(m)]
            train["milestones"] = sorted(set(scaled))


def _count(value: Any) -> int:
    """``value`` read as a positive whole number (``1e4`` too), else 0; the checks that say why come later."""
    try:
        number = _scalar(int, value, "", "")
    except FskdError:
        return 0
    return number if number > 0 else 0


def _build(cls: type, data: Any, where: Callable[[str], str], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise FskdError(f"{where(prefix.rstrip('.'))}: '{prefix.rstrip('.') or 'recipe'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        raise FskdError(f"{where(prefix + unknown[0])}: unknown key '{prefix}{unknown[0]}' "
                        f"(known: {', '.join(sorted(names))})")
    return cls(**{name: _coerce(hints[name], value, where, prefix + name) for name, value in data.items()})


def _coerce(tp: Any, value: Any, where: Callable[[str], str], key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, key + ".")
    if tp is Scale:
        try:
            return Scale.parse(value)
        except ValueError as e:
            raise FskdError(f"{where(key)}: {key}: {e}") from None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where, key)
    if origin is list:
        if not isinstance(value, list):
            raise FskdError(f"{where(key)}: '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, where, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise FskdError(f"{where(key)}: '{key}' must be a mapping, got {value!r}")
        return _arguments(value, where, key)
    return _scalar(tp, value, where(key), key)


# a number as a person writes it (YAML 1.2's form, which YAML 1.1 reads as a string when it has an exponent
# and no dot: 1e-3, 5E4), and the integers among them
_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INTEGER = re.compile(r"[-+]?[0-9]+")


def _scalar(tp: type, value: Any, source: str, key: str) -> Any:
    """``value`` as a ``tp`` (bool, int, float or str). Where a number is expected, numbers are read as a
    person writes them (``"1e-3"``, and ``1e4`` or ``1.0e4`` for an integer); a string stays a string."""
    if tp in (int, float) and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        value = int(text) if tp is int and _INTEGER.fullmatch(text) else float(text)
    if tp is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if tp in (float, str) and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value) if tp is float else str(value)
        except OverflowError:
            raise FskdError(f"{source}: '{key}' must be a finite number, got {value!r}") from None
    if not (isinstance(value, tp) and (tp is bool or not isinstance(value, bool))):
        raise FskdError(f"{source}: '{key}' must be {tp.__name__}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise FskdError(f"{source}: '{key}' must be a finite number, got {value!r}")
    return value


@dataclass(frozen=True)
class _Range:
    """The values a number may take: from ``least`` (itself excluded when ``above``) to ``most``."""

    least: float
    most: float | None = None
    above: bool = False
    why: str = ""  # said after an upper bound, e.g. which library sets it

    def check(self, value: float, source: str, key: str) -> None:
        if value < self.least or (self.above and value == self.least):
            raise FskdError(f"{source}: {key} must be {'>' if self.above else '>='} {self.least}, got {value!r}")
        if self.most is not None and value > self.most:
            raise FskdError(f"{source}: {key} must be <= {self.most}{self.why}, got {value!r}")


@dataclass(frozen=True)
class _Arg:
    """A known argument of a free-form mapping: its type, the range of its numbers, the length of its list."""

    tp: Any
    range: _Range | None = None
    length: int | None = None


_RANGES = {
    "seed": _Range(0, 2**32 - 1, why=" (numpy takes seeds below 2**32)"),
    "data.workers": _Range(0, 1024), "train.batch_size": _Range(1), "train.lr": _Range(0, above=True),
    "train.momentum": _Range(0, 1), "train.weight_decay": _Range(0), "train.gamma": _Range(0, above=True),
    "train.log_every": _Range(1), "train.ckpt_every": _Range(0), "train.epochs": _Range(1, 10**6),
    "train.steps": _Range(1, 10**9), "distill.weight": _Range(0), "distill.teacher_weight": _Range(0),
}
_WIDTH, _DEPTH = _Range(1, 2048), _Range(1, 1000)
#: the arguments of the model factories (``model.kwargs``), the margin heads (``model.head_kwargs``) and the
#: distillers (``distill.options``, ``distill.teacher_options``) whose values would otherwise reach torch
#: unchecked; the factories check the names against their signatures when the run is built
_ARGS = {
    "layers": _Arg(list[int], _DEPTH, length=4), "width": _Arg(int, _WIDTH), "base_width": _Arg(int, _WIDTH),
    "embedding_size": _Arg(int | None, _Range(1, 65536)), "input_size": _Arg(int, _Range(16, 4096)),
    "in_channels": _Arg(int, _Range(1, 64)), "dropout": _Arg(float, _Range(0, 1)), "cbam": _Arg(bool),
    "cbam_kernel": _Arg(int, _Range(1, 63)), "head": _Arg(str), "block": _Arg(str),
    "s": _Arg(float, _Range(0, above=True)), "m": _Arg(float, _Range(-1, 1)),
    "distance_weight": _Arg(float, _Range(0)), "angle_weight": _Arg(float, _Range(0)), "normalize": _Arg(bool),
    "reduction": _Arg(str), "hint_layers": _Arg(bool | None), "clip": _Arg(bool), "train_bridge": _Arg(bool),
    "init": _Arg(str), "freeze_bn": _Arg(str | None), "blocks": _Arg(list[int], _DEPTH),
    "strides": _Arg(list[int], _Range(1, 2)), "channels": _Arg(list[int] | None, _WIDTH),
}


def _arguments(value: dict[str, Any], where: Callable[[str], str], key: str) -> dict[str, Any]:
    """A free-form mapping with the arguments fskd knows (:data:`_ARGS`) read and checked; others as given
    (``model.preprocess``'s numbers are read here, the whole checked by :class:`.Preprocess`)."""
    out = dict(value)
    if key == "model.preprocess":
        for name in {"mean", "std"} & set(value):
            stat = value[name]
            read = [_scalar(float, v, where(key), f"{key}.{name}") for v in (stat if isinstance(stat, list) else [stat])]
            out[name] = read if isinstance(stat, list) else read[0]
        return out
    for name, arg in ((n, _ARGS.get(str(n))) for n in value):
        if arg is None:
            continue
        dotted = f"{key}.{name}"
        out[name] = _coerce(arg.tp, value[name], where, dotted)
        numbers = out[name] if isinstance(out[name], list) else [out[name]]
        if arg.length is not None and len(numbers) != arg.length:
            raise FskdError(f"{where(dotted)}: {dotted} must list {arg.length} values, got {out[name]!r}")
        for number in numbers:
            if arg.range is not None and number is not None:
                arg.range.check(number, where(dotted), dotted)
    return out


def check_arguments(value: dict[str, Any], source: str, key: str) -> dict[str, Any]:
    """The known arguments of ``value`` checked as a recipe's are (:data:`_ARGS`), errors naming ``source``: a
    checkpoint's recorded model and head arguments reach the same factories, so they get the same ranges."""
    return _arguments(value, lambda _: source, key)


_CHOICES = (("data.degrade", ("disk", "device")), ("train.amp", ("auto", "off", "bf16", "fp16")))


def _validate(cfg: RunConfig, where: Callable[[str], str]) -> None:
    """Ranges, choices and the run's name, each error naming the recipe (or the option) and the key."""
    for key, bounds in _RANGES.items():
        value = _get(cfg, key)
        if value is not None:
            bounds.check(value, where(key), key)
    for key, choices in _CHOICES:
        if _get(cfg, key) not in choices:
            raise FskdError(f"{where(key)}: {key} must be one of {', '.join(choices)}, got {_get(cfg, key)!r}")
    if not _DEVICE.fullmatch(cfg.device):
        raise FskdError(f"{where('device')}: device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    safe_name(cfg.name, f"{where('name')}: name (it names the run folder, runs/NAME-...)")
    t = cfg.train
    if t.nesterov and t.momentum == 0:
        raise FskdError(f"{where('train.nesterov')}: train.nesterov needs train.momentum > 0 (Nesterov momentum "
                        "without momentum is refused by torch's SGD)")
    if (t.epochs is None) == (t.steps is None):
        raise FskdError(f"{where('train.steps')}: set exactly one of train.epochs and train.steps")
    total = t.epochs if t.epochs is not None else t.steps
    if any(b <= a for a, b in pairwise(t.milestones)) or any(not 0 < m <= total for m in t.milestones):
        raise FskdError(f"{where('train.milestones')}: train.milestones must be increasing and within the run "
                        f"(1..{total}), got {t.milestones}")
    try:
        Preprocess.from_dict(cfg.model.preprocess)
    except (TypeError, ValueError) as e:
        raise FskdError(f"{where('model.preprocess')}: model.preprocess: {e}") from None


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


#: recipe keys that name a file or folder: the same place written another way (relative or absolute, a run folder
#: or its checkpoint.pt) is no change
_PATH_KEYS = ("data.path", "distill.teacher")


def _same_place(old: Any, new: Any) -> bool:
    """Whether two recorded paths name the same existing file, seen from here (a run folder as its checkpoint.pt)."""
    if not (isinstance(old, str) and isinstance(new, str) and old and new):
        return False

    def where(path: str) -> Path:
        p = Path(path).resolve()
        return p / "checkpoint.pt" if p.is_dir() and (p / "checkpoint.pt").is_file() else p

    return where(old).exists() and where(old) == where(new)


def resume_changes(old: dict[str, Any], new: RunConfig) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """The (key, old, new) differences between a checkpoint's config and ``new``: (refused, safe) ones."""
    a, b = flatten(old), flatten(new.to_dict())
    changes = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
               if a.get(k) != b.get(k) and not (k in _PATH_KEYS and _same_place(a.get(k), b.get(k)))]
    return ([c for c in changes if c[0] not in RESUME_SAFE_KEYS], [c for c in changes if c[0] in RESUME_SAFE_KEYS])
