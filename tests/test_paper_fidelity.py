"""The paper recipes and heads follow the authors' code: fp32 training, QualNet's SVHN L1 weight, Xavier margin heads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import fskd_cli
from fskd_cli.core.config import resolve
from fskd_cli.models.heads import create_head

RECIPES = Path(fskd_cli.__file__).parent / "recipes"


def test_paper_recipes_train_in_fp32():
    paper = sorted((RECIPES / "paper").glob("*.yaml"))
    assert len(paper) >= 45
    assert all(resolve(p).train.amp == "off" for p in paper), [p.name for p in paper if resolve(p).train.amp != "off"]
    assert resolve(RECIPES / "faces-base.yaml").train.amp == "auto"  # the everyday face recipe keeps its choice


def test_qualnet_on_svhn_weighs_the_l1_by_one():
    assert resolve(RECIPES / "paper" / "teacher-svhn-resnet50-dec.yaml").distill.teacher_weight == 1.0
    assert resolve(RECIPES / "paper" / "table5a-qualnet-lm-x4.yaml").distill.weight == 1.0


@pytest.mark.parametrize("name", ["cosface", "arcface"])
def test_margin_heads_start_xavier_uniform(name):
    torch.manual_seed(0)
    w = create_head(name, 512, 2000).weight.detach()
    bound = math.sqrt(6 / (512 + 2000))
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound  # uniform up to the bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)


def test_softmax_head_keeps_its_normal_start():
    torch.manual_seed(0)
    w = create_head("softmax", 512, 2000).weight.detach()
    assert w.std().item() == pytest.approx(0.01, rel=0.01) and w.abs().max() > 0.04  # N(0, 0.01): tails past 4 std
