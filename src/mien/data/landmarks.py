"""Face detection and 68-point landmarks on real photographs with mediapipe 0.10.14 (the
``mien[landmarks]`` extra), whose BlazeFace detector and 468-point face mesh ship inside the
wheel, so nothing is downloaded (design.md, Conventions).

Detection: BlazeFace, full-range model (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond
Neural Face Detection on Mobile GPUs"). Landmarks: the face mesh (Kartynnik et al. 2019,
"Real-time Facial Surface Geometry from Monocular Video on Mobile GPUs") run on a square crop
around the detected box, then mapped to the 68 iBUG points (Sagonas et al. 2013, 300-W) by
:data:`MESH_TO_IBUG`: each iBUG point is the mean of one or two mesh vertices. The
correspondences follow PeizhiYan/Mediapipe_2_Dlib_Landmarks (2024); tests/test_landmarks.py
measures the map against the exact landmarks of world renders (NME normalised by the
outer-eye-corner distance, the 300-W convention).

Points are returned in pixels of the input image (x right, y down); ``landmarks3d`` adds the
mesh depth in the same pixel units, positive towards the camera, as the world's convention.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from mien.errors import ConfigError

MEDIAPIPE_VERSION = "0.10.14"

# iBUG point -> mesh vertices averaged (0-based iBUG order: jaw 0-16, brows 17-26, nose 27-35,
# eyes 36-47, outer lip 48-59, inner lip 60-67; "right" is the subject's right, image left).
MESH_TO_IBUG: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    (70,), (63,), (105,), (66,), (107,),
    (336,), (296,), (334,), (293,), (300,),
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    (33,), (160,), (158,), (133,), (153,), (144,),
    (362,), (385,), (387,), (263,), (373,), (380,),
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)


def mesh_to_ibug(mesh: np.ndarray) -> np.ndarray:
    """68 x D iBUG points from 468 x D face-mesh vertices (:data:`MESH_TO_IBUG`)."""
    return np.stack([mesh[list(ids)].mean(0) for ids in MESH_TO_IBUG]).astype(np.float32)


def nme(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean point-to-point error over the outer-eye-corner distance (points 36 and 45; 300-W)."""
    ocular = np.linalg.norm(target[..., 36, :] - target[..., 45, :], axis=-1)
    return float((np.linalg.norm(predicted - target, axis=-1).mean(-1) / ocular).mean())


@dataclass
class Face:
    """One detected face: ``box`` (x0, y0, x1, y1 px), detector ``score`` and the 468 x 3 mesh (px)."""

    box: np.ndarray
    score: float
    mesh: np.ndarray

    @property
    def landmarks2d(self) -> np.ndarray:
        return mesh_to_ibug(self.mesh[:, :2])

    @property
    def landmarks3d(self) -> np.ndarray:
        return mesh_to_ibug(self.mesh)


@contextlib.contextmanager
def _quiet():
    """Silence mediapipe's C++ logging (TFLite, absl) on file descriptor 2 and its protobuf warnings."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _mediapipe():
    try:
        import mediapipe as mp
    except ImportError:
        raise ConfigError(f"face detection needs mediapipe {MEDIAPIPE_VERSION}: pip install 'mien[landmarks]' "
                          "(or pass --no-align / leave --align off)") from None
    return mp


class FaceFinder:
    """Finds the most confident face of an RGB uint8 image; ``find`` returns a :class:`Face` or None.

    The detector runs on the whole image; the mesh runs on a square crop of twice the box side
    (edge-padded), which keeps small faces in large photos at the mesh's working scale. When the
    detector finds nothing the mesh's own detector is tried on the whole image. Use as a context
    manager or call :meth:`close`; each process needs its own finder.
    """

    def __init__(self, min_confidence: float = 0.5):
        mp = _mediapipe()
        with _quiet():
            self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                       min_detection_confidence=min_confidence)
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                         min_detection_confidence=min_confidence)

    def __enter__(self) -> "FaceFinder":
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._detector.close()
        self._mesh.close()

    def _run_mesh(self, rgb: np.ndarray) -> np.ndarray | None:
        with _quiet():
            found = self._mesh.process(np.ascontiguousarray(rgb)).multi_face_landmarks
        if not found:
            return None
        h, w = rgb.shape[:2]
        points = np.array([(p.x, p.y, p.z) for p in found[0].landmark[:468]], dtype=np.float64)
        return points * [w, h, -w]  # mediapipe z: smaller is nearer, scaled like x

    def find(self, rgb: np.ndarray) -> Face | None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ConfigError(f"FaceFinder.find takes H x W x 3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        with _quiet():
            detections = self._detector.process(np.ascontiguousarray(rgb)).detections
        if not detections:
            mesh = self._run_mesh(rgb)
            if mesh is None:
                return None
            box = np.concatenate([mesh[:, :2].min(0), mesh[:, :2].max(0)])
            return Face(box.astype(np.float32), 0.0, mesh.astype(np.float32))
        best = max(detections, key=lambda d: d.score[0])
        b = best.location_data.relative_bounding_box
        box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h])
        centre, side = (box[:2] + box[2:]) / 2, max(box[2] - box[0], box[3] - box[1]) * 2.0
        x0, y0 = np.floor(centre - side / 2).astype(int)
        n = max(int(np.ceil(side)), 1)
        pad = max(0, -x0, -y0, x0 + n - w, y0 + n - h)
        padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else rgb
        crop = padded[y0 + pad: y0 + pad + n, x0 + pad: x0 + pad + n]
        mesh = self._run_mesh(crop)
        if mesh is None:
            mesh = self._run_mesh(rgb)
        else:
            mesh[:, :2] += [x0, y0]
        if mesh is None:
            return None
        return Face(box.astype(np.float32), float(best.score[0]), mesh.astype(np.float32))
