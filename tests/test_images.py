"""Reading real photos (mien.data.images) and FFHQ alignment (mien.data.align), without mediapipe:
orientation, colour modes, bad files, and the exact geometry of the aligned crop."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mien.data.align import align_face, ffhq_quad
from mien.data.images import MAX_SIDE, read_rgb
from mien.errors import DataError

from data_layouts import world


def gradient(w=40, h=24):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 6, y * 10, (x + y) * 3], -1).astype(np.uint8)


def test_exif_rotated_photo_is_read_upright(tmp_path):
    upright = gradient()
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as a sideways camera stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    stored.save(tmp_path / "phone.png", exif=exif)
    np.testing.assert_array_equal(read_rgb(tmp_path / "phone.png"), upright)


def test_cmyk_16bit_palette_and_alpha_become_8bit_rgb(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = read_rgb(tmp_path / "cmyk.jpg")
    assert red.shape == (6, 8, 3) and red.dtype == np.uint8 and red[..., 0].min() > 240 and red[..., 1:].max() < 15
    deep = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    np.testing.assert_array_equal(read_rgb(tmp_path / "deep.png")[0, :, 0], [0, 128, 255])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert read_rgb(tmp_path / "alpha.png")[0, 0].tolist() == [255, 0, 0]  # alpha dropped
    Image.fromarray(gradient()).convert("P").save(tmp_path / "palette.png")
    assert read_rgb(tmp_path / "palette.png").shape == (24, 40, 3)


def test_bad_files_give_one_clear_error(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(gradient(64, 64)).save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DataError, match="cut.jpg .*truncated or corrupt"):
        read_rgb(tmp_path / "cut.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError, match="not an image Pillow can read"):
        read_rgb(tmp_path / "notes.jpg")
    with pytest.raises(DataError, match="does not exist"):
        read_rgb(tmp_path / "gone.png")


def test_a_10000_px_image_is_refused_before_it_is_decoded(tmp_path):
    Image.new("1", (10_000, 10_000)).save(tmp_path / "huge.png")
    with pytest.raises(DataError, match=f"10000x10000 px; mien reads images up to {MAX_SIDE} px"):
        read_rgb(tmp_path / "huge.png")


def test_ffhq_square_is_centred_below_the_eyes_and_carries_landmarks_exactly():
    images, lms, _ = world(2, 128, seed=5)
    for image, lm in zip(images, lms):
        crop, points = align_face(image, lm, 64)
        assert crop.shape == (64, 64, 3)
        eyes = (points[36:42].mean(0) + points[42:48].mean(0)) / 2
        mouth = (points[48] + points[54]) / 2
        np.testing.assert_allclose(eyes + 0.1 * (mouth - eyes), [0.5, 0.5], atol=1e-5)  # the centre c
        # eye-to-eye and rotated eye-to-mouth average to the x axis: the face is upright
        x = (points[42:48].mean(0) - points[36:42].mean(0)) - np.flipud(mouth - eyes) * [-1, 1]
        assert abs(x[1]) < 1e-5 * abs(x[0])


def test_aligned_pixels_land_where_the_landmarks_say():
    """Bright dots at three landmarks of a dark image appear in the crop at the carried landmarks."""
    _, lms, _ = world(1, 256, seed=6)
    lm = lms[0]
    image = np.zeros((256, 256, 3), np.uint8)
    for k in (30, 36, 54):
        x, y = lm[k].astype(int)
        image[y - 2:y + 3, x - 2:x + 3] = 255
    crop, points = align_face(image, lm, 128)
    for k in (30, 36, 54):
        x, y = lm[k].astype(int)
        centre = np.array([x + 0.5, y + 0.5])  # the dot's centre, continuous pixel coordinates
        origin, ex, ey = ffhq_quad(lm)
        expected = np.linalg.solve(np.stack([ex, ey], 1), centre - origin) * 128
        u, v = expected.round().astype(int)
        window = crop[v - 3:v + 4, u - 3:u + 4, 0].astype(float)
        yy, xx = np.mgrid[v - 3:v + 4, u - 3:u + 4]
        found = np.array([(xx * window).sum(), (yy * window).sum()]) / window.sum() + 0.5
        np.testing.assert_allclose(found, expected, atol=0.5)
        np.testing.assert_allclose(points[k] * 128, np.linalg.solve(np.stack([ex, ey], 1), lm[k] - origin) * 128,
                                   atol=1e-3)


def test_alignment_pads_a_face_at_the_border_and_takes_five_points():
    images, lms, _ = world(1, 64, seed=7)
    cut = images[0][:, :40]  # the right of the face cut off: the square leaves the image
    crop, _ = align_face(cut, lms[0], 32)
    assert crop.shape == (32, 32, 3)
    assert crop[:, -4:].std() > 0  # reflected pixels, not a black fill
    assert (crop[:, -4:].reshape(-1, 3) != 0).any(axis=1).all()
    five = np.stack([lms[0][36:42].mean(0), lms[0][42:48].mean(0), lms[0][30], lms[0][48], lms[0][54]])
    for a, b in zip(ffhq_quad(five), ffhq_quad(lms[0])):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_the_folder_reader_reads_photos_the_same_way(tmp_path):
    from mien.data.folder import FolderDataset

    Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)).save(tmp_path / "deep.png")  # 16-bit mid grey
    image = FolderDataset(tmp_path)[0]["image"]
    assert torch.allclose(image, torch.full_like(image, 128 / 127.5 - 1), atol=1e-6)  # scaled, not clipped to white
