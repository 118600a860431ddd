"""TinyFace's two layouts: AdaFace's aligned 112 x 112 release used as it is, and the native crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import encode, make_tinyface, pattern

from fskd_cli.core.errors import FskdError
from fskd_cli.data.readers import UnreadableImage
from fskd_cli.data.readers.tinyface import read_tinyface

NAMES = {"Probe": ["1_1.png", "2_1.png"], "Gallery_Match": ["1_2.png", "2_5.png"], "Gallery_Distractor": ["a.png"]}


def make_aligned(folder: Path, size: int = 112) -> dict[str, np.ndarray]:
    """AdaFace's layout: the three role folders of 112 x 112 PNGs; returns the images by relative path."""
    images = {}
    for i, (role, names) in enumerate(NAMES.items()):
        (folder / role).mkdir(parents=True)
        for j, name in enumerate(names):
            images[f"{role}/{name}"] = pattern(10 * i + j, (size, size))
            (folder / role / name).write_bytes(encode(images[f"{role}/{name}"]))
    return images


def test_auto_prefers_the_aligned_release_and_uses_it_as_it_is(tmp_path):
    root = make_tinyface(tmp_path)  # root/Testing_Set with native crops
    images = make_aligned(root / "aligned_pad_0.1_pad_high")
    source = read_tinyface(root, "tinyface")
    assert source.meta["layout"] == "aligned" and "AdaFace" in source.meta["alignment"]
    assert source.faces == "native"  # written at its own size (112 here), no LR copies, never resized
    assert [it.role for it in source.items] == ["probe", "probe", "gallery", "gallery", "distractor"]
    for item in source.items:
        assert np.array_equal(item.load(), images[item.source])  # pixel for pixel


def test_native_layout_when_asked_or_alone(tmp_path):
    root = make_tinyface(tmp_path)
    assert read_tinyface(root, "tinyface").meta["layout"] == "native"  # no aligned release beside it
    make_aligned(root / "aligned_pad_0.1_pad_high")
    native = read_tinyface(root, "tinyface", layout="native")
    assert native.meta["layout"] == "native" and native.items[0].load().shape == (20, 16, 3)
    with pytest.raises(FskdError, match="--layout must be one of auto, aligned, native"):
        read_tinyface(root, "tinyface", layout="stretched")


def test_a_bare_role_folder_is_told_by_its_image_size(tmp_path):
    make_aligned(tmp_path / "mine")
    assert read_tinyface(tmp_path / "mine", "tinyface").meta["layout"] == "aligned"
    native = make_tinyface(tmp_path / "n") / "Testing_Set"
    assert read_tinyface(native, "tinyface").meta["layout"] == "native"


def test_an_aligned_image_of_another_size_is_refused_not_stretched(tmp_path):
    folder = tmp_path / "aligned_pad_0.1_pad_high"
    make_aligned(folder)
    (folder / "Probe" / "3_1.png").write_bytes(encode(pattern(3, (100, 112))))
    item = next(it for it in read_tinyface(tmp_path, "tinyface").items if it.source == "Probe/3_1.png")
    with pytest.raises(UnreadableImage, match="112 x 100 px; AdaFace's aligned TinyFace images are 112 x 112"):
        item.load()


def test_a_folder_without_the_roles_is_refused(tmp_path):
    (tmp_path / "aligned_pad_0.1_pad_high" / "Probe").mkdir(parents=True)
    with pytest.raises(FskdError, match="not a TinyFace aligned release .missing Gallery_Match, Gallery_Distractor"):
        read_tinyface(tmp_path, "tinyface")


def test_prepare_records_the_layout_and_keeps_the_aligned_faces(tmp_path):
    """``fskd prepare tinyface --layout aligned``: meta.yaml says which, the images stay 112 x 112, no LR copies."""
    import yaml
    from conftest import run_cli
    from PIL import Image

    root = make_tinyface(tmp_path / "src")
    images = make_aligned(root / "aligned_pad_0.1_pad_high")
    out = tmp_path / "out"
    r = run_cli("prepare", "tinyface", root, "--out", out, "--layout", "aligned", "--workers", "1")
    assert r.returncode == 0, r.stderr
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    assert meta["layout"] == "aligned" and "AdaFace" in meta["alignment"]
    written = sorted((out / "images" / "hr").rglob("*.png"))
    assert len(written) == len(images) and not any((out / "images" / f"x{f}").exists() for f in (2, 4, 8))
    probe = np.asarray(Image.open(out / "images" / "hr" / "Probe" / "1_1.png").convert("RGB"))
    assert np.array_equal(probe, images["Probe/1_1.png"])
