"""i-RevNet (Jacobsen, Smeulders & Oyallon, ICLR 2018): a network that loses no information, so it can be
run backwards. QualNet uses its inverse as the decoder that turns a recognition code back into the image.

The network maps an image to a code by invertible steps only:

- an invertible downsampling ``psi`` (space-to-depth: each 2x2 patch becomes 4 channels), once at the
  input and inside every stride-2 block;
- additive coupling blocks on a pair of halves ``(x1, x2) -> (psi(x2), psi(x1) + F(x2))``, where ``F`` is
  a bottleneck of three 3x3 convolutions (``width / mult`` channels inside, pre-activation BN-ReLU except
  in the very first block, the stride on its first convolution). Whatever ``F`` is, the block is undone by
  ``x2 = psi^-1(a)``, ``x1 = psi^-1(b - F(x2))``;
- an injective step where a stride-1 stage is wider than its input: zero channels are appended before the
  halves are split, and dropped again on the way back (i-RevNet's "injective i-RevNet").

``forward`` maps an image to its code, ``inverse`` a code back to an image, and in eval mode
``inverse(forward(x))`` reproduces ``x`` up to float rounding. (In train mode too in exact arithmetic, as
``F`` sees the same input both ways; but after an injective step a half is all zeros, and batch-statistics
BN turns the rounding noise the inverse leaves there into unit-size values, so check it in eval mode.)

A network is described by its stages: ``blocks`` per stage, each stage's first-block ``strides`` and its
``channels`` per half. The defaults are the i-RevNet-301 layout that the F-SKD authors' QualNet code uses
for 112x112 faces (``[6, 16, 72, 6]`` blocks, strides ``[2, 2, 2, 1]``, ``[24, 96, 384, 1536]`` channels):
3x112x112 -> 12x56x56 -> ... -> a 3072x7x7 code, the shape of iResNet-50's ``layer4`` through a 3x3
conv bridge. The image side is the code side times ``2 * prod(strides)``, so the same layout decodes a
2x2 code to a 32x32 digit; i-RevNet's CIFAR layout (``[18, 18, 18]``, ``[1, 2, 2]``, ``[16, 64, 256]``)
decodes a 512x4x4 code to 32x32. ``blocks=[1, 1, 1, 1]`` is the reduced depth for CPU tests.
i-RevNet's classifier head (BN, ReLU, pooling, linear on the code) and its dropout (rate 0 in every
layout above) are left out: here the network only decodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import FskdError

Pair = tuple[torch.Tensor, torch.Tensor]


def psi(x: torch.Tensor) -> torch.Tensor:
    """Invertible downsampling: ``[B, C, H, W] -> [B, 4C, H/2, W/2]``, every value kept."""
    return F.pixel_unshuffle(x, 2)


def psi_inverse(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`psi`: ``[B, 4C, H, W] -> [B, C, 2H, 2W]``."""
    return F.pixel_shuffle(x, 2)


def _halves(x: torch.Tensor) -> Pair:
    x1, x2 = x.chunk(2, dim=1)
    return x1, x2


class IRevBlock(nn.Module):
    """One coupling block on a pair of halves of ``in_channels`` channels in all.

    ``width`` is the number of channels of each output half. A stride-2 block must have
    ``width == 2 * in_channels`` (each half is ``psi``-ed, four times its channels); a stride-1 block may be
    wider than its input, the injective case, and pads ``2 * width - in_channels`` zero channels first.
    """

    def __init__(self, in_channels: int, width: int, stride: int, first: bool = False, mult: int = 4) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise FskdError(f"i-RevNet strides are 1 or 2, got {stride}")
        if stride == 2 and width != 2 * in_channels:
            raise FskdError(f"a stride-2 block on {in_channels} channels has halves of {2 * in_channels}, not {width}")
        if stride == 1 and 2 * width < in_channels:
            raise FskdError(f"a stride-1 block cannot narrow {in_channels} channels to halves of {width}")
        if width % mult:
            raise FskdError(f"channels per half ({width}) must be a multiple of mult ({mult})")
        self.stride = stride
        self.pad = 2 * width - in_channels if stride == 1 else 0
        f_in = width if stride == 1 else in_channels // 2
        mid = width // mult
        layers: list[nn.Module] = [] if first else [nn.BatchNorm2d(f_in), nn.ReLU(inplace=True)]
        layers += [
            nn.Conv2d(f_in, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, width, 3, 1, 1, bias=False),
        ]
        self.residual = nn.Sequential(*layers)

    def forward(self, pair: Pair) -> Pair:
        x1, x2 = pair
        if self.pad:
            x1, x2 = _halves(F.pad(torch.cat([x1, x2], 1), (0, 0, 0, 0, 0, self.pad)))
        fx2 = self.residual(x2)
        if self.stride == 2:
            x1, x2 = psi(x1), psi(x2)
        return x2, x1 + fx2

    def inverse(self, pair: Pair) -> Pair:
        a, b = pair
        x2 = psi_inverse(a) if self.stride == 2 else a
        x1 = b - self.residual(x2)
        if self.stride == 2:
            x1 = psi_inverse(x1)
        if self.pad:
            x = torch.cat([x1, x2], 1)
            x1, x2 = _halves(x[:, : x.shape[1] - self.pad])
        return x1, x2


def default_channels(strides: Sequence[int], in_channels: int = 3) -> list[int]:
    """Channels per half for ``strides``: four times wider after a stride-2 stage (``psi``); a final stride-1
    stage widens four times too (injectively), as in i-RevNet-301; other stride-1 stages keep the width."""
    half = in_channels * 4 // 2
    out = []
    for i, s in enumerate(strides):
        half = half * 4 if s == 2 or i == len(strides) - 1 else half
        out.append(half)
    return out


class IRevNet(nn.Module):
    """An i-RevNet: ``forward`` image -> code, ``inverse`` code -> image (see the module docstring).

    Args:
        blocks: blocks per stage.
        strides: stride of each stage's first block (1 or 2); the others have stride 1.
        channels: channels per half in each stage; ``None`` means :func:`default_channels`.
        in_channels: image channels.
        mult: bottleneck reduction inside each block's ``F``.
    """

    def __init__(self, blocks: Sequence[int] = (6, 16, 72, 6), strides: Sequence[int] = (2, 2, 2, 1),
                 channels: Sequence[int] | None = None, in_channels: int = 3, mult: int = 4) -> None:
        super().__init__()
        channels = list(channels) if channels is not None else default_channels(strides, in_channels)
        if not (len(blocks) == len(strides) == len(channels)) or not blocks:
            raise FskdError(f"blocks {list(blocks)}, strides {list(strides)} and channels {channels} "
                             "must list the same, non-zero number of stages")
        if any(b < 1 for b in blocks):
            raise FskdError(f"every stage needs at least one block, got {list(blocks)}")
        self.blocks, self.strides, self.channels = list(blocks), list(strides), channels
        layers = []
        c = in_channels * 4  # after the input psi
        for n, stride, width in zip(blocks, strides, channels, strict=True):
            for j in range(n):
                layers.append(IRevBlock(c, width, stride if j == 0 else 1, first=not layers, mult=mult))
                c = 2 * width
        self.stack = nn.ModuleList(layers)
        self.in_channels = in_channels
        self.code_channels = c
        self.downsampling = 2 * math.prod(strides)  # image side / code side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pair = _halves(psi(x))
        for block in self.stack:
            pair = block(pair)
        return torch.cat(pair, 1)

    def inverse(self, code: torch.Tensor) -> torch.Tensor:
        if code.shape[1] != self.code_channels:
            raise ValueError(f"i-RevNet code has {self.code_channels} channels, got {code.shape[1]}")
        pair = _halves(code)
        for block in reversed(self.stack):
            pair = block.inverse(pair)
        return psi_inverse(torch.cat(pair, 1))
