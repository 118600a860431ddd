"""Face alignment: MTCNN's five landmarks warped onto the ArcFace/insightface 112 x 112 template.

Recognition models trained on aligned faces (the F-SKD teachers among them) expect the eyes, the
nose tip and the mouth corners at fixed places; a similarity transform (rotation, uniform scale,
translation) fitted by least squares maps the detected points there without distorting the face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from .landmarks import FACE_RULE, PLAUSIBILITY_RULE, implausible, select_face
from .prepare_options import ON_NO_FACE

SIZE = 112
# insightface's five-point template for 112 x 112 crops (x, y): left eye, right eye, nose tip,
# left mouth corner, right mouth corner, "left" meaning the image's left. MTCNN gives the same order.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# Where MTCNN puts the box of a face aligned onto the template (x1, y1, x2, y2; mean over aligned ORL
# and Yale crops, within 2 px): ``on_no_face="center"`` maps a photo's central part there.
TEMPLATE_BOX = np.array([15.0, 14.5, 93.0, 113.0])
# Borders added around each photo before detection, as a share of its longer side (see FaceAligner).
DETECT_MARGIN = 0.1
RETRY_MARGIN = 0.35
RETRY_FILLS = ("black", "mean")  # the second retry only for photos the first one found no face in
EDGE = 0.02  # a box this close to the photo's edge (share of its side) means the face fills the frame
# Detection runs on a copy whose longer side is at most this; the warp reads the original.
MAX_DETECT_SIDE = 1280
OnNoFace = Literal["skip", "center"]


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


def check_image(image: np.ndarray) -> None:
    """Refuse what is not an ``H x W x 3`` uint8 photo: readers convert 16-bit and float images when they
    decode them, so anything else reaching the aligner is a bug (a white or black image would pass as "no face")."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        kind = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"alignment takes H x W x 3 uint8 RGB images, got a {kind}")


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``cv2.warpAffine`` onto a ``size x size`` crop, black outside the photo, without aliasing.

    Bilinear sampling of a face much larger than the crop (a face in a 24-megapixel photo) skips most
    pixels; when the transform shrinks, the part of the photo the crop sees is first shrunk by area
    averaging, and the remaining warp only rotates.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= 1:
        return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    height, width = image.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)) - 1, 0).astype(int)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)) + 2, [width, height]).astype(int)
    if x1 <= x0 or y1 <= y0:  # the crop lies wholly outside the photo
        return np.zeros((size, size, 3), np.uint8)
    new_w, new_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(image[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_AREA)
    factor = np.array([new_w / (x1 - x0), new_h / (y1 - y0)])
    # cv2.resize maps pixel centres as p' = f (p - origin) + (f - 1) / 2: undo that before the warp.
    linear = matrix[:, :2] / factor
    shift = matrix[:, :2] @ [x0, y0] + matrix[:, 2] - linear @ ((factor - 1) / 2)
    return cv2.warpAffine(small, np.hstack([linear, shift[:, None]]), (size, size), flags=cv2.INTER_LINEAR,
                          borderValue=0)


def align_face(image_rgb: np.ndarray, landmarks5: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Warp ``image_rgb`` so that its five landmarks land on the template; ``size x size x 3`` uint8.

    Parts of the crop outside the photo are black, as in insightface's ``norm_crop``.
    """
    template = ARCFACE_TEMPLATE * (size / SIZE)
    matrix = similarity_transform(np.asarray(landmarks5, dtype=np.float64).reshape(5, 2), template)
    return warp(image_rgb, matrix, size)


def center_crop(image_rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The photo's central part, with the aspect of a face box, scaled onto :data:`TEMPLATE_BOX`.

    For photos that are already face crops but where no face is found: the face is assumed to fill the
    photo as MTCNN's box would frame it. No rotation, so a tilted face stays tilted.
    """
    height, width = image_rgb.shape[:2]
    box = TEMPLATE_BOX * (size / SIZE)
    scale = max((box[2] - box[0]) / width, (box[3] - box[1]) / height)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]) - 0.5
    shift = centre - scale * (np.array([width, height]) - 1) / 2
    return warp(image_rgb, np.array([[scale, 0, shift[0]], [0, scale, shift[1]]]), size)


def template_error(landmarks5: np.ndarray, size: int = SIZE) -> float:
    """Mean distance in pixels of five landmarks from the template: how well a crop is aligned."""
    points = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    return float(np.linalg.norm(points - ARCFACE_TEMPLATE * (size / SIZE), axis=1).mean())


def pad(image: np.ndarray, margin: int, fill: str) -> np.ndarray:
    """``image`` inside a border ``margin`` px wide, ``black`` or of the image's ``mean`` colour: context for MTCNN.

    A black border hides some low-contrast faces from MTCNN (16 of the 20 faces cropped tightly from ORL
    that a black border lost were found with the mean colour), but finds more of the Yale ones; an
    edge-replicated border draws streaks.
    """
    value = [0, 0, 0] if fill == "black" else image.reshape(-1, 3).mean(axis=0).round().tolist()
    return cv2.copyMakeBorder(image, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=value)


def fills_frame(box: np.ndarray, image_shape: Sequence[int]) -> bool:
    """Whether a face box reaches the photo's edge (within :data:`EDGE`): MTCNN then lacked context."""
    height, width = image_shape[:2]
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    return bool(min(x1, width - x2) < EDGE * width or min(y1, height - y2) < EDGE * height)


@dataclass(frozen=True)
class Face:
    """The face chosen in one photo: box (x1, y1, x2, y2), five landmarks (x, y) and MTCNN's probability."""

    box: np.ndarray
    landmarks: np.ndarray
    prob: float

    def scaled(self, factor: np.ndarray) -> Face:
        """The same face in a photo ``factor`` (x, y) times as large, pixel centres mapped as ``cv2.resize`` does."""
        def up(points: np.ndarray) -> np.ndarray:
            return points * factor + (factor - 1) / 2

        return Face(up(self.box.reshape(2, 2)).reshape(4), up(self.landmarks), self.prob)


@dataclass(frozen=True)
class Aligned:
    """The result for one photo: the aligned crop, or ``None`` with a status and the reason."""

    image: np.ndarray | None
    status: str
    reason: str = ""


def detection_copy(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` shrunk so its longer side is at most :data:`MAX_DETECT_SIDE`, and the factor back to it.

    MTCNN's image pyramid on a 8000 x 8000 photo takes gigabytes and most of a minute; faces that
    matter are far above the smallest face size on the shrunk copy too.
    """
    longer = max(image.shape[:2])
    if longer <= MAX_DETECT_SIDE:
        return image, np.ones(2)
    factor = longer / MAX_DETECT_SIDE
    new_size = (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor)))
    small = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA)
    return small, np.array([image.shape[1] / new_size[0], image.shape[0] / new_size[1]])


class FaceAligner:
    """MTCNN (facenet-pytorch, weights shipped in its wheel) on batches of photos, then :func:`align_face`.

    facenet-pytorch crops a candidate box that crosses the photo's edge to the photo and stretches that
    crop to the network's input, instead of padding it as the original MTCNN does; that skews the
    landmarks of faces that fill the frame, or finds only part of the face. So each photo gets a black
    border (:data:`DETECT_MARGIN`) first; a photo whose face still reaches the edge (:func:`fills_frame`),
    or that shows no plausible face (:func:`~fskd_cli.data.landmarks.implausible`), is detected again with
    a wider border (:data:`RETRY_MARGIN`), black and then, if that finds nothing, of the photo's mean
    colour (:func:`pad`). On faces cropped tightly from ORL (tests/tight_faces.py) one pass aligned 83.5 %
    with the re-detected landmarks 5.7 px from the template on average; with the retries 99 % and 2.8 px.
    Photos of one size are detected in one batch; large photos on a shrunk copy (:func:`detection_copy`).
    """

    def __init__(self, *, min_face_size: int = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 device: str = "cpu", size: int = SIZE, on_no_face: OnNoFace = "skip") -> None:
        if on_no_face not in ON_NO_FACE:
            raise ValueError(f"on_no_face must be one of {', '.join(ON_NO_FACE)}, got {on_no_face!r}")
        # Imported here so that readers of pre-aligned sets (.rec, .bin) never load the detector.
        from facenet_pytorch import MTCNN

        self.min_face_size, self.size, self.on_no_face = min_face_size, size, on_no_face
        self.thresholds = tuple(thresholds)
        self.mtcnn = MTCNN(min_face_size=min_face_size, thresholds=list(thresholds), select_largest=False,
                           keep_all=True, device=device)

    def describe(self) -> dict[str, Any]:
        """What meta.yaml records about the alignment."""
        return {"detector": "MTCNN (facenet-pytorch)", "min_face_size": self.min_face_size,
                "detect_margin": DETECT_MARGIN, "retry_margin": RETRY_MARGIN, "retry_fills": list(RETRY_FILLS),
                "retry_when_box_within": EDGE, "max_detect_side": MAX_DETECT_SIDE,
                "thresholds": list(self.thresholds), "template": "ArcFace/insightface five points",
                "size": self.size, "transform": "similarity, least squares (Umeyama)", "face_choice": FACE_RULE,
                "plausibility": PLAUSIBILITY_RULE, "on_no_face": self.on_no_face}

    def detect(self, images: Sequence[np.ndarray]) -> list[Face | None]:
        """The chosen face of each ``H x W x 3`` uint8 RGB photo, or ``None`` where there is none."""
        for image in images:
            check_image(image)
        copies = [detection_copy(image) for image in images]
        todo = [i for i, image in enumerate(images) if min(image.shape[:2]) >= self.min_face_size]
        faces = self._detect_pass([copies[i][0] for i in todo], DETECT_MARGIN, "black")
        found: dict[int, Face | None] = dict(zip(todo, faces, strict=True))
        again = [i for i in todo if found[i] is None or fills_frame(found[i].box, copies[i][0].shape)]
        for fill in RETRY_FILLS:
            retried = self._detect_pass([copies[i][0] for i in again], RETRY_MARGIN, fill)
            for i, face in zip(again, retried, strict=True):
                found[i] = face or found[i]
            again = [i for i, face in zip(again, retried, strict=True) if face is None]
        return [None if found.get(i) is None else found[i].scaled(copies[i][1]) for i in range(len(images))]

    def _detect_pass(self, images: Sequence[np.ndarray], margin: float, fill: str) -> list[Face | None]:
        """One MTCNN run over ``images`` with a border of ``margin`` x their longer side (see :func:`pad`)."""
        faces: list[Face | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(i)
        for shape, indices in by_shape.items():
            m = round(margin * max(shape[:2]))
            batch = np.stack([pad(images[i], m, fill) for i in indices])
            for i, boxes, probs, points in zip(indices, *self.mtcnn.detect(batch, landmarks=True), strict=True):
                if boxes is not None:  # facenet-pytorch gives object arrays: make them float, in unpadded pixels
                    faces[i] = _choose(np.asarray(boxes, np.float64) - m, np.asarray(probs, np.float64),
                                       np.asarray(points, np.float64) - m, shape)
        return faces

    def align(self, images: Sequence[np.ndarray]) -> list[Aligned]:
        """Detect, choose one face and align each photo; a photo without a usable face says why.

        With ``on_no_face="center"`` such a photo gets :func:`center_crop` and the status ``center`` instead.
        """
        out = []
        for image, face in zip(images, self.detect(images), strict=True):
            if face is not None:
                out.append(Aligned(align_face(image, face.landmarks, self.size), "ok"))
                continue
            small = min(image.shape[:2]) < self.min_face_size
            why = (f"{image.shape[1]} x {image.shape[0]} px is below the smallest face MTCNN looks for "
                   f"({self.min_face_size} px)" if small else "MTCNN found no plausible face, also with a wider border")
            if self.on_no_face == "center":
                out.append(Aligned(center_crop(image, self.size), "center", f"{why}: central crop used"))
            else:
                out.append(Aligned(None, "too_small" if small else "no_face", why))
        return out


def _choose(boxes: np.ndarray, probs: np.ndarray, points: np.ndarray, shape: Sequence[int]) -> Face | None:
    """The face :func:`select_face` keeps among the plausible detections, or ``None`` when none is."""
    keep = [k for k in range(len(boxes)) if not implausible(boxes[k], points[k])]
    if not keep:
        return None
    k = keep[select_face(boxes[keep], shape)]
    return Face(boxes[k], points[k], float(probs[k]))
