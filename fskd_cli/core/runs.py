"""What a run is, read once from its checkpoint: its name, its method and the setting it was trained in.

Eval writes this setting into every eval JSON (``setting``), so tables and reports read one record per
eval instead of walking ``config.yaml`` files (and their teachers'); analyze takes the teacher, the data
and the scale of a student from it. One place, so a legend, a results row and a table row never name
the same run differently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .preprocess import Preprocess
from .scale import Scale

DEFAULT_DEGRADATION = {"interpolation": "bilinear", "antialias": False}


@dataclass(frozen=True)
class RunSetting:
    """A run's identity and training setting; ``variant`` is the network family the paper's tables use."""

    run: str  # the run's folder name
    kind: str  # teacher | student
    method: str  # the distillation method; "teacher" for a teacher run
    scale: str  # Scale value the run was trained at ("1" for a teacher)
    teacher: str | None  # the teacher checkpoint a student was distilled from
    recipe: str  # the recipe's run name
    seed: int | None
    data: str | None  # the training set folder
    degradation: dict[str, Any]  # interpolation, antialias, and "from": where that was read
    preprocess: dict[str, Any]  # core.preprocess.Preprocess of the model's input
    variant: str  # plain | dec (teacher with QualNet's decoder) | cbam
    backbone: str  # architecture, e.g. "iresnet50+CBAM (width 16)"

    @classmethod
    def of(cls, ck: dict[str, Any]) -> RunSetting:
        """The setting of a loaded checkpoint (``core.checkpoint.load_checkpoint``)."""
        cfg = ck.get("config") or {}
        kind = ck["kind"]
        return cls(
            run=Path(ck["path"]).parent.name, kind=kind,
            method=str(ck.get("method")) if kind == "student" else "teacher",
            scale=Scale.parse(ck.get("scale") or (cfg.get("distill") or {}).get("scale") or 1).value
            if kind == "student" else Scale.x1.value,
            teacher=ck.get("teacher"), recipe=str(cfg.get("name", "")), seed=cfg.get("seed"),
            data=(cfg.get("data") or {}).get("path"), degradation=training_degradation(ck),
            preprocess=Preprocess.from_dict(ck.get("preprocess")).to_dict(), variant=_variant(ck),
            backbone=_backbone(ck))

    @property
    def legend(self) -> str:
        """A curve's legend: the run name, and its method when the name does not say it."""
        return self.run if self.method in self.run else f"{self.run} ({self.method})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_degradation(ck: dict[str, Any]) -> dict[str, Any]:
    """How the run's LR images were made (interpolation, antialias), and where that was read.

    In order: the checkpoint's own record, the recipe's data section, the training set's ``meta.yaml``;
    a run whose training set has moved falls back to the paper's bilinear, and says so.
    """
    if isinstance(ck.get("degradation"), dict):
        return {**DEFAULT_DEGRADATION, **_pick(ck["degradation"]), "from": "checkpoint"}
    data = (ck.get("config") or {}).get("data") or {}
    if "interpolation" in data:
        return {**DEFAULT_DEGRADATION, **_pick(data), "from": "checkpoint config"}
    meta = _yaml(Path(data["path"]) / "meta.yaml") if data.get("path") else None
    if meta and isinstance(meta.get("degradation"), dict):
        return {**DEFAULT_DEGRADATION, **_pick(meta["degradation"]), "from": f"{Path(data['path']) / 'meta.yaml'}"}
    return {**DEFAULT_DEGRADATION, "from": "default (training set's meta.yaml not found)"}


def _pick(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in DEFAULT_DEGRADATION if k in d}


def _variant(ck: dict[str, Any]) -> str:
    """``cbam`` (CBAM in the backbone), ``dec`` (a teacher with QualNet's decoder, or a student of one) or ``plain``."""
    cfg = ck.get("config") or {}
    if ((cfg.get("model") or {}).get("kwargs") or {}).get("cbam"):
        return "cbam"
    if ck["kind"] == "teacher":
        return "dec" if (cfg.get("distill") or {}).get("teacher_method") else "plain"
    if ck.get("method") == "qualnet-lm":
        return "dec"
    teacher_cfg = _yaml(Path(ck["teacher"]).parent / "config.yaml") if ck.get("teacher") else None
    return "dec" if teacher_cfg and (teacher_cfg.get("distill") or {}).get("teacher_method") else "plain"


def _backbone(ck: dict[str, Any]) -> str:
    kwargs = ck["arch"].get("kwargs") or {}
    width = kwargs.get("base_width") or kwargs.get("width")
    return ck["arch"]["name"] + ("+CBAM" if kwargs.get("cbam") else "") + (f" (width {width})" if width else "")


def _yaml(path: Path) -> dict[str, Any] | None:
    """A YAML mapping, or None when the file is absent or unreadable (the setting then says so)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
