"""``fskd eval`` on a 1:N identification set (TinyFace, or any manifest with probe/gallery/distractor roles).

CMC rank-1/5/10/20 with the distractors in the gallery, mAP (:mod:`.identification`), and a CMC PNG.
Probes are seen at the eval scale; so is the gallery, unless ``cross_resolution`` (gallery HR).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FskdError
from ..core.outputs import check_replaceable, written_by_matplotlib
from ..data.manifest import Row, read_manifest
from .identification import DISTRACTOR, REPORTED_RANKS, identification_accuracy
from .inputs import Evaluation, dataset_label
from .plots import plot_cmc

MAX_RANK = max(REPORTED_RANKS)
ROLES = ("probe", "gallery", "distractor")


def _roles(data: str | Path, rows: list[Row]) -> tuple[list[Row], list[Row], int]:
    """Probe rows, gallery rows (distractors included) and the number of rows with no role; a role edited into
    something else ('Probe') would silently leave the image out of the search, so it is named."""
    odd = next((r for r in rows if r.role not in ("", *ROLES)), None)
    if odd is not None:
        raise FskdError(f"{Path(data) / 'manifest.csv'}: {odd.path} has role {odd.role!r}; roles are "
                        f"{', '.join(ROLES)} (or empty for an image of no role)")
    probes = [r for r in rows if r.role == "probe"]
    gallery = [r for r in rows if r.role in ("gallery", "distractor")]
    if not probes or not gallery:
        missing = "probe" if not probes else "gallery"
        raise FskdError(f"{Path(data) / 'manifest.csv'}: no usable rows with role '{missing}'; an identification set "
                        "needs probe and gallery (and optionally distractor) roles")
    if not {r.label for r in probes} & {r.label for r in gallery if r.role == "gallery"}:
        raise FskdError(f"{Path(data) / 'manifest.csv'}: no probe has a gallery image of its identity (labels of "
                        "role 'probe' and 'gallery' never meet)")
    return probes, gallery, len(rows) - len(probes) - len(gallery)


def identification_stage(ckpt: str | Path, data: str | Path, *, dataset: str, scale: int = 1,
                         cross_resolution: bool = False, flip: bool = True, results: str | Path = "results.csv",
                         cmc_png: str | Path | None = None, json_path: str | Path | None = None,
                         device: str = "auto", batch_size: int = 128, benchmark: str = "identification",
                         lr_source: str = "degrade") -> dict[str, Any]:
    """Rank-k (CMC) and mAP of ``ckpt`` searching the probes of ``data`` in its gallery plus distractors.

    With ``flip`` an image's feature is the sum of its and its mirror's embeddings.
    """
    ev = Evaluation.open(ckpt, data, "identification", benchmark, lr_source=lr_source, device=device,
                         batch_size=batch_size)
    probes, gallery, unused = _roles(data, read_manifest(data))
    # the outputs first: no embedding is computed for a JSON or figure that cannot be written
    json_path = ev.json_path(f"{dataset}_x{scale}{'_cross' if cross_resolution else ''}", json_path)
    cmc_png = check_replaceable(cmc_png or json_path.with_name(f"{json_path.stem}_cmc.png"), written_by_matplotlib,
                               "eval", "--cmc")
    gallery_scale = 1 if cross_resolution else scale

    def features(rows: list[Row], s: int, what: str) -> np.ndarray:
        emb, mirror = ev.embed(rows, s, f"{dataset} {what}")
        return emb + mirror if flip else emb

    gallery_labels = np.array([DISTRACTOR if r.role == "distractor" else r.label for r in gallery])
    result = identification_accuracy(features(probes, scale, "probes"), np.array([r.label for r in probes]),
                                     features(gallery, gallery_scale, "gallery"), gallery_labels,
                                     max_rank=min(MAX_RANK, len(gallery)))

    res_word = f"x{scale} probes vs HR gallery" if cross_resolution else f"x{scale}" if scale > 1 else "native/HR"
    plot_cmc({ev.setting.legend: result.cmc}, cmc_png, f"{dataset} identification, {res_word} (distractors in gallery)")
    details = {
        "cross_resolution": cross_resolution, "probe_scale": scale, "gallery_scale": gallery_scale,
        "flip": "embedding + mirror embedding" if flip else "no mirror",
        "probes": len(probes), "probes_scored": result.n_probes, "probes_without_match": result.probes_without_match,
        "gallery": int((gallery_labels != DISTRACTOR).sum()), "distractors": int((gallery_labels == DISTRACTOR).sum()),
        "rows_without_role": unused, "similarity": "cosine", "ties": "counted against the probe",
        "cmc": [float(c) for c in result.cmc], "cmc_png": str(cmc_png),
    }
    metrics = {**{f"rank{k}": v for k, v in result.ranks.items()}, "mAP": result.mean_ap}
    label = dataset_label(dataset, None, cross_resolution, ev.meta.get("layout"))
    return ev.record(results, json_path, label, scale, metrics, details)
