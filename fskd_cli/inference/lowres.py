"""Images as a model sees them (LR copies made as its run made them, native crops resized to its input),
and the model run over them in batches, with the mirror image.

LR test images are made the way the model's run made its training images (:class:`LowRes`): by default
from the HR image with the run's own degradation (interpolation, antialias), the one degradation
function every stage uses; ``disk`` takes the dataset's own LR images (its files as they are; a scale it
lacks is made as its ``meta.yaml`` says). Either way HR-only sets (``prepare --scales 1``) work. Images
become model input through the checkpoint's :class:`~fskd_cli.core.preprocess.Preprocess` (an imported
BGR teacher is fed BGR).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress
from torch import nn

from ..core.checkpoint import Degradation
from ..core.errors import FskdError
from ..core.preprocess import Preprocess
from ..core.scale import LR_SOURCES
from ..data.dataset import PairDataset, eval_batches
from ..data.degrade import degrade_uint8_batch
from ..data.manifest import Row

#: how a crop of another size is brought to the model's input (eval of native-size sets, ``fskd embed --aligned``)
RESIZE = "bilinear"


def to_input_size(image: np.ndarray, size: int) -> np.ndarray:
    """An ``H x W x 3`` uint8 crop of any size as ``size x size`` (PIL bilinear); a crop of that size unchanged.

    The one resize for native low-resolution crops (TinyFace's faces are 8-100 px wide): eval of a native
    set and ``fskd embed``/``verify`` of aligned crops call it, so both give the same embeddings.
    """
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


class ResizedDataset(PairDataset):
    """A :class:`PairDataset` whose images are brought to ``size`` x ``size`` (:func:`to_input_size`) as they are read.

    For sets kept at their native low resolution (TinyFace: faces of every size), which a model can
    only take once they share its input size; sets of the model's size never need it.
    """

    def __init__(self, root: str | Path, rows: list[Row], size: int, scales: Sequence[int] = (1,),
                 read_lr: bool = True) -> None:
        self.size = size
        super().__init__(root, "", scales, cache=False, rows=rows, read_lr=read_lr)

    def _read(self, index: int, scale: int) -> np.ndarray:
        return to_input_size(super()._read(index, scale), self.size)


@dataclass(frozen=True)
class LowRes:
    """Where LR test images come from: ``degrade`` (HR degraded like the run's training data) or ``disk``."""

    source: str = "degrade"
    interpolation: str = "bilinear"
    antialias: bool = False
    origin: str = "default"  # where interpolation/antialias were read (checkpoint, training set's meta.yaml)

    @classmethod
    def for_run(cls, degradation: Degradation, source: str = "degrade") -> LowRes:
        """From a run's training degradation (``Checkpoint.degradation``)."""
        if source not in LR_SOURCES:
            raise FskdError(f"--lr-source must be one of {', '.join(LR_SOURCES)}, got {source!r}")
        return cls(source, degradation.interpolation, degradation.antialias, degradation.source)

    def dataset(self, data: str | Path, rows: list[Row], scale: int, size: int | None = None) -> PairDataset:
        """The images of ``rows``; a native-size set (``size`` given) is resized to the model's input."""
        from_disk = self.source == "disk" and scale > 1
        scales = (scale,) if from_disk else (1,)
        if size:
            return ResizedDataset(data, rows, size, scales, read_lr=from_disk)
        return PairDataset(data, "", scales, cache=False, rows=rows, read_lr=from_disk)

    def batch(self, ds: PairDataset, indices: Sequence[int], scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 HR images of ``indices`` and their ``scale``x LR copies (rounded to uint8, as files are)."""
        hr, lr, _, _ = ds.__getitems__([(i, False, scale) for i in indices])
        if self.source == "degrade" and scale > 1:
            lr = degrade_uint8_batch(hr, scale, self.interpolation, self.antialias)
        return hr, lr

    def describe(self, scale: int) -> dict[str, Any]:
        """The eval JSON's record of how its LR images were made."""
        if scale == 1:
            return {"source": "hr"}
        if self.source == "disk":
            return {"source": "disk", "note": "the dataset's LR files (a scale not on disk: made as its meta.yaml says)"}
        return {"source": "degrade", "interpolation": self.interpolation, "antialias": self.antialias,
                "from": self.origin}


def batches(ds: PairDataset, lowres: LowRes, scale: int, batch_size: int, label: str
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[int]]]:
    """``(hr, lr, indices)`` over all of ``ds`` in order, with a progress bar: the one eval/analyze loop."""
    with Progress(transient=True) as bar:
        task = bar.add_task(f"{label} x{scale}", total=len(ds))
        for keys in eval_batches(len(ds), batch_size, scale):
            indices = [k[0] for k in keys]
            hr, lr = lowres.batch(ds, indices, scale)
            yield hr, lr, indices
            bar.advance(task, len(indices))


def forward_with_mirror(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float embeddings of the input batch ``x`` and of its horizontal mirror, in one forward pass of ``2 * len(x)``.

    The one place eval and ``fskd embed`` add the mirror image (the insightface protocol then scores the
    L2-normalised sum of the two).
    """
    out = model(torch.cat([x, x.flip(-1)])).float()
    return out[:len(x)], out[len(x):]


@torch.inference_mode()
def embed(model: nn.Module, ds: PairDataset, lowres: LowRes, scale: int, preprocess: Preprocess, *,
          device: torch.device, batch_size: int = 128, label: str = "embedding", mirror: bool = False
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings ``[N, D]`` of every image of ``ds`` at ``scale`` and, with ``mirror``, of its mirror image.

    An image and its mirror go through the model in one forward pass of ``2 * batch_size``. Mirroring
    the LR image equals degrading the mirrored HR image (the degradation is symmetric).
    """
    model = model.to(device).eval()
    embs: list[torch.Tensor] = []
    mirrors: list[torch.Tensor] = []
    for _, lr, _ in batches(ds, lowres, scale, batch_size, label + (" (+ mirror)" if mirror else "")):
        x = preprocess.apply(lr, device)
        emb, flipped = forward_with_mirror(model, x) if mirror else (model(x).float(), None)
        embs.append(emb.cpu())
        mirrors += [] if flipped is None else [flipped.cpu()]
    return torch.cat(embs), torch.cat(mirrors) if mirror else None
