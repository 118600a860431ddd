"""Alignment: the similarity fit, the warp onto the template, the face choice, and MTCNN on real faces."""

from __future__ import annotations

import numpy as np
import pytest
from face_fixtures import shared

from fskd_cli.data.align import (
    ARCFACE_TEMPLATE,
    FaceAligner,
    align_face,
    select_face,
    similarity_transform,
    template_error,
)
from fskd_cli.data.readers.base import decode_image


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_a_known_one():
    truth = _similarity(1.7, 0.4, 12.0, -5.0)
    src = np.random.default_rng(0).uniform(0, 200, (5, 2))
    assert np.allclose(similarity_transform(src, _apply(truth, src)), truth, atol=1e-9)


def test_similarity_transform_is_least_squares_and_never_mirrors():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    noisy = _apply(_similarity(0.8, -0.3, 3, 4), src) + rng.normal(0, 0.5, (5, 2))
    fit = similarity_transform(src, noisy)
    residual = np.linalg.norm(_apply(fit, src) - noisy)
    for nudge in ([[1e-3, 0, 0], [0, 1e-3, 0]], [[0, 0, 0.05], [0, 0, 0]]):
        assert residual <= np.linalg.norm(_apply(fit + np.array(nudge), src) - noisy)
    mirrored = src * [-1, 1]
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0  # a rotation, not a reflection


def test_similarity_transform_rejects_degenerate_points():
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)
    with pytest.raises(ValueError, match="two equal sets"):
        similarity_transform(np.ones((4, 2)), ARCFACE_TEMPLATE)


def _dots(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A black image with a bright 5x5 dot at each point."""
    image = np.zeros((*shape, 3), np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 2:y + 3, x - 2:x + 3] = 255
    return image


def _dot_centres(image: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Brightness-weighted centre of the dot near each expected point."""
    grey = image[:, :, 0].astype(float)
    out = []
    for x, y in np.round(near).astype(int):
        win = grey[y - 6:y + 7, x - 6:x + 7]
        ys, xs = np.mgrid[y - 6:y + 7, x - 6:x + 7]
        out.append([(win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()])
    return np.array(out)


def test_align_face_puts_the_landmarks_on_the_template():
    photo_pts = _apply(_similarity(2.2, 0.35, 60, 20), ARCFACE_TEMPLATE)  # a tilted, larger face in a photo
    photo = _dots(photo_pts, (320, 300))
    aligned = align_face(photo, photo_pts)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    assert np.abs(_dot_centres(aligned, ARCFACE_TEMPLATE) - ARCFACE_TEMPLATE).max() < 0.5


def test_align_face_of_an_aligned_face_is_the_identity():
    face = np.random.default_rng(2).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    assert np.array_equal(align_face(face, ARCFACE_TEMPLATE), face)


def test_select_face_prefers_large_then_central():
    shape = (200, 200)
    central_small = [90, 90, 110, 110]
    big = [60, 60, 140, 140]
    assert select_face(np.array([central_small, big]), shape) == 1
    edge_bigger = [0, 0, 70, 70]  # area 4900 but 65 px off centre
    central = [65, 65, 125, 125]  # area 3600, near the centre
    assert select_face(np.array([edge_bigger, central]), shape) == 1


def test_template_error():
    assert template_error(ARCFACE_TEMPLATE) == 0
    assert template_error(ARCFACE_TEMPLATE + [3, 4]) == pytest.approx(5)


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner()


def test_mtcnn_aligns_real_faces_onto_the_template(aligner):
    """A few ORL (tight grey crops) and Yale (background) photos: re-detected landmarks lie on the template."""
    files = [shared("orl", "att_faces", "s1", "1.pgm"), shared("orl", "att_faces", "s7", "4.pgm"),
             shared("yale", "yalefaces", "subject02.happy"), shared("yale", "yalefaces", "subject05.glasses")]
    photos = [decode_image(f, str(f)) for f in files]
    results = aligner.align(photos)
    assert [r.status for r in results] == ["ok"] * 4
    faces = aligner.detect([r.image for r in results])
    errors = [template_error(face.landmarks) for face in faces]
    assert np.mean(errors) < 3, errors


def test_no_face_and_too_small_are_reported(aligner):
    blank = np.full((120, 100, 3), 128, np.uint8)
    tiny = np.full((12, 10, 3), 128, np.uint8)
    results = aligner.align([blank, tiny, blank])
    assert [r.status for r in results] == ["no_face", "too_small", "no_face"]
    assert results[0].image is None and "10 x 12 px" in results[1].reason
