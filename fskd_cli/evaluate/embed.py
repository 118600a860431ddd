"""Run a trained backbone over a prepared dataset: embeddings, and optionally the tapped block features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress
from torch import nn

from ..data.dataset import PairDataset, eval_batches, to_input
from ..data.manifest import Row


@torch.inference_mode()
def embed(model: nn.Module, ds: PairDataset, scale: int, *, batch_size: int = 256, device: str | torch.device = "cpu",
          flip: bool = False, label: str = "embedding") -> torch.Tensor:
    """Embeddings ``[N, D]`` of every image of ``ds`` at ``scale`` (mirrored when ``flip``)."""
    device = torch.device(device)
    model = model.to(device).eval()
    embs: list[torch.Tensor] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{label} x{scale}", total=len(ds))
        for keys in eval_batches(len(ds), batch_size, scale, flip):
            _, lr, _, _ = ds.__getitems__(keys)
            embs.append(model(to_input(lr, device)).float().cpu())
            progress.advance(task, len(keys))
    return torch.cat(embs)


@torch.inference_mode()
def embed_with_mirror(model: nn.Module, ds: PairDataset, scale: int, *, batch_size: int = 128,
                      device: str | torch.device = "cpu", label: str = "embedding",
                      progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``[N, D]`` of every image of ``ds`` at ``scale`` and of its horizontal mirror.

    Each image is read once; it and its mirror go through the model in one forward pass of
    ``2 * batch_size``. Mirroring the LR image equals degrading the mirrored HR image (the
    degradation is symmetric), so this matches ``embed(..., flip=True)`` and saves the second read.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    embs: list[torch.Tensor] = []
    mirrors: list[torch.Tensor] = []
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"{label} x{scale} (+ mirror)", total=len(ds))
        for keys in eval_batches(len(ds), batch_size, scale):
            _, lr, _, _ = ds.__getitems__(keys)
            x = to_input(lr, device)
            out = model(torch.cat([x, x.flip(-1)])).float().cpu()
            embs.append(out[:len(keys)])
            mirrors.append(out[len(keys):])
            bar.advance(task, len(keys))
    return torch.cat(embs), torch.cat(mirrors)


class ResizedDataset(PairDataset):
    """A :class:`PairDataset` whose images are resized (bilinear) to ``size`` x ``size`` as they are read.

    For sets kept at their native low resolution (TinyFace: faces of every size), which a model can
    only take once they share its input size; sets of the model's size never need it.
    """

    def __init__(self, root: str, rows: list[Row], size: int, scales: Sequence[int] = (1,)) -> None:
        self.size = size
        super().__init__(root, "", scales, cache=False, rows=rows)

    def _read(self, index: int, scale: int) -> np.ndarray:
        image = super()._read(index, scale)
        if image.shape[:2] == (self.size, self.size):
            return image
        return np.asarray(Image.fromarray(image).resize((self.size, self.size), Image.BILINEAR))


def dataset_for(root: str, split: str | None, scales: Sequence[int], cache: bool = False) -> PairDataset:
    """The images of one split (all usable rows when ``split`` is None) at the given scales."""
    from ..data.manifest import read_manifest

    rows = read_manifest(root, split=split)
    return PairDataset(root, split or "", scales, cache=cache, rows=rows)
