"""A-SKD: the CBAM maps it captures (shapes, pre-sigmoid), its loss by hand, a few steps of training."""

from __future__ import annotations

import pytest
import torch
import yaml

from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.core.config import resolve
from fskd_cli.core.errors import FskdError
from fskd_cli.distill import create_distiller, get_distiller_class
from fskd_cli.models import create_model
from fskd_cli.models.iresnet import CBAM, attention_layers
from fskd_cli.models.tap import FeatureTap
from fskd_cli.train.loop import train
from fskd_cli.train.teacher import feature_shapes

TINY = {"base_width": 4, "input_size": 32, "head": "gap"}


def cbam_model(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("iresnet18", cbam=True, **TINY)


def test_cbam_maps_shapes_and_pre_sigmoid():
    model = cbam_model().eval()
    names = get_distiller_class("a-skd").tap_layers(model)
    assert names == attention_layers(model) and len(names) == 2 * 8  # channel + spatial, 8 blocks
    assert names[:2] == ["layer1.0.cbam.channel_gate", "layer1.0.cbam.spatial_gate"]
    tap = FeatureTap(model, names)
    cbam = model.layer2[1].cbam
    seen = {}
    cbam.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0], y=out))
    model(torch.rand(2, 3, 32, 32) * 2 - 1)
    maps = tap.features
    widths, sides = [4, 8, 16, 32], [16, 8, 4, 2]  # stages of an iResNet at 32px, base width 4
    for i, (c, s) in enumerate(zip(maps[0::2], maps[1::2], strict=True)):
        stage = i // 2
        assert c.shape == (2, widths[stage], 1, 1) and s.shape == (2, 1, sides[stage], sides[stage])
    # logits, not gates: outside (0, 1), and CBAM's output is its input gated by their sigmoids
    assert any((m < 0).any() for m in maps)
    ca, sa = maps[names.index("layer2.1.cbam.channel_gate")], maps[names.index("layer2.1.cbam.spatial_gate")]
    assert torch.allclose(seen["y"], seen["x"] * torch.sigmoid(ca) * torch.sigmoid(sa), atol=1e-6)
    assert isinstance(cbam, CBAM) and seen["y"].shape == seen["x"].shape


def test_a_skd_needs_cbam():
    plain = create_model("iresnet18", **TINY)
    with pytest.raises(FskdError, match="no CBAM.*cbam: true"):
        get_distiller_class("a-skd").tap_layers(plain)
    with pytest.raises(FskdError, match="no CBAM"):
        get_distiller_class("a-skd").tap_layers(create_model("resnet_32"))


def test_loss_zero_for_identical_maps_and_by_hand():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(3, 8, 1, 1, generator=g), torch.randn(3, 1, 4, 4, generator=g)]
    shapes = [m.shape[1:] for m in maps]
    d = create_distiller("a-skd", shapes, shapes, weight=5.0)
    assert d(maps, [m.clone() for m in maps], {}).item() == pytest.approx(0.0, abs=1e-6)
    assert d([m * 3 for m in maps], maps, {}).item() == pytest.approx(0.0, abs=1e-6)  # only the direction counts
    # map 1: opposite (1 - cos = 2); map 2: orthogonal (1); summed over maps, times lambda
    c_t, c_s = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1), torch.tensor([-1.0, 0.0]).view(1, 2, 1, 1)
    s_t, s_s = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2), torch.tensor([0.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    shapes = [c_t.shape[1:], s_t.shape[1:]]
    assert create_distiller("a-skd", shapes, shapes, weight=5.0)([c_s, s_s], [c_t, s_t], {}).item() == pytest.approx(15.0)
    mean = create_distiller("a-skd", shapes, shapes, weight=5.0, reduction="mean")
    assert mean([c_s, s_s], [c_t, s_t], {}).item() == pytest.approx(7.5)


def test_a_skd_rejects_different_architectures():
    student, teacher = cbam_model(), create_model("iresnet18", cbam=True, base_width=8, input_size=32, head="gap")
    cls = get_distiller_class("a-skd")
    with pytest.raises(FskdError, match="same CBAM architecture"):
        create_distiller("a-skd", feature_shapes(student, cls.tap_layers(student)),
                         feature_shapes(teacher, cls.tap_layers(teacher)))
    with pytest.raises(FskdError, match="reduction"):
        create_distiller("a-skd", [], [], reduction="max")


def test_a_skd_loss_goes_down():
    student, teacher = cbam_model(0), cbam_model(1).eval()
    cls = get_distiller_class("a-skd")
    s_tap, t_tap = FeatureTap(student, cls.tap_layers(student)), FeatureTap(teacher, cls.tap_layers(teacher))
    shapes = feature_shapes(student, cls.tap_layers(student))
    d = create_distiller("a-skd", shapes, shapes, weight=5.0)
    hr = torch.rand(8, 3, 32, 32) * 2 - 1
    lr = torch.nn.functional.interpolate(torch.nn.functional.interpolate(hr, size=8, mode="bilinear"), size=32, mode="bilinear")
    with torch.no_grad():
        teacher(hr)
    t_maps = [m.clone() for m in t_tap.features]
    opt = torch.optim.SGD(student.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _ in range(6):
        student(lr)
        loss = d(s_tap.features, t_maps, {})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_a_skd_trains_in_the_loop(tmp_path, tiny_digits):
    recipe = {"name": "tiny", "data": {"path": str(tiny_digits)},
              "model": {"name": "iresnet18", "kwargs": {**TINY, "cbam": True}},
              "train": {"batch_size": 16, "lr": 0.05, "epochs": 1, "milestones": [1], "log_every": 1},
              "distill": {"method": "a-skd", "scale": "4", "weight": 5.0}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    teacher = train(resolve(path), tmp_path / "t", kind="teacher", stop_after=2)
    student = train(resolve(path, {"distill.teacher": str(teacher)}), tmp_path / "s", kind="student", stop_after=3)
    assert load_checkpoint(student).method == "a-skd"
    rows = (tmp_path / "s" / "log.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(0 < float(r.split(",")[5]) < 5.0 * 16 * 2 for r in rows)
    # a student without CBAM is refused with the reason
    recipe["model"]["kwargs"] = TINY
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(FskdError, match="no CBAM"):
        train(resolve(path, {"distill.teacher": str(teacher)}), tmp_path / "p", kind="student")
