"""Mesh pictures: z-buffer visibility, Lambert shading, heat-map colours, and `mien data show` on mesh data."""

import numpy as np
from PIL import Image

from model_helpers import run_main
from mien.report.mesh import AMBIENT, LIGHT, SKIN, colormap, error_heatmaps, rasterise, render_mesh

SQUARE = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float64)
SQUARE_FACES = np.array([[0, 1, 2], [0, 2, 3]])


def test_the_nearest_triangle_wins_whatever_the_order():
    near = SQUARE * [0.5, 0.5, 1] + [0, 0, 0.5]
    vertices = np.concatenate([SQUARE, near])
    faces = np.concatenate([SQUARE_FACES, SQUARE_FACES + 4])
    colours = np.concatenate([np.tile([1.0, 0, 0], (4, 1)), np.tile([0, 0, 1.0], (4, 1))])
    frame = (np.zeros(3), 1.0)
    for order in (faces, faces[::-1]):
        image = rasterise(vertices, order, colours, 16, frame)
        assert np.allclose(image[8, 8], [0, 0, 1]) and np.allclose(image[1, 1], [1, 0, 0])


def test_lambert_shading_of_a_plane_facing_the_camera():
    image = render_mesh(SQUARE * [1, 1, 1], SQUARE_FACES, size=20, frame=(np.zeros(3), 2.0))
    expected = np.asarray(SKIN) * (AMBIENT + (1 - AMBIENT) * LIGHT[2]) * 255
    assert np.abs(image[10, 10].astype(float) - expected).max() <= 1
    assert (image[0, 0] == 255).all()  # outside the square: the white background


def test_heat_map_colours_follow_the_errors_and_carry_a_bar():
    errors = np.array([[0.0, 0.0, 2.0, 0.0]])
    picture = error_heatmaps(SQUARE[None], errors, SQUARE_FACES, size=64)
    assert picture.width > 64 + 20  # tile plus the colour bar
    tile = np.asarray(picture)[2:66, 2:66].astype(float)
    top_right, bottom_left = tile[3, 60], tile[60, 3]  # near vertex 2 (error 2 = vmax), near vertex 0 (0)
    shade = 255 * (AMBIENT + (1 - AMBIENT) * LIGHT[2])
    hot, cold = colormap([2.0], 2.0)[0] * shade, colormap([0.0], 2.0)[0] * shade
    assert np.linalg.norm(top_right - hot) < 30 < np.linalg.norm(top_right - cold)
    assert np.linalg.norm(bottom_left - cold) < 30 < np.linalg.norm(bottom_left - hot)
    assert np.allclose(colormap([0.0, 1.0], 1.0), [[0.267, 0.005, 0.329], [0.993, 0.906, 0.144]])


def test_data_show_draws_the_mesh_world(tmp_path, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "data", "show", "mesh_sequences", "--n", 1, "--out", tmp_path / "seq.gif")
    assert code == 0, err
    gif = Image.open(tmp_path / "seq.gif")
    assert gif.n_frames > 10 and gif.size == (128, 128)
    code, out, err = run_main(monkeypatch, capsys, "data", "show", "mesh_sequences", "--out", tmp_path / "seq.png")
    assert code == 2 and ".gif" in err


def test_far_away_and_off_screen_triangles_are_skipped_not_fatal():
    """A mesh with huge coordinates (an unclipped sample, retargeted) draws what lies in the frame."""
    far = np.array([[3e300, -3e300, 0.0], [1e30, 1e30, 5.0], [40.0, 40.0, 0.0]])
    vertices = np.concatenate([SQUARE * 0.5, far])
    faces = np.concatenate([SQUARE_FACES, [[0, 1, 4], [4, 5, 6], [5, 6, 1]]])
    colours = np.tile([0.0, 0, 1.0], (7, 1))
    image = rasterise(vertices, faces, colours, 16, (np.zeros(3), 1.0))
    assert np.allclose(image[8, 8], [0, 0, 1]) and np.allclose(image[0, 0], [1, 1, 1])  # square kept, rest blank
    blank = rasterise(SQUARE + [10, 10, 0], SQUARE_FACES, colours[:4], 16, (np.zeros(3), 1.0))
    assert np.allclose(blank, 1.0)  # wholly off the picture: the background
    import pytest
    from mien.errors import DataError
    assert render_mesh(vertices, faces, size=16).shape == (16, 16, 3)  # framed on the far vertices: no crash
    with pytest.raises(DataError, match="cannot be framed"):  # an extent that overflows: one line
        render_mesh(np.array([[-1.7e308, 0, 0], [1.7e308, 1, 0], [0, -1, 0]]), [[0, 1, 2]], size=16)
