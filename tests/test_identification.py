"""1:N identification: rank-k and mAP by hand, distractors, probes without a mate, CMC figure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import PNG_MAGIC

from fskd_cli.evaluate.identification import identification_accuracy
from fskd_cli.evaluate.plots import plot_cmc


def _at(*degrees: float) -> np.ndarray:
    """2-D embeddings at the given angles; cosine similarity then orders by angular distance."""
    return np.array([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees])


# gallery: g0 id 0 at 0 deg, g1 id 1 at 90, g2 id 0 at 60, g3 distractor at 20, g4 id 1 at 150
GALLERY = 3 * _at(0, 90, 60, 20, 150)  # scaled: only the direction may matter
GALLERY_LABELS = np.array([0, 1, 0, -1, 1])
# probe A id 0 at 5 deg: angular distances g0 5, g3 15, g2 55, g1 85, g4 145
#   ranking g0 g3 g2 g1 g4 -> mates at ranks 1 and 3 -> first hit 1, AP = (1/1 + 2/3) / 2 = 5/6
# probe B id 1 at 35 deg: distances g3 15, g2 25, g0 35, g1 55, g4 115
#   ranking g3 g2 g0 g1 g4 -> the distractor is nearest but no hit; mates at ranks 4 and 5
#   -> first hit 4, AP = (1/4 + 2/5) / 2 = 0.325
# probe C id 7: no gallery image -> excluded and counted
# probe D labelled -1 like the distractor: distractors match nobody -> excluded and counted
PROBES = _at(5, 35, 10, 20)
PROBE_LABELS = np.array([0, 1, 7, -1])


@pytest.mark.parametrize("probes_per_chunk", [None, 1, 3])
def test_ranks_and_map_by_hand(probes_per_chunk: int | None) -> None:
    r = identification_accuracy(
        PROBES, PROBE_LABELS, GALLERY, GALLERY_LABELS, max_rank=5, probes_per_chunk=probes_per_chunk
    )

    # A hits from rank 1, B from rank 4.
    assert r.cmc.tolist() == pytest.approx([0.5, 0.5, 0.5, 1.0, 1.0])
    assert r.ranks == pytest.approx({1: 0.5, 5: 1.0})
    assert r.mean_ap == pytest.approx((5 / 6 + 0.325) / 2)
    assert r.n_probes == 2
    assert r.probes_without_match == 2


def test_ties_count_against_the_probe() -> None:
    # The distractor lies exactly on the probe's mate: both have rank 2 (items with similarity >= 1),
    # so rank-1 is a miss and AP = 1/2 whatever the gallery order.
    gallery = _at(0, 0)
    for labels in ([5, -1], [-1, 5]):
        r = identification_accuracy(_at(0), [5], gallery, np.array(labels), max_rank=2)
        assert r.cmc.tolist() == [0.0, 1.0]
        assert r.mean_ap == pytest.approx(0.5)


def test_no_probe_with_a_mate_raises() -> None:
    with pytest.raises(ValueError, match="no probe"):
        identification_accuracy(_at(0), [-1], _at(0), np.array([-1]))


def test_plot_cmc_writes_png_atomically(tmp_path) -> None:
    r = identification_accuracy(PROBES, PROBE_LABELS, GALLERY, GALLERY_LABELS, max_rank=5)
    path = tmp_path / "cmc.png"

    plot_cmc({"hand-built": r.cmc, "perfect": np.ones(5)}, path, "CMC")

    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["cmc.png"]
