"""The checkpoint contract: one loader checks every entry, and every command that takes a checkpoint reports a
malformed one as one line naming the file (exit 2); what a later stage needs travels inside the checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, noise_png, run_main, train_pair, write_recipe

from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.core.config import resolve
from fskd_cli.core.errors import FskdError
from fskd_cli.train.loop import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_digits) -> dict[str, Path]:
    """A tiny teacher and its 4x F-SKD student (3 steps each) on the shared digit set."""
    tmp = tmp_path_factory.mktemp("contract")
    teacher, student = train_pair(tmp, tiny_digits, steps=3)
    return {"teacher": teacher, "student": student, "tmp": tmp}


@pytest.fixture()
def photo(tmp_path) -> Path:
    return noise_png(tmp_path / "digit.png", 32)


def damaged(runs: dict[str, Path], tmp_path: Path, change) -> Path:
    """A copy of the teacher's checkpoint with ``change(raw_dict)`` applied."""
    raw = torch.load(runs["teacher"], map_location="cpu", weights_only=True)
    change(raw)
    out = tmp_path / "bad" / "checkpoint.pt"
    out.parent.mkdir()
    torch.save(raw, out)
    return out


def first_weight(raw) -> str:
    return next(k for k, v in raw["model"].items() if v.is_floating_point() and v.dim() == 4)


CASES = {
    "wrong shape": (lambda raw: raw["model"].__setitem__(first_weight(raw), torch.zeros(3, 3)), "has shape"),
    "missing tensor": (lambda raw: raw["model"].pop(first_weight(raw)), "missing"),
    "unexpected tensor": (lambda raw: raw["model"].__setitem__("extra.weight", torch.zeros(1)), "unexpected extra.weight"),
    "no model entry": (lambda raw: raw.pop("model"), "model must be a mapping"),
    "arch a string": (lambda raw: raw.__setitem__("arch", "resnet_32"), "arch must be"),
    "unknown arch": (lambda raw: raw.__setitem__("arch", {"name": "banana_net", "kwargs": {}}), "banana_net"),
    "unknown head": (lambda raw: raw.__setitem__("head_arch", {"name": "banana", "kwargs": {}}), "unknown head"),
    "bad colour": (lambda raw: raw.__setitem__("preprocess", {"color": "cmyk"}), "preprocess"),
    "zero std": (lambda raw: raw.__setitem__("preprocess", {"std": 0}), "std must be positive"),
    "preprocess a list": (lambda raw: raw.__setitem__("preprocess", [1, 2]), "preprocess must be a mapping"),
    "kind banana": (lambda raw: raw.__setitem__("kind", "banana"), "kind is 'banana'"),
    "nan weights": (lambda raw: raw["model"][first_weight(raw)].fill_(float("nan")), "non-finite"),
    "bad degradation": (lambda raw: raw.__setitem__("degradation", {"interpolation": "lanczos9"}), "degradation"),
    "bad scale": (lambda raw: raw.update(kind="student", method="f-skd", scale="3"), "scale"),
    "student without method": (lambda raw: raw.update(kind="student", method=None), "without its method"),
    "step negative": (lambda raw: raw.__setitem__("step", -1), "step must be"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_checkpoint_is_one_line_in_embed(case, runs, tmp_path, photo):
    change, needle = CASES[case]
    bad = damaged(runs, tmp_path, change)
    result = run_main("embed", str(photo), "--ckpt", str(bad), "--aligned", "--out", str(tmp_path / "e.npz"), "--device", "cpu")
    assert_one_line_error(result, str(bad), needle)
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.parametrize("case", ["wrong shape", "kind banana", "nan weights", "arch a string"])
def test_every_stage_refuses_the_same_checkpoint(case, runs, tmp_path, photo, tiny_digits):
    """verify, export, eval, analyze and distill (as the teacher) share the loader and the model builder."""
    bad = damaged(runs, tmp_path, CASES[case][0])
    commands = [
        ("verify", str(photo), str(photo), "--ckpt", str(bad), "--threshold", "0.5"),
        ("export", "--ckpt", str(bad), "--format", "torchscript", "--out", str(tmp_path / "m.pt")),
        ("eval", "digits", "--ckpt", str(bad), "--data", str(tiny_digits), "--results", str(tmp_path / "r.csv")),
        ("analyze", "norms", "--ckpt", str(runs["student"]), "--teacher", str(bad), "--out", str(tmp_path / "a")),
    ]
    for args in commands:
        assert_one_line_error(run_main(*args), str(bad))
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "m.pt").exists()


def test_files_that_are_no_checkpoint(runs, tmp_path, photo):
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint\n" * 10)
    folder = tmp_path / "run" / "checkpoint.pt"
    folder.mkdir(parents=True)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    cases = ((text, "not a readable fskd checkpoint"), (folder, "a folder, not a checkpoint file"),
             (tensor, "not an fskd checkpoint"), (tmp_path / "missing.pt", "not found"),
             (folder.parent.parent, "without checkpoint.pt"))
    for bad, needle in cases:
        for args in (("embed", str(photo), "--aligned", "--out", str(tmp_path / "e.npz")),
                     ("verify", str(photo), str(photo), "--threshold", "0.5")):
            assert_one_line_error(run_main(*args, "--ckpt", str(bad)), needle)
    assert_one_line_error(run_main("import-teacher", str(text), "--arch", "iresnet18", "--format", "insightface",
                                   "--out", str(tmp_path / "imp")), str(text), "not a readable PyTorch file")


def test_the_api_raises_the_same_user_error(runs, tmp_path):
    from fskd_cli import api

    bad = damaged(runs, tmp_path, CASES["nan weights"][0])
    with pytest.raises(FskdError, match="non-finite"):
        api.load(bad, device="cpu")


def test_the_checkpoint_carries_what_later_stages_need(runs):
    student = load_checkpoint(runs["student"], kind="student")
    assert student.kind == "student" and student.method == "f-skd" and student.scale.value == "4"
    assert student.arch.name == "resnet_32" and student.embedding_size > 0 and student.input_size == 32
    assert student.degradation.interpolation == "bilinear" and student.degradation.scales == (4,)
    assert student.degradation.source == "checkpoint" and not student.notes
    assert student.teacher == str(runs["teacher"]) and student.variant == "plain" and student.fskd_version
    with pytest.raises(TypeError):  # immutable: a stage cannot complete it later
        student.weights["x"] = torch.zeros(1)
    with pytest.raises(AttributeError):
        student.kind = "teacher"


def test_an_old_checkpoint_says_where_its_missing_fields_came_from(runs, tmp_path):
    raw = torch.load(runs["student"], map_location="cpu", weights_only=True)
    for key in ("degradation", "variant", "embedding_size"):
        raw.pop(key)
    old = tmp_path / "old" / "checkpoint.pt"
    old.parent.mkdir()
    torch.save(raw, old)
    ck = load_checkpoint(old)
    assert ck.degradation.source.endswith("meta.yaml") and any("degradation" in n for n in ck.notes)
    raw["config"]["data"]["path"] = str(tmp_path / "moved-away")
    torch.save(raw, old)
    ck = load_checkpoint(old)
    assert "not found" in ck.degradation.source and "assumed bilinear" in ck.degradation.source


def test_eval_after_the_training_set_moved_uses_the_training_degradation(tmp_path, tiny_digits):
    """A student trained on nearest-neighbour LR images is scored on nearest LR images, from its checkpoint alone."""
    from fskd_cli.data.prepare import prepare_dataset

    data = tmp_path / "nearest"
    prepare_dataset("digits", None, data, limit=200, seed=0, progress=False, interpolation="nearest")
    recipe = write_recipe(tmp_path / "r.yaml", data)
    teacher = train(resolve(recipe), tmp_path / "t", kind="teacher", stop_after=2)
    student = train(resolve(recipe, {"distill.teacher": str(teacher), "distill.method": "base"}), tmp_path / "s",
                    kind="student", stop_after=2)
    test_set = tmp_path / "elsewhere"
    shutil.copytree(data, test_set)
    shutil.rmtree(data)  # the training set has moved away
    result = run_main("eval", "digits", "--ckpt", str(student), "--data", str(test_set), "--scale", "4",
                      "--results", str(tmp_path / "r.csv"), "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    import json

    made = json.loads((student.parent / "eval" / "digits_x4.json").read_text())["lr_images"]
    assert made == {"source": "degrade", "interpolation": "nearest", "antialias": False, "from": "checkpoint"}
