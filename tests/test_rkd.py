"""RKD: its distance and angle terms against values computed by hand, and a few steps of training."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.core.config import resolve
from fskd_cli.distill import create_distiller, get_distiller_class
from fskd_cli.models import create_model
from fskd_cli.train.loop import train

# teacher: a right isosceles triangle; student: the same with one leg doubled
T = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
S = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def rkd(student, teacher, **options):
    d = create_distiller("rkd", [], [], **options)
    return d([], [], {"embedding": student, "teacher_embedding": teacher}).item()


def test_distance_term_by_hand():
    # distances (0-1, 0-2, 1-2): teacher 1, 1, sqrt2; student 2, 1, sqrt5; each divided by its mean
    mt, ms = (2 + math.sqrt(2)) / 3, (3 + math.sqrt(5)) / 3
    pairs = [(2, 1), (1, 1), (math.sqrt(5), math.sqrt(2))]
    expected = 2 * sum(huber(s / ms - t / mt) for s, t in pairs) / 9  # both triangles of the 3x3 matrix
    assert rkd(S, T, distance_weight=1.0, angle_weight=0.0) == pytest.approx(expected, rel=1e-5)


def test_angle_term_by_hand():
    # the right angle at point 0 is kept; at point 1 the cosine goes 1/sqrt2 -> 2/sqrt5, at point 2
    # 1/sqrt2 -> 1/sqrt5, each in two of the 27 (a, b, c) entries; all others agree
    expected = (2 * huber(2 / math.sqrt(5) - 1 / math.sqrt(2)) + 2 * huber(1 / math.sqrt(5) - 1 / math.sqrt(2))) / 27
    assert rkd(S, T, distance_weight=0.0, angle_weight=1.0) == pytest.approx(expected, rel=1e-5)


def test_weights_combine_and_defaults():
    d = rkd(S, T, distance_weight=1.0, angle_weight=0.0)
    a = rkd(S, T, distance_weight=0.0, angle_weight=1.0)
    assert rkd(S, T, weight=2.0, distance_weight=3.0, angle_weight=5.0) == pytest.approx(2 * (3 * d + 5 * a), rel=1e-5)
    assert rkd(S, T) == pytest.approx(25 * d + 50 * a, rel=1e-5)  # the RKD paper's classification setting


def test_relations_ignore_scale_translation_and_rotation():
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g))
    moved = 3.0 * s @ q + torch.randn(1, 4, generator=g)
    assert rkd(moved, t) == pytest.approx(rkd(s, t), rel=1e-4)
    assert rkd(t * 7.0, t) == pytest.approx(0.0, abs=1e-6)
    assert rkd(torch.randn(6, 9, generator=g), t) > 0  # embeddings of different sizes are fine


def test_rkd_taps_nothing_and_loss_goes_down():
    model = create_model("resnet_32", layers=[1, 1, 1, 1], width=4)
    assert get_distiller_class("rkd").tap_layers(model) == []
    torch.manual_seed(0)
    x, teacher_emb = torch.rand(16, 3, 32, 32) * 2 - 1, torch.randn(16, 10)
    distiller = create_distiller("rkd", [], [], weight=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = distiller([], [], {"embedding": model(x), "teacher_embedding": teacher_emb})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_rkd_trains_in_the_loop(tmp_path, tiny_digits):
    recipe = {"name": "tiny", "data": {"path": str(tiny_digits)},
              "model": {"name": "resnet_32", "kwargs": {"layers": [1, 1, 1, 1], "width": 4}},
              "train": {"batch_size": 16, "lr": 0.05, "epochs": 1, "milestones": [1], "log_every": 1},
              "distill": {"method": "rkd", "scale": "4", "weight": 1.0}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    teacher = train(resolve(path), tmp_path / "t", kind="teacher", stop_after=2)
    student = train(resolve(path, {"distill.teacher": str(teacher)}), tmp_path / "s", kind="student", stop_after=3)
    ck = load_checkpoint(student)
    assert ck.method == "rkd" and ck.step == 3 and not ck.distiller_weights
    rows = (tmp_path / "s" / "log.csv").read_text().splitlines()[1:]
    assert all(0 < float(r.split(",")[5]) < 1e3 for r in rows)  # distill_loss: finite, positive
