"""The mesh world's surface: a parametric face patch, its nested triangulations and the linear
map from the image world's 3-D points to mesh vertices.

The patch is a regular (u, v) grid on [-1, 1]^2, mapped onto an ellipse (the square-to-disc map
s = u sqrt(1 - v^2/2), t = v sqrt(1 - u^2/2)) that covers the face from chin to forehead: the
*chart*. Every quad is split along the same diagonal, so 1-to-4 midpoint subdivision of a level
gives the next finer level exactly: coarse vertices are a subset of the fine ones (down-sampling
selects them) and every fine vertex is the midpoint of a coarse edge (up-sampling averages two).

The 3-D surface is a base ellipsoid plus a thin-plate spline over the chart of the residuals at the
world's control points (the 68 landmarks, the forehead outline and the ears, geometry.py), zero on
a boundary ring, so the surface between features follows the dome instead of sagging. The 68
landmarks are barycentric points of the finest level; an exact correction X + B^+(L - B X),
B the (68, V) barycentric matrix and B^+ = K B^T (B K B^T)^-1 its pseudo-inverse smoothed by a
Gaussian kernel K over the chart (so corrections are smooth, not spikes at three vertices), makes
the embedded landmarks equal the world's landmarks for every shape (Zou digest G: "landmarks as a vertex subset" generalised to barycentric points).
Departure from the source: CoMA's FLAME topology is replaced by this grid patch (no mouth or eye
holes); the lips are drawn apart in the chart (LIP_GAP) so that an opening mouth stretches
triangles between them instead of folding them.
"""

from __future__ import annotations

import numpy as np

from mien.data.world import geometry as geo

GRID = {"small": 25, "paper": 73}  # grid side at the finest level: 625 and 5,329 vertices
LEVELS = 4  # finest plus three x4 coarsenings (CoMA pools by 4 per level)
CHART_X, CHART_Y0, CHART_Y = 1.12, -0.08, 1.22  # ellipse half-width, centre and half-height (model units)
LIP_GAP = 0.045  # chart-only vertical offset of the upper (+) and lower (-) lips
RING = 32  # boundary ring points where the spline's residual is zero
SPREAD = 0.05  # width (model units) of the Gaussian that spreads the landmark correction
CONTROL = list(range(geo.N_LANDMARKS)) + [geo.AUX[f"forehead{i}"] for i in range(9)] + [geo.AUX["ear_r"], geo.AUX["ear_l"]]
_UPPER_LIP, _LOWER_LIP = [49, 50, 51, 52, 53, 61, 62, 63], [55, 56, 57, 58, 59, 65, 66, 67]


def grid_faces(n: int) -> np.ndarray:
    """Triangles (2 (n-1)^2 x 3) of an n x n vertex grid (index i * n + j), counter-clockwise
    seen from +z when u = j runs to +x and v = i runs to +y; each quad is split along (i, j)-(i+1, j+1)."""
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
    tri = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return tri.astype(np.int64)


def grid_uv(n: int) -> np.ndarray:
    """(n^2, 2) parameters (u, v) in [-1, 1]^2 of the grid vertices."""
    v, u = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    return np.stack([u.ravel(), v.ravel()], 1)


def chart(uv: np.ndarray) -> np.ndarray:
    """Square-to-ellipse map of the parameters to chart coordinates (model units)."""
    u, v = uv[:, 0], uv[:, 1]
    s, t = u * np.sqrt(1 - v ** 2 / 2), v * np.sqrt(1 - u ** 2 / 2)
    return np.stack([CHART_X * s, CHART_Y0 + CHART_Y * t], 1)


def level_sizes(size: str) -> list[int]:
    """Grid sides of the levels, finest first: n -> (n + 1) / 2."""
    sides = [GRID[size]]
    for _ in range(LEVELS - 1):
        sides.append((sides[-1] + 1) // 2)
    return sides


def down_up(n_fine: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """COO triples (rows, cols, values) of the exact down-sampling (coarse vertex = fine vertex at
    the same parameters) and up-sampling (fine vertex = mean of the ends of the coarse edge it
    halves; coarse vertices copied) between an n_fine grid and its (n_fine + 1) / 2 coarsening."""
    nc = (n_fine + 1) // 2
    ci, cj = np.meshgrid(np.arange(nc), np.arange(nc), indexing="ij")
    coarse = (ci * nc + cj).ravel()
    fine_of = (2 * ci * n_fine + 2 * cj).ravel()
    down = (coarse, fine_of, np.ones(len(coarse)))
    rows, cols, vals = [], [], []
    fi, fj = np.meshgrid(np.arange(n_fine), np.arange(n_fine), indexing="ij")
    for r, (i, j) in enumerate(zip(fi.ravel(), fj.ravel())):
        # odd offsets fall on coarse edges; (odd, odd) lies on the quad diagonal (i-1, j-1)-(i+1, j+1)
        ends = [((i - (i % 2)) // 2, (j - (j % 2)) // 2), ((i + (i % 2)) // 2, (j + (j % 2)) // 2)]
        for a, b in ends:
            rows.append(r), cols.append(a * nc + b), vals.append(0.5)
    return down, (np.array(rows), np.array(cols), np.array(vals))


def control_chart() -> np.ndarray:
    """Chart positions of the control points: their template (x, y), lips drawn apart."""
    xy = geo.TEMPLATE[CONTROL, :2].copy()
    xy[_UPPER_LIP, 1] += LIP_GAP
    xy[_LOWER_LIP, 1] -= LIP_GAP
    return xy


def _ring() -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, RING, endpoint=False)
    return np.stack([CHART_X * 1.02 * np.cos(a), CHART_Y0 + CHART_Y * 1.02 * np.sin(a)], 1)


def _dome(xy: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Depth of the base ellipsoid z = z0 + c sqrt(1 - (x/a)^2 - ((y - y0)/b)^2) (0 outside)."""
    z0, c, a, b, y0 = p
    inside = 1 - (xy[:, 0] / a) ** 2 - ((xy[:, 1] - y0) / b) ** 2
    return z0 + c * np.sqrt(np.clip(inside, 0, None))


def base_surface(xy: np.ndarray) -> np.ndarray:
    """(N, 3) base surface over the chart: (x, y, ellipsoid depth), the ellipsoid fitted by least
    squares to the template's control points, so the spline only adds the features to it."""
    from scipy.optimize import least_squares

    ctrl, z = control_chart(), geo.TEMPLATE[CONTROL, 2]
    fit = least_squares(lambda p: _dome(ctrl, p) - z, x0=[-0.6, 0.9, 1.3, 1.6, -0.1],
                        bounds=([-2, 0.1, 1.05, 1.3, -0.5], [1, 3, 3, 3, 0.5])).x
    return np.concatenate([xy, _dome(xy, fit)[:, None]], 1)


def spline_matrix(centres: np.ndarray, at: np.ndarray, smoothing: float = 1e-5) -> np.ndarray:
    """A (len(at), len(centres)) with A @ values = thin-plate spline (kernel r^2 log r, affine part)
    through values at the centres, evaluated at the points ``at``."""

    def kernel(p, q):
        r2 = ((p[:, None] - q[None]) ** 2).sum(-1)
        return 0.5 * r2 * np.log(np.maximum(r2, 1e-300))

    n = len(centres)
    poly = np.concatenate([np.ones((n, 1)), centres], 1)
    system = np.block([[kernel(centres, centres) + smoothing * np.eye(n), poly], [poly.T, np.zeros((3, 3))]])
    rhs = np.concatenate([np.eye(n), np.zeros((3, n))])
    coeffs = np.linalg.solve(system, rhs)  # (n + 3, n): spline weights and affine part per unit value
    at_poly = np.concatenate([np.ones((len(at), 1)), at], 1)
    return np.concatenate([kernel(at, centres), at_poly], 1) @ coeffs


def locate(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For 2-D points, the index of a containing triangle and the barycentric coordinates in it."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    e1, e2 = b - a, c - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    d = points[:, None] - a[None]
    l1 = (d[..., 0] * e2[:, 1] - d[..., 1] * e2[:, 0]) / det
    l2 = (e1[:, 0] * d[..., 1] - e1[:, 1] * d[..., 0]) / det
    bary = np.stack([1 - l1 - l2, l1, l2], -1)  # (P, F, 3)
    worst = bary.min(-1)
    face = worst.argmax(1)
    if (worst[np.arange(len(points)), face] < -1e-9).any():
        raise ValueError("a landmark lies outside the mesh chart")
    return face.astype(np.int64), bary[np.arange(len(points)), face]


def surface(size: str):
    """Everything the template needs at one size: level faces and sizes, the down/up COO triples,
    the chart of the finest level, the landmark embedding, and the maps ``from_control`` (V x C) and
    ``from_ring`` (V x 3 constant: the base surface) with vertices = from_control @ points[CONTROL] + from_ring, exact at
    the landmarks, and the barycentric matrix ``bary`` (68 x V) with its pseudo-inverse ``bary_pinv``."""
    sides = level_sizes(size)
    faces = [grid_faces(n) for n in sides]
    mats = [down_up(n) for n in sides[:-1]]
    xy = chart(grid_uv(sides[0]))
    lm_face, lm_bary = locate(control_chart()[: geo.N_LANDMARKS], xy, faces[0])
    bmat = np.zeros((geo.N_LANDMARKS, len(xy)))
    np.add.at(bmat, (np.repeat(np.arange(geo.N_LANDMARKS), 3), faces[0][lm_face].ravel()), lm_bary.ravel())
    spread = np.exp(-((xy[:, None] - xy[None, faces[0][lm_face].ravel()]) ** 2).sum(-1) / (2 * SPREAD ** 2))
    kb = (spread * lm_bary.ravel()).reshape(len(xy), geo.N_LANDMARKS, 3).sum(-1)  # K B^T, V x 68
    b_pinv = kb @ np.linalg.inv(bmat @ kb)
    spline = spline_matrix(np.concatenate([control_chart(), _ring()]), xy)[:, : len(CONTROL)]  # ring residual 0
    select = np.zeros((geo.N_LANDMARKS, len(CONTROL)))
    select[np.arange(geo.N_LANDMARKS), np.arange(geo.N_LANDMARKS)] = 1
    from_control = without_landmarks(spline, bmat, b_pinv) + b_pinv @ select
    from_ring = without_landmarks(base_surface(xy) - spline @ base_surface(control_chart()), bmat, b_pinv)
    return {"faces": faces, "sides": sides, "down_up": mats, "chart": xy, "landmark_faces": lm_face,
            "landmark_bary": lm_bary, "from_control": from_control, "from_ring": from_ring,
            "bary": bmat, "bary_pinv": b_pinv}


def without_landmarks(field: np.ndarray, bmat: np.ndarray, b_pinv: np.ndarray) -> np.ndarray:
    """The smoothest change (in the kernel's norm) of a vertex field (V x ...) that makes its
    barycentric landmark values zero: (I - B^+ B) field."""
    return field - b_pinv @ np.tensordot(bmat, field, axes=1)
