"""The one degradation function every stage uses to make low-resolution (LR) images.

The paper (Section 4.2) downsamples the HR image by 2, 4 or 8 and enlarges it back to the HR size
with bilinear interpolation, so teacher (HR) and student (LR) see tensors of the same shape.
The authors' released code used nearest-neighbour instead; the mode is an option and is recorded
in ``meta.yaml`` by ``fskd prepare``.

The same function runs on one image or a whole batch, on the CPU or on a GPU, so an LR batch can be
made on the device in one call (see :func:`degrade`) and shown equal to the images on disk.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.scale import INTERPOLATIONS, LR_FACTORS

# Interpolations whose LR images a training loop can make on its device from HR batches that are already
# flipped and scaled to the network's range, and still get the files (within rounding): they are mirror-
# symmetric (nearest is not: it keeps the first pixel of each block) and never leave the input's range
# (bicubic overshoots, which the files clip at 0 and 255).
DEVICE_EXACT = ("bilinear", "area")


def degrade(
    images: torch.Tensor, scale: int, interpolation: str = "bilinear", antialias: bool = False
) -> torch.Tensor:
    """Downsample ``images`` (``[..., C, H, W]``, float) by ``scale`` and enlarge back to ``H x W``.

    ``scale == 1`` returns the input unchanged. The down and the up step use the same
    ``interpolation``; ``antialias`` (bilinear/bicubic only) low-pass filters the down step as PIL does.
    """
    if scale == 1:
        return images
    if scale not in LR_FACTORS:
        raise ValueError(f"scale must be 1, 2, 4 or 8, got {scale}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    squeeze = images.dim() == 3
    x = images.unsqueeze(0) if squeeze else images
    h, w = x.shape[-2:]
    kw = {} if interpolation in ("nearest", "area") else {"align_corners": False}
    aa = antialias and interpolation in ("bilinear", "bicubic")
    small = F.interpolate(x, size=(max(1, h // scale), max(1, w // scale)), mode=interpolation, antialias=aa, **kw)
    up_mode = "nearest" if interpolation == "area" else interpolation
    up_kw = {} if up_mode == "nearest" else {"align_corners": False}
    out = F.interpolate(small, size=(h, w), mode=up_mode, **up_kw)
    return out.squeeze(0) if squeeze else out


def degrade_uint8(image: np.ndarray, scale: int, interpolation: str = "bilinear", antialias: bool = False) -> np.ndarray:
    """:func:`degrade` for one ``H x W x C`` uint8 image, rounded back to uint8 (for files on disk)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return degrade_uint8_batch(x, scale, interpolation, antialias).permute(1, 2, 0).numpy()


def degrade_uint8_batch(images: torch.Tensor, scale: int, interpolation: str = "bilinear",
                        antialias: bool = False) -> torch.Tensor:
    """:func:`degrade` for uint8 ``[..., C, H, W]`` images, rounded back to uint8.

    The LR images of a scale that is not on disk, made as the files would have been: the same float
    computation and the same rounding, so they equal the files byte for byte.
    """
    y = degrade(images.float(), scale, interpolation, antialias)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def degrade_batch(images: torch.Tensor, scales: torch.Tensor, interpolation: str = "bilinear",
                  antialias: bool = False) -> torch.Tensor:
    """:func:`degrade` each image of a batch by its own scale (the multi-resolution setting), one call
    per distinct scale; scale 1 keeps the image.

    Give ``scales`` on the CPU (as the loader yields them): the distinct values and each scale's indices are
    found there and only the indices travel, so a batch on a GPU costs no host synchronisation (a boolean
    mask on the device would wait for the GPU to count its elements).
    """
    scales = scales.cpu()
    values = scales.unique().tolist()
    if len(values) == 1:  # single-resolution training: the whole batch at once
        return degrade(images, int(values[0]), interpolation, antialias)
    out = images.clone()
    for s in values:
        if s != 1:
            idx = torch.nonzero(scales == s).squeeze(1).to(images.device, non_blocking=True)
            out.index_copy_(0, idx, degrade(images.index_select(0, idx), int(s), interpolation, antialias))
    return out
