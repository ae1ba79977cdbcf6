"""Reading real photographs safely: one RGB uint8 array per file, whatever the file holds.

Phones and cameras write JPEGs whose pixels are stored sideways with an EXIF orientation tag,
print workflows write CMYK, scanners and HDR tools write 16-bit PNGs, and web images carry
palettes and alpha (dropped). :func:`read_rgb` undoes the orientation (EXIF 2.3, tag 0x0112, via Pillow's
``ImageOps.exif_transpose``), converts every mode to 8-bit RGB (16-bit greyscale is scaled by
1/257, not clipped), and refuses files it cannot decode or that are larger than
:data:`MAX_SIDE` pixels on a side, before decoding them, with a :class:`DataError` that says what
to do. Only numpy and Pillow are used, so worker processes stay light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mien.errors import DataError

MAX_SIDE = 8192


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode (CMYK, 16-bit I;16 / I, float F, palette; alpha dropped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        depth = 65535.0 if image.mode != "I" or np.asarray(image).max() > 255 else 255.0
        grey = np.asarray(image, dtype=np.float64) * (255.0 / depth)
        image = Image.fromarray(np.clip(grey, 0, 255).round().astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).round().astype(np.uint8), "L")
    return image.convert("RGB")  # alpha is dropped, as mien's folder reader always has


def read_rgb(path) -> np.ndarray:
    """The upright H x W x 3 uint8 pixels of image file ``path``."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if max(im.size) > MAX_SIDE:
                raise DataError(f"{path} is {im.size[0]}x{im.size[1]} px; mien reads images up to {MAX_SIDE} px "
                                "on a side: downscale it first")
            im.load()
            upright = ImageOps.exif_transpose(im)
            return np.asarray(to_rgb(upright))
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not an image; pass an image file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path} is not an image Pillow can read; pass a PNG, JPEG, BMP or WebP file") from None
    except DataError:
        raise
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError... on truncated or corrupt data
        raise DataError(f"cannot decode {path} ({e}); the file is truncated or corrupt: replace it") from None


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` x ``size`` (bicubic, uint8 RGB)."""
    h, w = pixels.shape[:2]
    side = min(h, w)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC, box=box))
