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
from .manifest import Row, load_image, lr_path, read_manifest, read_meta



class PairDataset(Dataset):
    """HR images and their LR copies at ``scales`` from a prepared dataset folder.

    Indexed by batches of keys ``(index, flip, scale)`` through ``__getitems__``, which returns stacked
    tensors ``(hr, lr, labels, scales)``; use it with ``collate_fn=lambda b: b``. With ``read_lr=False``
    the LR images are left to the caller (``lr`` is the HR batch; ``scales`` says what to make of each).
    """

    def __init__(self, root: str | Path, split: str, scales: Sequence[int] = (1,), cache: bool = True,
                 rows: list[Row] | None = None, read_lr: bool = True) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        missing = [s for s in scales if s not in self.meta.get("scales", [1])]
        if missing:
            raise FskdError(f"{self.root / 'meta.yaml'}: dataset has no {missing[0]}x images (has {self.meta.get('scales')})")
        self.rows = rows if rows is not None else read_manifest(self.root, split=split)
        if not self.rows:
            raise FskdError(f"{self.root / 'manifest.csv'}: no usable images in split {split!r}")
        self.labels = torch.tensor([r.label for r in self.rows], dtype=torch.long)
        self.scales = tuple(scales)
        self.read_lr = read_lr
        self._cache: dict[int, torch.Tensor] = {}
        if cache:
            for s in {1, *self.scales} if read_lr else {1}:
                self._cache[s] = torch.from_numpy(np.stack([self._read(i, s) for i in range(len(self.rows))])).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, index: int, scale: int) -> np.ndarray:
        path = self.root / lr_path(self.rows[index].path, scale)
        try:
            return load_image(path)
        except (OSError, ValueError) as e:
            raise FskdError(f"{path}: cannot read image ({e})") from None

    def _images(self, index: torch.Tensor, scale: int) -> torch.Tensor:
        if scale in self._cache:
            return self._cache[scale][index]
        return torch.from_numpy(np.stack([self._read(int(i), scale) for i in index])).permute(0, 3, 1, 2)

    def __getitems__(self, keys: Sequence[tuple[int, bool, int]]) -> tuple[torch.Tensor, ...]:
        index = torch.tensor([k[0] for k in keys])
        flip = torch.tensor([bool(k[1]) for k in keys])
        scale = torch.tensor([k[2] for k in keys])
        hr = self._images(index, 1)
        lr = hr.clone()
        for s in scale.unique().tolist() if self.read_lr else ():
            if s != 1:
                sel = scale == s
                lr[sel] = self._images(index[sel], s)
        if flip.any():
            hr[flip] = hr[flip].flip(-1)
            lr[flip] = lr[flip].flip(-1)
        return hr, lr, self.labels[index], scale

    def __getitem__(self, key: tuple[int, bool, int]) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.__getitems__([key]))


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
            yield list(zip(idx.tolist(), flips.tolist(), scales.tolist()))


def eval_batches(n: int, batch_size: int, scale: int, flip: bool = False) -> Iterator[list[tuple[int, bool, int]]]:
    """Keys for a deterministic pass over all ``n`` images at one scale (evaluation, analysis)."""
    for i in range(0, n, batch_size):
        yield [(j, flip, scale) for j in range(i, min(i + batch_size, n))]


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> float on ``device`` in [-1, 1], as the authors' code scales inputs."""
    x = images.to(device, non_blocking=True).float().sub_(127.5).div_(127.5)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
