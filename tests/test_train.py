"""The training loop: a teacher and a student train, checkpoints are complete, --resume is exact."""

from __future__ import annotations

import csv

import pytest
import torch

from fskd_cli.core.config import resolve
from fskd_cli.core.errors import FskdError
from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.train.loop import train

from conftest import write_recipe


def log_rows(run):
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_digits):
    tmp = tmp_path_factory.mktemp("teacher")
    return train(resolve(write_recipe(tmp / "r.yaml", tiny_digits)), tmp / "t", kind="teacher")


def test_checkpoint_is_complete_and_weights_only(teacher):
    ck = torch.load(teacher, weights_only=True)
    for key in ("arch", "model", "head", "optimizer", "scheduler", "step", "config", "data_fingerprint", "rng",
                "fskd_version", "kind"):
        assert key in ck
    assert ck["kind"] == "teacher" and ck["step"] == ck["total_steps"] == 2 * (240 // 32)
    assert (teacher.parent / "config.yaml").exists()


def test_resume_continues_the_same_trajectory(tmp_path, tiny_recipe, teacher):
    overrides = {"distill.teacher": str(teacher), "distill.method": "f-skd", "train.epochs": 3, "train.milestones": [2]}
    cfg = resolve(tiny_recipe, overrides)
    straight = train(cfg, tmp_path / "straight", kind="student")
    train(cfg, tmp_path / "resumed", kind="student", stop_after=10)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 10
    with pytest.raises(FskdError, match="--resume"):
        train(cfg, tmp_path / "resumed", kind="student")
    train(cfg, tmp_path / "resumed", kind="student", resume=True)
    a, b = log_rows(tmp_path / "straight"), log_rows(tmp_path / "resumed")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert float(a[-1]["distill_loss"]) > 0
    wa = torch.load(straight, weights_only=True)["model"]
    wb = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_student_kind_checks(tmp_path, tiny_recipe, teacher):
    cfg = resolve(tiny_recipe, {"distill.method": "f-skd"})
    with pytest.raises(FskdError, match="needs --teacher"):
        train(cfg, tmp_path / "a", kind="student")
    student = train(resolve(tiny_recipe, {"distill.method": "base", "train.epochs": 1, "train.milestones": [1]}),
                    tmp_path / "b", kind="student")
    with pytest.raises(FskdError, match="student checkpoint.*teacher checkpoint is needed"):
        train(resolve(tiny_recipe, {"distill.teacher": str(student)}), tmp_path / "c", kind="student")
    wide = resolve(tiny_recipe, {"distill.teacher": str(teacher), "distill.method": "fitnet",
                                 "distill.options": {"hint_layers": False}})
    wide.model.kwargs = {"layers": [1, 1, 1, 1], "width": 8}
    with pytest.raises(FskdError, match="channels differ"):
        train(wide, tmp_path / "d", kind="student")


def test_fitnet_hint_layers_train_with_the_student(tmp_path, tiny_recipe, teacher):
    cfg = resolve(tiny_recipe, {"distill.teacher": str(teacher), "distill.method": "fitnet", "train.epochs": 1,
                                "train.milestones": [1]})
    cfg.model.kwargs = {"layers": [1, 1, 1, 1], "width": 8}  # wider student: hint layers map 8k -> 4k channels
    ck = torch.load(train(cfg, tmp_path / "f", kind="student"), weights_only=True)
    assert any(k.startswith("hints.0.0.weight") for k in ck["distiller"])


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_recipe):
    from fskd_cli.distill import Distiller, register_distiller

    @register_distiller("test-nan-after-4")
    class NanAfter4(Distiller):
        needs_teacher = False
        calls = 0

        def forward(self, student, teacher, batch):
            NanAfter4.calls += 1
            return student[0].new_full((), float("nan") if NanAfter4.calls > 4 else 0.0)

    cfg = resolve(tiny_recipe, {"distill.method": "test-nan-after-4"})
    cfg.train.ckpt_every, cfg.train.log_every = 2, 100
    with pytest.raises(FskdError, match="loss became nan by step 6") as e:
        train(cfg, tmp_path / "nan", kind="student")
    assert "last good checkpoint" in str(e.value)
    ck = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert ck["step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_device_degradation_matches_the_files_on_disk(tiny_digits):
    from fskd_cli.data.dataset import PairDataset, to_input
    from fskd_cli.data.degrade import degrade_batch

    keys = [(i, i % 2 == 0, s) for i, s in zip(range(12), [1, 2, 4, 8] * 3)]
    hr, lr_disk, _, scale = PairDataset(tiny_digits, "train", (1, 2, 4, 8), cache=False).__getitems__(keys)
    hr2, lr_none, _, _ = PairDataset(tiny_digits, "train", (1, 2, 4, 8), cache=False, read_lr=False).__getitems__(keys)
    assert torch.equal(hr, hr2) and torch.equal(lr_none, hr2)
    on_device = degrade_batch(to_input(hr, torch.device("cpu")), scale)
    # the files on disk are the same images rounded to uint8: at most half a grey level apart
    assert (on_device - to_input(lr_disk, torch.device("cpu"))).abs().max() <= 0.5 / 127.5 + 1e-6


def test_device_degradation_trains(tmp_path, tiny_recipe, teacher):
    cfg = resolve(tiny_recipe, {"distill.teacher": str(teacher), "data.degrade": "device", "distill.scale": "multi",
                                "train.epochs": 1, "train.milestones": [1]})
    ck = torch.load(train(cfg, tmp_path / "dev", kind="student"), weights_only=True)
    assert ck["config"]["data"]["degrade"] == "device" and ck["scale"] == "multi"
