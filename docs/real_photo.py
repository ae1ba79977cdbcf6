"""Draws docs/real_photo.png: a real photograph (scikit-image's astronaut, Eileen Collins, NASA,
public domain) detected, FFHQ-aligned with its 68 landmarks, reconstructed by the zoo VAE and
edited by the zoo LDM (DDIM inversion to t0 = 500 and guided regeneration, as `mien edit`).
Needs mien[landmarks] and scikit-image: python docs/real_photo.py"""

import torch
from PIL import Image, ImageDraw
from skimage import data

import mien
from mien import zoo
from mien.control.invert import edit
from mien.data.photo import load_face

TILE, TARGETS = 128, ("happy", "surprise", "sad")


def tile(x: torch.Tensor) -> Image.Image:
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(u8).resize((TILE, TILE), Image.Resampling.NEAREST)


def main(path="docs/real_photo.png"):
    Image.fromarray(data.astronaut()).save("/tmp/astronaut.jpg", quality=92)
    big, x = load_face("/tmp/astronaut.jpg", TILE), load_face("/tmp/astronaut.jpg", 32)["image"][None]
    aligned = tile(big["image"])
    draw = ImageDraw.Draw(aligned)
    for u, v in big["landmarks2d"].numpy() * TILE:
        draw.ellipse([u - 1, v - 1, u + 1, v + 1], fill=(255, 40, 40))
    vae, ldm = mien.load(zoo.path("vae")).eval(), mien.load(zoo.path("ldm")).eval()
    with torch.no_grad():
        edits = [edit(ldm, x, "neutral", t, t0=500, steps=40, guidance=4.0, generator=torch.Generator().manual_seed(0))
                 for t in TARGETS]
        tiles = [Image.open("/tmp/astronaut.jpg").resize((TILE, TILE)), aligned, tile(x[0]),
                 tile(vae.reconstruct(x)[0]), *(tile(e[0]) for e in edits)]
    labels = ["photo", "aligned + 68 points", "input, 32 px", "zoo vae", *(f"zoo ldm: {t}" for t in TARGETS)]
    sheet = Image.new("RGB", (TILE * len(tiles), TILE + 16), "white")
    for i, (t, label) in enumerate(zip(tiles, labels)):
        sheet.paste(t, (i * TILE, 16))
        ImageDraw.Draw(sheet).text((i * TILE + 3, 2), label, fill="black")
    sheet.save(path)


if __name__ == "__main__":
    main()
