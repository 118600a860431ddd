"""QualNet-LM: the i-RevNet decoder inverts, its output follows the input size, and both stages train
(``fskd train-teacher --method qualnet-decoder`` then ``fskd distill --method qualnet-lm``)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F
import yaml

from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.core.config import resolve
from fskd_cli.core.errors import FskdError
from fskd_cli.distill import create_distiller
from fskd_cli.distill.qualnet import QualNetDecoder, reconstruction_loss
from fskd_cli.models import create_model
from fskd_cli.models.irevnet import IRevNet
from fskd_cli.models.tap import FeatureTap
from fskd_cli.train.loop import train

TINY = {"base_width": 4, "input_size": 32, "head": "gap"}
SMALL_DECODER = {"blocks": [1, 1, 1, 1], "channels": [24, 96, 384, 384]}  # reduced depth and width, for CPUs
LAYER4 = torch.Size([32, 2, 2])  # iResNet-18, base width 4, 32px input


def smooth_images(n: int) -> torch.Tensor:
    """Images in [-1, 1] with some structure to reconstruct (upsampled 4x4 noise)."""
    torch.manual_seed(0)
    return F.interpolate(torch.rand(n, 3, 4, 4), size=32, mode="bilinear") * 2 - 1


@pytest.mark.parametrize("layout", [
    {"blocks": [1, 1, 1, 2], "channels": [24, 96, 384, 768]},  # the face layout's strides, injective last stage
    {"blocks": [2, 1, 2], "strides": [1, 2, 2], "channels": [16, 64, 256]},  # i-RevNet's CIFAR layout
])
def test_irevnet_inverse_of_forward_is_the_identity(layout):
    torch.manual_seed(0)
    net = IRevNet(**layout).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        code = net(x)
        assert code.shape[1] == net.code_channels and code.shape[-1] == 32 // net.downsampling
        assert (net.inverse(code) - x).abs().max().item() < 1e-4


def test_irevnet_layout_is_checked():
    with pytest.raises(FskdError, match="stride-2"):
        IRevNet([1, 1], strides=[2, 2], channels=[24, 64])
    with pytest.raises(FskdError, match="stride-2 block"):
        QualNetDecoder(LAYER4, [1, 1], [2, 2], [24, 64])
    with pytest.raises(FskdError, match="same"):
        IRevNet([1, 1], strides=[2, 2, 2])


@pytest.mark.parametrize("code_shape, layout, side", [
    ((8, 7, 7), SMALL_DECODER, 112),  # iResNet layer4 at 112px -> 112px faces
    ((8, 2, 2), SMALL_DECODER, 32),  # ... at 32px -> 32px digits
    ((16, 4, 4), {"blocks": [1, 1, 1], "strides": [1, 2, 2], "channels": [16, 64, 256]}, 32),  # ResNet-32
])
def test_decoded_image_size_follows_the_input(code_shape, layout, side):
    dec = QualNetDecoder(code_shape, layout["blocks"], layout.get("strides", [2, 2, 2, 1]), layout["channels"])
    assert dec.image_size == side
    with torch.no_grad():
        assert dec(torch.randn(1, *code_shape)).shape == (1, 3, side, side)


def test_reconstruction_loss_by_hand():
    hr = torch.tensor([-1.0, 1.0, 0.0, 1.0]).view(1, 1, 2, 2)  # targets 0, 1, 0.5, 1
    decoded = torch.tensor([0.25, 2.0, 0.5, 1.0]).view(1, 1, 2, 2)
    assert reconstruction_loss(decoded, hr, clip=True).item() == pytest.approx(0.25 / 4)  # 2.0 is clipped to 1
    assert reconstruction_loss(decoded, hr, clip=False).item() == pytest.approx(1.25 / 4)
    with pytest.raises(FskdError, match="2 \\* prod\\(strides\\)"):
        reconstruction_loss(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 32, 32), clip=True)


def test_decoder_loss_goes_down():
    torch.manual_seed(0)
    model = create_model("iresnet18", **TINY)
    tap = FeatureTap(model, ["layer4"])
    d = create_distiller("qualnet-decoder", [LAYER4], [], weight=1.0, **SMALL_DECODER)
    assert not d.needs_teacher and type(d).tap_layers(model) == ["layer4"]
    hr = smooth_images(8)
    opt = torch.optim.SGD([*model.parameters(), *d.parameters()], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        model(hr)
        loss = d(tap.features, [], {"hr": hr})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # slow at first, as in the authors' setup: the clip to [0, 1] stops the gradient of most pixels
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)) and losses[-1] < 0.95 * losses[0]


@pytest.fixture(scope="module")
def qualnet_runs(tmp_path_factory, tiny_digits):
    """Stage 1 then stage 2 through the training loop, as the two commands run them."""
    tmp = tmp_path_factory.mktemp("qualnet")
    recipe = {"name": "tiny", "data": {"path": str(tiny_digits)},
              "model": {"name": "iresnet18", "kwargs": TINY},
              "train": {"batch_size": 16, "lr": 0.05, "epochs": 1, "milestones": [1], "log_every": 1},
              "distill": {"scale": "4", "weight": 1.0, "teacher_options": SMALL_DECODER}}
    path = tmp / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    # fskd train-teacher --method qualnet-decoder
    teacher = train(resolve(path, {"distill.teacher_method": "qualnet-decoder"}), tmp / "t", kind="teacher", stop_after=2)
    # fskd distill --method qualnet-lm --teacher T (the same recipe: the decoder layout comes from the teacher)
    student = train(resolve(path, {"distill.method": "qualnet-lm", "distill.teacher": str(teacher)}), tmp / "s",
                    kind="student", stop_after=3)
    return teacher, student, path


def test_train_teacher_then_distill(qualnet_runs):
    teacher, student, _ = qualnet_runs
    t, s = load_checkpoint(teacher, kind="teacher"), load_checkpoint(student, kind="student")
    assert t.method == "qualnet-decoder" and s.method == "qualnet-lm"
    assert any(k.startswith("decoder.irevnet.stack.") for k in t.distiller_weights)
    # the student's i-RevNet is the teacher's, untouched: frozen weights, and BN statistics (eval mode);
    # the bridge belongs to the student and trains (the authors' code)
    assert t.distiller_weights.keys() == s.distiller_weights.keys()
    assert all(torch.equal(t.distiller_weights[k], s.distiller_weights[k]) for k in t.distiller_weights if ".irevnet." in k)
    assert not torch.equal(t.distiller_weights["decoder.bridge.weight"], s.distiller_weights["decoder.bridge.weight"])
    for run in (teacher, student):
        rows = (run.parent / "log.csv").read_text().splitlines()[1:]
        assert rows and all(0 < float(r.split(",")[5]) < 1 for r in rows)  # an L1 on [0, 1] images


def test_qualnet_lm_loss_goes_down_through_the_frozen_decoder(qualnet_runs):
    teacher_ck = load_checkpoint(qualnet_runs[0])
    torch.manual_seed(0)
    model = create_model("iresnet18", **TINY)
    tap = FeatureTap(model, ["layer4"])
    d = create_distiller("qualnet-lm", [LAYER4], [LAYER4], weight=1.0, teacher_checkpoint=teacher_ck,
                         init="scratch", train_bridge=False)
    d.train()
    assert not d.decoder.irevnet.training  # BN keeps the teacher's running statistics
    assert not any(p.requires_grad for p in d.parameters())
    hr = smooth_images(8)
    lr = F.interpolate(F.interpolate(hr, size=8, mode="bilinear"), size=32, mode="bilinear")
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(8):
        model(lr)
        loss = d(tap.features, [], {"hr": hr})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)) and losses[-1] < 0.98 * losses[0]


def test_qualnet_lm_checks_its_teacher(qualnet_runs):
    teacher_ck = load_checkpoint(qualnet_runs[0])
    make = lambda **kw: create_distiller("qualnet-lm", [LAYER4], [LAYER4], teacher_checkpoint=teacher_ck, **kw)  # noqa: E731
    assert make().decoder.bridge.weight.requires_grad  # the authors' code trains it
    assert not make(train_bridge=False).decoder.bridge.weight.requires_grad
    with pytest.raises(FskdError, match="init='copy'"):
        make(init="copy")
    with pytest.raises(FskdError, match="freeze_bn='some'"):
        make(freeze_bn="some")
    with pytest.raises(FskdError, match="blocks.*differs from the teacher"):
        make(blocks=[6, 16, 72, 6])
    with pytest.raises(FskdError, match="unknown option 'depth'"):
        make(depth=3)
    with pytest.raises(FskdError, match="layer4 is"):
        create_distiller("qualnet-lm", [torch.Size([64, 2, 2])], [LAYER4], teacher_checkpoint=teacher_ck)
    with pytest.raises(FskdError, match="--method qualnet-decoder"):
        create_distiller("qualnet-lm", [LAYER4], [LAYER4], teacher_checkpoint=dataclasses.replace(teacher_ck, method=None))
    with pytest.raises(FskdError, match="--teacher"):
        create_distiller("qualnet-lm", [LAYER4], [LAYER4])


def _block_bn_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if re.fullmatch(r"layer\d\.\d+\.bn\d\.(weight|bias)", k)}


def test_qualnet_lm_starts_from_the_teacher_encoder(qualnet_runs):
    """The authors' stage 2: student = stage-1 encoder, block BN affine frozen, bridge trained; head new."""
    teacher_ck = load_checkpoint(qualnet_runs[0])
    torch.manual_seed(1)
    model, head = create_model("iresnet18", **TINY), torch.nn.Linear(32, 10)
    d = create_distiller("qualnet-lm", [LAYER4], [LAYER4], weight=1.0, teacher_checkpoint=teacher_ck)
    d.init_student(model, head, teacher_ck)
    assert all(torch.equal(v, teacher_ck.weights[k]) for k, v in model.state_dict().items())
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # the BNs inside blocks (bn1..bn3), not the stem's bn1 nor the shortcut's downsample.1
    assert frozen == set(_block_bn_weights(model)) and len(frozen) == 8 * 3 * 2
    assert "bn1.weight" not in frozen and "layer1.0.downsample.1.weight" not in frozen
    params = [p for p in [*model.parameters(), *d.parameters()] if p.requires_grad]
    assert d.decoder.bridge.weight.requires_grad and not any(p.requires_grad for p in d.decoder.irevnet.parameters())
    bridge0, bn0 = d.decoder.bridge.weight.clone(), _block_bn_weights(model)
    opt = torch.optim.SGD(params, lr=0.1)
    hr = smooth_images(8)
    tap = FeatureTap(model, ["layer4"])
    for _ in range(2):
        model(F.interpolate(F.interpolate(hr, size=8, mode="bilinear"), size=32, mode="bilinear"))
        loss = d(tap.features, [], {"hr": hr})
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(bridge0, d.decoder.bridge.weight)
    assert all(torch.equal(bn0[k], v) for k, v in _block_bn_weights(model).items() if k in frozen)


def test_qualnet_lm_scratch_and_all_options(qualnet_runs):
    teacher_ck = load_checkpoint(qualnet_runs[0])
    torch.manual_seed(1)
    model = create_model("iresnet18", **TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    make = lambda **kw: create_distiller("qualnet-lm", [LAYER4], [LAYER4], teacher_checkpoint=teacher_ck, **kw)  # noqa: E731
    make(init="scratch").init_student(model, None, teacher_ck)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "features.weight")
    make(freeze_bn="all").init_student(model, None, teacher_ck)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.weight.requires_grad or m.bias.requires_grad for m in bns)
    wide = create_model("iresnet18", **{**TINY, "base_width": 8})
    with pytest.raises(FskdError, match="init: scratch"):
        make().init_student(wide, None, teacher_ck)


def test_distill_loop_starts_the_student_from_the_teacher(qualnet_runs):
    """Through ``fskd distill``: after 3 steps the frozen block BN affine still equals the teacher's."""
    teacher, student, _ = qualnet_runs
    t, s = load_checkpoint(teacher, kind="teacher").weights, load_checkpoint(student, kind="student").weights
    frozen = [k for k in t if re.fullmatch(r"layer\d\.\d+\.bn\d\.(weight|bias)", k)]
    assert frozen and all(torch.equal(t[k], s[k]) for k in frozen)
    assert not torch.equal(t["layer1.0.conv1.weight"], s["layer1.0.conv1.weight"])  # the rest trains
