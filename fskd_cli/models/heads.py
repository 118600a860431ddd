"""Classification heads on the embedding: plain softmax, CosFace, ArcFace.

A head maps an embedding to logits. With ``labels`` (training) a margin head applies its margin to the
target logit; without (evaluation, digit classification) it returns the plain scaled cosines, so
``argmax`` is the prediction. The weights have no bias, as in the paper's Eq. (1). The margin heads'
weights start Xavier-uniform, as the F-SKD authors' code starts theirs (see :meth:`MarginHead.init_weight`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import FskdError, check_options


class SoftmaxHead(nn.Module):
    """A linear layer without bias: the paper's Eq. (1)."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        self.init_weight()

    def init_weight(self) -> None:
        """N(0, 0.01). Only the digits use this head; the authors ran them on their QualNet code, whose
        ResNet classifier is a Linear with a bias (object_classification/module/backbone/resnet.py line 156),
        which Eq. (1) and this head leave out."""
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(emb, self.weight)


class MarginHead(SoftmaxHead):
    """Normalised weights and embeddings, scale ``s``; subclasses put a margin on the target cosine."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 30.0, m: float = 0.25) -> None:
        super().__init__(embedding_size, num_classes)
        self.s, self.m = s, m

    def init_weight(self) -> None:
        """Xavier uniform, as every margin head of the F-SKD authors' code (kangkzeng/feature-similarity-KD,
        margin/CosineMarginProduct.py line 17, ArcMarginProduct.py line 17: ``nn.init.xavier_uniform_``).
        The weights are normalised in the forward, so the init sets their directions and their size against
        the SGD steps (weight decay included): a std of sqrt(2 / (classes + embedding)), 0.013 for CASIA's
        10,575 classes and 512 dimensions, 0.15 for 30 classes and 64 dimensions, where N(0, 0.01) is 0.01."""
        nn.init.xavier_uniform_(self.weight)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 logits whatever the autocast: in bf16 a cosine near 1 carries an error of ~2e-3, which the
        scale s=30 turns into ~0.06 in the logit, the size of the margin's effect on close classes."""
        with torch.autocast(emb.device.type, enabled=False):
            cos = F.linear(F.normalize(emb.float()), F.normalize(self.weight.float())).clamp(-1, 1)
            if labels is not None:
                target = cos.gather(1, labels[:, None])
                cos = cos.scatter(1, labels[:, None], self.margin(target))
            return self.s * cos

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CosFaceHead(MarginHead):
    """CosFace (paper Eq. 2): ``s * (cos(theta_y) - m)`` for the target class."""

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cos_target - self.m


class ArcFaceHead(MarginHead):
    """ArcFace: ``s * cos(theta_y + m)``; past ``theta_y > pi - m`` it falls back to CosFace-style
    ``cos(theta) - m sin(m)`` so the logit stays monotonic in theta (as insightface does)."""

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        sin = (1.0 - cos_target.pow(2)).clamp_min(0).sqrt()
        phi = cos_target * math.cos(self.m) - sin * math.sin(self.m)
        return torch.where(cos_target > math.cos(math.pi - self.m), phi, cos_target - math.sin(math.pi - self.m) * self.m)


HEADS = {"softmax": SoftmaxHead, "cosface": CosFaceHead, "arcface": ArcFaceHead}


def create_head(name: str, embedding_size: int, num_classes: int, **kwargs: float) -> nn.Module:
    if name not in HEADS:
        raise FskdError(f"unknown head {name!r}; choose from {', '.join(HEADS)}")
    check_options(HEADS[name], kwargs, f"head {name!r}", skip=("embedding_size", "num_classes"))
    return HEADS[name](embedding_size, num_classes, **kwargs)
