"""A-SKD's two variants (the A-SKD code's and the F-SKD code's): losses by hand, CBAM layouts, old runs, recipes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

import fskd_cli
from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.core.config import load_recipe, resolve
from fskd_cli.core.errors import FskdError
from fskd_cli.distill import create_distiller, get_distiller_class
from fskd_cli.models import create_model
from fskd_cli.models.iresnet import CBAM
from fskd_cli.models.tap import FeatureTap
from fskd_cli.train.loop import train
from fskd_cli.train.teacher import feature_shapes

TINY = {"base_width": 4, "input_size": 32, "head": "gap"}
PAPER = Path(fskd_cli.__file__).parent / "recipes" / "paper"

# two blocks' maps for one sample, teacher and student; 1 - cos of each pair worked out by hand
C1_T, C1_S = [1.0, 0.0], [0.6, 0.8]                       # cos 0.6          -> 0.4
S1_T, S1_S = [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]   # cos 1/sqrt(2)    -> 1 - 1/sqrt(2)
C2_T, C2_S = [3.0, 4.0], [4.0, 3.0]                       # cos 24/25        -> 0.04
S2_T, S2_S = [0.5, 0.2, 0.1, 0.7], [0.5, 0.2, 0.1, 0.7]   # identical        -> 0
D = [0.4, 1 - 1 / math.sqrt(2), 0.04, 0.0]


def maps(channel_shape: tuple[int, ...], who: str) -> list[torch.Tensor]:
    """The four maps (channel, spatial, channel, spatial) of teacher ``t`` or student ``s``, batch of one."""
    c1, s1, c2, s2 = (C1_T, S1_T, C2_T, S2_T) if who == "t" else (C1_S, S1_S, C2_S, S2_S)
    return [torch.tensor(c1).view(1, *channel_shape), torch.tensor(s1).view(1, 1, 2, 2),
            torch.tensor(c2).view(1, *channel_shape), torch.tensor(s2).view(1, 1, 2, 2)]


def distiller(channel_shape: tuple[int, ...], **options):
    shapes = [m.shape[1:] for m in maps(channel_shape, "t")]
    return create_distiller("a-skd", shapes, shapes, weight=5.0, **options)


def test_askd_code_sums_the_maps_pre_sigmoid_shapes():
    """The A-SKD code: lambda * sum over every map of 1 - cos (utility/distill_loss.py)."""
    d = distiller((2, 1, 1))
    assert (d.variant, d.reduction) == ("askd-code", "sum")
    loss = d(maps((2, 1, 1), "s"), maps((2, 1, 1), "t"), {})
    assert loss.item() == pytest.approx(5.0 * (0.4 + (1 - 1 / math.sqrt(2)) + 0.04 + 0.0), rel=1e-6)


def test_fskd_code_halves_each_block_and_averages_the_blocks():
    """The F-SKD code: lambda * sum over blocks of (d(channel) + d(spatial)) / n_blocks / 2 (train_student.py)."""
    d = distiller((2,), variant="fskd-code")
    assert (d.variant, d.reduction) == ("fskd-code", "mean")
    loss = d(maps((2,), "s"), maps((2,), "t"), {})
    by_hand = 5.0 * ((D[0] + D[1]) / 2 / 2 + (D[2] + D[3]) / 2 / 2)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert loss.item() == pytest.approx(5.0 * sum(D) / 4, rel=1e-6)
    # the batch mean: a second sample with identical maps halves the loss
    two = [torch.cat([s, t]) for s, t in zip(maps((2,), "s"), maps((2,), "t"), strict=True)]
    twice_t = [torch.cat([t, t]) for t in maps((2,), "t")]
    assert d(two, twice_t, {}).item() == pytest.approx(by_hand / 2, rel=1e-6)


def test_variant_follows_the_models_unless_given_and_must_match_them():
    assert distiller((2,)).variant == "fskd-code"             # left out: the models' variant
    assert distiller((2, 1, 1)).variant == "askd-code"
    assert distiller((2,), reduction="sum").reduction == "sum"  # reduction still overrides
    with pytest.raises(FskdError, match="variant 'fskd-code'.*'askd-code' variant's maps.*cbam_variant: fskd-code"):
        distiller((2, 1, 1), variant="fskd-code")
    with pytest.raises(FskdError, match="variant 'askd-code'.*'fskd-code' variant's maps"):
        distiller((2,), variant="askd-code")
    with pytest.raises(FskdError, match="variant must be one of askd-code, fskd-code"):
        distiller((2,), variant="cbam")


def test_cbam_parameter_layouts():
    """askd-code: bias-free 1x1-conv MLP, a bare spatial conv. fskd-code: Linear MLP with biases, 7x7 conv + BN."""
    channels, hidden = 256, 16
    askd = {k: tuple(v.shape) for k, v in CBAM(channels, kernel_size=3).state_dict().items()}
    assert askd == {"channel_gate.mlp.0.weight": (hidden, channels, 1, 1),
                    "channel_gate.mlp.2.weight": (channels, hidden, 1, 1),
                    "spatial_gate.conv.weight": (1, 2, 3, 3)}
    cbam = CBAM(channels, variant="fskd-code")
    fskd = {k: tuple(v.shape) for k, v in cbam.state_dict().items()}
    assert fskd == {"channel_gate.mlp.0.weight": (hidden, channels), "channel_gate.mlp.0.bias": (hidden,),
                    "channel_gate.mlp.2.weight": (channels, hidden), "channel_gate.mlp.2.bias": (channels,),
                    "spatial_gate.conv.weight": (1, 2, 7, 7),
                    "spatial_gate.bn.weight": (1,), "spatial_gate.bn.bias": (1,), "spatial_gate.bn.running_mean": (1,),
                    "spatial_gate.bn.running_var": (1,), "spatial_gate.bn.num_batches_tracked": ()}
    assert cbam.spatial_gate.bn.momentum == 0.01 and cbam.spatial_gate.bn.eps == 1e-5  # the F-SKD code's BasicConv
    # the F-SKD code's count: two Linear layers with biases, the 7x7 conv without, the BN's affine pair
    trainable = sum(p.numel() for p in cbam.parameters())
    assert trainable == 2 * channels * hidden + hidden + channels + 2 * 49 + 2
    with pytest.raises(FskdError, match="cbam_variant must be one of"):
        CBAM(channels, variant="other")


def test_fskd_code_gates_are_post_sigmoid_and_gate_the_block():
    torch.manual_seed(0)
    model = create_model("iresnet18", cbam=True, cbam_variant="fskd-code", **TINY).eval()
    cls = get_distiller_class("a-skd")
    names = cls.tap_layers(model)
    assert names[:2] == ["layer1.0.cbam.channel_gate", "layer1.0.cbam.spatial_gate"] and len(names) == 16
    block = model.layer2[1].cbam
    seen = {}
    block.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0], y=out))
    tap = FeatureTap(model, names)
    model(torch.rand(2, 3, 32, 32) * 2 - 1)
    ca, sa = (tap.features[names.index(f"layer2.1.cbam.{g}")] for g in ("channel_gate", "spatial_gate"))
    assert ca.shape == (2, 8) and sa.shape == (2, 1, 8, 8)  # the channel map is a [B, C] vector, as their hook saw
    assert all(((m > 0) & (m < 1)).all() for m in tap.features)
    torch.testing.assert_close(seen["y"], seen["x"] * ca[:, :, None, None] * sa)
    shapes = feature_shapes(model, names)
    assert create_distiller("a-skd", shapes, shapes).variant == "fskd-code"


def test_fskd_code_spatial_pool_is_max_then_mean():
    """The F-SKD code's ChannelPool stacks the channel-wise max first, then the mean; A-SKD's, mean then max."""
    x = torch.randn(2, 6, 5, 5)
    for variant, first in (("fskd-code", x.amax(1, keepdim=True)), ("askd-code", x.mean(1, keepdim=True))):
        gate = CBAM(6, kernel_size=1, variant=variant).spatial_gate.eval()
        with torch.no_grad():
            gate.conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))  # only the first pooled map counts
        bn = (1 + 1e-5) ** -0.5 if variant == "fskd-code" else 1.0  # fresh BN in eval: running mean 0, var 1
        torch.testing.assert_close(gate.scale(gate(x)), torch.sigmoid(first * bn))


def test_models_without_the_key_rebuild_as_before():
    """A checkpoint's arch recorded before ``cbam_variant`` has no such key: it rebuilds the A-SKD code's CBAM."""
    old = create_model("iresnet18", cbam=True, **TINY)
    assert "cbam_variant" not in old.arch["kwargs"]
    assert {k for k in old.state_dict() if ".cbam." in k and k.startswith("layer1.0.")} == {
        "layer1.0.cbam.channel_gate.mlp.0.weight", "layer1.0.cbam.channel_gate.mlp.2.weight",
        "layer1.0.cbam.spatial_gate.conv.weight"}
    assert old.layer1[0].cbam.spatial_gate.conv.kernel_size == (7, 7)
    new = create_model("iresnet18", cbam=True, cbam_variant="askd-code", **TINY)
    new.load_state_dict(old.state_dict())  # same layout, strict
    with pytest.raises(FskdError, match="cbam_variant must be one of"):
        create_model("iresnet18", cbam=True, cbam_variant="fskd", **TINY)


def test_paper_cbam_recipes_use_the_fskd_code_variant():
    """Tables 1b, 2b, 3 and 5b (and their teachers): the F-SKD code's CBAM (7x7 + BN) and its A-SKD loss."""
    cbam = {p.name: load_recipe(p) for p in sorted(PAPER.glob("*.yaml"))
            if load_recipe(p)["model"].get("kwargs", {}).get("cbam")}
    assert len(cbam) >= 10 and {"teacher-iresnet50-cbam.yaml", "teacher-svhn-iresnet50-cbam.yaml"} <= set(cbam)
    for name, r in cbam.items():
        kwargs = r["model"]["kwargs"]
        assert kwargs.get("cbam_variant") == "fskd-code" and kwargs.get("cbam_kernel", 7) == 7, name
    askd = [r for r in cbam.values() if r["distill"]["method"] == "a-skd"]
    assert len(askd) == 5
    assert all(r["distill"]["options"] == {"variant": "fskd-code"} for r in askd)


def test_fskd_code_variant_trains_in_the_loop(tmp_path, tiny_digits):
    """A recipe without the option distils the models' variant; naming the other variant is refused."""
    recipe = {"name": "tiny", "data": {"path": str(tiny_digits)},
              "model": {"name": "iresnet18", "kwargs": {**TINY, "cbam": True, "cbam_variant": "fskd-code"}},
              "train": {"batch_size": 16, "lr": 0.05, "epochs": 1, "milestones": [1], "log_every": 1},
              "distill": {"method": "a-skd", "scale": "4", "weight": 5.0}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    teacher = train(resolve(path), tmp_path / "t", kind="teacher", stop_after=2)
    student = train(resolve(path, {"distill.teacher": str(teacher)}), tmp_path / "s", kind="student", stop_after=2)
    assert load_checkpoint(student).arch.kwargs["cbam_variant"] == "fskd-code"
    rows = (tmp_path / "s" / "log.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(0 < float(r.split(",")[5]) < 5.0 * 2 for r in rows)  # a mean of 1 - cos: <= 2
    recipe["distill"]["options"] = {"variant": "askd-code"}
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(FskdError, match="variant 'askd-code'"):
        train(resolve(path, {"distill.teacher": str(teacher)}), tmp_path / "p", kind="student")
