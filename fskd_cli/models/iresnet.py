"""iResNet-18/34/50/100 for 112x112 faces (insightface arcface_torch layout), optionally with CBAM.

The paper's face backbone is iResNet-50 (Section 4.3); iResNet-50 with CBAM is the backbone of the
A-SKD comparison (Table 1b). The layout follows arcface_torch: a 3x3 stride-1 stem, four stages of
pre-activation "improved" basic blocks whose first block halves the resolution, so a 112x112 face gives
stage outputs (``layer1`` .. ``layer4``, the distilled features) of 56, 28, 14 and 7 pixels. Module
names match arcface_torch's, so its published weights load with ``load_state_dict`` when ``head="fc"``.

Two embedding heads:

- ``"fc"`` (insightface): BN2d, dropout, flatten, Linear(C*7*7 -> embedding), BN1d.
- ``"gap"`` (the F-SKD authors' released code): global average pooling of ``layer4``; the embedding is
  the pooled feature itself, so its size is the last stage's width (512 at full width).

With ``cbam=True`` every block ends its residual branch with CBAM; ``cbam_kernel`` is the side of its
spatial-attention convolution: 7 in CBAM's paper (the default, so older checkpoints rebuild unchanged),
3 in the A-SKD authors' code (their recipes set it). The attention maps A-SKD distils are
the pre-sigmoid outputs of the ``channel_gate`` and ``spatial_gate`` submodules, so a
:class:`~fskd_cli.models.tap.FeatureTap` on :func:`attention_layers` captures them without touching
``forward``.

Builders ``iresnet18``, ``iresnet34``, ``iresnet50`` and ``iresnet100`` take the same keyword arguments
(see :class:`IResNet`); CBAM is the ``cbam`` flag rather than separate names, so a checkpoint's
``arch`` says it in its kwargs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import register_model

DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}


class ChannelGate(nn.Module):
    """CBAM's channel attention logits: a shared MLP over the avg- and max-pooled input, summed.

    Returns the pre-sigmoid map [B, C, 1, 1]; :class:`CBAM` applies the sigmoid, so a forward hook here
    sees the logits A-SKD compares.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)  # narrow test models would otherwise get a 0-wide MLP
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))


class SpatialGate(nn.Module):
    """CBAM's spatial attention logits: a ``kernel_size`` square conv over the channel-wise mean and max.

    Returns the pre-sigmoid map [B, 1, H, W]; :class:`CBAM` applies the sigmoid.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"the CBAM spatial kernel must be odd and positive (same-size output), got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1))


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al., 2018): channel gating, then spatial gating."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.sigmoid(self.channel_gate(x))
        return x * torch.sigmoid(self.spatial_gate(x))


class IBasicBlock(nn.Module):
    """The improved residual block: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, [CBAM], + shortcut.

    No activation after the addition (unlike the original ResNet); the stride sits on the second conv.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, cbam: bool = False, cbam_kernel: int = 7) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.cbam = CBAM(cout, kernel_size=cbam_kernel) if cbam else None
        self.downsample = None
        if stride != 1 or cin != cout:
            # named as in arcface_torch so its weights load unchanged
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.cbam is not None:
            out = self.cbam(out)
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """iResNet backbone; ``forward`` maps an image batch to its embedding.

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 14, 3)`` for iResNet-50.
        head: ``"fc"`` (insightface) or ``"gap"`` (F-SKD authors' code), see the module docstring.
        embedding_size: output size of the FC head; ``None`` means 512. The GAP head's embedding is the
            last stage's width (``8 * base_width``), so for it ``None`` or that width are accepted.
        dropout: dropout before the FC head's Linear (arcface_torch uses 0 for its iResNets).
        base_width: width of the stem and first stage; stages are 1, 2, 4, 8 times it. 64 is the paper's;
            smaller values build the tiny models of tests and CPU recipes.
        input_size: side of the square input; the FC head's Linear expects ``input_size / 16`` pixels.
        cbam: append CBAM to every block's residual branch (A-SKD's backbone).
        cbam_kernel: side of CBAM's spatial-attention conv (7 as in CBAM; 3 in the A-SKD authors' code).
    """

    feature_layers = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, layers: tuple[int, int, int, int], head: str = "fc", embedding_size: int | None = None,
                 dropout: float = 0.0, base_width: int = 64, input_size: int = 112, cbam: bool = False,
                 cbam_kernel: int = 7) -> None:
        super().__init__()
        if head not in ("fc", "gap"):
            raise ValueError(f"head must be 'fc' or 'gap', got {head!r}")
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 (four stride-2 stages), got {input_size}")
        last = 8 * base_width
        if head == "gap" and embedding_size not in (None, last):
            raise ValueError(f"the gap head's embedding is the pooled layer4 output of {last} channels; "
                            f"got embedding_size={embedding_size} (use head='fc' for another size)")
        self.head = head
        self.input_size = input_size
        self.embedding_size = last if head == "gap" else (embedding_size or 512)

        self.conv1 = nn.Conv2d(3, base_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.prelu = nn.PReLU(base_width)
        cin = base_width
        for i, depth in enumerate(layers, start=1):
            cout = base_width * 2 ** (i - 1)
            blocks = [IBasicBlock(cin if j == 0 else cout, cout, 2 if j == 0 else 1, cbam, cbam_kernel) for j in range(depth)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = cout

        if head == "fc":
            side = input_size // 16
            self.bn2 = nn.BatchNorm2d(last)
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Linear(last * side * side, self.embedding_size)
            self.features = nn.BatchNorm1d(self.embedding_size)
        else:
            self.pool = nn.AdaptiveAvgPool2d(1)
        self._init_weights()

    def _init_weights(self) -> None:
        """arcface_torch's init: N(0, 0.1) convs, unit BNs, and the embedding BN's scale fixed at 1.

        Freezing ``features.weight`` keeps the embedding BN a pure re-centring, as in insightface, so
        distilled students and teachers trained here match models trained there.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.head == "fc":
            nn.init.ones_(self.features.weight)
            self.features.weight.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.head == "gap":
            return torch.flatten(self.pool(x), 1)
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def attention_layers(model: nn.Module) -> list[str]:
    """Names of the CBAM gates whose pre-sigmoid outputs A-SKD distils: channel then spatial, per block.

    Empty for a model without CBAM. Feed the list to :class:`~fskd_cli.models.tap.FeatureTap`.
    """
    return [f"{name}.{gate}" for name, m in model.named_modules() if isinstance(m, CBAM)
            for gate in ("channel_gate", "spatial_gate")]


@register_model("iresnet18")
def iresnet18(**kwargs: Any) -> IResNet:
    """iResNet-18, stages (2, 2, 2, 2); keyword arguments as :class:`IResNet`."""
    return IResNet(DEPTHS[18], **kwargs)


@register_model("iresnet34")
def iresnet34(**kwargs: Any) -> IResNet:
    """iResNet-34, stages (3, 4, 6, 3)."""
    return IResNet(DEPTHS[34], **kwargs)


@register_model("iresnet50")
def iresnet50(**kwargs: Any) -> IResNet:
    """iResNet-50, stages (3, 4, 14, 3): the paper's teacher and student."""
    return IResNet(DEPTHS[50], **kwargs)


@register_model("iresnet100")
def iresnet100(**kwargs: Any) -> IResNet:
    """iResNet-100, stages (3, 13, 30, 3)."""
    return IResNet(DEPTHS[100], **kwargs)
