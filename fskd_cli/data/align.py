"""Face alignment: MTCNN's five landmarks warped onto the ArcFace/insightface 112 x 112 template.

Recognition models trained on aligned faces (the F-SKD teachers among them) expect the eyes, the
nose tip and the mouth corners at fixed places; a similarity transform (rotation, uniform scale,
translation) fitted by least squares maps the detected points there without distorting the face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

SIZE = 112
# insightface's five-point template for 112 x 112 crops (x, y): left eye, right eye, nose tip,
# left mouth corner, right mouth corner, "left" meaning the image's left. MTCNN gives the same order.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
CENTRE_WEIGHT = 2.0
# Black margin added around each photo before detection, as a share of its longer side (see FaceAligner).
DETECT_MARGIN = 0.1
FACE_RULE = (f"the face with the largest score = box area - {CENTRE_WEIGHT:g} x squared distance (px^2) "
             "from the box centre to the image centre: the largest face, preferring central ones")


def similarity_transform(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity matrix that maps ``src_pts`` onto ``dst_pts`` best in least squares.

    Umeyama (1991): centre both point sets, take the SVD of their cross-covariance for the rotation
    (with a sign fix so it never mirrors), and the ratio of spreads for the scale.
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two equal sets of >= 2 points (N x 2), got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var == 0:
        raise ValueError("the source points all coincide")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image_rgb: np.ndarray, landmarks5: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Warp ``image_rgb`` so that its five landmarks land on the template; ``size x size x 3`` uint8.

    Parts of the crop outside the photo are black, as in insightface's ``norm_crop``.
    """
    template = ARCFACE_TEMPLATE * (size / SIZE)
    matrix = similarity_transform(np.asarray(landmarks5, dtype=np.float64).reshape(5, 2), template)
    return cv2.warpAffine(image_rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def select_face(boxes: np.ndarray, image_shape: Sequence[int]) -> int:
    """Index of the face to keep among ``boxes`` (``N x 4``, x1 y1 x2 y2): see :data:`FACE_RULE`.

    A photo of a person often shows others too; the subject is usually the largest face and near
    the middle, and the centre term keeps a large face at the edge from beating it.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = image_shape[:2]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    offset2 = (centre_x - width / 2) ** 2 + (centre_y - height / 2) ** 2
    return int(np.argmax(area - CENTRE_WEIGHT * offset2))


def template_error(landmarks5: np.ndarray, size: int = SIZE) -> float:
    """Mean distance in pixels of five landmarks from the template: how well a crop is aligned."""
    points = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    return float(np.linalg.norm(points - ARCFACE_TEMPLATE * (size / SIZE), axis=1).mean())


@dataclass(frozen=True)
class Face:
    """The face chosen in one photo: box (x1, y1, x2, y2), five landmarks (x, y) and MTCNN's probability."""

    box: np.ndarray
    landmarks: np.ndarray
    prob: float


@dataclass(frozen=True)
class Aligned:
    """The result for one photo: the aligned crop, or ``None`` with a status and the reason."""

    image: np.ndarray | None
    status: str
    reason: str = ""


class FaceAligner:
    """MTCNN (facenet-pytorch, weights shipped in its wheel) on batches of photos, then :func:`align_face`.

    Photos of the same size are detected in one batch; others in batches of their own size.
    Each photo gets a black margin (:data:`DETECT_MARGIN`) first: facenet-pytorch crops a candidate
    box that crosses the photo's edge to the photo and stretches that crop to the network's input,
    instead of padding it as the original MTCNN does, which skews the landmarks of faces that fill
    the frame (ORL: mean re-detection error about 5.5 px without the margin, 2.8 px with it).
    """

    def __init__(self, *, min_face_size: int = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 device: str = "cpu", size: int = SIZE) -> None:
        # Imported here so that readers of pre-aligned sets (.rec, .bin) never load the detector.
        from facenet_pytorch import MTCNN

        self.min_face_size, self.size = min_face_size, size
        self.thresholds = tuple(thresholds)
        self.mtcnn = MTCNN(min_face_size=min_face_size, thresholds=list(thresholds), select_largest=False,
                           keep_all=True, device=device)

    def describe(self) -> dict[str, Any]:
        """What meta.yaml records about the alignment."""
        return {"detector": "MTCNN (facenet-pytorch)", "min_face_size": self.min_face_size,
                "detect_margin": DETECT_MARGIN,
                "thresholds": list(self.thresholds), "template": "ArcFace/insightface five points",
                "size": self.size, "transform": "similarity, least squares (Umeyama)", "face_choice": FACE_RULE}

    def detect(self, images: Sequence[np.ndarray]) -> list[Face | None]:
        """The chosen face of each ``H x W x 3`` uint8 RGB photo, or ``None`` where there is none."""
        faces: list[Face | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            if min(image.shape[:2]) >= self.min_face_size:
                by_shape.setdefault(image.shape, []).append(i)
        for shape, indices in by_shape.items():
            m = round(DETECT_MARGIN * max(shape[:2]))
            batch = np.pad(np.stack([images[i] for i in indices]), ((0, 0), (m, m), (m, m), (0, 0)))
            boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            for i, b, p, pts in zip(indices, boxes, probs, points):
                if b is not None:  # facenet-pytorch gives object arrays: make them float, in unpadded pixels
                    b, pts = np.asarray(b, dtype=np.float64) - m, np.asarray(pts, dtype=np.float64) - m
                    k = select_face(b, shape)
                    faces[i] = Face(b[k], pts[k], float(np.asarray(p, dtype=np.float64)[k]))
        return faces

    def align(self, images: Sequence[np.ndarray]) -> list[Aligned]:
        """Detect, choose one face and align each photo; a photo without a usable face says why."""
        out = []
        for image, face in zip(images, self.detect(images)):
            if min(image.shape[:2]) < self.min_face_size:
                out.append(Aligned(None, "too_small", f"{image.shape[1]} x {image.shape[0]} px is below "
                                                      f"the smallest face MTCNN looks for ({self.min_face_size} px)"))
            elif face is None:
                out.append(Aligned(None, "no_face", "MTCNN found no face"))
            else:
                out.append(Aligned(align_face(image, face.landmarks, self.size), "ok"))
        return out
