"""``fskd verify A B``: same person or not, at a threshold the run's own evaluation chose.

The threshold comes from the newest insightface-protocol verification eval of the run
(``runs/NAME/eval/*.json``) at the matching scale. That protocol thresholds the squared L2 distance
``d`` of the L2-normalised (image + mirror) sums, which is exactly what :func:`~fskd_cli.use.embed.embed_crops`
returns, and ``d = 2 - 2 cos``; so a distance threshold ``t`` is the cosine threshold ``1 - t / 2`` and
``same iff d < t`` is ``same iff cos > 1 - t / 2``. The eval JSON holds one threshold per fold (each chosen
on the other nine folds); their mean is used. Evals under the ``authors`` protocol score a cosine after
subtracting the test folds' mean embedding, which two lone photos do not have, so they are not used;
neither are cross-resolution evals (HR against LR).

The matching scale is ``--scale`` when the photos are degraded here, otherwise the scale the run was
trained at (a teacher's is 1; a multi-resolution student takes its newest eval at any scale).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FskdError
from ..core.scale import Scale
from ..inference.model import ReadyModel
from .embed import embed_crops
from .photos import Cropper


@dataclass(frozen=True)
class Threshold:
    """A cosine threshold and where it came from (``eval_json`` is None when given by the user)."""

    cosine: float
    source: str
    dataset: str | None = None
    scale: str | None = None
    protocol: str | None = None
    eval_json: str | None = None


@dataclass(frozen=True)
class Verdict:
    same: bool
    cosine: float
    threshold: Threshold
    a: str
    b: str

    def line(self) -> str:
        """``same  cosine 0.631  threshold 0.548 (agedb x8, insightface protocol, runs/x/eval/agedb_x8_insightface.json)``."""
        return (f"{'same' if self.same else 'different'}  cosine {self.cosine:.3f}  threshold {self.threshold.cosine:.3f} "
                f"({self.threshold.source})")

    def to_json(self) -> str:
        return json.dumps({"decision": "same" if self.same else "different", "same": self.same, "cosine": self.cosine,
                           "threshold": self.threshold.cosine, "a": self.a, "b": self.b,
                           **{f"threshold_{k}": v for k, v in asdict(self.threshold).items() if k != "cosine"}})


def verify(model: ReadyModel, a: str | Path | np.ndarray, b: str | Path | np.ndarray, *, threshold: float | None = None,
           scale: Scale | None = None) -> Verdict:
    """Embed photos ``a`` and ``b`` (files or uint8 RGB arrays, aligned as ``prepare`` does) and decide at
    ``threshold`` (a cosine; default: :func:`eval_threshold`)."""
    if threshold is not None and not -1 <= threshold <= 1:
        raise FskdError(f"--threshold: a cosine lies in [-1, 1], got {threshold}")
    chosen = Threshold(threshold, "given by --threshold") if threshold is not None else eval_threshold(model, scale)
    photos = Cropper(model.input_size, aligned=False, device=str(model.device))([a, b])
    for photo in photos:
        if photo.crop is None:
            raise FskdError(f"{photo.path}: {photo.status.replace('_', ' ')} ({photo.reason})")
    emb = embed_crops(model, np.stack([p.crop for p in photos]), scale=scale or Scale.x1)
    cosine = float(np.dot(emb[0].astype(np.float64), emb[1].astype(np.float64)))
    return Verdict(cosine > chosen.cosine, cosine, chosen, photos[0].path, photos[1].path)


def eval_threshold(model: ReadyModel, scale: Scale | None = None) -> Threshold:
    """The cosine threshold of the run's newest usable verification eval (module docstring), or an error."""
    wanted = scale or model.setting.scale
    folder = model.checkpoint.run_dir / "eval"
    evals = [e for e in map(_read_eval, sorted(folder.glob("*.json"))) if e is not None]
    usable = [e for e in evals if e["protocol"] == "insightface" and not e.get("cross_resolution")
              and (wanted is Scale.multi or str(e["scale"]) == wanted.value)]
    if not usable:
        others = sorted({f"{e['dataset']} x{e['scale']} {e['protocol']}" for e in evals})
        seen = f"; found only {', '.join(others)}" if others else ""
        raise FskdError(f"{folder}: no insightface-protocol verification eval at scale {wanted.value}{seen}; run "
                        f"`fskd eval agedb --ckpt {model.checkpoint.run_dir} --scale {wanted.value}` first, or pass --threshold")
    newest = max(usable, key=lambda e: (e.get("timestamp", ""), e["json"]))
    cosine = 1.0 - float(np.mean(newest["fold_thresholds"])) / 2.0
    where = f"{newest['dataset']} x{newest['scale']}, insightface protocol, {newest['json']}"
    return Threshold(cosine, where, newest["dataset"], str(newest["scale"]), "insightface", newest["json"])


def _read_eval(path: Path) -> dict[str, Any] | None:
    """A verification eval JSON (one with fold thresholds), or None for other evals and unreadable files."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("fold_thresholds") or "protocol" not in data:
        return None
    return {**data, "json": str(path)}
