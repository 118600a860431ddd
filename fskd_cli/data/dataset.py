"""The torch side of a prepared dataset: batches of (HR, LR, label) pairs as uint8 tensors.

Images stay uint8 until they reach the device, where the loop scales them to [-1, 1]: a quarter of the
bytes to copy. The per-sample random choices (the shared flip, the scale in the multi-resolution setting)
are drawn by :class:`PairBatchSampler` in the main process from a generator seeded by (seed, step), so a
run is reproducible whatever the number of workers, and a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..core.errors import FskdError
from .degrade import DEVICE_EXACT, degrade_uint8_batch
from .manifest import Row, load_image, lr_path, read_manifest, read_meta
from .readers.recordio import RECORD_PREFIX, RecordImages, parse_record_path


class PairDataset(Dataset):
    """HR images and their LR copies at ``scales`` from a prepared dataset folder.

    Indexed by batches of keys ``(index, flip, scale)`` through ``__getitems__``, which returns stacked
    tensors ``(hr, lr, labels, scales)``; use it with ``collate_fn=lambda b: b``. With ``read_lr=False``
    the LR images are left to the caller (``lr`` is the HR batch; ``scales`` says what to make of each).

    Images come from files, or, for an in-place set (``meta.yaml`` says ``in_place``), from the records
    its manifest points at. A scale that is not on disk is made on the fly by the one degradation
    function: here on the CPU, equal to the files it replaces, or, with ``lr_on_device``, by the caller on
    its device, and then :attr:`read_lr` is False (the training loop reads it to know what to do). The
    caller gets flipped, unclipped HR images, so the degradations it cannot match (nearest, bicubic: see
    :data:`~.degrade.DEVICE_EXACT`) are made here.
    """

    def __init__(self, root: str | Path, split: str, scales: Sequence[int] = (1,), cache: bool = True,
                 rows: list[Row] | None = None, read_lr: bool = True, lr_on_device: bool = False) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.scales = tuple(scales)
        self.made = tuple(s for s in self.scales if s != 1 and s not in self.meta.get("scales", [1]))
        if self.made and not self.meta.get("image_size"):
            raise FskdError(f"{self.root / 'meta.yaml'}: a set of native low-resolution images (no image_size) has "
                            f"no x{self.made[0]} copies to read or make; use scale 1")
        self.degradation = {k: v for k, v in self.meta.get("degradation", {}).items() if k in ("interpolation", "antialias")}
        exact = self.degradation.get("interpolation", "bilinear") in DEVICE_EXACT
        self.read_lr = read_lr and not (self.made and lr_on_device and exact)
        self.rows = rows if rows is not None else read_manifest(self.root, split=split)
        if not self.rows:
            raise FskdError(f"{self.root / 'manifest.csv'}: no usable images in split {split!r}")
        self.labels = torch.tensor([r.label for r in self.rows], dtype=torch.long)
        self.records, self._keys = self._open_records()
        self._cache: dict[int, torch.Tensor] = {}
        if cache:
            for s in {1, *self.scales} - set(self.made) if self.read_lr else {1}:
                self._cache[s] = self._stack(list(range(len(self.rows))), s)

    def _open_records(self) -> tuple[RecordImages | None, list[tuple[int, int]]]:
        """The records of an in-place set and each row's ``(part, key)``; ``(None, [])`` for image files."""
        if not self.meta.get("in_place"):
            return None, []
        meta_file = self.root / "meta.yaml"
        if not isinstance(self.meta.get("records"), list) or not self.meta.get("image_size"):
            raise FskdError(f"{meta_file}: an in-place set needs 'records' (a list of rec/idx) and 'image_size'")
        keys = []
        for row in self.rows:
            if not row.path.startswith(RECORD_PREFIX):
                raise FskdError(f"{self.root / 'manifest.csv'}: {row.path!r} is not a record path (rec:PART:KEY) "
                                "of an in-place set")
            keys.append(parse_record_path(row.path))
        return RecordImages(self.meta["records"], meta_file), keys

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, index: int, scale: int) -> np.ndarray:
        """One image as ``H x W x 3`` uint8, at a scale that is on disk."""
        if self.records is not None:
            return self.records.load(*self._keys[index])
        path = self.root / lr_path(self.rows[index].path, scale)
        try:
            return load_image(path)
        except (OSError, ValueError) as e:
            raise FskdError(f"{path}: cannot read image ({e})") from None

    def _stack(self, index: list[int], scale: int) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` (contiguous) of the images at ``index``; records decode straight into it.

        Contiguous, not a channels-last view of decoded pixels: on the CPU, torch 2.14's backward of a
        strided convolution corrupts memory on channels-last inputs (see ``train/build.py``). The layout
        is changed by numpy, 4x faster than torch's uint8 permute-and-copy here.
        """
        if self.records is None:
            pixels = np.ascontiguousarray(np.stack([self._read(i, scale) for i in index]).transpose(0, 3, 1, 2))
        else:
            side = int(self.meta["image_size"])
            pixels = np.empty((len(index), 3, side, side), dtype=np.uint8)
            for j, i in enumerate(index):
                self.records.load_into(*self._keys[i], pixels[j])
        return torch.from_numpy(pixels)

    def _images(self, index: torch.Tensor, scale: int) -> torch.Tensor:
        if scale in self._cache:
            return self._cache[scale][index]
        return self._stack(index.tolist(), scale)

    def _lr(self, hr: torch.Tensor, index: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The LR batch of (unflipped) ``hr``: each image at its scale, read from disk or made from ``hr``."""
        lr = hr.clone()
        for s in scale.unique().tolist():
            if s != 1:
                sel = scale == s
                lr[sel] = degrade_uint8_batch(hr[sel], s, **self.degradation) if s in self.made else self._images(index[sel], s)
        return lr

    def __getitems__(self, keys: Sequence[tuple[int, bool, int]]) -> tuple[torch.Tensor, ...]:
        index = torch.tensor([k[0] for k in keys])
        flip = np.array([bool(k[1]) for k in keys])
        scale = torch.tensor([k[2] for k in keys])
        hr = self._images(index, 1)
        lr = self._lr(hr, index, scale) if self.read_lr else hr  # degraded before the flip, as the files were
        for images in (hr, lr) if lr is not hr else (hr,):
            _mirror(images, flip)
        return hr, lr, self.labels[index], scale

    def __getitem__(self, key: tuple[int, bool, int]) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.__getitems__([key]))


def _mirror(images: torch.Tensor, where: np.ndarray) -> None:
    """Mirror ``images[i]`` in place where ``where[i]``; numpy, several times faster than torch on uint8."""
    pixels = images.numpy()
    for i in np.flatnonzero(where):
        pixels[i] = pixels[i, ..., ::-1].copy()


class PairBatchSampler(Sampler):
    """Yields, for each training step, a batch of keys ``(index, flip, scale)``.

    Epoch ``e`` visits the images in a permutation seeded by ``(seed, e)`` and drops the last partial
    batch; step ``k``'s flips and scales come from a generator seeded by ``(seed, k)``. Starting at any
    ``start_step`` therefore reproduces exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, n: int, batch_size: int, total_steps: int, seed: int, scales: Sequence[int],
                 flip: bool, start_step: int = 0) -> None:
        if n < batch_size:
            raise FskdError(f"the training split has {n} images, fewer than one batch of {batch_size}")
        self.n, self.bs, self.total, self.seed = n, batch_size, total_steps, seed
        self.scales, self.flip, self.start = torch.tensor(scales), flip, start_step
        self.steps_per_epoch = n // batch_size

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self) -> Iterator[list[tuple[int, bool, int]]]:
        perm, epoch = None, -1
        for step in range(self.start, self.total):
            e, k = divmod(step, self.steps_per_epoch)
            if e != epoch:
                epoch = e
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + e))
            idx = perm[k * self.bs:(k + 1) * self.bs]
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            flips = torch.rand(self.bs, generator=g) < 0.5 if self.flip else torch.zeros(self.bs, dtype=torch.bool)
            scales = self.scales[torch.randint(len(self.scales), (self.bs,), generator=g)]
            yield list(zip(idx.tolist(), flips.tolist(), scales.tolist(), strict=True))


def eval_batches(n: int, batch_size: int, scale: int, flip: bool = False) -> Iterator[list[tuple[int, bool, int]]]:
    """Keys for a deterministic pass over all ``n`` images at one scale (evaluation, analysis)."""
    for i in range(0, n, batch_size):
        yield [(j, flip, scale) for j in range(i, min(i + batch_size, n))]

