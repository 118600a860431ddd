"""1:1 verification accuracy under the two 10-fold protocols that LR face papers report.

Why two protocols: the baselines the paper compares against are quoted from work evaluated with
insightface's ``verification.py``, while the F-SKD/A-SKD authors' own numbers come from their code,
which follows the SphereFace/CosFace evaluation. The protocols differ in how the mirrored image is
used (sum vs. concatenation), in the score (squared L2 distance of normalised embeddings vs. cosine
after subtracting the training folds' mean embedding) and in the threshold rule (first best vs. mean
of all best), so the same embeddings give accuracies that can differ by a few tenths of a percent,
about the size of the gains being compared. A number is only comparable to one made with the same
protocol, so fskd implements both and every result says which one made it.

Shared by both: pairs are in the source protocol's order and fold k is the k-th of ``n_folds``
consecutive equal blocks; fold k's threshold is chosen on the other folds and applied to fold k.
All arithmetic is float64, so the per-pair scores and thresholds written by :func:`save_scores`
reproduce the accuracy exactly (:func:`accuracy_from_scores`).

TAR at a FAR comes in two forms, named apart in every result: ``pooled`` takes the threshold from all
pairs' scores at once (one ROC), while ``folds`` is insightface's ``calculate_val``: per fold, the
distance threshold whose false accept rate on the other folds is the target (interpolated linearly on
a 0.001 grid of squared distances), applied to the fold, and the fold rates averaged. The authors'
cosines enter it as the squared distance ``2 - 2 cos`` of the unit vectors they compare.

A pair whose image could not be prepared (an empty path in ``pairs.csv``, e.g. no face found) has
NaN embeddings. It is never dropped, since the folds must stay the protocol's blocks: its score is NaN,
it takes no part in choosing thresholds, in the authors' mean or in the ROC, and it counts as a wrong
decision in its fold, the one rule that cannot flatter a result.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.io import write_csv
from .benchmarks import PROTOCOLS
from .vectors import l2_normalise

FARS = (1e-3, 1e-4)
SCORE_FIELDS = ["left", "right", "same", "fold", "score"]

# insightface: squared distances of unit vectors lie in [0, 4]; a 0.01 grid.
_INSIGHTFACE_THRESHOLDS = np.arange(0.0, 4.0, 0.01)
# SphereFace/CosFace: cosines lie in [-1, 1]; a 1e-4 grid (``-1:1/10000:1`` in their MATLAB).
_AUTHORS_THRESHOLDS = np.linspace(-1.0, 1.0, 20001)
# insightface's calculate_val: squared distances on a 0.001 grid.
_VAL_THRESHOLDS = np.arange(0.0, 4.0, 0.001)


@dataclass
class VerificationResult:
    """Accuracy per fold and overall, the scores behind it, and threshold-free ROC figures.

    ``scores[i]`` is the value that fold ``folds[i]``'s threshold was applied to (a distance for
    insightface, a cosine for authors; see ``greater_is_same``). ``tar_at_far``, ``fpr``, ``tpr``
    and ``auc`` use one pooled score over all pairs, since a ROC has no per-fold threshold;
    ``tar_at_far_folds`` is insightface's per-fold TAR (module docstring), ``fold_tars`` its folds.
    """

    protocol: str
    accuracy: float
    std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    scores: np.ndarray
    folds: np.ndarray
    greater_is_same: bool
    tar_at_far: dict[float, float]
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    tar_at_far_folds: dict[float, float]
    fold_tars: dict[float, list[float]]
    missing_pairs: int = 0  # pairs with a NaN embedding: scored NaN, counted wrong


def verification_accuracy(
    left: np.ndarray,
    left_flip: np.ndarray,
    right: np.ndarray,
    right_flip: np.ndarray,
    same: np.ndarray,
    protocol: str = "insightface",
    n_folds: int = 10,
) -> VerificationResult:
    """Evaluate pairs ``[N, D]`` (each image and its horizontal mirror) against ``same`` (0/1, ``[N]``).

    A pair with a non-finite embedding (a missing image) is scored NaN and counted wrong (module
    docstring). Raises ``ValueError`` for an unknown protocol, mismatched shapes, or ``N`` not
    divisible by ``n_folds`` (the folds must be the source protocol's blocks, not a re-split).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    embeddings = _check_embeddings(left, left_flip, right, right_flip)
    same = _check_same(same, len(embeddings[0]))
    folds = _fold_index(len(same), n_folds)
    valid = np.all([np.isfinite(e).all(axis=1) for e in embeddings], axis=0)
    _check_same(same[valid], int(valid.sum()))  # the pairs that can be scored still need both classes
    score_fn, choose, thresholds, greater = _PROTOCOL_RULES[protocol]

    scores = np.empty(len(same), dtype=np.float64)
    fold_accuracies, fold_thresholds = [], []
    fold_tars: dict[float, list[float]] = {far: [] for far in FARS}
    for k in range(n_folds):
        train, test = (folds != k) & valid, folds == k
        fold_scores = np.where(valid, score_fn(*embeddings, train), np.nan)
        counts = _correct_counts(fold_scores[train], same[train], thresholds, greater)
        threshold = choose(counts, thresholds)
        scores[test] = fold_scores[test]
        fold_thresholds.append(threshold)
        fold_accuracies.append(_fold_accuracy(scores[test], same[test], threshold, greater))
        distances = 2 - 2 * fold_scores if greater else fold_scores
        for far in FARS:
            fold_tars[far].append(fold_tar_at_far(distances[train], same[train], distances[test], same[test], far))

    pooled = score_fn(*embeddings, valid)[valid]
    pooled = pooled if greater else -pooled
    fpr, tpr, auc = _roc(pooled, same[valid])
    return VerificationResult(
        protocol=protocol,
        accuracy=float(np.mean(fold_accuracies)),
        std=float(np.std(fold_accuracies)),
        fold_accuracies=fold_accuracies,
        fold_thresholds=fold_thresholds,
        scores=scores,
        folds=folds,
        greater_is_same=greater,
        tar_at_far={far: _tar_at_far(pooled, same[valid], far) for far in FARS},
        fpr=fpr,
        tpr=tpr,
        auc=auc,
        tar_at_far_folds={far: float(np.mean(tars)) for far, tars in fold_tars.items()},
        fold_tars=fold_tars,
        missing_pairs=int((~valid).sum()),
    )


def save_scores(
    path: str | os.PathLike,
    pairs_left: Sequence[str],
    pairs_right: Sequence[str],
    same: Sequence[int] | np.ndarray,
    result: VerificationResult,
) -> None:
    """Write one row per pair (``left,right,same,fold,score``) atomically, so a figure can be audited.

    Scores are written with Python's shortest round-trip repr, so reading them back is exact; the
    score of a pair with a missing image is ``nan``.
    """
    n = len(result.scores)
    if not len(pairs_left) == len(pairs_right) == len(same) == n:
        raise ValueError(f"save_scores needs {n} pairs, got {len(pairs_left)}/{len(pairs_right)}/{len(same)}")
    rows = (
        {"left": a, "right": b, "same": int(s), "fold": int(f), "score": float(x)}
        for a, b, s, f, x in zip(pairs_left, pairs_right, same, result.folds, result.scores, strict=True)
    )
    write_csv(path, rows, SCORE_FIELDS)


def written_by_save_scores(path: Path) -> bool:
    """Whether ``path`` is a scores CSV :func:`save_scores` wrote (its header is exactly :data:`SCORE_FIELDS`): a
    rerun replaces it, never a user's own file of the same name."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f), None) == SCORE_FIELDS
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def accuracy_from_scores(
    csv_path: str | os.PathLike, thresholds: Sequence[float], greater_is_same: bool
) -> float:
    """Recompute the mean fold accuracy from a :func:`save_scores` CSV and the per-fold thresholds.

    Uses the same decision and averaging as :func:`verification_accuracy`, so the result equals
    ``result.accuracy`` exactly; any difference means the CSV or the thresholds are not that run's.
    """
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    scores = np.array([float(r["score"]) for r in rows], dtype=np.float64)
    same = np.array([int(r["same"]) for r in rows]) == 1
    folds = np.array([int(r["fold"]) for r in rows])
    if set(folds.tolist()) != set(range(len(thresholds))):
        found = sorted(set(folds.tolist()))
        raise ValueError(f"{csv_path}: folds {found} do not match {len(thresholds)} thresholds")
    accuracies = [
        _fold_accuracy(scores[folds == k], same[folds == k], float(t), greater_is_same)
        for k, t in enumerate(thresholds)
    ]
    return float(np.mean(accuracies))


def _check_embeddings(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The four embedding arrays as float64 ``[N, D]`` of one shape."""
    out = tuple(np.asarray(a, dtype=np.float64) for a in arrays)
    shapes = {a.shape for a in out}
    if len(shapes) != 1 or out[0].ndim != 2:
        raise ValueError(f"left, left_flip, right, right_flip must share one [N, D] shape, got {shapes}")
    return out


def _check_same(same: np.ndarray, n: int) -> np.ndarray:
    """``same`` as a boolean ``[N]`` array holding both classes (a ROC needs both)."""
    same = np.asarray(same)
    if same.shape != (n,) or not np.isin(same, (0, 1)).all():
        raise ValueError(f"same must be {n} values of 0/1, got shape {same.shape}")
    same = same == 1
    if same.all() or not same.any():
        raise ValueError("verification needs both same and different pairs")
    return same


def _fold_index(n: int, n_folds: int) -> np.ndarray:
    """Fold of each pair: ``n_folds`` consecutive equal blocks, as the source protocols define them."""
    if n_folds < 2 or n == 0 or n % n_folds:
        raise ValueError(f"{n} pairs cannot be split into {n_folds} equal consecutive folds")
    return np.repeat(np.arange(n_folds), n // n_folds)


def _insightface_scores(
    left: np.ndarray, left_flip: np.ndarray, right: np.ndarray, right_flip: np.ndarray, train: np.ndarray
) -> np.ndarray:
    """Squared L2 distance of the normalised (image + mirror) sums; uses no training statistics."""
    a = l2_normalise(left + left_flip)
    b = l2_normalise(right + right_flip)
    return np.sum((a - b) ** 2, axis=1)


def _authors_scores(
    left: np.ndarray, left_flip: np.ndarray, right: np.ndarray, right_flip: np.ndarray, train: np.ndarray
) -> np.ndarray:
    """Cosine of the [image, mirror] concatenations after subtracting the training pairs' mean image."""
    a = np.concatenate([left, left_flip], axis=1)
    b = np.concatenate([right, right_flip], axis=1)
    mean = np.concatenate([a[train], b[train]]).mean(axis=0)
    return np.sum(l2_normalise(a - mean) * l2_normalise(b - mean), axis=1)


def _correct_counts(
    scores: np.ndarray, same: np.ndarray, thresholds: np.ndarray, greater_is_same: bool
) -> np.ndarray:
    """Number of correct decisions at every threshold, from sorted scores instead of a T x N matrix."""
    pos, neg = np.sort(scores[same]), np.sort(scores[~same])
    if greater_is_same:  # same iff score > t
        pos_right = pos.size - np.searchsorted(pos, thresholds, side="right")
        neg_right = np.searchsorted(neg, thresholds, side="right")
    else:  # same iff score < t
        pos_right = np.searchsorted(pos, thresholds, side="left")
        neg_right = neg.size - np.searchsorted(neg, thresholds, side="left")
    return pos_right + neg_right


def _first_best(counts: np.ndarray, thresholds: np.ndarray) -> float:
    """insightface's rule: the lowest threshold with the most correct decisions."""
    return float(thresholds[np.argmax(counts)])


def _mean_of_best(counts: np.ndarray, thresholds: np.ndarray) -> float:
    """SphereFace/CosFace's rule: the mean of every threshold with the most correct decisions."""
    return float(np.mean(thresholds[counts == counts.max()]))


def _fold_accuracy(scores: np.ndarray, same: np.ndarray, threshold: float, greater_is_same: bool) -> float:
    """Share of pairs decided right; the one decision rule for evaluation and for recomputation.

    A NaN score (a pair with a missing image) is a wrong decision whatever the pair's label.
    """
    predicted = scores > threshold if greater_is_same else scores < threshold
    return int(np.count_nonzero((predicted == same) & ~np.isnan(scores))) / same.size


_ScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
_ThresholdRule = Callable[[np.ndarray, np.ndarray], float]
# protocol -> (score of every pair given the training mask, threshold rule, threshold grid, greater_is_same)
_PROTOCOL_RULES: dict[str, tuple[_ScoreFn, _ThresholdRule, np.ndarray, bool]] = {
    "insightface": (_insightface_scores, _first_best, _INSIGHTFACE_THRESHOLDS, False),
    "authors": (_authors_scores, _mean_of_best, _AUTHORS_THRESHOLDS, True),
}


def _tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """True accept rate at the most permissive threshold whose false accepts stay <= far * negatives.

    Accept iff score > threshold (greater = same). With ``k = floor(far * n_negatives)`` false accepts
    allowed, the threshold is the (k+1)-th highest negative score; with ``k = 0`` nothing negative
    may pass. The small epsilon keeps e.g. 1e-3 * 3000 from flooring to 2 by rounding.
    """
    negatives = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(far * negatives.size + 1e-9))
    if allowed >= negatives.size:
        return 1.0
    return float(np.mean(scores[same] > negatives[allowed]))


def fold_tar_at_far(train_dist: np.ndarray, train_same: np.ndarray, test_dist: np.ndarray, test_same: np.ndarray,
                    far: float) -> float:
    """insightface's ``calculate_val`` for one fold: accept iff distance < t, with t from the training folds.

    On the 0.001 grid, the training FAR rises with t; t is interpolated linearly between the last grid
    value whose FAR is below ``far`` and the first at or above it (what ``interp1d`` did when equal FARs
    were allowed; new SciPy refuses them). When no grid value reaches ``far``, t is 0 (nothing accepted),
    as there. The fold's TAR is its accepted share of same pairs (a NaN distance is never accepted).
    """
    negatives = np.sort(train_dist[~train_same])
    far_train = np.searchsorted(negatives, _VAL_THRESHOLDS, side="left") / max(negatives.size, 1)
    threshold = 0.0
    if far_train.max() >= far:
        hi = int(np.searchsorted(far_train, far, side="left"))  # first grid value at or above the target
        t, f = _VAL_THRESHOLDS, far_train
        threshold = float(t[0] if hi == 0 else t[hi - 1] + (t[hi] - t[hi - 1]) * (far - f[hi - 1]) / (f[hi] - f[hi - 1]))
    positives = test_dist[test_same]
    return float(np.count_nonzero(positives < threshold) / max(positives.size, 1))


def _roc(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC (one point per distinct score, from (0, 0)) and its trapezoidal area; greater = same."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_same = scores[order], same[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_accepts = np.cumsum(sorted_same)[last_of_each]
    false_accepts = last_of_each + 1 - true_accepts
    tpr = np.r_[0.0, true_accepts / same.sum()]
    fpr = np.r_[0.0, false_accepts / (~same).sum()]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return fpr, tpr, auc
