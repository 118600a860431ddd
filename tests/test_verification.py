"""10-fold verification: threshold rules, mirror handling, exact recomputation, ROC figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import PNG_MAGIC

from fskd_cli.evaluate import verification as v
from fskd_cli.evaluate.plots import plot_roc
from fskd_cli.evaluate.verification import accuracy_from_scores, save_scores, verification_accuracy


def _unit(angle_cos: float, dims: tuple[int, int], d: int = 4) -> np.ndarray:
    """Unit vector in the plane of axes ``dims`` at the angle whose cosine is ``angle_cos``."""
    x = np.zeros(d)
    x[dims[0]], x[dims[1]] = angle_cos, math.sqrt(1 - angle_cos**2)
    return x


def _pairs_at_distance(distances: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Left/right unit vectors whose squared L2 distance is each of ``distances`` (cos = 1 - d / 2)."""
    left = np.array([_unit(1.0, (0, 1), 2) for _ in distances])
    right = np.array([_unit(1 - d / 2, (0, 1), 2) for d in distances])
    return left, right


def test_insightface_takes_first_best_threshold_on_the_other_folds() -> None:
    # 10 folds of 2 pairs: a same pair at distance 0.505 and a different pair at 1.505;
    # in fold 0 the same pair is an outlier at 0.805. Decision: same iff distance < t, grid 0.00..3.99.
    # Test fold 0 (train folds 1-9): every t in 0.51..1.50 is perfect -> first best 0.51
    #   (mean of ties would be 1.005); the outlier 0.805 is not < 0.51 -> fold 0 accuracy 1/2.
    # Test folds 1-9 (train includes the outlier): t in 0.81..1.50 -> first best 0.81
    #   (mean of ties 1.155); both test pairs right -> accuracy 1.
    # Mean accuracy (0.5 + 9) / 10 = 0.95; std over folds sqrt((0.45^2 + 9 * 0.05^2) / 10) = 0.15.
    distances = [0.805, 1.505] + [0.505, 1.505] * 9
    same = np.array([1, 0] * 10)
    left, right = _pairs_at_distance(distances)

    r = verification_accuracy(left, left, right, right, same, protocol="insightface")

    assert r.fold_thresholds == pytest.approx([0.51] + [0.81] * 9)
    assert r.fold_accuracies == [0.5] + [1.0] * 9
    assert r.accuracy == pytest.approx(0.95)
    assert r.std == pytest.approx(0.15)
    assert r.scores == pytest.approx(distances)
    assert r.folds.tolist() == [k for k in range(10) for _ in range(2)]
    assert r.greater_is_same is False


def _authors_fold(same_cos: float, diff_cos: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Four pairs whose images sum to zero, so every training mean is 0 and cosines stay as built:
    (u, v), (-u, -v) with cos(u, v) = same_cos; (x, y), (-x, -y) with cos(x, y) = diff_cos."""
    u, v_ = _unit(1.0, (0, 1)), _unit(same_cos, (0, 1))
    x, y = _unit(1.0, (2, 3)), _unit(diff_cos, (2, 3))
    return [(u, v_), (-u, -v_), (x, y), (-x, -y)]


def test_authors_takes_mean_of_tied_thresholds_on_the_other_folds() -> None:
    # 10 folds of 4 pairs (2 same at cosine 0.80005, 2 different at 0.10005); in fold 0 the same
    # pairs are outliers at 0.30005. Decision: same iff cosine > t, grid -1, -0.9999, ..., 1.
    # Test fold 0 (train folds 1-9): perfect for t in 0.1001..0.8000 -> mean 0.45005
    #   (first best would be 0.1001); the outliers 0.30005 are not > 0.45005 -> fold 0 accuracy 2/4.
    # Test folds 1-9 (train includes the outliers): t in 0.1001..0.3000 -> mean 0.20005 -> accuracy 1.
    # Mean accuracy 0.95. The first-best rule would have given 1.0 here.
    pairs = _authors_fold(0.30005, 0.10005) + _authors_fold(0.80005, 0.10005) * 9
    left = np.array([a for a, _ in pairs])
    right = np.array([b for _, b in pairs])
    same = np.array([1, 1, 0, 0] * 10)

    r = verification_accuracy(left, left, right, right, same, protocol="authors")

    assert r.fold_thresholds == pytest.approx([0.45005] + [0.20005] * 9, abs=1e-9)
    assert r.fold_accuracies == [0.5] + [1.0] * 9
    assert r.accuracy == pytest.approx(0.95)
    assert r.scores[:4] == pytest.approx([0.30005, 0.30005, 0.10005, 0.10005])
    assert r.greater_is_same is True


def test_mirror_is_summed_for_insightface_and_concatenated_for_authors() -> None:
    # Each fold: a pair and its negation (so the authors' training mean is 0).
    # left = (1, 0), left mirror = (0, 1), right = right mirror = (1, 0).
    # insightface: normalise(left + mirror) = (1, 1)/sqrt2, right (1, 0): distance 2 - sqrt2.
    # authors: [1, 0, 0, 1] . [1, 0, 1, 0] / (sqrt2 * sqrt2) = 0.5 (a sum would give 0.7071).
    a, a_flip, b = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0])
    left = np.array([a, -a] * 10)
    left_flip = np.array([a_flip, -a_flip] * 10)
    right = np.array([b, -b] * 10)
    same = np.array([1, 0] * 10)

    insightface = verification_accuracy(left, left_flip, right, right, same, protocol="insightface")
    authors = verification_accuracy(left, left_flip, right, right, same, protocol="authors")

    assert insightface.scores == pytest.approx([2 - math.sqrt(2)] * 20)
    assert authors.scores == pytest.approx([0.5] * 20)


def _random_pairs(n: int = 600, d: int = 16, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Noisy same pairs and unrelated different pairs: accuracy well between chance and perfect."""
    rng = np.random.default_rng(seed)
    same = rng.integers(0, 2, n)
    left = rng.normal(size=(n, d))
    right = np.where(same[:, None] == 1, left + 1.5 * rng.normal(size=(n, d)), rng.normal(size=(n, d)))
    left_flip = left + 0.3 * rng.normal(size=(n, d))
    right_flip = right + 0.3 * rng.normal(size=(n, d))
    return left, left_flip, right, right_flip, same


@pytest.mark.parametrize("protocol", v.PROTOCOLS)
def test_accuracy_recomputed_from_saved_scores_is_exact(protocol: str, tmp_path) -> None:
    left, left_flip, right, right_flip, same = _random_pairs()
    r = verification_accuracy(left, left_flip, right, right_flip, same, protocol=protocol)
    names = [f"img/{i}.jpg" for i in range(len(same))]
    path = tmp_path / "scores.csv"

    save_scores(path, names, names[::-1], same, r)

    assert 0.6 < r.accuracy < 0.99
    assert accuracy_from_scores(path, r.fold_thresholds, r.greater_is_same) == r.accuracy
    lines = path.read_text().splitlines()
    assert lines[0] == "left,right,same,fold,score"
    assert [float(line.rsplit(",", 1)[1]) for line in lines[1:]] == r.scores.tolist()  # bit-exact
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]
    # The check can fail: moving fold 0's threshold onto its nearest accepted score flips that one pair.
    fold0, t = r.scores[r.folds == 0], r.fold_thresholds[0]
    nearest = fold0[fold0 > t].min() if r.greater_is_same else fold0[fold0 < t].max()
    moved = [float(nearest)] + r.fold_thresholds[1:]
    assert abs(accuracy_from_scores(path, moved, r.greater_is_same) - r.accuracy) == pytest.approx(1 / 600)


@pytest.mark.parametrize("greater_is_same", [True, False])
def test_correct_counts_match_direct_counting_with_scores_on_the_grid(greater_is_same: bool) -> None:
    # Scores lying exactly on thresholds check the strict < and > of the decision.
    rng = np.random.default_rng(1)
    thresholds = np.arange(0.0, 1.0, 0.01)
    scores = thresholds[rng.integers(0, len(thresholds), 200)]
    same = rng.integers(0, 2, 200) == 1

    counts = v._correct_counts(scores, same, thresholds, greater_is_same)

    direct = [((scores > t) if greater_is_same else (scores < t)) == same for t in thresholds]
    assert counts.tolist() == [int(d.sum()) for d in direct]


def test_tar_at_far_and_auc_by_hand() -> None:
    # positives 0.9, 0.6, 0.4; negatives 0.7, 0.3, 0.2, 0.1 (greater = same).
    # FAR 1e-3 of 4 negatives allows 0 false accepts: accept > 0.7 -> TAR 1/3.
    # FAR 0.25 allows 1: accept > 0.3 (second-highest negative) -> TAR 3/3.
    # AUC = share of (positive, negative) pairs ordered right = (4 + 3 + 3) / 12.
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.3, 0.2, 0.1])
    same = np.array([1, 1, 1, 0, 0, 0, 0]) == 1

    fpr, tpr, auc = v._roc(scores, same)

    assert v._tar_at_far(scores, same, 1e-3) == pytest.approx(1 / 3)
    assert v._tar_at_far(scores, same, 0.25) == 1.0
    assert auc == pytest.approx(10 / 12)
    assert fpr.tolist() == pytest.approx([0, 0, 0.25, 0.25, 0.25, 0.5, 0.75, 1.0])
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1, 1])


def test_pairs_not_divisible_into_folds_raise() -> None:
    left, left_flip, right, right_flip, same = (a[:25] for a in _random_pairs())
    with pytest.raises(ValueError, match="25 pairs"):
        verification_accuracy(left, left_flip, right, right_flip, same)


def test_unknown_protocol_raises() -> None:
    with pytest.raises(ValueError, match="protocol"):
        verification_accuracy(*_random_pairs(), protocol="lfw")


def test_plot_roc_writes_png_atomically(tmp_path) -> None:
    data = _random_pairs()
    results = {p: verification_accuracy(*data, protocol=p) for p in v.PROTOCOLS}
    path = tmp_path / "figs" / "roc.png"

    plot_roc(results, path, "ROC on random pairs")

    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir()] == ["roc.png"]


def test_tar_at_far_pooled_and_per_fold_interpolated_like_insightface() -> None:
    # 10 folds of one same and one different pair; every different pair at squared distance 1.5005, the same
    # pairs at 0.5, except fold 0's at 1.5002. Per fold (insightface calculate_val), the 9 training negatives
    # give FAR 0 up to the grid value 1.500 and 1 from 1.501 on, so t = 1.500 + 0.001 * (1e-3 - 0) / (1 - 0)
    # = 1.500001: fold 0's 1.5002 is not < t (TAR 0), the other folds' 0.5 is (TAR 1) -> mean 0.9. Without the
    # interpolation (t = 1.501) fold 0 would pass too. Pooled: no false accept allowed among 10 negatives, so
    # accept iff distance < 1.5005, which takes every same pair -> 1.0.
    distances = [1.5002, 1.5005] + [0.5, 1.5005] * 9
    same = np.array([1, 0] * 10)
    left, right = _pairs_at_distance(distances)
    r = verification_accuracy(left, left, right, right, same, protocol="insightface")
    assert r.fold_tars[1e-3] == [0.0] + [1.0] * 9
    assert r.tar_at_far_folds[1e-3] == pytest.approx(0.9) and r.tar_at_far[1e-3] == 1.0
    assert v.fold_tar_at_far(np.array([1.5005] * 9), np.zeros(9, bool), np.array([1.5000005, 1.500002]),
                             np.ones(2, bool), 1e-3) == 0.5  # t = 1.500001 lies between them


def test_tar_per_fold_is_zero_when_no_training_threshold_reaches_the_far() -> None:
    # no negative below 4 (the grid's end): FAR stays 0 < 1e-3, insightface sets t = 0 and accepts nothing
    assert v.fold_tar_at_far(np.array([4.0] * 9), np.zeros(9, bool), np.array([0.1]), np.ones(1, bool), 1e-3) == 0.0
