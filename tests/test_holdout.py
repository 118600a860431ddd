"""Holding out identities: a test split of unseen people, contiguous training labels, 10-fold pairs."""

from __future__ import annotations

import numpy as np
import pytest

from fskd_cli.core.errors import FskdError
from fskd_cli.data.holdout import hold_out
from fskd_cli.data.manifest import DatasetWriter, Row, read_manifest, read_meta, read_pairs


def _write_faces(folder):
    w = DatasetWriter(folder, "toy", "train", 16, scales=(2,))
    rng = np.random.default_rng(0)
    for person in range(8):
        for shot in range(5):
            w.add(Row(path=f"images/hr/p{person}/{shot}.png", label=person, identity=f"p{person}", split="train",
                      source=f"p{person}/{shot}"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    w.add(Row(path="", label=-1, identity="", split="train", status="no_face", reason="x: no face", source="bad"))
    w.close()
    return folder


@pytest.fixture()
def faces(tmp_path):
    return _write_faces(tmp_path / "set")


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


def test_rerunning_a_holdout_never_moves_held_out_people_into_training(faces, tmp_path):
    hold_out(faces, identities=3, pairs=40, seed=1)
    files = {name: (faces / name).read_bytes() for name in ("manifest.csv", "pairs.csv", "meta.yaml")}
    hold_out(faces, identities=3, pairs=40, seed=1)  # same options: nothing changes
    assert {name: (faces / name).read_bytes() for name in files} == files
    with pytest.raises(FskdError, match="already holds out identities with --seed 1, now --seed 2"):
        hold_out(faces, identities=3, pairs=40, seed=2)
    with pytest.raises(FskdError, match="--identities 3, now --identities 4"):
        hold_out(faces, identities=4, pairs=40, seed=1)
    assert {name: (faces / name).read_bytes() for name in files} == files  # refused: untouched
    hold_out(faces, identities=4, pairs=40, seed=2, force=True)  # redone from all identities, as on a fresh set
    fresh = _write_faces(tmp_path / "fresh")
    hold_out(fresh, identities=4, pairs=40, seed=2)
    for name in ("manifest.csv", "pairs.csv"):
        assert (faces / name).read_bytes() == (fresh / name).read_bytes()


def test_holdout_splits_training_sets_only(tmp_path):
    w = DatasetWriter(tmp_path / "v", "toy", "verification", 16, scales=())
    w.add(Row(path="images/hr/a.png", label=0, identity="a", split="test", source="a"), np.zeros((16, 16, 3), np.uint8))
    w.close([("images/hr/a.png", "images/hr/a.png", 1)])
    with pytest.raises(FskdError, match="a verification set; `prepare holdout` splits a training set"):
        hold_out(tmp_path / "v", identities=2, pairs=20)
