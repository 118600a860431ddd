"""Holding out identities: a test split of unseen people, contiguous training labels, 10-fold pairs."""

from __future__ import annotations

import numpy as np
import pytest

from fskd_cli.data.holdout import hold_out
from fskd_cli.data.manifest import DatasetWriter, Row, read_manifest, read_meta, read_pairs
from fskd_cli.core.errors import FskdError


@pytest.fixture()
def faces(tmp_path):
    w = DatasetWriter(tmp_path / "set", "toy", "train", 16, scales=(2,))
    rng = np.random.default_rng(0)
    for person in range(8):
        for shot in range(5):
            w.add(Row(path=f"images/hr/p{person}/{shot}.png", label=person, identity=f"p{person}", split="train",
                      source=f"p{person}/{shot}"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    w.add(Row(path="", label=-1, identity="", split="train", status="no_face", reason="x: no face", source="bad"))
    w.close()
    return tmp_path / "set"


def test_holdout_splits_identities_and_writes_folds(faces):
    meta = hold_out(faces, identities=3, pairs=40, seed=1)
    rows = read_manifest(faces, ok_only=False)
    train = [r for r in rows if r.split == "train" and r.status == "ok"]
    test = [r for r in rows if r.split == "test"]
    assert len(rows) == 41 and sum(r.status == "no_face" for r in rows) == 1  # nothing dropped
    assert {r.identity for r in train}.isdisjoint({r.identity for r in test})
    assert sorted({r.label for r in train}) == list(range(5)) and meta["num_classes"] == 5
    assert sorted({r.label for r in test}) == [5, 6, 7]
    pairs = read_pairs(faces)
    assert len(pairs) == 40 and len(set((a, b) for a, b, _ in pairs)) == 40
    by_path = {r.path: r for r in test}
    for k in range(10):  # each fold: 2 same then 2 different, all among held-out people
        fold = pairs[4 * k:4 * k + 4]
        assert [s for _, _, s in fold] == [1, 1, 0, 0]
        for a, b, same in fold:
            assert (by_path[a].label == by_path[b].label) == bool(same)
    assert read_meta(faces)["counts"]["splits"] == {"train": 25, "test": 15}


def test_holdout_refuses_impossible_requests(faces):
    with pytest.raises(FskdError, match="identities must be from 2 to 7"):
        hold_out(faces, identities=8, pairs=40)
    with pytest.raises(FskdError, match="multiple of 20"):
        hold_out(faces, identities=3, pairs=30)
    with pytest.raises(FskdError, match="same and"):
        hold_out(faces, identities=2, pairs=200)
