"""iResNet: sizes against insightface's published models, stage shapes, heads, CBAM gates, registry."""

from __future__ import annotations

import pytest
import torch

from fskd_cli.core.errors import FskdError
from fskd_cli.models import create_model
from fskd_cli.models.iresnet import attention_layers
from fskd_cli.models.tap import FeatureTap


@pytest.mark.parametrize("name, millions", [("iresnet18", 24.0), ("iresnet50", 43.6), ("iresnet100", 65.2)])
def test_parameter_count_matches_insightface(name: str, millions: float) -> None:
    """arcface_torch's r18/r50/r100 (FC head, 112x112, 512-d) have these sizes; all parameters count,
    including the embedding BN's frozen scale."""
    n = sum(p.numel() for p in create_model(name).parameters())
    assert abs(n / 1e6 - millions) / millions < 0.005, n


def test_embedding_bn_scale_is_frozen_as_in_insightface() -> None:
    model = create_model("iresnet18", base_width=8)
    assert not model.features.weight.requires_grad
    assert model.features.bias.requires_grad


def _shapes(model: torch.nn.Module, x: torch.Tensor) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    tap = FeatureTap(model, model.feature_layers)
    emb = model(x)
    shapes = [tuple(f.shape[1:]) for f in tap.features]
    tap.remove()
    return shapes, emb


def test_full_width_iresnet18_stage_shapes_and_fc_embedding() -> None:
    model = create_model("iresnet18").eval()
    with torch.no_grad():
        shapes, emb = _shapes(model, torch.randn(2, 3, 112, 112))
    assert shapes == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    assert emb.shape == (2, 512) and model.embedding_size == 512 and model.input_size == 112


@pytest.mark.parametrize("name", ["iresnet34", "iresnet50", "iresnet100"])
def test_tiny_stage_shapes(name: str) -> None:
    model = create_model(name, base_width=4).eval()
    with torch.no_grad():
        shapes, emb = _shapes(model, torch.randn(1, 3, 112, 112))
    assert shapes == [(4, 56, 56), (8, 28, 28), (16, 14, 14), (32, 7, 7)]
    assert emb.shape == (1, 512)


def test_fc_head_follows_input_size() -> None:
    model = create_model("iresnet18", base_width=8, input_size=32, embedding_size=16).eval()
    assert model.fc.in_features == 64 * 2 * 2
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16)


def test_gap_head_gives_the_pooled_last_stage() -> None:
    full = create_model("iresnet50", head="gap")
    assert full.embedding_size == 512 and not hasattr(full, "fc")
    tiny = create_model("iresnet18", head="gap", base_width=8).eval()
    tap = FeatureTap(tiny, ["layer4"])
    with torch.no_grad():
        emb = tiny(torch.randn(2, 3, 32, 32))
    assert tiny.embedding_size == 64 and emb.shape == (2, 64)
    torch.testing.assert_close(emb, tap.features[0].mean((2, 3)))


def test_gap_head_rejects_an_embedding_size_it_cannot_give() -> None:
    with pytest.raises(FskdError, match="gap"):
        create_model("iresnet18", head="gap", base_width=8, embedding_size=512)


def test_cbam_gates_are_pre_sigmoid_and_reproduce_the_gated_output() -> None:
    torch.manual_seed(0)
    model = create_model("iresnet18", base_width=8, input_size=32, cbam=True).eval()
    names = attention_layers(model)
    assert names[:2] == ["layer1.0.cbam.channel_gate", "layer1.0.cbam.spatial_gate"]
    assert len(names) == 2 * 8  # channel + spatial for each of the 2+2+2+2 blocks
    assert attention_layers(create_model("iresnet18", base_width=8)) == []

    tap = FeatureTap(model, names + ["layer2.0.cbam", "layer2.0.cbam.spatial_gate.conv"])
    cbam_in: dict[str, torch.Tensor] = {}
    model.layer2[0].cbam.register_forward_hook(lambda m, inp, out: cbam_in.update(x=inp[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    feats = dict(zip(tap.names, tap.features, strict=False))

    for i, (width, side) in enumerate([(8, 16), (16, 8), (32, 4), (64, 2)], start=1):
        assert feats[f"layer{i}.0.cbam.channel_gate"].shape == (2, width, 1, 1)
        assert feats[f"layer{i}.0.cbam.spatial_gate"].shape == (2, 1, side, side)
    logits = torch.cat([f.flatten() for n, f in feats.items() if n in names])
    assert (logits < 0).any() or (logits > 1).any()  # a sigmoid's output could not leave [0, 1]

    channel = feats["layer2.0.cbam.channel_gate"]
    spatial = feats["layer2.0.cbam.spatial_gate"]
    gated = cbam_in["x"] * torch.sigmoid(channel)
    torch.testing.assert_close(spatial, model.layer2[0].cbam.spatial_gate(gated))
    torch.testing.assert_close(feats["layer2.0.cbam"], gated * torch.sigmoid(spatial))


def test_cbam_gate_shapes_at_full_width() -> None:
    model = create_model("iresnet50", cbam=True)
    block = model.layer3[0].cbam
    with torch.no_grad():
        x = torch.randn(1, 256, 14, 14)
        assert block.channel_gate(x).shape == (1, 256, 1, 1)
        assert block.spatial_gate(x).shape == (1, 1, 14, 14)
        assert block(x).shape == x.shape
    assert block.channel_gate.mlp[0].out_channels == 256 // 16
    assert block.spatial_gate.conv.kernel_size == (7, 7)


def test_create_model_records_arch_and_rejects_unknown_kwargs() -> None:
    model = create_model("iresnet18", base_width=8)
    assert model.arch == {"name": "iresnet18", "kwargs": {"base_width": 8}}
    assert model.feature_layers == ("layer1", "layer2", "layer3", "layer4")
    with pytest.raises(FskdError, match="iresnet18"):
        create_model("iresnet18", width_mult=2)
    with pytest.raises(FskdError, match="head"):
        create_model("iresnet50", head="linear")
    with pytest.raises(FskdError, match="multiple of 16"):
        create_model("iresnet50", input_size=100)


def test_cbam_spatial_kernel_is_an_option() -> None:
    """7x7 by default (CBAM's paper, and older checkpoints); 3x3 as the A-SKD authors' code builds it."""
    torch.manual_seed(0)
    small = create_model("iresnet18", base_width=8, input_size=32, cbam=True, cbam_kernel=3).eval()
    convs = [m.spatial_gate.conv for m in small.modules() if hasattr(m, "spatial_gate")]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert small.arch["kwargs"]["cbam_kernel"] == 3  # recorded, so the checkpoint rebuilds it
    with torch.no_grad():
        x = torch.randn(2, 16, 8, 8)
        assert small.layer2[0].cbam.spatial_gate(x).shape == (2, 1, 8, 8)
    default = create_model("iresnet18", base_width=8, input_size=32, cbam=True)
    assert default.layer1[0].cbam.spatial_gate.conv.kernel_size == (7, 7)
    with pytest.raises(FskdError, match="odd"):
        create_model("iresnet18", base_width=8, input_size=32, cbam=True, cbam_kernel=4)

