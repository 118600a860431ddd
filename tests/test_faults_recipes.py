"""Fault suite: recipes and run names. A recipe that would hang, a duplicate key, a value a library would
refuse, a run name that would escape ``runs/``: each is one line naming the file (or the option) and the key,
exit 2, before anything is claimed or written."""

from __future__ import annotations

import time

import pytest
import yaml
from conftest import TINY_RESNET, assert_one_line_error, run_main, tree_state, write_recipe

from fskd_cli.core.config import parse_sets, resolve
from fskd_cli.core.strict_yaml import MAX_VALUES


def _refused(tmp_path, recipe, *needles, args=()):
    """Run train-teacher on ``recipe``; assert the one-line error and that nothing under tmp_path changed."""
    out = tmp_path / "run"
    before = tree_state(tmp_path)
    line = assert_one_line_error(run_main("train-teacher", "--recipe", recipe, "--out", out, *args), *needles)
    assert tree_state(tmp_path) == before and not out.exists()
    return line


TINY = {"name": "tiny", "model": TINY_RESNET, "train": {"batch_size": 32, "lr": 0.05, "steps": 4}}


def _recipe_text(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- YAML that would hang or hide a mistake -----------------------------------------------------------------

def _laughs(levels: int) -> str:
    lines = ['    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines)


def test_a_billion_laughs_in_distill_options_is_refused_at_once(tmp_path, tiny_digits):
    recipe = _recipe_text(tmp_path, f"name: tiny\ndata: {{path: {tiny_digits}}}\ntrain: {{steps: 4}}\n"
                                    f"distill:\n  options:\n{_laughs(10)}\n")  # 9**10: 3.5 billion strings
    start = time.monotonic()
    line = _refused(tmp_path, recipe, "r.yaml", "aliases", f"{MAX_VALUES:,}")
    assert time.monotonic() - start < 10, line


def test_aliases_within_the_bound_are_kept(tmp_path, tiny_digits):
    recipe = _recipe_text(tmp_path, f"name: tiny\ndata: {{path: {tiny_digits}}}\ntrain: {{steps: 4}}\n"
                                    "model: {head: cosface, head_kwargs: &margin {s: 30.0, m: 0.25}}\n"
                                    "distill: {options: {}, teacher_options: {}}\n")
    assert resolve(recipe).model.head_kwargs == {"s": 30.0, "m": 0.25}


def test_an_alias_that_contains_itself_is_one_line(tmp_path):
    _refused(tmp_path, _recipe_text(tmp_path, "name: tiny\ndistill: {options: {a: &a [1, *a]}}\n"), "r.yaml",
             "line 2", "contains it")


def test_a_recipe_nested_too_deeply_is_one_line(tmp_path):
    _refused(tmp_path, _recipe_text(tmp_path, "distill: {options: {a: " + "[" * 5000 + "]" * 5000 + "}}\n"),
             "r.yaml", "nested too deeply")


@pytest.mark.parametrize("text, line, key", [
    ("name: a\nseed: 1\nname: b\n", 3, "'name'"),
    ("train:\n  lr: 0.1\n  steps: 4\n  lr: 0.2\n", 4, "'lr'"),
    ("distill:\n  options:\n    distance_weight: 1.0\n    distance_weight: 2.0\n", 4, "'distance_weight'"),
    ("model: {kwargs: {width: 4, width: 8}}\n", 1, "'width'"),
])
def test_duplicate_keys_at_any_depth_name_the_file_line_and_key(tmp_path, text, line, key):
    _refused(tmp_path, _recipe_text(tmp_path, text), "r.yaml", f"line {line}", key, "twice")


def test_a_merge_key_may_be_overridden(tmp_path):
    recipe = _recipe_text(tmp_path, "name: tiny\ntrain:\n  <<: {lr: 0.1, steps: 4}\n  lr: 0.2\n")
    cfg = resolve(recipe)
    assert cfg.train.lr == 0.2 and cfg.train.steps == 4


def test_a_duplicate_key_in_a_set_value_names_the_option(tmp_path, tiny_recipe):
    _refused(tmp_path, tiny_recipe, "--set model.kwargs={width: 4, width: 8}", "'width'",
             args=("--set", "model.kwargs={width: 4, width: 8}"))


def test_a_recipe_too_large_is_refused_unread(tmp_path):
    _refused(tmp_path, _recipe_text(tmp_path, "# " + "x" * (1 << 20) + "\nname: tiny\n"), "r.yaml", "too large")


# --- numbers as a person writes them --------------------------------------------------------------------------

def test_numbers_are_read_as_written_and_strings_stay_strings(tmp_path):
    recipe = _recipe_text(tmp_path, "name: 1e3\ntrain: {lr: 1e-3, steps: 1e2, weight_decay: 5E-4, milestones: [5e1]}\n"
                                    "model: {head: cosface, head_kwargs: {s: 3e1, m: 2.5e-1}}\n"
                                    "distill: {scale: '4', weight: 5}\n")
    cfg = resolve(recipe)
    assert cfg.name == "1e3"  # a name stays the text it was
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float) and cfg.train.weight_decay == 0.0005
    assert cfg.train.steps == 100 and isinstance(cfg.train.steps, int) and cfg.train.milestones == [50]
    assert cfg.model.head_kwargs == {"s": 30.0, "m": 0.25} and cfg.distill.scale == "4" and cfg.distill.weight == 5.0
    cfg = resolve(recipe, sets=parse_sets(["train.lr=1e-2", "seed=1e1", "model.kwargs={width: 1e1}"]))
    assert cfg.train.lr == 0.01 and cfg.seed == 10 and cfg.model.kwargs == {"width": 10}
    assert resolve(recipe, sets=parse_sets(["train.steps=5e1"])).train.milestones == [25]  # rescaled as --steps 50


def test_set_lr_in_exponent_form_trains(tmp_path, tiny_recipe):
    result = run_main("train-teacher", "--recipe", tiny_recipe, "--out", tmp_path / "run", "--set", "train.lr=1e-3",
                      "--steps", "2")
    assert result.exit_code == 0, result.stderr
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["lr"] == 0.001


@pytest.mark.parametrize("value, message", [
    ("2.5", "'train.steps' must be int, got 2.5"), ("1e400", "must be int, got inf"), ("many", "must be int"),
])
def test_numbers_that_are_not_whole_where_a_count_is_expected(tmp_path, tiny_recipe, value, message):
    _refused(tmp_path, tiny_recipe, "--set train.steps", message, args=("--set", f"train.steps={value}"))


# --- every value a library would refuse, with its range ------------------------------------------------------

@pytest.mark.parametrize("section, needle", [
    ({"seed": 10**20}, "seed must be <= 4294967295"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"model": {**TINY_RESNET, "kwargs": {"layers": [1, 1, 1, 1], "width": -4}}}, "model.kwargs.width must be >= 1"),
    ({"model": {**TINY_RESNET, "kwargs": {"layers": [1, 1, 1, 1], "width": 10**9}}}, "model.kwargs.width must be <= 2048"),
    ({"model": {**TINY_RESNET, "kwargs": {"layers": [1, 0, 1, 1]}}}, "model.kwargs.layers must be >= 1"),
    ({"model": {**TINY_RESNET, "kwargs": {"layers": [1, 1, 1]}}}, "model.kwargs.layers must list 4 values"),
    ({"model": {**TINY_RESNET, "kwargs": {"width": "four"}}}, "'model.kwargs.width' must be int, got 'four'"),
    ({"model": {"name": "iresnet18", "kwargs": {"base_width": 0}}}, "model.kwargs.base_width must be >= 1"),
    ({"model": {"name": "iresnet18", "kwargs": {"embedding_size": -512}}}, "embedding_size must be >= 1"),
    ({"model": {"name": "iresnet18", "kwargs": {"dropout": 1.5}}}, "model.kwargs.dropout must be <= 1"),
    ({"model": {**TINY_RESNET, "head": "cosface", "head_kwargs": {"s": 0}}}, "model.head_kwargs.s must be > 0"),
    ({"model": {**TINY_RESNET, "head": "arcface", "head_kwargs": {"m": 5}}}, "model.head_kwargs.m must be <= 1"),
    ({"model": {**TINY_RESNET, "head": "cosface", "head_kwargs": {"s": "big"}}}, "'model.head_kwargs.s' must be float"),
    ({"train": {**TINY["train"], "momentum": 1.5}}, "train.momentum must be <= 1"),
    ({"train": {**TINY["train"], "momentum": 0.0, "nesterov": True}}, "train.nesterov needs train.momentum > 0"),
    ({"train": {**TINY["train"], "steps": 10**20}}, "train.steps must be <= 1000000000"),
    ({"train": {**TINY["train"], "weight_decay": -1}}, "train.weight_decay must be >= 0"),
    ({"data": {"workers": 10**6}}, "data.workers must be <= 1024"),
    ({"distill": {"options": {"distance_weight": -1}}}, "distill.options.distance_weight must be >= 0"),
    ({"distill": {"teacher_options": {"strides": [2, 3]}}}, "distill.teacher_options.strides must be <= 2"),
    ({"distill": {"options": {"normalize": "yes"}}}, "'distill.options.normalize' must be bool"),
    ({"model": {**TINY_RESNET, "preprocess": {"mean": "grey"}}}, "'model.preprocess.mean' must be float, got 'grey'"),
    ({"model": {**TINY_RESNET, "preprocess": {"std": [1, 2, "x"]}}}, "'model.preprocess.std' must be float, got 'x'"),
])
def test_values_a_library_would_refuse_are_refused_at_load(tmp_path, tiny_digits, section, needle):
    data = section.get("data", {})
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, **{**TINY, **section, "data": {"path": str(tiny_digits), **data}})
    _refused(tmp_path, recipe, "r.yaml", needle)


@pytest.mark.parametrize("args, needle", [
    (("--seed", "100000000000000000000"), "--seed: seed must be <= 4294967295"),
    (("--set", "seed=1e20"), "--set seed: seed must be <= 4294967295"),
    (("--set", "model.kwargs.width=-4"), "--set model.kwargs.width: model.kwargs.width must be >= 1"),
    (("--set", "model.head_kwargs={s: -30}"), "--set model.head_kwargs: model.head_kwargs.s must be > 0"),
])
def test_values_on_the_command_line_name_the_option(tmp_path, tiny_recipe, args, needle):
    line = _refused(tmp_path, tiny_recipe, needle, args=args)
    assert "tiny.yaml" not in line  # the recipe is not where the mistake is


def test_every_shipped_recipe_passes_the_ranges():
    from pathlib import Path

    for recipe in sorted((Path(__file__).resolve().parents[1] / "fskd_cli" / "recipes").rglob("*.yaml")):
        resolve(recipe)


# --- run names ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", "..", ".", "", "a\\b"])
def test_a_run_name_must_be_a_plain_name(tmp_path, tiny_recipe, monkeypatch, name):
    """``name`` becomes the default run folder runs/NAME-...; nothing is created anywhere when it is not a name."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = tree_state(tmp_path)
    result = run_main("train-teacher", "--recipe", tiny_recipe, "--set", f"name='{name}'")
    assert_one_line_error(result, "--set name", "runs/NAME")
    assert tree_state(tmp_path) == before


def test_a_run_name_in_the_recipe_names_the_recipe(tmp_path, tiny_digits, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path / "r.yaml", tiny_digits, name="../../escape")
    before = tree_state(tmp_path.parent)
    assert_one_line_error(run_main("train-teacher", "--recipe", recipe), "r.yaml", "name", "'../../escape'")
    assert tree_state(tmp_path.parent) == before
