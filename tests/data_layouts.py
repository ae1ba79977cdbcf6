"""Tiny data sets in the field's layouts, built from world renders so that every attribute, label
and landmark is known exactly (shared by the format, prepare and landmark tests)."""

import csv
import json

import numpy as np
from PIL import Image

from mien.data.world import EXPRESSIONS, WorldDataset

CELEBA_ATTRS = ("Eyeglasses", "Male", "No_Beard", "Smiling", "Wearing_Hat")
FER_CODE = {"anger": 0, "disgust": 1, "fear": 2, "happy": 3, "sad": 4, "surprise": 5, "neutral": 6}


def world(n, size=64, seed=0):
    """uint8 images N x S x S x 3, 68-point landmarks in pixels, factor arrays."""
    b = WorldDataset(n, size, seed).batch(range(n))
    images = ((b["image"].permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    factors = {k: v.numpy() for k, v in b["factors"].items()}
    return images, b["landmarks2d"].numpy() * size, factors


def celeba_attrs(f, i):
    return {"Eyeglasses": int(f["glasses"][i]), "Male": int(f["sex"][i]), "No_Beard": 1 - int(f["beard"][i]),
            "Smiling": int(EXPRESSIONS[f["expression"][i]] == "happy"), "Wearing_Hat": int(f["hat"][i])}


def five_points(lm):
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def make_celeba(root, n=6, csv_form=False, size=64, seed=0):
    images, lms, f = world(n, size, seed)
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name, image in zip(names, images):
        Image.fromarray(image).save(folder / name, quality=95)
    attrs = [[1 if celeba_attrs(f, i)[a] else -1 for a in CELEBA_ATTRS] for i in range(n)]
    marks = [five_points(lm).round().astype(int).ravel().tolist() for lm in lms]
    lm_names = [f"{p}_{a}" for p in ("lefteye", "righteye", "nose", "leftmouth", "rightmouth") for a in "xy"]
    if csv_form:
        _csv(root / "list_attr_celeba.csv", ["image_id", *CELEBA_ATTRS], [[n, *a] for n, a in zip(names, attrs)])
        _csv(root / "list_eval_partition.csv", ["image_id", "partition"], [[n, i % 3] for i, n in enumerate(names)])
        _csv(root / "list_landmarks_align_celeba.csv", ["image_id", *lm_names], [[n, *m] for n, m in zip(names, marks)])
    else:
        _txt(root / "list_attr_celeba.txt", [[str(n)], list(CELEBA_ATTRS), *([n, *a] for n, a in zip(names, attrs))])
        _txt(root / "list_eval_partition.txt", [[n, i % 3] for i, n in enumerate(names)])
        _txt(root / "list_landmarks_align_celeba.txt", [[str(n)], lm_names, *([n, *m] for n, m in zip(names, marks))])
    return names, f, lms


def make_ffhq(root, n=4, size=64, seed=1, with_json=True):
    images, lms, _ = world(n, size, seed)
    entries = {}
    for i, (image, lm) in enumerate(zip(images, lms)):
        rel = f"thumbnails{size}x{size}/00000/{i:05d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / rel)
        entries[str(i)] = {"category": "training" if i % 2 == 0 else "validation",
                           "thumbnail": {"file_path": rel, "pixel_size": [size, size], "face_landmarks": lm.tolist()}}
    if with_json:
        (root / "ffhq-dataset-v2.json").write_text(json.dumps(entries))
    return lms


def make_affectnet(root, n=5, size=64, seed=2, extra_codes=(8, 9, 10), missing=1, drop=()):
    images, lms, f = world(n, size, seed)
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
              "expression", "valence", "arousal"]
    header = [h for h in header if h not in drop]
    rows = []
    for i, (image, lm) in enumerate(zip(images, lms)):
        rel = f"{i % 2 + 1}/{i:04d}.png"
        (root / "Manually_Annotated_Images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "Manually_Annotated_Images" / rel)
        x0, y0 = lm.min(0).round()
        x1, y1 = lm.max(0).round()
        cells = {"subDirectory_filePath": rel, "face_x": int(x0), "face_y": int(y0), "face_width": int(x1 - x0),
                 "face_height": int(y1 - y0), "facial_landmarks": ";".join(f"{v:.2f}" for v in lm.ravel()),
                 "expression": int(f["expression"][i]), "valence": round(float(f["intensity"][i]) - 0.5, 3),
                 "arousal": round(float(f["yaw"][i]) / 35, 3)}
        rows.append([cells[h] for h in header])
    for k, code in enumerate(extra_codes):  # none / uncertain / no face: skipped, images present
        change = {"subDirectory_filePath": "1/0000.png", "expression": code, "valence": -2, "arousal": -2}
        rows.append([change.get(h, c) for h, c in zip(header, rows[0])])
    for k in range(missing):
        rows.append([f"1/gone{k}.png" if h == "subDirectory_filePath" else c for h, c in zip(header, rows[0])])
    _csv(root / "training.csv", header, rows[:3] + rows[n:])
    _csv(root / "validation.csv", header, rows[3:n])
    return f, lms


def make_fer(root, n=5, seed=3):
    images, _, f = world(n, 48, seed)
    grey = (images.astype(np.float64) @ [0.299, 0.587, 0.114]).round().astype(np.uint8)
    usage = ("Training", "PublicTest", "PrivateTest")
    rows = [[FER_CODE.get(EXPRESSIONS[f["expression"][i]], 6), " ".join(map(str, grey[i].ravel())), usage[i % 3]]
            for i in range(n)]
    rows.append([3, "1 2 3", "Training"])  # not 48 x 48
    _csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    return grey, f


def _csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])


def _txt(path, rows):
    path.write_text("".join(" ".join(map(str, r)) + "\n" for r in rows))
