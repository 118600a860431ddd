"""Is a detection a face? Geometry checks on MTCNN's five landmarks, and the choice of one face per photo.

MTCNN sometimes returns a confident box on part of a face when the face fills the frame (an eye, the
nose and mouth): its landmarks then break the proportions every upright face has. The checks work in
the face's own frame (along and across the eye line), so they accept any roll up to 90 degrees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CENTRE_WEIGHT = 2.0
FACE_RULE = (f"the plausible face with the largest score = box area - {CENTRE_WEIGHT:g} x squared distance (px^2) "
             "from the box centre to the image centre: the largest face, preferring central ones")
# Bounds, in eye distances, that every upright face meets with room to spare. On the ArcFace template
# the nose lies 0.57 and the mouth 1.16 eye distances below the eyes; over the 564 ORL and Yale faces
# the nose lies 0.23-0.81 and the mouth 0.82-1.60 below, and MTCNN's boxes are 1.9-2.9 eye distances wide.
NOSE_DEPTH = (0.15, 1.3)
MOUTH_DEPTH = (0.5, 2.0)
BOX_WIDTH = (1.2, 4.5)
INSIDE_TOLERANCE = 0.1  # landmarks may stray out of the box by this share of its size
PLAUSIBILITY_RULE = (f"left eye left of right eye and left mouth corner left of right one; nose {NOSE_DEPTH[0]:g}-"
                     f"{NOSE_DEPTH[1]:g} and mouth {MOUTH_DEPTH[0]:g}-{MOUTH_DEPTH[1]:g} eye distances below the eyes, "
                     f"nose above mouth; box {BOX_WIDTH[0]:g}-{BOX_WIDTH[1]:g} eye distances wide; landmarks inside "
                     f"the box (+/- {INSIDE_TOLERANCE:.0%})")


def face_geometry(box: np.ndarray, landmarks5: np.ndarray) -> dict[str, float]:
    """The measures :func:`implausible` judges, in eye distances (``inf`` when the eyes coincide)."""
    points = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    box = np.asarray(box, dtype=np.float64).reshape(4)
    left_eye, right_eye, nose, mouth_l, mouth_r = points
    eye = right_eye - left_eye
    distance = float(np.hypot(*eye))
    if distance == 0:
        return {"eye_angle": float("inf"), "mouth_order": 0.0, "nose": float("inf"), "mouth": float("inf"),
                "box_width": float("inf"), "outside": 0.0}
    along, down = eye / distance, np.array([-eye[1], eye[0]]) / distance  # down: towards the mouth
    eyes_mid, mouth_mid = (left_eye + right_eye) / 2, (mouth_l + mouth_r) / 2
    size = np.array([box[2] - box[0], box[3] - box[1]])
    slack = INSIDE_TOLERANCE * size
    outside = np.maximum(box[:2] - slack - points, 0) + np.maximum(points - box[2:] - slack, 0)
    return {"eye_angle": float(np.degrees(np.arctan2(eye[1], eye[0]))),
            "mouth_order": float((mouth_r - mouth_l) @ along / distance),
            "nose": float((nose - eyes_mid) @ down / distance), "mouth": float((mouth_mid - eyes_mid) @ down / distance),
            "box_width": float(size[0] / distance), "outside": float(outside.max() / max(size.min(), 1e-9))}


def implausible(box: np.ndarray, landmarks5: np.ndarray) -> str:
    """Why these landmarks cannot be an upright face (see :data:`PLAUSIBILITY_RULE`), or ``""`` when they can."""
    g = face_geometry(box, landmarks5)
    checks = [
        (abs(g["eye_angle"]) < 90, "the right eye is not right of the left eye"),
        (g["mouth_order"] > 0, "the mouth corners are swapped"),
        (NOSE_DEPTH[0] <= g["nose"] <= NOSE_DEPTH[1], f"nose {g['nose']:.2f} eye distances below the eyes"),
        (MOUTH_DEPTH[0] <= g["mouth"] <= MOUTH_DEPTH[1], f"mouth {g['mouth']:.2f} eye distances below the eyes"),
        (g["nose"] < g["mouth"], "the nose is not above the mouth"),
        (BOX_WIDTH[0] <= g["box_width"] <= BOX_WIDTH[1], f"box {g['box_width']:.2f} eye distances wide"),
        (g["outside"] == 0, "landmarks outside the box"),
    ]
    return next((why for ok, why in checks if not ok), "")


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
