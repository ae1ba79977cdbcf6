"""FFHQ-style face alignment from 68 iBUG landmarks, cropped at any size.

The oriented square is the one of the FFHQ preparation script (Karras et al. 2019, "A Style-Based
Generator Architecture for GANs", NVlabs/ffhq-dataset ``recreate_aligned_images``): with e the
mean of the two eye centres, m the mean of the mouth corners (points 48 and 54),
``x = (eye_right - eye_left) - rot90(m - e)`` normalised and scaled to
``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``, ``y = rot90(x)``, centre ``c = e + 0.1 (m - e)``;
the square has corners ``c - x - y, c - x + y, c + x + y, c + x - y``. As there, a source much
larger than the output is first reduced (box filter) and a square leaving the image is filled by
reflecting the image (FFHQ also blurs the padding; mien does not). The map from the square to the
output is affine, so the landmarks are carried into the crop exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mien.errors import ConfigError


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corner ``c - x - y`` and edge vectors ``2x``, ``2y`` of the FFHQ square (pixels), from
    68 iBUG points or from the 5 points eye_left, eye_right, nose, mouth_left, mouth_right
    (the CelebA order; "left" is image left)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] not in (5, 68) or lm.shape[1] < 2:
        raise ConfigError(f"alignment needs 68 iBUG or 5 CelebA landmarks (N x 2), got shape {lm.shape}")
    lm = lm[:, :2]
    if len(lm) == 68:
        eye_left, eye_right, mouth_left, mouth_right = lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54]
    else:
        eye_left, eye_right, mouth_left, mouth_right = lm[0], lm[1], lm[3], lm[4]
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return c - x - y, 2 * x, 2 * y


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` x ``size`` FFHQ crop of an RGB uint8 image and the landmarks (68 or 5 points,
    N x 2 or N x 3, pixels) in the crop's [0, 1] coordinates (a third column is divided by the
    square's side)."""
    if not isinstance(size, int) or size < 8:
        raise ConfigError(f"crop size {size!r} is too small; use 8 px or more")
    origin0, ex0, ey0 = ffhq_quad(landmarks)
    lm = np.asarray(landmarks, dtype=np.float64)
    side = float(np.hypot(*ex0))
    uv = np.linalg.solve(np.stack([ex0, ey0], 1), (lm[:, :2] - origin0).T).T
    points = uv if lm.shape[1] == 2 else np.concatenate([uv, lm[:, 2:] / side], 1)

    image, origin, ex, ey = Image.fromarray(rgb), origin0, ex0, ey0
    shrink = int(np.floor(side / size * 0.5))
    if shrink > 1:
        image = image.reduce(shrink)
        origin, ex, ey = origin / shrink, ex / shrink, ey / shrink
    corners = origin + np.array([[0, 0], [1, 0], [0, 1], [1, 1]]) @ np.stack([ex, ey])
    w, h = image.size
    pad = int(np.ceil(max(0.0, -corners.min(), (corners[:, 0] - w).max(), (corners[:, 1] - h).max())))
    if pad > 0:
        pad += 2  # room for the bicubic kernel
        image = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))
        origin = origin + pad
    # output pixel (X, Y) samples the source at origin + (X ex + Y ey) / size
    a, b, d, e = ex[0] / size, ey[0] / size, ex[1] / size, ey[1] / size
    crop = image.transform((size, size), Image.Transform.AFFINE, (a, b, origin[0], d, e, origin[1]),
                           resample=Image.Resampling.BICUBIC)
    return np.asarray(crop), points.astype(np.float32)
