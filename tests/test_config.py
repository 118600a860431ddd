"""Recipes: base inheritance, overrides, and errors that name the recipe."""

from __future__ import annotations

import pytest
import yaml

from fskd_cli.core.config import resolve
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
