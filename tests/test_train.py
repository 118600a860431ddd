"""The training loop: a teacher and a student train, checkpoints are complete, --resume is exact."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import write_recipe

from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.core.config import resolve
from fskd_cli.core.errors import FskdError
from fskd_cli.train.loop import train


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
                "fskd_version", "kind", "embedding_size", "degradation", "variant", "preprocess"):
        assert key in ck
    assert ck["kind"] == "teacher" and ck["step"] == ck["total_steps"] == 2 * (240 // 32)
    assert ck["degradation"] == {"interpolation": "bilinear", "antialias": False, "scales": [1]}
    assert (teacher.parent / "config.yaml").exists()


def test_resume_continues_the_same_trajectory(tmp_path, tiny_recipe, teacher):
    overrides = {"distill.teacher": str(teacher), "distill.method": "f-skd", "train.epochs": 3, "train.milestones": [2]}
    cfg = resolve(tiny_recipe, overrides)
    straight = train(cfg, tmp_path / "straight", kind="student")
    train(cfg, tmp_path / "resumed", kind="student", stop_after=10)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt").step == 10
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
    assert ck.step == 4
    assert all(torch.isfinite(v).all() for v in ck.weights.values() if v.is_floating_point())


def test_device_degradation_matches_the_files_on_disk(tiny_digits):
    from fskd_cli.core.preprocess import RGB_UNIT
    from fskd_cli.data.dataset import PairDataset
    from fskd_cli.data.degrade import degrade_batch

    keys = [(i, i % 2 == 0, s) for i, s in zip(range(12), [1, 2, 4, 8] * 3, strict=True)]
    hr, lr_disk, _, scale = PairDataset(tiny_digits, "train", (1, 2, 4, 8), cache=False).__getitems__(keys)
    hr2, lr_none, _, _ = PairDataset(tiny_digits, "train", (1, 2, 4, 8), cache=False, read_lr=False).__getitems__(keys)
    assert torch.equal(hr, hr2) and torch.equal(lr_none, hr2)
    on_device = degrade_batch(RGB_UNIT.apply(hr), scale)
    # the files on disk are the same images rounded to uint8: at most half a grey level apart
    assert (on_device - RGB_UNIT.apply(lr_disk)).abs().max() <= 0.5 / 127.5 + 1e-6


def test_device_degradation_trains(tmp_path, tiny_recipe, teacher):
    cfg = resolve(tiny_recipe, {"distill.teacher": str(teacher), "data.degrade": "device", "distill.scale": "multi",
                                "train.epochs": 1, "train.milestones": [1]})
    ck = torch.load(train(cfg, tmp_path / "dev", kind="student"), weights_only=True)
    assert ck["config"]["data"]["degrade"] == "device" and ck["scale"] == "multi"


def test_resume_refuses_a_changed_recipe_and_logs_a_safe_change(tmp_path, tiny_recipe, capsys):
    cfg = resolve(tiny_recipe)
    train(cfg, tmp_path / "t", kind="teacher", stop_after=4)
    with pytest.raises(FskdError, match=r"--resume with a changed recipe: train.lr was 0.05, now 0.1") as e:
        train(resolve(tiny_recipe, {"train.lr": 0.1}), tmp_path / "t", kind="teacher", resume=True)
    assert "\n" not in str(e.value)
    assert load_checkpoint(tmp_path / "t" / "checkpoint.pt").step == 4  # untouched by the refusal
    capsys.readouterr()
    train(resolve(tiny_recipe, {"train.lr": 0.05, "data.workers": 0, "train.log_every": 5}), tmp_path / "t",
          kind="teacher", resume=True, stop_after=8)
    assert "train.log_every changed from 3 to 5" in capsys.readouterr().err
    assert [int(r["step"]) for r in log_rows(tmp_path / "t")] == [3, 5]  # row 3 before the kill, then every 5
    with pytest.raises(FskdError, match="exists; pass --resume"):
        train(cfg, tmp_path / "t", kind="teacher")
    train(cfg, tmp_path / "t", kind="teacher", force=True, stop_after=3)  # --force starts over
    assert load_checkpoint(tmp_path / "t" / "checkpoint.pt").step == 3
    assert [int(r["step"]) for r in log_rows(tmp_path / "t")] == [3]


def test_checkpoint_holds_named_meters_and_the_input_convention(teacher):
    ck = torch.load(teacher, weights_only=True)
    assert ck["meters"]["names"] == ["loss", "task_loss", "distill_loss", "train_acc"]
    assert ck["meters"]["sums"].shape == (5,)
    assert ck["preprocess"] == {"color": "rgb", "mean": 127.5, "std": 127.5}


def test_student_takes_its_teachers_input_convention(tmp_path, tiny_recipe, teacher):
    ck = torch.load(teacher, weights_only=True)
    ck["preprocess"] = {"color": "bgr", "mean": 127.5, "std": 127.5}  # as an imported AdaFace teacher records
    torch.save(ck, tmp_path / "bgr.pt")
    cfg = resolve(tiny_recipe, {"distill.teacher": str(tmp_path / "bgr.pt"), "train.epochs": 1, "train.milestones": [1]})
    student = torch.load(train(cfg, tmp_path / "s", kind="student"), weights_only=True)
    assert student["preprocess"]["color"] == "bgr"


def test_a_teacher_whose_features_do_not_fit_fails_before_training(tmp_path, tiny_recipe, teacher):
    cfg = resolve(tiny_recipe, {"distill.teacher": str(teacher), "distill.method": "f-skd"})
    cfg.model.kwargs = {"layers": [1, 1, 1, 1], "width": 8}
    with pytest.raises(FskdError, match=r"teacher's tapped features \[4x32x32, 8x16x16, 16x8x8, 32x4x4\] do not fit "
                                        r"the student's \[8x32x32, 16x16x16, 32x8x8, 64x4x4\] for method 'f-skd'") as e:
        train(cfg, tmp_path / "wide", kind="student")
    assert 'model.kwargs={layers: [1, 1, 1, 1], width: 4}' in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "wide").exists()  # nothing was written


def test_init_student_hook_runs_before_the_optimizer(tmp_path, tiny_recipe, teacher):
    from fskd_cli.distill import Distiller, register_distiller

    @register_distiller("test-init-student")
    class InitStudent(Distiller):
        needs_teacher = False
        wants_teacher_checkpoint = True
        summary = "test: start the student from the teacher and freeze its first layer"

        def __init__(self, student_shapes, teacher_shapes, weight=1.0, teacher_checkpoint=None):
            super().__init__(student_shapes, teacher_shapes, weight)

        def init_student(self, model, head, teacher_checkpoint):
            model.load_state_dict(dict(teacher_checkpoint.weights))
            next(model.parameters()).requires_grad_(False)

        def forward(self, student, teacher, batch):
            return student[0].new_zeros(())

    cfg = resolve(tiny_recipe, {"distill.teacher": str(teacher), "distill.method": "test-init-student",
                                "train.epochs": 1, "train.milestones": [1]})
    ck = torch.load(train(cfg, tmp_path / "s", kind="student"), weights_only=True)
    first = next(iter(ck["model"]))
    assert torch.equal(ck["model"][first], torch.load(teacher, weights_only=True)["model"][first])  # frozen, not trained


def test_an_unknown_method_or_cuda_fails_before_any_data_is_read(tmp_path, tiny_recipe):
    cfg = resolve(tiny_recipe, {"distill.method": "nope", "data.path": str(tmp_path / "no-data")})
    with pytest.raises(FskdError, match="unknown method 'nope'"):
        train(cfg, tmp_path / "s", kind="student")
    if not torch.cuda.is_available():
        with pytest.raises(FskdError, match="device cuda: CUDA is not available"):
            train(resolve(tiny_recipe, {"device": "cuda"}), tmp_path / "t", kind="teacher")


def test_tensorboard_scalars_when_asked(tmp_path, tiny_recipe):
    pytest.importorskip("tensorboard")
    train(resolve(tiny_recipe, {"train.epochs": 1, "train.milestones": [1]}, sets={"train.tensorboard": True}),
          tmp_path / "t", kind="teacher")
    assert list((tmp_path / "t" / "tb").glob("events.out.tfevents.*"))
