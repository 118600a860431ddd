"""The one degradation function: shapes, identities, batch = per-sample, uint8 files = float path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fskd_cli.data.degrade import DEVICE_EXACT, INTERPOLATIONS, degrade, degrade_uint8, degrade_uint8_batch


def test_keeps_size_and_scale_one_is_identity():
    x = torch.rand(2, 3, 32, 32)
    for s in (2, 4, 8):
        assert degrade(x, s).shape == x.shape
    assert degrade(x, 1) is x


def test_removes_detail_more_at_larger_scales():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    err = [float((degrade(x, s) - x).abs().mean()) for s in (2, 4, 8)]
    assert err[0] < err[1] < err[2]


def test_nearest_mode_gives_blocks():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    y = degrade(x, 4, "nearest")
    # every 4x4 block is one value, taken from the downsampled grid
    blocks = y.view(2, 4, 2, 4).permute(0, 2, 1, 3).reshape(4, 16)
    assert all(len(b.unique()) == 1 for b in blocks)


def test_constant_image_stays_constant():
    x = torch.full((3, 16, 16), 0.3)
    assert torch.allclose(degrade(x, 8), x)


def test_batch_equals_per_sample():
    x = torch.rand(4, 3, 32, 32)
    per = torch.stack([degrade(img, 4) for img in x])
    assert torch.equal(degrade(x, 4), per)


def test_uint8_matches_float_path_within_rounding():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = degrade_uint8(img, 4)
    ref = degrade(torch.from_numpy(img).permute(2, 0, 1).float(), 4).permute(1, 2, 0).numpy()
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out.astype(float) - ref).max() <= 0.5 + 1e-4


def test_rejects_other_scales():
    with pytest.raises(ValueError, match="scale"):
        degrade(torch.rand(3, 8, 8), 3)


def test_uint8_batch_equals_the_per_image_files():
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8))
    for mode in INTERPOLATIONS:
        batch = degrade_uint8_batch(images, 8, mode)
        files = [degrade_uint8(img.permute(1, 2, 0).numpy(), 8, mode) for img in images]
        assert batch.dtype == torch.uint8
        assert all(np.array_equal(b.permute(1, 2, 0).numpy(), f) for b, f in zip(batch, files, strict=True))


@pytest.mark.parametrize("mode", INTERPOLATIONS)
def test_device_exact_modes_commute_with_the_flip_and_stay_in_range(mode):
    """What DEVICE_EXACT promises: a loop may degrade flipped, unclipped batches and still get the files."""
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (2, 3, 48, 48))).float()
    mirrored = (degrade(x.flip(-1), 4, mode) - degrade(x, 4, mode).flip(-1)).abs().max()
    y = degrade(x, 4, mode)
    exact = bool(mirrored < 1e-3 and y.min() >= 0 and y.max() <= 255)
    assert exact == (mode in DEVICE_EXACT)


def test_batch_degrades_each_image_by_its_own_scale():
    from fskd_cli.data.degrade import degrade_batch

    x = torch.rand(6, 3, 32, 32)
    before = x.clone()
    mixed = torch.tensor([1, 8, 2, 8, 4, 1])
    out = degrade_batch(x, mixed)
    assert torch.equal(x, before)  # the input batch is left as it was
    for i, s in enumerate(mixed.tolist()):
        assert torch.equal(out[i], degrade(x[i : i + 1], s)[0])
    assert torch.equal(degrade_batch(x, torch.full((6,), 4)), degrade(x, 4))  # one scale: the whole batch at once
