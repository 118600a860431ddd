"""``fskd eval`` on a 1:1 verification set (AgeDB-30, LFW, CFP-FP, or any set with a ``pairs.csv``).

10-fold accuracy under the ``insightface`` or ``authors`` protocol (:mod:`.verification`), TAR at FAR
1e-3 / 1e-4 (pooled, and insightface's per-fold), ROC AUC and a ROC PNG. At scale ``s`` both images of a
pair are ``s``x LR copies (the paper's protocol), or, with ``cross_resolution``, the left image is HR
and the right one LR. ``scores_csv`` writes every pair's score and fold; the JSON holds the protocol
and every fold's threshold, so :func:`~.verification.accuracy_from_scores` recomputes the accuracy exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FskdError
from ..core.outputs import check_replaceable, written_by_matplotlib
from ..data.manifest import Row, read_manifest, read_pairs
from .inputs import Evaluation, dataset_label
from .plots import plot_roc
from .verification import FARS, PROTOCOLS, VerificationResult, save_scores, verification_accuracy, written_by_save_scores

N_FOLDS = 10


def far_name(far: float, how: str) -> str:
    """``tar@far=1e-3(pooled)``: a TAR metric's name says its FAR and how its threshold was found."""
    return f"tar@far={far:.0e}".replace("e-0", "e-") + f"({how})"


def read_verification_pairs(data: str | Path, rows: Sequence[Row]) -> tuple[list[tuple[str, str, int]], list[int], list[int]]:
    """``pairs.csv`` checked against the manifest: the pairs, and each side's row index (-1: no image).

    An empty path is an image that failed preparation (the pair is kept, and counted wrong); a path
    that is not a usable manifest row or not of the test split, a ``same`` other than 0/1 or a pair count
    that is not a multiple of 10 is a broken file, and raises :class:`FskdError` naming it.
    """
    path = Path(data) / "pairs.csv"
    pairs = read_pairs(data)  # a missing column or a bad `same` is a one-line FskdError there
    if not pairs:
        raise FskdError(f"{path}: no pairs")
    if len(pairs) % N_FOLDS:
        raise FskdError(f"{path}: {len(pairs)} pairs cannot be split into {N_FOLDS} equal consecutive folds")
    index = {r.path: i for i, r in enumerate(rows)}
    left, right = [], []
    for line, (a, b, same) in enumerate(pairs, start=2):
        if same not in (0, 1):
            raise FskdError(f"{path}, line {line}: same must be 0 or 1, got {same}")
        if a and a == b:  # an image against itself: a sure match that only inflates the accuracy
            raise FskdError(f"{path}, line {line}: pairs {a!r} with itself")
        for side, out in ((a, left), (b, right)):
            if side and side not in index:
                raise FskdError(f"{path}, line {line}: {side!r} is not a usable image of {Path(data) / 'manifest.csv'}")
            if side and rows[index[side]].split != "test":  # a held-out set's training image: a seen person
                raise FskdError(f"{path}, line {line}: {side!r} is an image of the {rows[index[side]].split!r} split; "
                                "pairs are among the test images (a model may have trained on the others)")
            out.append(index[side] if side else -1)
    if len({s for _, _, s in pairs}) < 2:
        raise FskdError(f"{path}: all pairs are {'same' if pairs[0][2] else 'different'}-identity; a ROC needs both")
    return pairs, left, right


def _check_folds(meta: dict[str, Any], data: str | Path) -> None:
    """A set whose pair list forms another number of folds (LFW's View 1 files are one fold) would be cut into 10
    blocks anyway, some of them of same-identity pairs only: numbers with no meaning, so it is refused."""
    folds = meta.get("folds", N_FOLDS)
    if folds != N_FOLDS:
        source = meta.get("pairs_file", "its pair list")
        raise FskdError(f"{Path(data) / 'meta.yaml'}: its pairs form {folds} fold(s) (from {source}); "
                        f"the protocol needs {N_FOLDS} (LFW's View 2 pairs.txt, not View 1's pairsDevTrain/DevTest)")


def _gather(emb: np.ndarray, positions: Sequence[int]) -> np.ndarray:
    """Rows of ``emb`` at ``positions``; position -1 (a missing image) becomes a NaN row."""
    positions = np.asarray(positions)
    out = np.full((len(positions), emb.shape[1]), np.nan)
    out[positions >= 0] = emb[positions[positions >= 0]]
    return out


def _side_embeddings(ev: Evaluation, rows: list[Row], sides: list[list[int]], scales: list[int], label: str
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(embedding, mirror)`` per pair side; each image is embedded once per scale it is seen at."""
    cache: dict[int, tuple[list[int], np.ndarray, np.ndarray]] = {}
    for scale in set(scales):
        ids = sorted({i for side, s in zip(sides, scales, strict=True) if s == scale for i in side if i >= 0})
        cache[scale] = (ids, *ev.embed([rows[i] for i in ids], scale, label))
    out = []
    for side, scale in zip(sides, scales, strict=True):
        ids, emb, mirror = cache[scale]
        where = {i: k for k, i in enumerate(ids)}
        pos = [where[i] if i >= 0 else -1 for i in side]
        out.append((_gather(emb, pos), _gather(mirror, pos)))
    return out


def verification_stage(ckpt: str | Path, data: str | Path, *, dataset: str, scale: int = 1,
                       protocol: str = "insightface", cross_resolution: bool = False,
                       results: str | Path = "results.csv", scores_csv: str | Path | None = None,
                       roc_png: str | Path | None = None, json_path: str | Path | None = None,
                       device: str = "auto", batch_size: int = 128, benchmark: str = "verification",
                       lr_source: str = "degrade") -> dict[str, Any]:
    """10-fold verification of ``ckpt`` on the pairs of ``data`` at ``scale``; see the module docstring."""
    if protocol not in PROTOCOLS:
        raise FskdError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    ev = Evaluation.open(ckpt, data, "verification", benchmark, lr_source=lr_source, device=device,
                         batch_size=batch_size)
    _check_folds(ev.meta, data)
    rows = read_manifest(data)
    pairs, left_pos, right_pos = read_verification_pairs(data, rows)
    # the outputs first: no embedding is computed for a JSON or figure that cannot be written
    json_path = ev.json_path(f"{dataset}_x{scale}{'_cross' if cross_resolution else ''}_{protocol}", json_path)
    roc_png = check_replaceable(roc_png or json_path.with_name(f"{json_path.stem}_roc.png"), written_by_matplotlib,
                               "eval", "--roc")
    scores_csv = None if scores_csv is None else check_replaceable(scores_csv, written_by_save_scores, "eval",
                                                                   "--save-scores")
    left_scale = 1 if cross_resolution else scale
    (l_emb, l_mirror), (r_emb, r_mirror) = _side_embeddings(ev, rows, [left_pos, right_pos], [left_scale, scale], dataset)
    same = np.array([s for _, _, s in pairs])
    # the pairs were checked above (folds, both kinds of pair); a ValueError here would be a bug
    result = verification_accuracy(l_emb, l_mirror, r_emb, r_mirror, same, protocol=protocol, n_folds=N_FOLDS)

    if scores_csv is not None:
        save_scores(scores_csv, [p[0] for p in pairs], [p[1] for p in pairs],
                    same, result)
    res_word = f"HR vs x{scale} LR" if cross_resolution else f"x{scale}" if scale > 1 else "HR"
    plot_roc({ev.setting.legend: result}, roc_png, f"{dataset} verification, {res_word} ({protocol} protocol)")
    details = {"protocol": protocol, "cross_resolution": cross_resolution, "left_scale": left_scale,
               "right_scale": scale, "pairs": len(pairs), "folds": N_FOLDS,
               "images": len({i for i in left_pos + right_pos if i >= 0}),
               **_verification_details(result, protocol), "roc_png": str(roc_png),
               "scores_csv": None if scores_csv is None else str(scores_csv)}
    return ev.record(results, json_path, dataset_label(dataset, protocol, cross_resolution), scale,
                     verification_metrics(result), details)


def verification_metrics(result: VerificationResult) -> dict[str, float]:
    """results.csv's figures of one verification: accuracy, its spread, both TARs per FAR, AUC."""
    return {"accuracy": result.accuracy, "accuracy_std": result.std,
            **{far_name(far, "pooled"): result.tar_at_far[far] for far in FARS},
            **{far_name(far, "folds"): result.tar_at_far_folds[far] for far in FARS},
            "auc": result.auc}


def _verification_details(result: VerificationResult, protocol: str) -> dict[str, Any]:
    """What the eval JSON says about how the figures were made, enough to recompute the accuracy."""
    score = ("cosine of the [image, mirror] concatenations after subtracting the other folds' mean"
             if protocol == "authors" else "squared L2 distance of the L2-normalised (image + mirror) sums")
    return {
        "missing_pairs": result.missing_pairs,
        "missing_pairs_rule": "a pair with an image that failed preparation scores nan and counts as wrong",
        "score": score, "greater_is_same": result.greater_is_same,
        "decision": "same iff score > threshold" if result.greater_is_same else "same iff score < threshold",
        "fold_thresholds": result.fold_thresholds, "fold_accuracies": result.fold_accuracies,
        "tar_at_far": {"pooled": {f"{far:g}": v for far, v in result.tar_at_far.items()},
                       "folds": {f"{far:g}": v for far, v in result.tar_at_far_folds.items()},
                       "fold_tars": {f"{far:g}": v for far, v in result.fold_tars.items()},
                       "pooled_rule": "one threshold over all pairs' scores",
                       "folds_rule": "insightface calculate_val: per fold, threshold interpolated at the FAR "
                                     "on the other folds, TAR on the fold, mean over folds"},
        "recompute": "fskd_cli.evaluate.verification.accuracy_from_scores(scores_csv, fold_thresholds, "
                     "greater_is_same) == metrics['accuracy']",
    }
