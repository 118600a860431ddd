"""Input normalisation: one number or one per channel (the authors' SVHN code), from a recipe into a checkpoint."""

from __future__ import annotations

import pytest
import torch
from conftest import write_recipe

from fskd_cli.core.checkpoint import load_checkpoint
from fskd_cli.core.config import resolve
from fskd_cli.core.errors import FskdError
from fskd_cli.core.preprocess import Preprocess
from fskd_cli.train.loop import train

SVHN_MEAN, SVHN_STD = (0.4376821, 0.4437697, 0.47280442), (0.19803012, 0.20101562, 0.19703614)


def test_scalar_convention_is_unchanged():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    assert torch.equal(Preprocess().apply(x), (x.float() - 127.5) / 127.5)
    assert torch.equal(Preprocess("bgr", 127.5, 127.5).apply(x), ((x.float() - 127.5) / 127.5).flip(1))


def test_per_channel_statistics_match_torchvision_normalize():
    """``ToTensor`` then ``Normalize(mean, std)``, as the authors' load_svhn does, in uint8 units."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=g)
    p = Preprocess("rgb", [255 * m for m in SVHN_MEAN], [255 * s for s in SVHN_STD])
    expected = (x.float() / 255 - torch.tensor(SVHN_MEAN).view(3, 1, 1)) / torch.tensor(SVHN_STD).view(3, 1, 1)
    torch.testing.assert_close(p.apply(x), expected, rtol=1e-5, atol=1e-5)
    assert Preprocess.from_dict(p.to_dict()) == p and isinstance(p.to_dict()["mean"], list)
    with pytest.raises(ValueError, match="one number or three"):
        Preprocess("rgb", [1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="std must be positive"):
        Preprocess("rgb", 0.0, [1.0, 0.0, 1.0])


def test_the_authors_svhn_recipe_normalises_flips_and_decays_as_their_code():
    cfg = resolve("svhn-resnet50-authors")
    p = Preprocess.from_dict(cfg.model.preprocess)
    torch.testing.assert_close(torch.tensor(p.mean), 255 * torch.tensor(SVHN_MEAN), atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.tensor(p.std), 255 * torch.tensor(SVHN_STD), atol=1e-3, rtol=0)
    assert cfg.train.weight_decay == 1e-4 and cfg.data.flip and "nearest" in cfg.data.path
    paper = resolve("svhn-resnet50")
    assert (paper.train.lr, paper.train.batch_size, paper.train.milestones) == (cfg.train.lr, cfg.train.batch_size,
                                                                               cfg.train.milestones)
    assert not paper.model.preprocess and not paper.data.flip


def test_a_bad_preprocess_names_the_recipe_key(tmp_path, tiny_digits):
    path = write_recipe(tmp_path / "r.yaml", tiny_digits, model={"name": "resnet_32", "preprocess": {"std": [1, 2]}})
    with pytest.raises(FskdError, match="r.yaml: model.preprocess: std must be one number or three"):
        resolve(path)


def test_a_teacher_run_records_the_recipe_convention(tmp_path, tiny_digits):
    stats = {"color": "rgb", "mean": [110.0, 112.0, 120.0], "std": [50.0, 51.0, 50.0]}
    path = write_recipe(tmp_path / "r.yaml", tiny_digits,
                        model={"name": "resnet_32", "kwargs": {"layers": [1, 1, 1, 1], "width": 4}, "preprocess": stats})
    ck = train(resolve(path), tmp_path / "t", kind="teacher", stop_after=1)
    assert load_checkpoint(ck).preprocess.to_dict() == stats
