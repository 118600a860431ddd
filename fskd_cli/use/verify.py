"""``fskd verify A B``: same person or not, at a threshold the run's own evaluation chose.

The threshold comes from the newest insightface-protocol verification eval of the run
(``runs/NAME/eval/*.json``) at the matching scale. That protocol thresholds the squared L2 distance
``d`` of the L2-normalised (image + mirror) sums, which is exactly what :func:`~fskd_cli.use.embed.embed_crops`
returns, and ``d = 2 - 2 cos``; so a distance threshold ``t`` is the cosine threshold ``1 - t / 2`` and
``same iff d < t`` is ``same iff cos > 1 - t / 2``. The eval JSON holds one threshold per fold (each chosen
on the other nine folds); their mean is used. A squared distance of unit vectors lies in [0, 4], so a
fold threshold that is not a finite number in that range (a damaged or hand-edited JSON) is refused, naming
the file, instead of deciding every pair one way. Evals under the ``authors`` protocol score a cosine after
subtracting the test folds' mean embedding, which two lone photos do not have, so they are not used;
neither are cross-resolution evals (HR against LR).

The matching scale is ``--scale`` when the photos are degraded here, otherwise the scale the run was
trained at (a teacher's is 1; a multi-resolution student takes its newest eval at any scale).

The photos are detected and aligned as ``embed`` does them, or, ``aligned``, taken as aligned crops of any
size and resized to the input as eval resizes native-size sets (:mod:`.photos`); ``--json`` records each
photo's status and any resize.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FskdError
from ..core.scale import Scale, one_factor
from ..data.readers.images import not_a_file
from ..inference.model import ReadyModel
from .embed import NOT_FINITE, describe_input, embed_crops
from .photos import Cropper, scale_conflict

MAX_DISTANCE = 4.0  # the largest squared L2 distance of two unit vectors


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
    status: tuple[str, str]  # ok, or center (a central crop: no face was found)
    resized_from: tuple[str, str]  # "WxH" of an aligned crop resized to the input, "" when it went in as it was
    input: dict[str, Any]  # how the crops became model input (:func:`~.embed.describe_input`)

    def line(self) -> str:
        """``same  cosine 0.631  threshold 0.548 (agedb x8, insightface protocol, runs/x/eval/agedb_x8_insightface.json)``."""
        return (f"{'same' if self.same else 'different'}  cosine {self.cosine:.3f}  threshold {self.threshold.cosine:.3f} "
                f"({self.threshold.source})")

    def to_json(self) -> str:
        """One JSON object (standard JSON: every number is finite, checked where it was made)."""
        photos = {f"{k}_{field}": getattr(self, field)[i] or None for i, k in enumerate("ab")
                  for field in ("status", "resized_from")}
        return json.dumps({"decision": "same" if self.same else "different", "same": self.same, "cosine": self.cosine,
                           "threshold": self.threshold.cosine, "a": self.a, "b": self.b, **photos,
                           **{f"threshold_{k}": v for k, v in asdict(self.threshold).items() if k != "cosine"},
                           "input": self.input}, allow_nan=False)


def verify(model: ReadyModel, a: str | Path | np.ndarray, b: str | Path | np.ndarray, *, threshold: float | None = None,
           scale: Scale | None = None, aligned: bool = False, on_no_face: str = "skip") -> Verdict:
    """Embed photos ``a`` and ``b`` (files or uint8 RGB arrays; aligned as ``prepare`` does, or ``aligned`` crops of
    any size) and decide at ``threshold`` (a cosine; default: :func:`eval_threshold`)."""
    if threshold is not None and not -1 <= threshold <= 1:
        raise FskdError(f"--threshold: a cosine lies in [-1, 1], got {threshold}")
    factor = one_factor(scale) if scale is not None else 1
    for photo in (a, b):
        if isinstance(photo, str | Path) and not Path(photo).is_file():
            path = Path(photo)
            what = ("is a folder; verify compares two photo files" if path.is_dir() else
                    not_a_file(path) if path.is_symlink() or path.exists() else "no such file")
            raise FskdError(f"{photo}: {what}")
    if aligned and (problem := scale_conflict([a, b], model.input_size, factor)):
        raise FskdError(problem)
    chosen = Threshold(threshold, "given") if threshold is not None else eval_threshold(model, scale)
    photos = Cropper(model.input_size, aligned, str(model.device), on_no_face, factor)([a, b])
    for photo in photos:
        if photo.crop is None:
            raise FskdError(f"{photo.path}: {photo.status.replace('_', ' ')} ({photo.reason})")
    emb = embed_crops(model, np.stack([p.crop for p in photos]), factor=factor)
    cosine = float(np.dot(emb[0].astype(np.float64), emb[1].astype(np.float64)))
    if not math.isfinite(cosine):
        raise FskdError(f"{model.checkpoint.path}: {NOT_FINITE}")
    a_, b_ = photos
    return Verdict(cosine > chosen.cosine, cosine, chosen, a_.path, b_.path, (a_.status, b_.status),
                   (a_.resized_from, b_.resized_from), describe_input(model, aligned, factor, True, on_no_face))


def eval_threshold(model: ReadyModel, scale: Scale | None = None) -> Threshold:
    """The cosine threshold of the run's newest usable verification eval (module docstring), or an error."""
    wanted = scale or model.setting.scale
    folder = model.checkpoint.run_dir / "eval"
    evals = [e for e in map(_read_eval, sorted(folder.glob("*.json"))) if e is not None]
    usable = [e for e in evals if e["protocol"] == "insightface" and not e.get("cross_resolution")
              and (wanted == Scale.multi.value or str(e.get("scale")) == wanted)]
    if not usable:
        others = sorted({f"{e.get('dataset')} x{e.get('scale')} {e['protocol']}" for e in evals})
        seen = f"; found only {', '.join(others)}" if others else ""
        raise FskdError(f"{folder}: no insightface-protocol verification eval at scale {wanted}{seen}; run "
                        f"`fskd eval agedb --ckpt {model.checkpoint.run_dir} --scale {wanted}` first, or pass --threshold")
    newest = max(usable, key=lambda e: (str(e.get("timestamp") or ""), e["json"]))
    cosine = 1.0 - _mean_distance_threshold(newest) / 2.0
    dataset, at = newest.get("dataset"), str(newest.get("scale"))
    return Threshold(cosine, f"{dataset} x{at}, insightface protocol, {newest['json']}", dataset, at, "insightface",
                     newest["json"])


def _mean_distance_threshold(evaluation: dict[str, Any]) -> float:
    """The mean of an eval's fold thresholds, each a finite squared distance in [0, 4]; one line naming the JSON otherwise."""
    values = evaluation["fold_thresholds"]
    valid = isinstance(values, list) and all(  # NaN and inf fail the range test
        isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= MAX_DISTANCE for v in values)
    if not valid:
        shown = json.dumps(values)[:80]  # json.dumps shows NaN as NaN, strings quoted: what the file holds
        raise FskdError(f"{evaluation['json']}: fold_thresholds must be squared distances of unit vectors, finite "
                        f"numbers in [0, {MAX_DISTANCE:g}], got {shown}; re-run the eval, or pass --threshold")
    return float(np.mean(values))


def _read_eval(path: Path) -> dict[str, Any] | None:
    """A verification eval JSON (one with fold thresholds), or None for other evals and unreadable files."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("fold_thresholds") or "protocol" not in data:
        return None
    return {**data, "json": str(path)}
