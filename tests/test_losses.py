"""Each distillation loss against values computed by hand, and the invariances that define them."""

from __future__ import annotations

import math

import pytest
import torch

from fskd_cli.core.errors import FskdError
from fskd_cli.distill import create_distiller, method_names

SHAPES = [torch.Size([2, 1, 1])]


def make(name: str, weight: float = 1.0, shapes=SHAPES, **kw):
    return create_distiller(name, shapes, shapes, weight=weight, **kw)


def test_registry_has_the_paper_methods():
    assert {"base", "f-skd", "fitnet", "norm-kd"} <= set(method_names())
    with pytest.raises(FskdError, match="unknown method"):
        make("fsdk")


def test_fskd_hand_computed():
    # sample 1: t=(1,0), s=(1,1): cos = 1/sqrt2; sample 2: t=(0,2), s=(0,3): cos = 1
    t = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).view(2, 2, 1, 1)
    s = torch.tensor([[1.0, 1.0], [0.0, 3.0]]).view(2, 2, 1, 1)
    expected = 5.0 * ((1 - 1 / math.sqrt(2)) + 0.0) / 2
    assert make("f-skd", 5.0)([s], [t], {}).item() == pytest.approx(expected)


def test_fskd_mean_over_blocks():
    t1 = torch.tensor([[1.0, 0.0]]).view(1, 2, 1, 1)
    s1 = torch.tensor([[0.0, 1.0]]).view(1, 2, 1, 1)  # orthogonal: 1 - cos = 1
    t2 = s2 = torch.ones(1, 3, 2, 2)  # identical: 0
    shapes = [torch.Size([2, 1, 1]), torch.Size([3, 2, 2])]
    d = create_distiller("f-skd", shapes, shapes, weight=1.0)
    assert d([s1, s2], [t1, t2], {}).item() == pytest.approx(0.5)


def test_fskd_ignores_positive_scaling_of_the_student():
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(4, 8, 3, 3, generator=g), torch.randn(4, 8, 3, 3, generator=g)
    d = make("f-skd", shapes=[torch.Size([8, 3, 3])])
    scale = torch.tensor([0.01, 1.0, 7.0, 300.0]).view(4, 1, 1, 1)
    assert d([s * scale], [t], {}).item() == pytest.approx(d([s], [t], {}).item(), rel=1e-5)
    assert d([t * 3.0], [t], {}).item() == pytest.approx(0.0, abs=1e-6)


def test_fitnet_hand_computed():
    t = torch.tensor([[1.0, 2.0]]).view(1, 2, 1, 1)
    s = torch.tensor([[3.0, 2.0]]).view(1, 2, 1, 1)
    # mean squared difference over elements: ((3-1)^2 + 0) / 2 = 2
    assert make("fitnet", 2.0)([s], [t], {}).item() == pytest.approx(4.0)


def test_fitnet_hint_layers_map_channels():
    d = create_distiller("fitnet", [torch.Size([4, 5, 5])], [torch.Size([8, 5, 5])])
    assert sum(p.numel() for p in d.parameters()) == 4 * 8 + 2 * 8  # 1x1 conv + BN affine
    loss = d([torch.randn(2, 4, 5, 5)], [torch.randn(2, 8, 5, 5)], {})
    loss.backward()
    assert d.hints[0][0].weight.grad is not None


def test_norm_kd_hand_computed():
    # ||t|| = 5 (3,4), ||s|| = 1 (1,0): (5-1)^2 / 2 elements = 8
    t = torch.tensor([[3.0, 4.0]]).view(1, 2, 1, 1)
    s = torch.tensor([[1.0, 0.0]]).view(1, 2, 1, 1)
    assert make("norm-kd")([s], [t], {}).item() == pytest.approx(8.0)


def test_norm_kd_ignores_rotations_of_the_student():
    g = torch.Generator().manual_seed(1)
    t, s = torch.randn(3, 6, 2, 2, generator=g), torch.randn(3, 6, 2, 2, generator=g)
    q, _ = torch.linalg.qr(torch.randn(24, 24, generator=g))  # a random orthogonal matrix
    rotated = (s.flatten(1) @ q).view_as(s)
    d = make("norm-kd", shapes=[torch.Size([6, 2, 2])])
    assert d([rotated], [t], {}).item() == pytest.approx(d([s], [t], {}).item(), rel=1e-5)
    # ...which f-skd and fitnet do not ignore
    f = make("f-skd", shapes=[torch.Size([6, 2, 2])])
    assert f([rotated], [t], {}).item() != pytest.approx(f([s], [t], {}).item(), rel=1e-3)


def test_norm_kd_never_exceeds_fitnet():
    g = torch.Generator().manual_seed(2)
    t, s = torch.randn(5, 4, 3, 3, generator=g), torch.randn(5, 4, 3, 3, generator=g)
    shapes = [torch.Size([4, 3, 3])]
    assert make("norm-kd", shapes=shapes)([s], [t], {}) <= make("fitnet", shapes=shapes)([s], [t], {})


def test_base_is_zero_and_needs_no_teacher():
    d = create_distiller("base", SHAPES, [])
    assert not d.needs_teacher
    assert d([torch.randn(2, 2, 1, 1)], [], {}).item() == 0.0


@pytest.mark.parametrize("name", ["cosface", "arcface"])
def test_margin_logits_are_fp32_under_bf16_autocast(name):
    """A bf16 linear would round s*cos by up to ~0.06 at s=30: the head computes in fp32 whatever the autocast."""
    from torch.nn.functional import linear, normalize

    from fskd_cli.models.heads import create_head

    torch.manual_seed(0)
    head = create_head(name, 64, 10, s=30.0)
    emb = torch.randn(16, 64)
    emb[0] = head.weight[3].detach() * 5  # cos = 1 with class 3: where bf16 rounds the most in absolute terms
    labels = torch.arange(16) % 10
    expected = head(emb, labels)
    with torch.autocast("cpu", torch.bfloat16):
        same_input = head(emb, labels)
        bf16_input = head(emb.bfloat16(), labels)
        bf16_linear = 30.0 * linear(normalize(emb), normalize(head.weight))
    assert same_input.dtype == bf16_input.dtype == torch.float32
    assert torch.equal(same_input, expected)
    assert torch.allclose(bf16_input, expected, atol=0.05)  # only the input's own bf16 rounding remains
    # what the head would return without its fp32 block
    assert bf16_linear.dtype == torch.bfloat16 and (bf16_linear.float() - head(emb)).abs().max() > 1e-2
