"""Alignment: the similarity fit, the warp onto the template, the face choice, and MTCNN on real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import shared

import fskd_cli.data.align as align_module
from fskd_cli.data.align import (
    ARCFACE_TEMPLATE,
    TEMPLATE_BOX,
    FaceAligner,
    align_face,
    center_crop,
    fills_frame,
    pad,
    similarity_transform,
    template_error,
    warp,
)
from fskd_cli.data.landmarks import implausible, select_face
from fskd_cli.data.manifest import load_image


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
    photos = [load_image(f) for f in files]
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


def test_warp_shrinks_by_area_not_by_sampling():
    """A 1-px checkerboard halved is mid-grey (bilinear sampling alone would keep one colour), and a pure
    halving equals cv2.resize's area average: the pre-shrink keeps pixel centres where they belong."""
    board = ((np.indices((224, 224)).sum(axis=0) % 2) * 255).astype(np.uint8)
    board = np.repeat(board[:, :, None], 3, axis=2)
    half = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25]])
    assert abs(warp(board, half, 112).mean() - 127.5) < 1
    photo = np.random.default_rng(3).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    expected = cv2.resize(photo, (112, 112), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(warp(photo, half, 112).astype(int) - expected).max() <= 1


def test_center_crop_maps_the_photo_centre_onto_the_template_box():
    photo = np.zeros((192, 168, 3), np.uint8)
    photo[94:98, 82:86] = 255  # a dot at the centre of the photo
    crop = center_crop(photo)
    ys, xs = np.nonzero(crop[:, :, 0] > 60)
    box_centre = [(TEMPLATE_BOX[0] + TEMPLATE_BOX[2]) / 2 - 0.5, (TEMPLATE_BOX[1] + TEMPLATE_BOX[3]) / 2 - 0.5]
    assert np.allclose([xs.mean(), ys.mean()], box_centre, atol=0.6)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8


def test_pad_is_black_or_the_mean_colour():
    photo = np.zeros((10, 20, 3), np.uint8)
    photo[:, :10] = (10, 20, 30)
    photo[:, 10:] = (30, 40, 50)
    assert pad(photo, 3, "black").shape == (16, 26, 3) and pad(photo, 3, "black")[0, 0].tolist() == [0, 0, 0]
    assert pad(photo, 3, "mean")[0, 0].tolist() == [20, 30, 40]
    assert np.array_equal(pad(photo, 3, "mean")[3:13, 3:23], photo)


def test_fills_frame():
    assert fills_frame(np.array([1.0, 30, 80, 90]), (100, 100))  # touches the left edge
    assert fills_frame(np.array([10.0, -5, 80, 90]), (100, 100))  # crosses the top
    assert not fills_frame(np.array([10.0, 10, 90, 90]), (100, 100))


def _template_face() -> tuple[np.ndarray, np.ndarray]:
    return TEMPLATE_BOX.copy(), ARCFACE_TEMPLATE.copy()


def _rotated(points: np.ndarray, degrees: float) -> np.ndarray:
    return _apply(_similarity(1.0, np.radians(degrees), 0, 0), points - 56) + 56


def test_plausible_faces_pass_in_any_roll_up_to_90_degrees():
    box, points = _template_face()
    assert implausible(box, points) == ""
    big = np.array([-10.0, -10, 122, 122])  # rotated landmarks stay inside a wider box
    for degrees in (-40, -15, 20, 45):
        assert implausible(big, _rotated(points, degrees)) == "", degrees


@pytest.mark.parametrize(("change", "why"), [
    (lambda b, p: (b, p[[1, 0, 2, 3, 4]]), "right eye"),
    (lambda b, p: (b, p[[0, 1, 2, 4, 3]]), "mouth corners"),
    (lambda b, p: (b, _rotated(p, 180)), "right eye"),
    (lambda b, p: (b, np.vstack([p[:2], [[56, 99]], p[3:]])), "nose"),  # nose below the mouth
    (lambda b, p: (b, np.vstack([p[:3], p[3:] - [0, 25]])), "mouth"),
    (lambda b, p: (b, (p - p[0]) * 0.25 + p[0]), "box"),  # landmarks of a zoomed eye: tiny in a face-size box
    (lambda b, p: (b, p + [40, 0]), "outside"),
])
def test_implausible_landmarks_are_named(change, why):
    box, points = change(*_template_face())
    assert why in implausible(box, points)


def test_images_that_are_not_uint8_rgb_are_a_bug(aligner):
    for bad in (np.zeros((64, 64, 3), np.uint16), np.zeros((64, 64, 3), np.float32), np.zeros((64, 64), np.uint8)):
        with pytest.raises(ValueError, match="uint8 RGB"):
            aligner.align([bad])
    with pytest.raises(ValueError, match="on_no_face"):
        FaceAligner(on_no_face="crop")


def test_center_mode_keeps_a_central_crop_with_its_own_status():
    results = FaceAligner(on_no_face="center").align([np.full((120, 100, 3), 128, np.uint8),
                                                      np.full((12, 10, 3), 90, np.uint8)])
    assert [r.status for r in results] == ["center", "center"]
    assert results[0].image.shape == (112, 112, 3) and "no plausible face" in results[0].reason
    assert "10 x 12 px" in results[1].reason and results[1].image[56, 56, 0] == 90


def test_a_large_photo_is_detected_on_a_bounded_copy(aligner, monkeypatch):
    """A Yale photo enlarged 12x (3840 x 2916): MTCNN sees a copy of at most MAX_DETECT_SIDE px, the landmarks
    come back in the large photo's pixels, and the crop warped from it matches the one from the small photo."""
    small = load_image(shared("yale", "yalefaces", "subject02.happy"))
    large = cv2.resize(small, (small.shape[1] * 12, small.shape[0] * 12), interpolation=cv2.INTER_LINEAR)
    seen = []
    detect = aligner.mtcnn.detect
    monkeypatch.setattr(aligner.mtcnn, "detect", lambda batch, **kw: seen.append(batch.shape) or detect(batch, **kw))
    (face_large,), (face_small,) = aligner.detect([large]), aligner.detect([small])
    assert max(max(shape[1:3]) for shape in seen[:1]) <= align_module.MAX_DETECT_SIDE * (1 + 2 * align_module.DETECT_MARGIN)
    eye_distance = np.linalg.norm(face_small.landmarks[1] - face_small.landmarks[0])
    assert np.abs((face_large.landmarks + 0.5) / 12 - 0.5 - face_small.landmarks).max() < 0.06 * eye_distance
    (crop_large,), (crop_small,) = aligner.align([large]), aligner.align([small])
    assert np.abs(crop_large.image.astype(int) - crop_small.image.astype(int)).mean() < 12
