"""Recipes: base inheritance, overrides, and errors that name the recipe."""

from __future__ import annotations

import pytest
import yaml

from fskd_cli.core.config import DEFAULT_RECIPE, find_recipe, parse_sets, resolve, resume_changes
from fskd_cli.core.errors import FskdError


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {"name": "b", "train": {"epochs": 90, "milestones": [30, 60, 80], "lr": 0.01},
        "model": {"name": "resnet_32", "kwargs": {"width": 64, "layers": [3, 4, 6, 3]}}}


def test_base_recipe_is_merged_and_overridden(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    r = write(tmp_path / "r.yaml", {"base": "base.yaml", "name": "r", "train": {"lr": 0.1},
                                    "model": {"kwargs": {"width": 8}}})
    cfg = resolve(r, {"distill.method": "fitnet", "seed": None})
    assert cfg.name == "r" and cfg.train.lr == 0.1 and cfg.train.epochs == 90
    assert cfg.model.kwargs == {"width": 8}  # kwargs are replaced whole, never half-merged
    assert cfg.distill.method == "fitnet" and cfg.seed == 0


def test_run_length_override_rescales_milestones(tmp_path):
    r = write(tmp_path / "r.yaml", BASE)
    cfg = resolve(r, {"train.epochs": 9})
    assert cfg.train.epochs == 9 and cfg.train.milestones == [3, 6, 8]
    cfg = resolve(r, {"train.steps": 900})
    assert cfg.train.steps == 900 and cfg.train.epochs is None and cfg.train.milestones == [300, 600, 800]


@pytest.mark.parametrize("data, message", [
    ({**BASE, "trian": {}}, "unknown key 'trian'"),
    ({**BASE, "train": {**BASE["train"], "lr": "fast"}}, "'train.lr' must be float"),
    ({**BASE, "train": {**BASE["train"], "milestones": [60, 30]}}, "milestones"),
    ({**BASE, "train": {"steps": 5, "epochs": 5}}, "exactly one"),
    ({**BASE, "distill": {"scale": "3"}}, "distill.scale"),
])
def test_bad_recipes_name_the_file(tmp_path, data, message):
    r = write(tmp_path / "bad.yaml", data)
    with pytest.raises(FskdError, match=message) as e:
        resolve(r)
    assert "bad.yaml" in str(e.value)


def test_missing_and_invalid_recipe(tmp_path):
    with pytest.raises(FskdError, match="recipe not found"):
        resolve(tmp_path / "nope.yaml")
    (tmp_path / "x.yaml").write_text("train: [1, 2\n")
    with pytest.raises(FskdError, match="not valid YAML"):
        resolve(tmp_path / "x.yaml")


def test_shipped_recipes_resolve():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
    assert recipes
    for r in recipes:
        resolve(r)


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "log_every", 0, "train.log_every must be >= 1"),
    ("train", "momentum", -0.9, "train.momentum must be >= 0"),
    ("train", "weight_decay", -1e-4, "train.weight_decay must be >= 0"),
    ("train", "gamma", 0.0, "train.gamma must be > 0"),
    ("train", "ckpt_every", -1, "train.ckpt_every must be >= 0"),
    ("train", "lr", float("nan"), "'train.lr' must be a finite number"),
    ("train", "batch_size", 0, "train.batch_size must be >= 1"),
    ("train", "milestones", [30, 95], r"milestones must be increasing and within the run \(1..90\)"),
    ("train", "milestones", [30, 30], "milestones must be increasing"),
    ("data", "workers", -2, "data.workers must be >= 0"),
    ("distill", "weight", -5.0, "distill.weight must be >= 0"),
    ("distill", "teacher_weight", -1.0, "distill.teacher_weight must be >= 0"),
    ("train", "amp", "fp8", "train.amp must be one of"),
])
def test_values_out_of_range_name_file_and_key(tmp_path, section, key, value, message):
    data = {**BASE, section: {**BASE.get(section, {}), key: value}}
    with pytest.raises(FskdError, match=message) as e:
        resolve(write(tmp_path / "bad.yaml", data))
    assert "bad.yaml" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("top, message", [
    ({"train": [1, 2]}, "section 'train' must be a mapping"),
    ({"model": "resnet_32"}, "section 'model' must be a mapping"),
    ({"device": "gpu"}, "device must be auto, cpu, cuda or cuda:N"),
    ({"seed": -1}, "seed must be >= 0"),
])
def test_bad_top_level_values(tmp_path, top, message):
    with pytest.raises(FskdError, match=message):
        resolve(write(tmp_path / "bad.yaml", {**BASE, **top}))


def test_a_section_that_is_not_a_mapping_fails_with_a_run_length_override(tmp_path):
    r = write(tmp_path / "bad.yaml", {**BASE, "train": "fast"})
    with pytest.raises(FskdError, match="section 'train' must be a mapping"):
        resolve(r, {"train.epochs": 3})


def test_device_choices_are_accepted(tmp_path):
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert resolve(write(tmp_path / "r.yaml", {**BASE, "device": device})).device == device


def test_set_overrides_any_key_as_yaml(tmp_path):
    r = write(tmp_path / "r.yaml", BASE)
    sets = parse_sets(["train.lr=0.5", "model.kwargs={width: 8}", "train.milestones=[10, 20]", "distill.teacher=null",
                       "name=x", "train.nesterov=true"])
    cfg = resolve(r, {"train.lr": None}, sets=sets)
    assert cfg.train.lr == 0.5 and cfg.model.kwargs == {"width": 8} and cfg.train.milestones == [10, 20]
    assert cfg.name == "x" and cfg.train.nesterov is True and cfg.distill.teacher is None
    assert resolve(r, sets=parse_sets(["model.kwargs.width=16"])).model.kwargs == {"width": 16, "layers": [3, 4, 6, 3]}


@pytest.mark.parametrize("item, message", [
    ("train.lrr=0.1", "--set train.lrr=0.1: unknown key 'train.lrr'"),
    ("trian.lr=0.1", "unknown key 'trian'"),
    ("seed.x=1", "'seed' is a value, not a section"),
    ("train.lr", "expected KEY=VALUE"),
    ("train.lr=[1", "not valid YAML"),
])
def test_bad_set_names_the_key(item, message):
    with pytest.raises(FskdError, match=message.replace("[", r"\[")):
        parse_sets([item])


def test_set_values_are_checked_like_the_recipe(tmp_path):
    r = write(tmp_path / "r.yaml", BASE)
    with pytest.raises(FskdError, match="train.momentum must be >= 0"):
        resolve(r, sets=parse_sets(["train.momentum=-1"]))
    with pytest.raises(FskdError, match="'train.lr' must be float"):
        resolve(r, sets=parse_sets(["train.lr=fast"]))


def test_packaged_recipes_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = resolve("paper/table1a-f-skd-x8")
    b = resolve("paper/table1a-f-skd-x8.yaml")
    assert a == b and a.name == "table1a-f-skd-x8" and a.distill.scale == "8" and a.train.steps == 47000
    assert find_recipe(DEFAULT_RECIPE).is_file()
    write(tmp_path / "mine.yaml", BASE)
    assert resolve("mine.yaml").name == "b"  # a path still works, and wins over a packaged name
    with pytest.raises(FskdError, match="nope: recipe not found"):
        resolve("nope")
    with pytest.raises(FskdError, match="recipe not found"):
        find_recipe("../__init__.py")  # nothing outside the packaged folder by name


def test_resume_changes_split_safe_from_refused(tmp_path):
    r = write(tmp_path / "r.yaml", BASE)
    old = resolve(r).to_dict()
    refused, safe = resume_changes(old, resolve(r, sets=parse_sets(["data.workers=4", "train.log_every=7"])))
    assert refused == [] and [k for k, _, _ in safe] == ["data.workers", "train.log_every"]
    refused, _ = resume_changes(old, resolve(r, {"train.lr": 0.2}))
    assert refused == [("train.lr", 0.01, 0.2)]
