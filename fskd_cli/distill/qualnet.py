"""QualNet-LM (Kim et al., CVPR 2021): a teacher that can decode its code back to the HR image, and an LR
student whose code must decode to the HR image through the teacher's frozen decoder.

Two registered methods, one per stage:

- ``qualnet-decoder`` (stage 1, the teacher run's auxiliary loss: ``fskd train-teacher --method
  qualnet-decoder``). It owns the decoder: a 3x3 conv *bridge* from the backbone's last stage (``layer4``)
  to the code of an i-RevNet (:mod:`fskd_cli.models.irevnet`), whose inverse turns the code into an
  image. Encoder, head and decoder train together on HR images with CE + ``weight * L1(decoded, HR)``.
  The decoder is saved in the teacher checkpoint under ``"distiller"``.
- ``qualnet-lm`` (stage 2, ``fskd distill --method qualnet-lm --teacher T``). It rebuilds the bridge and
  the i-RevNet from the teacher checkpoint (the i-RevNet frozen and in eval mode, the bridge trained on by
  default), and adds ``weight * L1(decoder(student's layer4 on the LR image), HR image)`` to the student's
  CE. Gradients flow through the frozen i-RevNet into the bridge and the student.

The L1 compares the decoded image, clipped to [0, 1] (``clip``), with the HR image mapped from the loop's
[-1, 1] to [0, 1], as the authors' code does (``F.l1_loss(torch.clip(gen, 0, 1), un_normalize(hr))``).

Where the papers leave a choice, this follows the F-SKD authors' QualNet code (face recognition):
the decoder is i-RevNet-301 (``blocks [6, 16, 72, 6]``, ``strides [2, 2, 2, 1]``, ``channels
[24, 96, 384, 1536]``, a 3072x7x7 code for 112x112), the bridge is ``Conv2d(512, 3072, 3, padding=1)``
with a bias, and the L1 weight is 1 in both stages. The decoded image's side is the code's side times
``2 * prod(strides)``, so the same layout serves a 32x32 iResNet (a 2x2 code); for a 32x32 ResNet
(a 4x4 code) use i-RevNet's CIFAR layout (``[18, 18, 18]``, ``[1, 2, 2]``, ``[16, 64, 256]``).

Stage 2 starts as that code does (``train_qualnet_stage2.py`` with ``--pretrained_student true``, its
default): the student is the stage-1 encoder (the teacher's backbone weights, and the bridge, which belongs
to the student network there and keeps training), with the affine parameters of the BatchNorms inside
its residual blocks frozen; the classification head is new. The loop calls :meth:`QualNetLM.init_student`
before it builds the optimizer, so frozen parameters never reach it. ``init: scratch`` trains a new student
instead (with ``train_bridge: false`` this is fskd's earlier behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checkpoint import Checkpoint
from ..core.errors import FskdError
from ..models.irevnet import IRevNet
from . import Distiller, register_distiller

# i-RevNet-301 for 112x112 faces, as in the F-SKD authors' QualNet code (see the module docstring)
DEFAULT_DECODER: dict[str, Any] = {"blocks": (6, 16, 72, 6), "strides": (2, 2, 2, 1), "channels": (24, 96, 384, 1536)}


class QualNetDecoder(nn.Module):
    """Bridge + i-RevNet inverse: a ``[B, C, s, s]`` backbone code -> a ``[B, 3, S, S]`` image, ``S = s * 2 * prod(strides)``."""

    def __init__(self, code_shape: Sequence[int], blocks: Sequence[int], strides: Sequence[int],
                 channels: Sequence[int] | None) -> None:
        super().__init__()
        self.irevnet = IRevNet(blocks, strides, channels)  # its layout comes from a recipe: FskdError if wrong
        self.bridge = nn.Conv2d(code_shape[0], self.irevnet.code_channels, 3, 1, 1, bias=True)
        self.image_size = code_shape[-1] * self.irevnet.downsampling

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.irevnet.inverse(self.bridge(code))


def reconstruction_loss(decoded: torch.Tensor, hr: torch.Tensor, clip: bool) -> torch.Tensor:
    """Mean absolute error between the decoded image and the HR input mapped from [-1, 1] to [0, 1]."""
    if decoded.shape != hr.shape:
        raise FskdError(f"qualnet: the decoder makes {tuple(decoded.shape[1:])} images but the HR input is "
                        f"{tuple(hr.shape[1:])}; the decoded side is the layer4 side times 2 * prod(strides)")
    decoded = decoded.float()
    if clip:
        decoded = decoded.clamp(0.0, 1.0)
    return F.l1_loss(decoded, (hr.float() + 1.0) / 2.0)


def _last_stage(model: nn.Module) -> list[str]:
    return [model.feature_layers[-1]]


@register_distiller("qualnet-decoder")
class QualNetDecoderLoss(Distiller):
    """Stage 1: the teacher's decoder and its reconstruction loss (no teacher of its own).

    Options: ``blocks`` (default ``[6, 16, 72, 6]``), ``strides`` (``[2, 2, 2, 1]``), ``channels``
    (``[24, 96, 384, 1536]``; ``null`` derives them from the strides), ``clip`` (true); ``weight`` is the
    L1 weight (1 in the authors' face code). For CPU tests, ``blocks: [1, 1, 1, 1]`` with
    ``channels: [24, 96, 384, 384]`` is an i-RevNet of 1.3M parameters instead of 126M, same strides.
    """

    summary = "QualNet stage 1, with a teacher run: train a decoder from its code back to the HR image"
    needs_teacher = False

    @classmethod
    def tap_layers(cls, model: nn.Module) -> list[str]:
        return _last_stage(model)

    def __init__(self, student_shapes: Sequence[torch.Size], teacher_shapes: Sequence[torch.Size],
                 weight: float = 1.0, blocks: Sequence[int] = DEFAULT_DECODER["blocks"],
                 strides: Sequence[int] = DEFAULT_DECODER["strides"],
                 channels: Sequence[int] | None = DEFAULT_DECODER["channels"], clip: bool = True) -> None:
        super().__init__(student_shapes, teacher_shapes, weight)
        if len(student_shapes) != 1:
            raise FskdError(f"qualnet-decoder decodes one feature map (layer4), got {len(student_shapes)}")
        self.decoder = QualNetDecoder(student_shapes[0], blocks, strides, channels)
        self.clip = clip

    def check_input_size(self, size: int) -> None:
        """The decoder must give back images of the model's input size: checked when the run is built, before
        ``--out`` is claimed (the loss would find out at the first step)."""
        if self.decoder.image_size != size:
            raise FskdError(f"qualnet-decoder: the decoder makes {self.decoder.image_size}px images but the model "
                            f"takes {size}px; the decoded side is the layer4 side times 2 * prod(strides) "
                            "(its strides option)")

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        return self.weight * reconstruction_loss(self.decoder(student[0]), batch["hr"], self.clip)


@register_distiller("qualnet-lm")
class QualNetLM(Distiller):
    """Stage 2: the student's layer4 code, through the teacher's frozen decoder, must give the HR image.

    Options:

    - ``init``: ``teacher`` (default, the authors' code) starts the student's backbone from the teacher's;
      ``scratch`` keeps the freshly initialised student.
    - ``freeze_bn``: which BatchNorm affine parameters of the student stay fixed: ``blocks`` (the ones
      directly inside residual blocks, which is what the authors' ``freeze_batchnorm`` reaches: not the
      stem's, the shortcuts' or the embedding head's), ``all`` or ``none``. Default ``blocks`` with
      ``init: teacher``, ``none`` from scratch. Running statistics keep updating, as in that code.
    - ``train_bridge`` (true: the bridge learns with the student, as in the authors' code; false freezes it
      with the i-RevNet), ``clip`` (true).
    - the decoder's ``blocks``/``strides``/``channels``, which are read from the teacher checkpoint; given
      here they must match it (so one recipe can hold both stages).

    ``weight`` is the L1 weight (1 in the authors' code). The teacher's forward pass is not needed, only
    its checkpoint (``needs_teacher = False``), so the loop loads the checkpoint but runs no teacher forward.
    """

    summary = "QualNet-LM (Kim et al. 2021): the student's code, through the teacher's decoder, gives the HR image"
    needs_teacher = False
    paper_name, table_order, teacher_variant = "QualNet-LM", 70, "dec"
    wants_teacher_checkpoint = True

    @classmethod
    def tap_layers(cls, model: nn.Module) -> list[str]:
        return _last_stage(model)

    def __init__(self, student_shapes: Sequence[torch.Size], teacher_shapes: Sequence[torch.Size],
                 weight: float = 1.0, teacher_checkpoint: Checkpoint | None = None, init: str = "teacher",
                 freeze_bn: str | None = None, train_bridge: bool = True, clip: bool = True,
                 **decoder_options: Any) -> None:
        super().__init__(student_shapes, teacher_shapes, weight)
        unknown = sorted(set(decoder_options) - set(DEFAULT_DECODER))
        if unknown:
            raise FskdError(f"qualnet-lm: unknown option {unknown[0]!r} "
                            f"(known: init, freeze_bn, train_bridge, clip, {', '.join(DEFAULT_DECODER)})")
        if init not in INITS:
            raise FskdError(f"qualnet-lm: init={init!r}; choose from {', '.join(INITS)}")
        freeze_bn = freeze_bn or ("blocks" if init == "teacher" else "none")
        if freeze_bn not in FREEZE_BN:
            raise FskdError(f"qualnet-lm: freeze_bn={freeze_bn!r}; choose from {', '.join(FREEZE_BN)}")
        arch = _teacher_decoder(teacher_checkpoint, decoder_options)
        if len(student_shapes) != 1 or len(teacher_shapes) != 1:
            raise FskdError("qualnet-lm decodes one feature map (layer4)")
        if tuple(student_shapes[0]) != tuple(teacher_shapes[0]):
            raise FskdError(f"qualnet-lm: the student's layer4 is {tuple(student_shapes[0])}, the teacher's "
                            f"{tuple(teacher_shapes[0])}; the teacher's bridge takes only the latter")
        self.decoder = QualNetDecoder(teacher_shapes[0], arch["blocks"], arch["strides"], arch["channels"])
        try:
            self.load_state_dict(dict(teacher_checkpoint.distiller_weights))
        except RuntimeError as e:
            raise FskdError(f"{teacher_checkpoint.path}: its decoder does not fit ({str(e).splitlines()[0]})") from None
        self.decoder.requires_grad_(False)
        self.decoder.bridge.requires_grad_(train_bridge)
        self.init, self.freeze_bn, self.train_bridge, self.clip = init, freeze_bn, train_bridge, clip
        self.train(self.training)

    def init_student(self, model: nn.Module, head: nn.Module, teacher_checkpoint: Checkpoint) -> None:
        """Start the student as the authors' stage 2 does: the teacher's backbone, BN affine frozen.

        Called by the training loop after it builds the student and this distiller, before the optimizer
        (which takes only parameters that require gradients). The head stays new, as in that code.
        """
        if self.init == "teacher":
            try:
                model.load_state_dict(dict(teacher_checkpoint.weights))
            except RuntimeError as e:
                raise FskdError(f"{teacher_checkpoint.path}: qualnet-lm (init: teacher) starts the student from "
                                f"the teacher's backbone, which does not fit it ({str(e).splitlines()[0]}); "
                                "use the teacher's model settings or init: scratch") from None
        for bn in _batchnorms(model, self.freeze_bn):
            bn.weight.requires_grad_(False)
            bn.bias.requires_grad_(False)

    def train(self, mode: bool = True) -> QualNetLM:
        """The i-RevNet stays in eval mode (running BN statistics from the teacher run), whatever the loop asks."""
        super().train(mode)
        self.decoder.irevnet.eval()
        return self

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        return self.weight * reconstruction_loss(self.decoder(student[0]), batch["hr"], self.clip)


INITS = ("teacher", "scratch")
FREEZE_BN = ("blocks", "all", "none")


def _teacher_decoder(teacher_checkpoint: Checkpoint | None, decoder_options: dict[str, Any]) -> dict[str, Any]:
    """The decoder layout the teacher was trained with; options given in the recipe must agree with it."""
    if teacher_checkpoint is None:
        raise FskdError("qualnet-lm needs the teacher's checkpoint (its decoder); give --teacher")
    where = teacher_checkpoint.path
    if teacher_checkpoint.method != "qualnet-decoder":
        raise FskdError(f"{where}: qualnet-lm needs a teacher trained with `fskd train-teacher --method "
                        f"qualnet-decoder`; this one was trained with {teacher_checkpoint.method!r}")
    taught = (teacher_checkpoint.config.get("distill") or {}).get("teacher_options") or {}
    arch = {k: taught.get(k, default) for k, default in DEFAULT_DECODER.items()}
    for k, v in decoder_options.items():
        if _as_list(v) != _as_list(arch[k]):
            raise FskdError(f"qualnet-lm: option {k}={v} differs from the teacher's decoder ({k}={arch[k]}, {where})")
    return arch


def _batchnorms(model: nn.Module, which: str) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorms whose affine parameters ``freeze_bn=which`` fixes (see :class:`QualNetLM`)."""
    if which == "none":
        return []
    if which == "all":
        return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    return list(_block_batchnorms(model))


def _block_batchnorms(module: nn.Module):
    """The authors' traversal: through Sequentials, then the BatchNorm2d children of each other module."""
    for child in module.children():
        if isinstance(child, nn.Sequential):
            yield from _block_batchnorms(child)
            continue
        for grandchild in child.children():
            if isinstance(grandchild, nn.Sequential):
                yield from _block_batchnorms(grandchild)
            elif isinstance(grandchild, nn.BatchNorm2d) and grandchild.affine:
                yield grandchild


def _as_list(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v
