"""Checkpoints: the file between training and every later stage, read by one loader into one immutable type.

On disk a checkpoint is a plain dict of tensors and Python values, loadable with ``weights_only=True``,
written to a temp file and renamed (a kill at any moment leaves the last good one). :func:`load_checkpoint`
is the only reader: it checks the file, every entry's type, the weights' finiteness and the recorded
settings, and returns a :class:`Checkpoint` that carries what a later stage needs without the recipe or the
data folder: architecture and head, embedding size, input convention, how the run's LR images were made,
the teacher it came from, the data fingerprint and the fskd version. Each problem is one line naming the
file. Tensor names and shapes are checked where the inference layer builds the model
(:func:`fskd_cli.inference.model.build_backbone`), the only place that knows the architectures.

Checkpoints written before a field existed still load; the field is then completed from where it can be
read (the config inside the checkpoint, the training set's ``meta.yaml``, the teacher's ``config.yaml``) and
:attr:`Checkpoint.notes` says where, so nothing is guessed silently.
"""

from __future__ import annotations

import copy
import errno
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import yaml

from .. import __version__
from .config import check_arguments
from .errors import FskdError
from .guard import note_checkpoint
from .io import atomic_path
from .preprocess import Preprocess
from .scale import INTERPOLATIONS, Scale

KINDS = ("teacher", "student")
#: the input sizes a checkpoint may record: those a recipe may give (``model.kwargs.input_size``); a larger one
#: would have every photo resized to it (10^5 px square: 30 GB a crop) before any weight is used
INPUT_SIZES = (16, 4096)


@dataclass(frozen=True)
class Architecture:
    """A registered builder's name and keyword arguments (a backbone or a head)."""

    name: str
    kwargs: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": copy.deepcopy(dict(self.kwargs))}


@dataclass(frozen=True)
class Degradation:
    """How a run's LR training images were made from HR, and where that was read (``source``)."""

    interpolation: str = "bilinear"
    antialias: bool = False
    scales: tuple[int, ...] = (1,)  # the factors the run trained on: (1,) teacher, (4,) a 4x student, (1, 2, 4, 8) multi
    source: str = "checkpoint"

    def to_dict(self) -> dict[str, Any]:
        return {"interpolation": self.interpolation, "antialias": self.antialias, "scales": list(self.scales),
                "from": self.source}


@dataclass(frozen=True)
class Checkpoint:
    """A loaded, checked checkpoint; see the module docstring. Built only by :func:`load_checkpoint`."""

    path: Path
    kind: str  # teacher | student
    arch: Architecture
    head: Architecture
    num_classes: int
    input_size: int
    embedding_size: int
    preprocess: Preprocess
    method: str | None  # the distillation method of a student; a teacher run's auxiliary method (qualnet-decoder)
    scale: Scale
    degradation: Degradation
    teacher: str | None  # the teacher checkpoint a student was distilled from
    variant: str  # plain | dec (QualNet decoder teacher, or a student of one) | cbam
    data_fingerprint: str | None
    fskd_version: str
    step: int
    weights: Mapping[str, torch.Tensor]
    head_weights: Mapping[str, torch.Tensor]
    distiller_weights: Mapping[str, torch.Tensor]
    imported: Mapping[str, Any] | None  # how an imported teacher was made (fskd import-teacher)
    notes: tuple[str, ...]  # fields this file lacked, and where they were read instead
    _config: Mapping[str, Any] = field(repr=False)
    _training: Mapping[str, Any] = field(repr=False)  # optimizer, scheduler, scaler, rng, meters, teacher_weights: for --resume

    @property
    def config(self) -> dict[str, Any]:
        """The resolved recipe the run was trained with (a copy: the checkpoint stays as read)."""
        return copy.deepcopy(dict(self._config))

    def training_state(self, key: str) -> Any:
        """The resume state ``key`` (optimizer, scheduler, scaler, rng, meters); FskdError when missing."""
        if key not in self._training:
            raise FskdError(f"{self.path}: has no {key} state to resume from (an imported or foreign checkpoint?)")
        return self._training[key]

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def run(self) -> str:
        return self.path.parent.name

    @property
    def seed(self) -> int | None:
        seed = self._config.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def data(self) -> str | None:
        """The training set's folder, as the recipe named it."""
        return (self._config.get("data") or {}).get("path") or None


# ---------------------------------------------------------------------------------------------------- writing

def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically; through a file object, so a full disk surfaces as an OSError (-> one-line FskdError).

    The path is noted for the CLI's Ctrl-C message ("interrupted; last checkpoint: PATH").
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save({**payload, "fskd_version": __version__}, f)
    note_checkpoint(path)


# ---------------------------------------------------------------------------------------------------- reading

def load_checkpoint(path: str | Path, kind: str | None = None) -> Checkpoint:
    """Read and check a checkpoint (a run folder or its ``checkpoint.pt``); ``kind`` is required when given."""
    path = _file(Path(path))
    raw = _read(path)
    ck = _Reader(path, raw).checkpoint()
    if kind and ck.kind != kind:
        what = f"a {ck.kind} checkpoint" + (f" (method {ck.method})" if ck.kind == "student" else "")
        raise FskdError(f"{path}: {what}, but a {kind} checkpoint is needed here")
    return ck


def _file(path: Path) -> Path:
    if path.is_dir():
        if not os.path.lexists(path / "checkpoint.pt"):  # a broken link there is named below
            named_as_file = path.suffix in (".pt", ".pth", ".ckpt")
            raise FskdError(f"{path}: {'a folder, not a checkpoint file' if named_as_file else 'a folder without checkpoint.pt'}")
        path = path / "checkpoint.pt"
    if not path.exists():
        if path.is_symlink():  # "not found" would send the user looking for a file that is there
            target = os.readlink(path)
            what = "a symbolic link loop" if _loops(path) else f"a broken symbolic link (to {target})"
            raise FskdError(f"{path}: {what}, not a checkpoint")
        raise FskdError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise FskdError(f"{path}: not a file (a checkpoint is a file, or a run folder holding checkpoint.pt)")
    return path


def _loops(link: Path) -> bool:
    """Whether following ``link`` leads back to itself (ELOOP), rather than to nothing."""
    try:
        link.stat()
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


#: how a file torch.save wrote begins: a zip archive (torch >= 1.6) or a pickle (the legacy format)
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
#: what else a user passes as --ckpt by mistake, by its first bytes
_OTHER_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"\x7fELF": "a program"}


def _check_magic(path: Path) -> None:
    """A file that is not a PyTorch file at all (an image, the run's config.yaml) named as such, rather than
    by torch's advice on unpickling."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_TORCH_MAGIC):
        return
    what = next((name for magic, name in _OTHER_MAGIC.items() if head.startswith(magic)), None)
    if what is None:
        what = "an empty file" if not head else "a text file" if _is_text(head) else "a file"
    raise FskdError(f"{path}: not a readable fskd checkpoint ({what}, not one torch.save wrote; give a run folder "
                    "or its checkpoint.pt)")


def _is_text(head: bytes) -> bool:
    text = head.decode("utf-8", errors="ignore")  # 8 bytes may cut a character short
    return bool(text) and all(c.isprintable() or c in "\t\r\n" for c in text)


def _read(path: Path) -> dict[str, Any]:
    """The file's dict. Whatever ``torch.load`` raises on a foreign or damaged file is that file's problem,
    so every exception of this one call becomes the one line (nothing else runs inside the try)."""
    _check_magic(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (a user's file: any failure to deserialise it is "not readable")
        reason = (str(e) or type(e).__name__).splitlines()[0][:120]
        raise FskdError(f"{path}: not a readable fskd checkpoint ({type(e).__name__}: {reason})") from None
    if not isinstance(raw, dict) or "arch" not in raw or "kind" not in raw:
        raise FskdError(f"{path}: not an fskd checkpoint (no 'arch'/'kind' entries)")
    return raw


class _Reader:
    """Checks one raw checkpoint dict entry by entry; every problem is an FskdError naming the file."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path, self.raw = path, raw
        self.notes: list[str] = []

    def fail(self, what: str) -> FskdError:
        return FskdError(f"{self.path}: {what}")

    def checkpoint(self) -> Checkpoint:
        raw = self.raw
        kind = raw.get("kind")
        if kind not in KINDS:
            raise self.fail(f"kind is {kind!r}; an fskd checkpoint is a {' or a '.join(KINDS)}")
        config = self._config()
        method = self._optional_str("method")
        if kind == "student" and not method:
            raise self.fail("a student checkpoint without its method")
        weights, head_weights = self._tensors("model"), self._tensors("head")
        distiller = self._tensors("distiller", allow_empty=True) if "distiller" in raw else {}
        scale = self._scale(kind, config)
        num_classes, embedding_size = self._int("num_classes", minimum=0), self._embedding_size(head_weights)
        self._check_head_shape(head_weights, num_classes, embedding_size)
        return Checkpoint(
            path=self.path, kind=kind, arch=self._arch("arch"), head=self._arch("head_arch"),
            num_classes=num_classes, input_size=self._input_size(config),
            embedding_size=embedding_size, preprocess=self._preprocess(),
            method=method, scale=scale, degradation=self._degradation(config, scale),
            teacher=self._optional_str("teacher"), variant=self._variant(kind, config),
            data_fingerprint=self._optional_str("data_fingerprint"),
            fskd_version=self._optional_str("fskd_version") or "unknown", step=self._int("step", minimum=0, default=0),
            weights=MappingProxyType(weights), head_weights=MappingProxyType(head_weights),
            distiller_weights=MappingProxyType(distiller),
            imported=MappingProxyType(self._mapping("imported")) if raw.get("imported") is not None else None,
            notes=tuple(self.notes), _config=MappingProxyType(config),
            _training=MappingProxyType({k: raw[k] for k in ("optimizer", "scheduler", "scaler", "rng", "meters",
                                                            "log_sums", "total_steps", "epoch", "teacher_weights")
                                       if k in raw}))

    # --- entries -------------------------------------------------------------------------------------------
    def _arch(self, key: str) -> Architecture:
        arch = self.raw.get(key)
        if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not arch["name"]:
            raise self.fail(f"{key} must be {{name: str, kwargs: mapping}}, got {_short(arch)}")
        kwargs = arch.get("kwargs") or {}
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise self.fail(f"{key}.kwargs must be a mapping of names, got {_short(kwargs)}")
        kwargs = check_arguments(kwargs, str(self.path), f"{key}.kwargs")  # the ranges a recipe's arguments have
        return Architecture(arch["name"], MappingProxyType(copy.deepcopy(kwargs)))

    def _config(self) -> dict[str, Any]:
        """The recorded recipe; the sections later stages read (``data``, ``model``, ``distill``) must be
        mappings and the training set's path text, or an old checkpoint's missing fields could not be read."""
        config = self._mapping("config", required=False)
        for section in ("data", "model", "distill"):
            value = config.get(section)
            if value is not None and not isinstance(value, dict):
                raise self.fail(f"config.{section} must be a mapping, got {_short(value)}")
        for section, key in (("data", "path"), ("data", "eval_split"), ("distill", "teacher_method")):
            value = (config.get(section) or {}).get(key)
            if value is not None and not isinstance(value, str):
                raise self.fail(f"config.{section}.{key} must be text, got {_short(value)}")
        kwargs = (config.get("model") or {}).get("kwargs")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise self.fail(f"config.model.kwargs must be a mapping, got {_short(kwargs)}")
        return config

    def _mapping(self, key: str, required: bool = True) -> dict[str, Any]:
        value = self.raw.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"{key} must be a mapping, got {_short(value)}")
        return value

    def _tensors(self, key: str, allow_empty: bool = False) -> dict[str, torch.Tensor]:
        """A state dict: names -> tensors, every floating-point value finite (NaN weights embed as NaN)."""
        state = self._mapping(key)
        if not state and not allow_empty and key == "model":
            raise self.fail("no model weights ('model' is empty)")
        for name, tensor in state.items():
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                raise self.fail(f"{key} must map names to tensors; {name!r} holds {type(tensor).__name__}")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise self.fail(f"{key} weight {name} holds {bad} non-finite values (NaN or inf); the run diverged "
                                "or the file is damaged: use an earlier checkpoint")
        return dict(state)

    def _int(self, key: str, minimum: int, default: int | None = None, maximum: int | None = None) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
            bounds = f"in [{minimum}, {maximum}]" if maximum else f">= {minimum}"
            raise self.fail(f"{key} must be an integer {bounds}, got {_short(value)}")
        return value

    def _optional_str(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{key} must be text, got {_short(value)}")
        return value or None

    def _input_size(self, config: dict[str, Any]) -> int:
        if "input_size" in self.raw:
            return self._int("input_size", minimum=INPUT_SIZES[0], maximum=INPUT_SIZES[1])
        size = ((config.get("model") or {}).get("kwargs") or {}).get("input_size")
        self.notes.append("input_size: not recorded; read from the model's arguments (default 112 for faces)")
        return int(size) if isinstance(size, int) and size > 0 else 112

    def _embedding_size(self, head_weights: dict[str, torch.Tensor]) -> int:
        if "embedding_size" in self.raw:
            return self._int("embedding_size", minimum=1)
        weight = head_weights.get("weight")
        if weight is None or weight.dim() != 2:
            raise self.fail("records no embedding_size and its head has no [classes, embedding] weight")
        return int(weight.shape[1])

    def _check_head_shape(self, head_weights: dict[str, torch.Tensor], num_classes: int, embedding_size: int) -> None:
        """The head's ``[classes, embedding]`` weight agrees with the recorded sizes: checked here, before a head of
        the recorded sizes is built (10^9 classes would take 128 GB before its shape could be compared)."""
        weight = head_weights.get("weight")
        if weight is not None and weight.dim() == 2 and tuple(weight.shape) != (num_classes, embedding_size):
            raise self.fail(f"head weight has shape {tuple(weight.shape)}, but the checkpoint records "
                            f"num_classes {num_classes} and embedding_size {embedding_size}")

    def _preprocess(self) -> Preprocess:
        value = self.raw.get("preprocess")
        if value is not None and not isinstance(value, dict):
            raise self.fail(f"preprocess must be a mapping {{color, mean, std}}, got {_short(value)}")
        unknown = sorted(set(value or {}) - {"color", "mean", "std"})
        if unknown:
            raise self.fail(f"preprocess has unknown entry {unknown[0]!r} (known: color, mean, std)")
        try:
            return Preprocess.from_dict(value)
        except (TypeError, ValueError) as e:  # Preprocess checks its own values and raises ValueError
            raise self.fail(f"preprocess: {e}") from None

    def _scale(self, kind: str, config: dict[str, Any]) -> Scale:
        # a recorded scale wins, whatever it holds (0 included); only a checkpoint without one reads its recipe
        value = self.raw["scale"] if "scale" in self.raw else (config.get("distill") or {}).get("scale")
        if kind == "teacher":  # trained on HR images; an older teacher records no scale
            if value is not None and str(value) != Scale.x1.value:
                raise self.fail(f"scale is {_short(value)}, but a teacher is trained at scale 1 (HR images)")
            return Scale.x1
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(f"scale must be one of {', '.join(s.value for s in Scale)}, got {_short(value)}")
        try:
            return Scale.parse(value)
        except ValueError as e:
            raise self.fail(f"scale: {e}") from None

    def _degradation(self, config: dict[str, Any], scale: Scale) -> Degradation:
        """The recorded training degradation; an older checkpoint's from its training set's meta.yaml, said in notes."""
        value = self.raw.get("degradation")
        if isinstance(value, dict):
            return self._checked_degradation(value, scale, "checkpoint")
        if value is not None:
            raise self.fail(f"degradation must be a mapping, got {_short(value)}")
        data = (config.get("data") or {}).get("path")
        meta = _yaml(Path(data) / "meta.yaml") if data else None
        if meta and isinstance(meta.get("degradation"), dict):
            where = str(Path(data) / "meta.yaml")
            version = self.raw.get("fskd_version", "?")
            self.notes.append(f"degradation: not recorded (written by fskd {version}); read from {where}")
            return self._checked_degradation(meta["degradation"], scale, where)
        where = f"not recorded, and the training set's meta.yaml ({data or 'no data path'}) was not found: assumed bilinear"
        self.notes.append(f"degradation: {where}")
        return Degradation(scales=scale.factors, source=where)

    def _checked_degradation(self, value: dict[str, Any], scale: Scale, source: str) -> Degradation:
        interpolation, antialias = value.get("interpolation", "bilinear"), value.get("antialias", False)
        if interpolation not in INTERPOLATIONS or not isinstance(antialias, bool):
            raise self.fail(f"degradation must give interpolation ({', '.join(INTERPOLATIONS)}) and antialias "
                            f"(true/false), got {_short(value)}")
        scales = value.get("scales", scale.factors)
        if not isinstance(scales, list | tuple) or not all(isinstance(s, int) and s in (1, 2, 4, 8) for s in scales):
            raise self.fail(f"degradation.scales must list factors among 1, 2, 4, 8, got {_short(scales)}")
        if tuple(scales) != scale.factors:  # what the run trained on is what its scale says
            raise self.fail(f"degradation.scales {list(scales)} contradicts scale {scale.value} (which trains on "
                            f"{list(scale.factors)})")
        return Degradation(interpolation, antialias, tuple(scales), source)

    def _variant(self, kind: str, config: dict[str, Any]) -> str:
        """``cbam`` (CBAM in the backbone), ``dec`` (a QualNet-decoder teacher, or a student of one) or ``plain``."""
        value = self.raw.get("variant")
        if value is not None:
            if value not in ("plain", "dec", "cbam"):
                raise self.fail(f"variant must be plain, dec or cbam, got {_short(value)}")
            return value
        if ((config.get("model") or {}).get("kwargs") or {}).get("cbam"):
            return "cbam"
        if kind == "teacher":
            return "dec" if (config.get("distill") or {}).get("teacher_method") else "plain"
        teacher = self.raw.get("teacher")
        teacher_cfg = _yaml(Path(teacher).parent / "config.yaml") if isinstance(teacher, str) and teacher else None
        if teacher and teacher_cfg is None:
            self.notes.append(f"variant: not recorded and the teacher's config.yaml ({Path(teacher).parent}) was not "
                              "found: taken as plain")
        return "dec" if teacher_cfg and (teacher_cfg.get("distill") or {}).get("teacher_method") else "plain"


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, torch.Tensor) else f"a tensor {tuple(value.shape)}"
    return text if len(text) <= 60 else text[:57] + "..."


def _yaml(path: Path) -> dict[str, Any] | None:
    """A YAML mapping, or None when the file is absent or unreadable (the caller then says so)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
