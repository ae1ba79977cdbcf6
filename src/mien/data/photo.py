"""A real photograph by path, as a model's input: read upright (:mod:`mien.data.images`), find the
face (:mod:`mien.data.landmarks`), FFHQ-align and crop (:mod:`mien.data.align`), as a sample dict
(design.md, Contracts). The verbs that take ``--image`` call :func:`load_face`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mien.data.align import align_face
from mien.data.images import read_rgb, resize_square
from mien.errors import ConfigError, FaceNotFound


def crop_face(rgb: np.ndarray, size: int, align: bool = True, finder=None) -> dict[str, np.ndarray] | None:
    """``{'image': size x size x 3 uint8, 'landmarks2d': 68 x 2, 'landmarks3d': 68 x 3}`` (landmarks
    in [0, 1] crop coordinates) of the most confident face, None when none is found; with
    ``align=False`` the centre square, resized, and no landmarks. ``finder``: a
    :class:`~mien.data.landmarks.FaceFinder` to reuse (one is made and closed otherwise)."""
    if not align:
        return {"image": resize_square(rgb, size)}
    if finder is None:
        from mien.data.landmarks import FaceFinder

        with FaceFinder() as own:
            return crop_face(rgb, size, True, own)
    face = finder.find(rgb)
    if face is None:
        return None
    image, points = align_face(rgb, face.landmarks3d, size)
    return {"image": image, "landmarks2d": points[:, :2].copy(), "landmarks3d": points}


def load_face(path, size: int, align: bool = True, finder=None) -> dict[str, torch.Tensor]:
    """Sample dict of the photo at ``path``: ``image`` (3 x size x size in [-1, 1]) and, aligned,
    ``landmarks2d`` (68 x 2 in [0, 1]) and ``landmarks3d`` (68 x 3). Raises
    :class:`~mien.errors.FaceNotFound` when ``align`` and no face is detected, and
    :class:`~mien.errors.DataError` for a file that cannot be read."""
    if not isinstance(size, int) or size < 8:
        raise ConfigError(f"image size {size!r} is too small; use 8 px or more")
    found = crop_face(read_rgb(path), size, align, finder)
    if found is None:
        raise FaceNotFound(f"no face found in {Path(path)}; pass a photo with a visible face, or --no-align "
                           "to use the centre square as it is")
    image = torch.from_numpy(found.pop("image").astype(np.float32) / 127.5 - 1).permute(2, 0, 1).contiguous()
    return {"image": image, **{k: torch.from_numpy(v) for k, v in found.items()}}
