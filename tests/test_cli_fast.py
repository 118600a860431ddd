"""A CLI that answers at once (issue 20) and choices generated from the stages (issue 17): ``fskd --help``,
``--version`` and option errors load no heavy library; the choices offered are the registries' and the stages'
own definitions, a method or reader registered at run time included; a scale is a ``Scale`` from the command
line through the config, the checkpoint and the eval JSON, written ``x4`` in names and ``"4"`` in files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import assert_one_line_error, run_main, write_recipe

from fskd_cli import api
from fskd_cli.analyze.options import ATTENTION_KINDS, T_TESTS
from fskd_cli.core.config import resolve
from fskd_cli.core.errors import FskdError
from fskd_cli.core.scale import LR_SCALES, LR_SOURCES, SINGLE_SCALES, Scale, one_factor
from fskd_cli.data.prepare_options import Option
from fskd_cli.data.readers import READERS, Reader
from fskd_cli.evaluate.benchmarks import BENCHMARKS, PROTOCOLS
from fskd_cli.use.formats import EXPORT_FORMATS, TEACHER_ARCHS, TEACHER_FORMATS

HEAVY = ("torch", "numpy", "scipy", "pandas", "matplotlib", "PIL", "cv2", "facenet_pytorch", "onnx")
# each command runs through main() in ONE fresh process; after each, the heavy libraries imported so far are listed
FRESH = """
import json, sys
from fskd_cli.cli import main
seen = []
for argv in json.loads(sys.argv[1]):
    sys.argv, code = ["fskd", *argv], 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    seen.append([argv, code, sorted(m for m in {HEAVY} if m in sys.modules)])
print("\\n" + json.dumps(seen))
"""


def _heavy_after(*commands: list[str], env: dict[str, str] | None = None) -> list[tuple[list[str], int, list[str]]]:
    """(argv, exit code, heavy modules loaded by then) for each command run in order in a fresh process."""
    return _fresh(commands, env)[1]


def _fresh(commands: tuple[list[str], ...], env: dict[str, str] | None) -> tuple[str, list]:
    """What the commands printed, and :func:`_heavy_after`'s list."""
    code = FRESH.replace("{HEAVY}", repr(HEAVY))
    done = subprocess.run([sys.executable, "-c", code, json.dumps(list(commands))], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    printed, _, seen = done.stdout.rstrip("\n").rpartition("\n")
    return printed, json.loads(seen)


def test_help_version_and_option_errors_load_no_heavy_library():
    commands = (["--help"], ["--version"], ["distill", "--bogus"], ["eval", "nosuch", "--ckpt", "x"],
                ["eval", "--help"], ["eval", "agedb", "--ckpt", "x", "--scale", "multi"], ["train-teacher", "--bogus"],
                ["analyze", "norms", "--help"], ["analyze", "attention", "--ckpt", "x", "--attention", "nope"],
                ["report", "--help"], ["embed", "--help"], ["export", "--ckpt", "x", "--out", "y", "--format", "tar"],
                ["import-teacher", "--help"], ["distill", "--scale", "3"])
    for argv, code, heavy in _heavy_after(*commands):
        assert heavy == [], f"fskd {' '.join(argv)} imported {heavy}"
        assert code == (0 if "--help" in argv or "--version" in argv else 2), argv


@pytest.mark.parametrize("words, expected", [("fskd ev", "eval"), ("fskd eval a", "agedb"),
                                             ("fskd eval agedb --protocol ", "authors"), ("fskd analyze norms --te", "--test")])
def test_shell_completion_answers_without_heavy_libraries(words, expected):
    env = {"_FSKD_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    printed, [(_, code, heavy)] = _fresh(([],), env)
    assert code == 0 and expected in printed.split() and heavy == [], (printed, heavy)


def test_prepare_help_reads_the_readers_without_torch():
    """``fskd prepare --help`` and a reader's options need the reader registry (numpy, cv2, PIL), never torch."""
    for argv, code, heavy in _heavy_after(["prepare", "--help"], ["prepare", "folder", "--bogus"]):
        assert "torch" not in heavy and code == (0 if "--help" in argv else 2), (argv, heavy)


@pytest.mark.parametrize("command, shown", [
    (["eval", "--help"], [BENCHMARKS, PROTOCOLS, LR_SOURCES, [s.value for s in SINGLE_SCALES]]),
    (["analyze", "norms", "--help"], [T_TESTS, LR_SOURCES, [s.value for s in LR_SCALES]]),
    (["analyze", "attention", "--help"], [ATTENTION_KINDS]),
    (["export", "--help"], [EXPORT_FORMATS]),
    (["import-teacher", "--help"], [TEACHER_ARCHS, TEACHER_FORMATS]),
])
def test_the_choices_offered_are_the_stages_definitions(monkeypatch, command, shown):
    monkeypatch.setenv("COLUMNS", "300")
    out = run_main(*command).stdout
    for names in shown:
        assert "<" + "|".join(names) + ">" in out, (command, names)


@pytest.fixture()
def extra_method(monkeypatch):
    """A distillation method registered by this test only (the registry is restored afterwards)."""
    from fskd_cli import distill

    distill.method_names()  # the shipped methods first, so the copy below holds them
    monkeypatch.setattr(distill, "_DISTILLERS", dict(distill._DISTILLERS))

    @distill.register_distiller("test-extra")
    class Extra(distill.Distiller):
        summary = "a method registered by a test"
        needs_teacher = False

    return "test-extra"


def test_a_method_registered_at_run_time_is_offered(monkeypatch, extra_method):
    monkeypatch.setenv("COLUMNS", "250")
    for command in ("distill", "train-teacher"):
        assert re.search(r"\n +test-extra +a method registered by a test *\n", run_main(command, "--help").stdout), command
    error = assert_one_line_error(run_main("distill", "--method", "nope"), "--method", "'nope' is not one of")
    assert "'test-extra'" in error and "'f-skd'" in error
    error = assert_one_line_error(run_main("train-teacher", "--method", "f-skd"), "--method")
    assert "'test-extra'" in error and "'base'" in error  # f-skd needs a teacher: not a teacher run's loss


def test_a_reader_registered_at_run_time_is_a_prepare_subcommand(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    flavour = Option("flavour", str, "plain", "How the test set tastes.", choices=("plain", "salty"))
    monkeypatch.setitem(READERS, "test-kind", Reader("test-kind", lambda *a, **k: None, "A reader registered by a test.",
                                                     "fskd prepare test-kind", None, (flavour,)))
    assert "A reader registered by a test." in run_main("prepare", "--help").stdout
    shown = run_main("prepare", "test-kind", "--help").stdout
    assert "--flavour" in shown and "<plain|salty>" in shown and "Example: fskd prepare test-kind" in shown
    assert_one_line_error(run_main("prepare", "test-kind", "--flavour", "sweet"), "--flavour", "'sweet'")


def test_a_scale_is_parsed_once_and_written_as_its_value(tmp_path):
    cfg = resolve(None, base={"distill": {"scale": 8}, "train": {"steps": 1}})
    assert cfg.distill.scale is Scale.x8
    plain = cfg.to_dict()
    assert type(plain["distill"]["scale"]) is str and plain["distill"]["scale"] == "8"
    assert yaml.safe_load(yaml.safe_dump(plain))["distill"]["scale"] == "8"  # YAML writes a plain "8"
    assert resolve(None, base=plain).distill.scale is Scale.x8
    for given, scale in (("x4", Scale.x4), ("multi", Scale.multi), (1, Scale.x1)):
        assert resolve(None, base={"train": {"steps": 1}}, sets={"distill.scale": given}).distill.scale is scale
    with pytest.raises(FskdError, match="distill.scale: scale must be one of 1, 2, 4, 8, multi, got 3"):
        resolve(None, base={"distill": {"scale": 3}, "train": {"steps": 1}})
    assert [one_factor(s) for s in SINGLE_SCALES] == [1, 2, 4, 8]
    with pytest.raises(FskdError, match="--scale: multi"):
        one_factor(Scale.multi)
    assert (Scale.x4.label, Scale.multi.label) == ("x4", "multi")
    with pytest.raises(ValueError, match="scale must be one of"):  # a Python mistake: the error Python users expect
        api.embed(None, [], scale="3")  # the API is an edge: it parses what it is given before anything runs


def test_a_scale_travels_from_the_command_line_to_the_eval_json(tmp_path, monkeypatch, tiny_digits):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path / "tiny.yaml", tiny_digits,
                          train={"batch_size": 32, "lr": 0.05, "steps": 2, "milestones": [1], "log_every": 1})
    done = run_main("distill", "--recipe", recipe, "--method", "base", "--scale", "multi")
    assert done.exit_code == 0, done.stderr
    run = tmp_path / "runs" / "tiny-base-multi-s0"  # names write the label
    assert yaml.safe_load((run / "config.yaml").read_text())["distill"]["scale"] == "multi"
    ck = torch.load(run / "checkpoint.pt", weights_only=True)  # plain data: loadable without unpickling a Scale
    assert ck["scale"] == "multi" and ck["config"]["distill"]["scale"] == "multi"
    assert ck["degradation"]["scales"] == [1, 2, 4, 8]
    done = run_main("eval", "digits", "--ckpt", run, "--data", tiny_digits, "--scale", "4", "--device", "cpu")
    assert done.exit_code == 0, done.stderr
    payload = json.loads((run / "eval" / "digits_x4.json").read_text())
    assert payload["scale"] == "4" and payload["setting"]["scale"] == "multi"
    assert_one_line_error(run_main("eval", "digits", "--ckpt", run, "--scale", "multi"), "--scale", "'multi'")
    assert_one_line_error(run_main("analyze", "norms", "--ckpt", run, "--scale", "1"), "--scale", "'1'")
