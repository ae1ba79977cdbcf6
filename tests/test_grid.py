import numpy as np
import pytest
import torch
from PIL import Image

from mien.errors import DataError
from mien.report.grid import REGIONS, image_grid, save_grid, to_uint8


def test_to_uint8_range_and_grey_broadcast():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    u = to_uint8(x)
    assert u.shape == (1, 2, 2, 3) and u.dtype == np.uint8
    assert u[0, :, :, 0].tolist() == [[0, 128], [255, 255]]
    assert (u[..., 0] == u[..., 2]).all()
    rgb = to_uint8(torch.zeros(2, 3, 5, 4))
    assert rgb.shape == (2, 5, 4, 3)
    with pytest.raises(DataError, match="B×C×H×W"):
        to_uint8(torch.zeros(3, 5, 4))


@pytest.mark.parametrize("b,nrow,pad,scale", [(7, None, 2, 1), (7, 4, 0, 2), (5, 5, 3, 3), (1, None, 1, 1)])
def test_grid_size(b, nrow, pad, scale):
    h, w = 8, 6
    cols = nrow or int(np.ceil(np.sqrt(b)))
    rows = int(np.ceil(b / cols))
    im = image_grid(torch.zeros(b, 3, h, w), nrow=nrow, pad=pad, scale=scale)
    assert im.size == (cols * w * scale + (cols + 1) * pad, rows * h * scale + (rows + 1) * pad)


def test_tiles_are_placed_in_order_with_padding():
    images = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
    a = np.asarray(image_grid(images, nrow=3, pad=2, scale=2))
    assert a[0, 0].tolist() == [0, 0, 0]  # padding
    for k, value in enumerate((0, 128, 255)):
        x0 = 2 + k * (8 + 2)
        assert (a[2:10, x0 : x0 + 8] == value).all()


def test_landmark_dots_mark_their_positions():
    images = -torch.ones(2, 3, 32, 32)
    landmarks = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    plain = np.asarray(image_grid(images, nrow=2, pad=2, scale=4))
    dotted = np.asarray(image_grid(images, nrow=2, pad=2, scale=4, landmarks=landmarks))
    assert plain.max() == 0 and dotted.max() > 0
    colour = {i: c for start, end, c in REGIONS.values() for i in range(start, end)}
    for b in range(2):
        for i in (0, 20, 30, 40, 60):
            x = 2 + b * (128 + 2) + int(landmarks[b, i, 0] * 128)
            y = 2 + int(landmarks[b, i, 1] * 128)
            assert tuple(dotted[y, x]) in set(colour.values())
    lonely = torch.full((1, 68, 2), float("nan"))
    lonely[0, 50] = torch.tensor([0.25, 0.75])
    one = np.asarray(image_grid(images[:1], pad=0, scale=4, landmarks=lonely))
    assert tuple(one[96, 32]) == REGIONS["mouth"][2]
    assert one[:80].max() == 0  # NaN points are not drawn


def test_labels_add_a_band_with_text():
    images = -torch.ones(3, 3, 16, 16)
    without = image_grid(images, nrow=3)
    labelled = image_grid(images, nrow=3, labels=["a", "bb", "ccc"])
    assert labelled.size[0] == without.size[0] and labelled.size[1] > without.size[1]
    band = np.asarray(labelled)[2 + 16 :, :]
    assert band.max() > 0
    with pytest.raises(DataError, match="one label per image"):
        image_grid(images, labels=["a"])


def test_bad_arguments():
    with pytest.raises(DataError, match="scale"):
        image_grid(torch.zeros(1, 3, 4, 4), scale=0)
    with pytest.raises(DataError, match="landmarks"):
        image_grid(torch.zeros(2, 3, 4, 4), landmarks=torch.zeros(1, 68, 2))


def test_save_grid_writes_png(tmp_path):
    path = save_grid(torch.zeros(4, 1, 8, 8), tmp_path / "sub" / "grid.png", nrow=2, pad=1)
    with Image.open(path) as im:
        assert im.size == (2 * 8 + 3, 2 * 8 + 3) and im.mode == "RGB"
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.png"]
