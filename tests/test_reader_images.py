"""Decoding any depth to 8-bit, and listing folders with broken links and unreadable subfolders (issue 11)."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import encode, pattern
from PIL import Image

from fskd_cli.data.readers import UnreadableImage
from fskd_cli.data.readers.binpairs import read_bin
from fskd_cli.data.readers.folder import read_folder
from fskd_cli.data.readers.images import decode_image, list_images, to_uint8

RAMP16 = np.linspace(0, 65535, 48 * 40).reshape(48, 40).astype(np.uint16)
RAMPF = np.linspace(0, 1, 48 * 40).reshape(48, 40).astype(np.float32)


def _pil_bytes(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(fmt):
    image = decode_image(_pil_bytes(RAMP16, fmt), "x")
    assert image.dtype == np.uint8 and image.shape == (48, 40, 3)
    assert np.array_equal(image[:, :, 1], np.rint(RAMP16 / 257).astype(np.uint8))
    assert 100 < image.mean() < 155  # a ramp stays a ramp: not white (clipped) or black


def test_16_bit_colour_png_keeps_its_channels():
    rgb16 = np.stack([RAMP16, RAMP16 // 2, 65535 - RAMP16], axis=-1)
    ok, data = cv2.imencode(".png", rgb16[:, :, ::-1])  # OpenCV writes BGR
    image = decode_image(data.tobytes(), "x").astype(int)
    assert ok and np.abs(image - rgb16 / 257).max() <= 1


def test_float_images_are_taken_as_0_to_1():
    grey = decode_image(_pil_bytes(RAMPF, "TIFF"), "x")
    assert np.array_equal(grey[:, :, 0], np.rint(RAMPF * 255).astype(np.uint8))
    colour = np.stack([RAMPF, 1 - RAMPF, RAMPF / 2], axis=-1)
    ok, data = cv2.imencode(".tiff", colour[:, :, ::-1])  # a float colour TIFF: PIL cannot open it, OpenCV can
    assert ok and np.abs(decode_image(data.tobytes(), "x").astype(int) - colour * 255).max() <= 1


def test_values_outside_their_types_range_are_unreadable_not_guessed():
    with pytest.raises(UnreadableImage, match=r"where: pixel values 0..3 lie outside 0..1"):
        to_uint8(np.array([[0.0, 3.0]], np.float32), "where")
    with pytest.raises(UnreadableImage, match="outside"):
        to_uint8(np.array([[np.nan, 0.5]]), "where")
    assert to_uint8(np.array([[True, False]]), "w")[0, :, 0].tolist() == [255, 0]


def test_bin_with_16_bit_png_and_decoded_arrays(tmp_path):
    colour = np.stack([RAMP16[:40, :40]] * 3, axis=-1)
    images = [_pil_bytes(RAMP16[:40, :40], "PNG"), colour, RAMPF[:40, :40], pattern(0, (40, 40))]
    (tmp_path / "agedb_30.bin").write_bytes(pickle.dumps((images, [True, False]), protocol=4))
    got = [item.load() for item in read_bin(tmp_path / "agedb_30.bin", "agedb").items]
    expected16 = np.rint(RAMP16[:40, :40] / 257).astype(np.uint8)
    assert np.array_equal(got[0][:, :, 0], expected16) and np.array_equal(got[1][:, :, 2], expected16)
    assert np.array_equal(got[2][:, :, 1], np.rint(RAMPF[:40, :40] * 255).astype(np.uint8))
    assert np.array_equal(got[3], pattern(0, (40, 40)))


def _tree(root: Path) -> Path:
    (root / "ann").mkdir(parents=True)
    (root / "bob").mkdir()
    (root / "ann" / "1.png").write_bytes(encode(pattern(1, (30, 30))))
    (root / "bob" / "1.png").write_bytes(encode(pattern(2, (30, 30))))
    os.symlink(root / "nowhere.png", root / "ann" / "broken.png")
    os.symlink(root / "bob" / "b.jpg", root / "bob" / "a.jpg")  # a -> b -> a
    os.symlink(root / "bob" / "a.jpg", root / "bob" / "b.jpg")
    os.symlink(root / "ann", root / "ann" / "again")  # a folder that leads back to itself
    (root / "cat").mkdir()
    (root / "cat" / "1.png").write_bytes(encode(pattern(3, (30, 30))))
    return root


def test_broken_and_looping_links_and_unreadable_folders_get_rows(tmp_path, monkeypatch):
    root = _tree(tmp_path / "photos")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == root / "cat":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root may read any folder: fake the refusal
    problems = {e.rel: e.problem for e in list_images(root)}
    assert problems["ann/1.png"] is None and problems["bob/1.png"] is None
    assert "broken symbolic link" in problems["ann/broken.png"]
    assert "symbolic link loop" in problems["bob/a.jpg"] and "symbolic link loop" in problems["ann/again/"]
    assert "cannot list this folder (Permission denied)" in problems["cat/"]

    items = {item.source: item for item in read_folder(root, "folder").items}
    assert items["ann/1.png"].problem is None
    for key in ("ann/broken.png", "bob/a.jpg", "bob/b.jpg", "ann/again/", "cat/"):
        assert items[key].problem[0] == "unreadable", key
    assert items["cat/"].identity == "cat"  # counted against its identity
