"""The SVHN reader on .mat files written here in SVHN's exact layout (X 32x32x3xN uint8, y Nx1, 10 = 0)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from fskd_cli.core.errors import FskdError
from fskd_cli.data.manifest import load_image, read_manifest, read_meta
from fskd_cli.data.prepare import prepare_dataset
from fskd_cli.data.readers.digits import read_svhn_mat


def write_mat(path, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    y[0, 0] = 10
    savemat(path, {"X": x, "y": y})
    return x, y


def test_reads_layout_and_maps_10_to_0(tmp_path):
    x, y = write_mat(tmp_path / "train_32x32.mat", 7, 0)
    images, labels = read_svhn_mat(tmp_path / "train_32x32.mat")
    assert images.shape == (7, 32, 32, 3)
    assert np.array_equal(images[3], x[:, :, :, 3])
    assert labels[0] == 0 and np.array_equal(labels, y[:, 0] % 10)


def test_prepare_writes_both_splits(tmp_path):
    x_tr, y_tr = write_mat(tmp_path / "train_32x32.mat", 6, 1)
    write_mat(tmp_path / "test_32x32.mat", 4, 2)
    meta = prepare_dataset("svhn", tmp_path, tmp_path / "out", progress=False)
    assert meta["counts"]["splits"] == {"test": 4, "train": 6}
    rows = read_manifest(tmp_path / "out", split="train")
    assert [r.label for r in rows] == list(y_tr[:, 0] % 10)
    assert np.array_equal(load_image(tmp_path / "out" / rows[2].path), x_tr[:, :, :, 2])
    assert read_meta(tmp_path / "out")["scales"] == [1, 2, 4, 8]
    assert (tmp_path / "out" / rows[2].path.replace("/hr/", "/x8/")).exists()


def test_wrong_files_are_named(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(FskdError, match="train_32x32.mat"):
        prepare_dataset("svhn", tmp_path, tmp_path / "out", progress=False)
    savemat(tmp_path / "bad.mat", {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(FskdError, match="32x32x3xN"):
        read_svhn_mat(tmp_path / "bad.mat")
    with pytest.raises(FskdError, match="no train_32x32.mat"):
        (tmp_path / "empty").mkdir()
        prepare_dataset("svhn", tmp_path / "empty", tmp_path / "o", progress=False)


@pytest.mark.parametrize("y, message", [
    (np.array([["1"], ["7"]]), "'y' must hold numbers 1-10, got text labels"),
    (np.array([[1.5], [2.0]]), "labels must be whole numbers 1-10"),
    (np.array([[0], [3]]), "labels must be whole numbers 1-10"),
])
def test_text_or_odd_labels_are_one_line_errors(tmp_path, y, message):
    savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": y})
    with pytest.raises(FskdError, match=message) as e:
        read_svhn_mat(tmp_path / "train_32x32.mat")
    assert "\n" not in str(e.value) and "train_32x32.mat" in str(e.value)


def test_svhn_hr_only_writes_no_lr_copies(tmp_path):
    write_mat(tmp_path / "test_32x32.mat", 3, 4)
    meta = prepare_dataset("svhn", tmp_path / "test_32x32.mat", tmp_path / "out", scales="1", progress=False)
    assert meta["scales"] == [1] and meta["counts"]["splits"] == {"test": 3}
    assert not (tmp_path / "out" / "images" / "x2").exists()
