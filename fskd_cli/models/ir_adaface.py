"""AdaFace's IR-18/34/50/101 (Kim et al., CVPR 2022), laid out as its ``net.py`` so its checkpoints load unchanged.

It is the same "improved" residual network as :mod:`fskd_cli.models.iresnet` (BN, conv3x3, BN, PReLU,
conv3x3 with the stride, BN, plus a shortcut; no activation after the sum), built the way face.evoLVe
and AdaFace build it, which differs in small ways that change the numbers, so it is a model of its own:

- one flat ``body`` of blocks instead of ``layer1`` .. ``layer4``; the stem is ``input_layer``
  (conv, BN, PReLU) and each block is ``res_layer`` (a Sequential) + ``shortcut_layer``;
- a block whose input and output widths are equal takes ``MaxPool2d(1, stride)`` as its shortcut, so
  the first block of the first stage (64 -> 64, stride 2) subsamples its input instead of learning a
  1x1 conv as arcface_torch does; blocks that change width have a 1x1 conv + BN shortcut;
- the embedding head ``output_layer`` is BN2d, Dropout(0.4), flatten, Linear, and a BatchNorm1d
  **without** affine parameters.

AdaFace's ``forward`` returns the unit embedding and its norm. Here ``forward`` returns the embedding
before that division, as every fskd backbone does (fskd normalises where it compares), so the
normalised output equals AdaFace's first output. The distilled features (``feature_layers``) are the
outputs of the last block of each stage, the same four 56/28/14/7-pixel maps that ``layer1`` ..
``layer4`` give in :class:`~fskd_cli.models.iresnet.IResNet`. AdaFace feeds BGR images scaled to
[-1, 1]; the checkpoint written by ``fskd import-teacher`` records that.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.errors import FskdError
from . import register_model
from .iresnet import DEPTHS


class BasicBlockIR(nn.Module):
    """AdaFace's block: ``res_layer(x) + shortcut_layer(x)``, the shortcut a 1x1 max-pool when widths agree."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        if cin == cout:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRAdaFace(nn.Module):
    """AdaFace's IR backbone; ``forward`` maps an image batch to its (unnormalised) embedding.

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 14, 3)`` for IR-50.
        embedding_size: output of the Linear (512 in AdaFace).
        base_width: width of the stem and first stage (64 in AdaFace); stages are 1, 2, 4, 8 times it.
        input_size: side of the square input (112 in AdaFace); the Linear expects ``input_size / 16`` pixels.
        dropout: dropout before the Linear (0.4 in AdaFace; inactive in eval mode).
    """

    def __init__(self, layers: tuple[int, int, int, int], embedding_size: int = 512, base_width: int = 64,
                 input_size: int = 112, dropout: float = 0.4) -> None:
        super().__init__()
        if input_size % 16:
            raise FskdError(f"input_size must be a multiple of 16 (four stride-2 stages), got {input_size}")
        self.input_size, self.embedding_size = input_size, embedding_size
        self.input_layer = nn.Sequential(nn.Conv2d(3, base_width, 3, 1, 1, bias=False), nn.BatchNorm2d(base_width),
                                         nn.PReLU(base_width))
        blocks, taps, cin = [], [], base_width
        for i, depth in enumerate(layers):
            cout = base_width * 2 ** i
            blocks += [BasicBlockIR(cin if j == 0 else cout, cout, 2 if j == 0 else 1) for j in range(depth)]
            taps.append(f"body.{len(blocks) - 1}")
            cin = cout
        self.body = nn.Sequential(*blocks)
        self.feature_layers = tuple(taps)
        side = input_size // 16
        self.output_layer = nn.Sequential(nn.BatchNorm2d(cin), nn.Dropout(dropout), nn.Flatten(),
                                          nn.Linear(cin * side * side, embedding_size),
                                          nn.BatchNorm1d(embedding_size, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


@register_model("adaface_ir18")
def adaface_ir18(**kwargs: Any) -> IRAdaFace:
    """AdaFace IR-18, stages (2, 2, 2, 2); keyword arguments as :class:`IRAdaFace`."""
    return IRAdaFace(DEPTHS[18], **kwargs)


@register_model("adaface_ir34")
def adaface_ir34(**kwargs: Any) -> IRAdaFace:
    """AdaFace IR-34, stages (3, 4, 6, 3)."""
    return IRAdaFace(DEPTHS[34], **kwargs)


@register_model("adaface_ir50")
def adaface_ir50(**kwargs: Any) -> IRAdaFace:
    """AdaFace IR-50, stages (3, 4, 14, 3)."""
    return IRAdaFace(DEPTHS[50], **kwargs)


@register_model("adaface_ir100")
def adaface_ir100(**kwargs: Any) -> IRAdaFace:
    """AdaFace IR-101 (named 100 as the iResNet it mirrors), stages (3, 13, 30, 3)."""
    return IRAdaFace(DEPTHS[100], **kwargs)
