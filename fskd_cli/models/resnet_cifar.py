"""ResNet for 32x32 inputs (digits: SVHN, MNIST), the paper's digit backbone (Section 4.3).

A 3x3 stride-1 stem and no max-pool keep the 32x32 input's detail; four stages at strides 1, 2, 2, 2
give 32, 16, 8 and 4 pixel feature maps, whose outputs (``layer1`` .. ``layer4``) are distilled.
``resnet50_32`` is the paper's; ``resnet_32`` with small ``layers`` and ``width`` is the CPU demo's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import FskdError
from . import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet32(nn.Module):
    """ResNet for 32x32 images; ``forward`` returns the pooled feature, which is the embedding."""

    feature_layers = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), block: str = "bottleneck", width: int = 64,
                 in_channels: int = 3) -> None:
        super().__init__()
        if len(layers) != 4:
            raise FskdError("layers must list four stage depths")
        if block not in ("basic", "bottleneck"):
            raise FskdError("block must be 'basic' or 'bottleneck'")
        cls = BasicBlock if block == "basic" else Bottleneck
        self.input_size = 32
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        cin = width
        for i, (depth, stride) in enumerate(zip(layers, (1, 2, 2, 2), strict=True), start=1):
            blocks = []
            for j in range(depth):
                blocks.append(cls(cin, width * 2 ** (i - 1), stride if j == 0 else 1))
                cin = width * 2 ** (i - 1) * cls.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_size = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)


@register_model("resnet_32")
def resnet_32(layers: list[int] | tuple[int, ...] = (1, 1, 1, 1), block: str = "basic", width: int = 16,
              in_channels: int = 3) -> ResNet32:
    """A configurable 32x32 ResNet (small by default, for CPU runs)."""
    return ResNet32(tuple(layers), block, width, in_channels)


@register_model("resnet50_32")
def resnet50_32(in_channels: int = 3) -> ResNet32:
    """ResNet-50 (bottleneck, 3-4-6-3, width 64) for 32x32 inputs: the paper's digit backbone."""
    return ResNet32((3, 4, 6, 3), "bottleneck", 64, in_channels)
