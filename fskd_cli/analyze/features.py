"""A study: a teacher and its students, the images they are compared on, and their block features.

``fskd analyze norms|correlation|attention --ckpt STUDENT`` needs nothing else: a student's checkpoint
records its teacher (``teacher``), its training set (``config.data.path`` and ``eval_split``) and its
scale; options override each. Figures go beside the first student's run (``runs/NAME/analysis/``).
Each student sees LR images made the way it was trained (:class:`~fskd_cli.evaluate.embed.LowRes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.checkpoint import build_model, load_checkpoint
from ..core.device import resolve_device
from ..core.errors import FskdError
from ..core.preprocess import Preprocess
from ..core.runs import RunSetting
from ..core.scale import Scale
from ..data.manifest import Row, read_manifest
from ..evaluate.embed import LowRes, batches
from ..evaluate.results import check_output_folder
from ..models.tap import FeatureTap


@dataclass
class Study:
    """Everything an analysis compares; made by :func:`open_study`."""

    teacher: dict[str, Any]
    students: list[dict[str, Any]]
    data: str
    split: str | None
    scale: int
    out: Path
    device: torch.device
    lr_source: str = "degrade"

    def lowres(self, ck: dict[str, Any]) -> LowRes:
        """How ``ck``'s LR images are made: its own training degradation, or the files on disk."""
        return LowRes.for_run(RunSetting.of(ck).degradation, self.lr_source)

    def rows(self, n: int, seed: int) -> list[Row]:
        """``n`` usable images of the split drawn with ``seed`` (all of them when ``n`` is 0), in manifest order."""
        rows = read_manifest(self.data, split=self.split)
        if not rows:
            raise FskdError(f"{Path(self.data) / 'manifest.csv'}: no usable images in split {self.split!r} (--split)")
        if n and n < len(rows):
            g = torch.Generator().manual_seed(seed)
            rows = [rows[i] for i in sorted(torch.randperm(len(rows), generator=g)[:n].tolist())]
        return rows


def open_study(students: list[Path], *, teacher: Path | None = None, data: str | None = None,
               scale: Scale | str | int | None = None, out: Path | None = None, split: str | None = "default",
               device: str = "auto", lr_source: str = "degrade", what: str = "analysis", force: bool = False) -> Study:
    """Load the students and their teacher; fill what was not given from the first student's checkpoint.

    ``split='default'`` is the student's evaluation split (``data.eval_split``) when the set has images in it,
    else every usable image; ``None`` is every usable image.
    """
    if not students:
        raise FskdError("--ckpt: name at least one student checkpoint")
    s_cks = [load_checkpoint(s, kind="student") for s in students]
    _label_students(s_cks)
    first = s_cks[0].get("config") or {}
    data = data or (first.get("data") or {}).get("path")
    if not data:
        raise FskdError(f"{s_cks[0]['path']}: records no training data; give --data")
    if split == "default":  # the student's eval split when the set has it (a face training set has none: all)
        split = (first.get("data") or {}).get("eval_split")
        split = split if split and read_manifest(data, split=split) else None
    out = check_output_folder(out or Path(s_cks[0]["path"]).parent / what, force=force)
    return Study(_teacher(s_cks, teacher), s_cks, str(data), split, _scale(s_cks, scale), out, resolve_device(device),
                 lr_source)


def _teacher(s_cks: list[dict[str, Any]], given: Path | None) -> dict[str, Any]:
    """The teacher named by ``--teacher``, else the one the students were distilled from (one line if none or several)."""
    if given is None:
        named = sorted({ck["teacher"] for ck in s_cks if ck.get("teacher")})
        if not named:
            raise FskdError(f"{s_cks[0]['path']}: the students record no teacher (a base student has none); give --teacher")
        if len(named) > 1:
            raise FskdError(f"--ckpt: the students were distilled from different teachers ({', '.join(named)}); "
                            "give --teacher")
        if not Path(named[0]).exists():
            raise FskdError(f"{named[0]}: teacher checkpoint not found (recorded in {s_cks[0]['path']}); give --teacher")
        given = Path(named[0])
    t_ck = load_checkpoint(given, kind="teacher")
    t_ck["label"] = "teacher"
    return t_ck


def _scale(s_cks: list[dict[str, Any]], given: Scale | str | int | None) -> int:
    """The LR factor the students are shown: ``--scale``, else the one they were all trained at."""
    if given is None:
        trained = {Scale.parse(ck.get("scale") or "1") for ck in s_cks}
        if len(trained) > 1 or Scale.multi in trained or Scale.x1 in trained:
            names = ", ".join(sorted(s.value for s in trained))
            raise FskdError(f"--scale: the students were trained at {names}; give the LR scale to compare at (2, 4 or 8)")
        given = trained.pop()
    parsed = Scale.parse(given)
    if parsed.factors[0] not in (2, 4, 8) or parsed is Scale.multi:
        raise FskdError(f"--scale must be 2, 4 or 8, got {parsed.value}")
    return parsed.factors[0]


def _label_students(s_cks: list[dict[str, Any]]) -> None:
    """Each student's label: its method, or its run name when two students share a method."""
    methods = [RunSetting.of(ck).method for ck in s_cks]
    for ck, method in zip(s_cks, methods, strict=True):
        ck["label"] = Path(ck["path"]).parent.name if methods.count(method) > 1 else method


def paired_features(study: Study, s_ck: dict[str, Any], rows: list[Row], batch_size: int = 64
                    ) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor], list[str]]]:
    """Yield per batch: the teacher's block features on HR, the student's on LR, the images' paths."""
    lowres = study.lowres(s_ck)
    ds = lowres.dataset(study.data, rows, study.scale)
    t_net, s_net = build_model(study.teacher)[0].to(study.device), build_model(s_ck)[0].to(study.device)
    t_pre, s_pre = (Preprocess.from_dict(ck.get("preprocess")) for ck in (study.teacher, s_ck))
    t_tap, s_tap = FeatureTap(t_net, t_net.feature_layers), FeatureTap(s_net, s_net.feature_layers)
    try:
        with torch.inference_mode():
            for hr, lr, indices in batches(ds, lowres, study.scale, batch_size, f"features {s_ck['label']}"):
                t_net(t_pre.apply(hr, study.device))
                s_net(s_pre.apply(lr, study.device))
                yield ([f.float().cpu() for f in t_tap.features], [f.float().cpu() for f in s_tap.features],
                       [rows[i].path for i in indices])
    finally:
        t_tap.remove()
        s_tap.remove()


def per_image_norms(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [f.flatten(1).norm(dim=1) for f in feats]
