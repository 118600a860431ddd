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

With ``cbam=True`` every block ends its residual branch with CBAM (before the shortcut add, as both
authors' codes place it). Two codes built it differently, and ``cbam_variant`` picks one:

- ``askd-code`` (the default, so checkpoints written before the option rebuild unchanged): the A-SKD
  authors' CBAM. A shared MLP of two bias-free 1x1 convs; a spatial conv over the channel-wise mean and
  max without BN; the maps their loss compares are the *pre-sigmoid* logits. Their spatial conv is 3x3.
- ``fskd-code``: the CBAM of the F-SKD authors' code (and of their QualNet code, which ran the digits).
  A shared MLP of two Linear layers with biases; a 7x7 spatial conv over the channel-wise max and mean
  followed by BN; the maps their A-SKD option compares are the *post-sigmoid* gates, the channel one as
  a [B, C] vector.

``cbam_kernel`` is the side of the spatial conv: 7 (CBAM's paper, the F-SKD code, and the default), 3 in
the A-SKD code (recipes of that variant set it). The ``channel_gate`` and ``spatial_gate`` submodules
return the maps A-SKD distils, so a :class:`~fskd_cli.models.tap.FeatureTap` on :func:`attention_layers`
captures them without touching ``forward``.

Builders ``iresnet18``, ``iresnet34``, ``iresnet50`` and ``iresnet100`` take the same keyword arguments
(see :class:`IResNet`); CBAM is the ``cbam`` flag rather than separate names, so a checkpoint's
``arch`` says it in its kwargs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.errors import FskdError
from . import register_model

DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}


class ChannelGate(nn.Module):
    """``askd-code`` channel attention logits: a shared MLP over the avg- and max-pooled input, summed.

    As the A-SKD authors' code (gist-ailab/teaching-where-to-look, model/backbone.py lines 33-51, CAModule):
    two bias-free 1x1 convs, and the map it hands to the loss is the pre-sigmoid sum (line 49). Returns that
    map [B, C, 1, 1]; :meth:`scale` applies the sigmoid.
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

    @staticmethod
    def scale(attention: torch.Tensor) -> torch.Tensor:
        """The factor that gates the input, from the map :meth:`forward` returns."""
        return torch.sigmoid(attention)


class SpatialGate(nn.Module):
    """``askd-code`` spatial attention logits: a ``kernel_size`` square conv over the channel-wise mean and max.

    As the A-SKD authors' code (model/backbone.py lines 54-69, SAModule: mean then max, a 3x3 conv without
    bias or BN, the pre-sigmoid map handed on, line 67). Returns [B, 1, H, W]; :meth:`scale` applies the sigmoid.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1))

    @staticmethod
    def scale(attention: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(attention)


class LinearChannelGate(nn.Module):
    """``fskd-code`` channel attention: a shared MLP of two Linear layers *with* biases over the avg- and
    max-pooled input, summed, then the sigmoid.

    As the F-SKD authors' code (kangkzeng/feature-similarity-KD, backbone/attention.py lines 29-64,
    ChannelGate); its block hands the loss the post-sigmoid gate as a [B, C] vector (line 113,
    ``attn_c[:,:,0,0]``), which is what this returns. The Linear layers keep PyTorch's default init, as
    there: that code's init loop (backbone/iresnet.py lines 162-167), like :meth:`IResNet._init_weights`,
    sets only convs and batch norms.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3))))

    @staticmethod
    def scale(attention: torch.Tensor) -> torch.Tensor:
        return attention[:, :, None, None]


class NormSpatialGate(nn.Module):
    """``fskd-code`` spatial attention: a ``kernel_size`` square conv (no bias) over the channel-wise max and
    mean (in that order), batch norm, then the sigmoid; returns the post-sigmoid map [B, 1, H, W].

    As the F-SKD authors' code (backbone/attention.py lines 72-87: ChannelPool, then BasicConv with BN,
    eps 1e-5 and momentum 0.01, line 13; the kernel is 7, line 79).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv(torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1))))

    @staticmethod
    def scale(attention: torch.Tensor) -> torch.Tensor:
        return attention


_GATES = {"askd-code": (ChannelGate, SpatialGate), "fskd-code": (LinearChannelGate, NormSpatialGate)}
CBAM_VARIANTS = tuple(_GATES)


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al., 2018): channel gating, then spatial gating.

    ``variant`` picks whose code the gates follow (see the module docstring): ``askd-code`` (the default, so
    checkpoints written before the option rebuild unchanged) or ``fskd-code``. Either way the
    ``channel_gate`` and ``spatial_gate`` submodules return the maps that code's loss compares, and
    ``scale`` turns a map into the factor the input is multiplied by.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, variant: str = "askd-code") -> None:
        super().__init__()
        if variant not in _GATES:
            raise FskdError(f"cbam_variant must be one of {', '.join(CBAM_VARIANTS)}, got {variant!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise FskdError(f"the CBAM spatial kernel must be odd and positive (same-size output), got {kernel_size}")
        channel, spatial = _GATES[variant]
        self.channel_gate = channel(channels, reduction)
        self.spatial_gate = spatial(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_gate.scale(self.channel_gate(x))
        return x * self.spatial_gate.scale(self.spatial_gate(x))


class IBasicBlock(nn.Module):
    """The improved residual block: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, [CBAM], + shortcut.

    No activation after the addition (unlike the original ResNet); the stride sits on the second conv.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, cbam: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.cbam = CBAM(cout, **cbam) if cbam is not None else None
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
        cbam_variant: whose CBAM, ``askd-code`` or ``fskd-code`` (see the module docstring).
    """

    feature_layers = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, layers: tuple[int, int, int, int], head: str = "fc", embedding_size: int | None = None,
                 dropout: float = 0.0, base_width: int = 64, input_size: int = 112, cbam: bool = False,
                 cbam_kernel: int = 7, cbam_variant: str = "askd-code") -> None:
        super().__init__()
        if head not in ("fc", "gap"):
            raise FskdError(f"head must be 'fc' or 'gap', got {head!r}")
        if input_size % 16:
            raise FskdError(f"input_size must be a multiple of 16 (four stride-2 stages), got {input_size}")
        last = 8 * base_width
        if head == "gap" and embedding_size not in (None, last):
            raise FskdError(f"the gap head's embedding is the pooled layer4 output of {last} channels; "
                            f"got embedding_size={embedding_size} (use head='fc' for another size)")
        self.head = head
        self.input_size = input_size
        self.embedding_size = last if head == "gap" else (embedding_size or 512)

        self.conv1 = nn.Conv2d(3, base_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.prelu = nn.PReLU(base_width)
        cin = base_width
        attention = {"kernel_size": cbam_kernel, "variant": cbam_variant} if cbam else None
        for i, depth in enumerate(layers, start=1):
            cout = base_width * 2 ** (i - 1)
            blocks = [IBasicBlock(cin if j == 0 else cout, cout, 2 if j == 0 else 1, attention) for j in range(depth)]
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
    """Names of the CBAM gates whose outputs A-SKD distils: channel then spatial, per block.

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
