"""``fskd train-teacher`` and ``fskd distill`` as typed: the default recipe and teacher chain, --set,
the method list, and one-line errors before any data is read."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_one_line_error, run_main

from fskd_cli.distill import get_distiller_class, method_summaries

# the default recipe (the paper's face settings) made tiny, the same for the teacher and the student
TINY = ["--set", "model.name=resnet_32", "--set", "model.kwargs={layers: [1, 1, 1, 1], width: 4}",
        "--set", "train.steps=4", "--set", "train.milestones=[2]", "--set", "train.batch_size=32",
        "--set", "train.log_every=2", "--set", "data.workers=0", "--set", "data.cache=true"]


def test_prepare_train_teacher_distill_chain_with_no_paths(tmp_path, monkeypatch, tiny_digits):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "casia").symlink_to(tiny_digits)  # where `fskd prepare casia SRC` writes
    teacher = run_main("train-teacher", *TINY)
    assert teacher.exit_code == 0, teacher.stderr
    teacher_ck = tmp_path / "runs" / "casia-iresnet50-teacher-s0" / "checkpoint.pt"
    student = run_main("distill", "--method", "f-skd", "--scale", "8", *TINY)
    assert student.exit_code == 0, student.stderr
    ck = torch.load(tmp_path / "runs" / "casia-iresnet50-f-skd-x8-s0" / "checkpoint.pt", weights_only=True)
    assert ck["teacher"] == str(teacher_ck.relative_to(tmp_path)) and ck["scale"] == "8" and ck["method"] == "f-skd"
    assert ck["config"]["model"]["kwargs"] == {"layers": [1, 1, 1, 1], "width": 4} and ck["step"] == 4
    again = run_main("train-teacher", *TINY)  # the same folder again: refused, nothing changed
    assert_one_line_error(again, "checkpoint.pt: exists; pass --resume")


def test_distill_without_its_default_teacher_names_the_path_and_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_main("distill", "--method", "f-skd", "--scale", "8", "--seed", "3")
    assert_one_line_error(result, "runs/casia-iresnet50-teacher-s3/checkpoint.pt", "fskd train-teacher --seed 3")
    result = run_main("distill", "--recipe", "paper/table1a-f-skd-x4")
    assert_one_line_error(result, "runs/table1a-f-skd-x4-teacher-s0/checkpoint.pt",
                          "fskd train-teacher --recipe paper/table1a-f-skd-x4 --seed 0")
    assert not (tmp_path / "runs").exists()


def test_distill_help_lists_every_method_with_its_summary(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = run_main("distill", "--help")
    assert result.exit_code == 0
    # the shipped methods (tests elsewhere register methods of their own)
    summaries = {name: text for name, text in method_summaries().items()
                 if get_distiller_class(name).__module__.startswith("fskd_cli.distill.")}
    assert {"base", "f-skd", "fitnet", "norm-kd", "rkd", "a-skd", "qualnet-lm"} <= set(summaries)
    for name, summary in summaries.items():
        assert summary, f"{name} has no summary"
        assert f"{name}  " in result.stdout and summary in result.stdout, name


def test_unknown_method_fails_before_any_data_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data here: an error about data would mean it was read first
    result = run_main("distill", "--method", "nope")
    assert result.exit_code == 2 and "nope" in result.stderr and "Traceback" not in result.stderr
    result = run_main("distill", "--set", "distill.method=nope", "--teacher", "t.pt")
    assert_one_line_error(result, "--set distill.method", "got 'nope'")


@pytest.mark.parametrize("args, needles", [
    (["--set", "train.lrr=1"], ["--set train.lrr=1", "unknown key 'train.lrr'"]),
    (["--set", "train.log_every=0"], ["--set train.log_every", "train.log_every must be >= 1"]),
    (["--set", "train.milestones=[40000, 20000]"], ["train.milestones must be increasing"]),
    (["--device", "tpu"], ["device must be auto, cpu, cuda or cuda:N"]),
    (["--recipe", "paper/nope"], ["paper/nope: recipe not found"]),
])
def test_bad_recipe_values_from_the_command_line(tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_main("train-teacher", *args), *needles)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_an_empty_or_corrupt_teacher_checkpoint_is_one_line(tmp_path, monkeypatch, tiny_digits, content):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.pt").write_bytes(content)
    result = run_main("distill", "--method", "f-skd", "--teacher", "t.pt", "--data", str(tiny_digits), *TINY)
    assert_one_line_error(result, "t.pt", "checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt"]


def test_out_holding_a_users_files_is_refused_unless_force(tmp_path, tiny_digits):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("my own notes\n")
    args = ["train-teacher", "--data", str(tiny_digits), "--out", str(out), *TINY]
    assert_one_line_error(run_main(*args), str(out), "not written by fskd", "--force")
    assert (out / "config.yaml").read_text() == "my own notes\n"
    assert run_main(*args, "--force").exit_code == 0
    assert (out / "checkpoint.pt").is_file()
