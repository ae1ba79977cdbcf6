"""The procedural face world: determinism, geometry, rendering and designs."""

import itertools

import numpy as np
import pytest
import torch

from mien.data.world import EXPRESSIONS, Factorial, WorldDataset, render_faces
from mien.data.world import geometry as geo
from mien.errors import ConfigError

FRONTAL = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "tx": 0.0, "ty": 0.0, "scale": 1.0,
           "glasses": 0, "beard": 0, "hat": 0, "age": 0.1}


def faces(n=8, size=64, seed=0, **fixed):
    ds = WorldDataset(n, size, seed, fixed={**FRONTAL, **fixed})
    return ds, ds.batch(range(n))


def test_same_seed_same_pixels_and_landmarks_other_seed_differs():
    a = WorldDataset(16, 64, seed=3).batch(range(16))
    b = WorldDataset(16, 64, seed=3).batch(range(16))
    c = WorldDataset(16, 64, seed=4).batch(range(16))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["landmarks3d"], b["landmarks3d"])
    assert not torch.allclose(a["image"], c["image"])


@pytest.mark.parametrize("size", [32, 64, 128])
def test_item_does_not_depend_on_its_batch(size):
    # every window bounds its shapes, so no face is clipped by the size of its batch-mates' windows
    ds = WorldDataset(48, size, seed=1)
    batch = ds.batch(range(48))
    for i in range(48):
        single = ds[i]
        assert (batch["image"][i] - single["image"]).abs().max() < 1e-4, i
        assert torch.allclose(batch["landmarks2d"][i], single["landmarks2d"], atol=1e-6)
        assert batch["factors"]["yaw"][i] == single["factors"]["yaw"]


def test_sample_dict_contract():
    ds = WorldDataset(4, 32, seed=0)
    s = ds[0]
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.float32
    assert -1 <= s["image"].min() and s["image"].max() <= 1
    assert s["landmarks2d"].shape == (68, 2) and s["landmarks3d"].shape == (68, 3)
    assert torch.equal(s["landmarks3d"][:, :2], s["landmarks2d"])
    assert s["label"] == s["factors"]["expression"]
    assert s["attributes"].tolist() == [float(s["factors"][n]) for n in ("sex", "glasses", "beard", "hat")]
    names = {f.name for f in ds.factors}
    assert set(s["factors"]) == names
    assert sum(f.name.startswith("shape_") for f in ds.factors) >= 8
    for f in ds.factors:
        v = float(s["factors"][f.name])
        assert (f.range[0] <= v <= f.range[1]) if f.kind == "continuous" else 0 <= v < len(f.values)


def pixel(images, points, size):
    """Colour at landmark positions (B x K x 2 in [0, 1]) -> B x K x 3."""
    ij = (points * size).long().clamp(0, size - 1)
    b = torch.arange(len(images))[:, None]
    return images.permute(0, 2, 3, 1)[b, ij[..., 1], ij[..., 0]]


def test_landmarks_lie_on_the_rendered_features():
    size = 128
    _, batch = faces(16, size, expression="neutral")
    lm, img = batch["landmarks2d"], batch["image"]
    pupils = torch.stack([lm[:, [37, 38, 40, 41]].mean(1), lm[:, [43, 44, 46, 47]].mean(1)], 1)
    cheeks = torch.stack([(lm[:, 41] + lm[:, 3]) / 2, (lm[:, 46] + lm[:, 13]) / 2], 1)
    lips = torch.stack([(lm[:, 50] + lm[:, 61]) / 2, (lm[:, 57] + lm[:, 66]) / 2], 1)
    skin = pixel(img, cheeks, size)
    assert ((pixel(img, pupils, size) - skin).abs().sum(-1) > 0.5).all()  # dark pupil on skin
    lip_vs_skin = (pixel(img, lips, size) - skin).abs().sum(-1)
    assert (lip_vs_skin > 0.05).float().mean() > 0.9
    # the jaw outline separates the face from what lies outside it
    centre = lm[:, 30:31]
    inside = lm[:, 2:15] + 0.03 * (centre - lm[:, 2:15])
    outside = lm[:, 2:15] - 0.03 * (centre - lm[:, 2:15])
    diff = (pixel(img, inside, size) - pixel(img, outside, size)).abs().sum(-1)
    assert (diff > 0.02).float().mean() > 0.8


def expression_landmarks(expression, intensity=1.0):
    ds = WorldDataset(6, 64, 0, fixed={**FRONTAL, "expression": expression, "intensity": intensity})
    return ds.batch(range(6))["landmarks2d"]  # image coordinates: y grows downwards


def test_expressions_move_landmarks_the_right_way():
    neutral = expression_landmarks("neutral")
    dy = lambda e, idx: (expression_landmarks(e)[:, idx, 1] - neutral[:, idx, 1])  # noqa: E731
    assert (dy("happy", [48, 54]) < -0.02).all()  # corners up
    assert (dy("sad", [48, 54]) < 0).sum() == 0 and (dy("sad", [48, 54]) > 0.02).all()  # corners down
    surprise = expression_landmarks("surprise")
    assert (surprise[:, 17:27, 1] < neutral[:, 17:27, 1] - 0.01).all()  # brows up
    gap = lambda lm: lm[:, 66, 1] - lm[:, 62, 1]  # noqa: E731
    assert (gap(surprise) > gap(neutral) + 0.05).all()  # mouth open
    contempt = expression_landmarks("contempt") - neutral
    assert (contempt[:, 54].norm(dim=-1) > 0.03).all() and (contempt[:, 48].norm(dim=-1) < 1e-6).all()
    anger = expression_landmarks("anger") - neutral
    assert (anger[:, [21, 22], 1] > 0.03).all()  # inner brows down
    half = expression_landmarks("happy", 0.5) - neutral
    assert torch.allclose(half, 0.5 * (expression_landmarks("happy") - neutral), atol=1e-5)


def test_yaw_shifts_the_nose_and_compresses_the_far_side():
    base = {**FRONTAL, "expression": "neutral"}
    lms = {}
    for yaw in (-30.0, 0.0, 30.0):
        lms[yaw] = WorldDataset(6, 64, 0, fixed={**base, "yaw": yaw}).batch(range(6))["landmarks2d"]
    mid = lambda lm: (lm[:, 0, 0] + lm[:, 16, 0]) / 2  # noqa: E731
    assert (lms[30.0][:, 30, 0] - mid(lms[30.0]) > 0.03).all()  # nose tip turns to image right
    assert (lms[-30.0][:, 30, 0] - mid(lms[-30.0]) < -0.03).all()
    width = lambda lm, a, b: (lm[:, b, 0] - lm[:, a, 0])  # noqa: E731
    right_eye, left_eye = width(lms[30.0], 36, 39), width(lms[30.0], 42, 45)
    assert (left_eye < 0.85 * right_eye).all()  # the image-right eye is the far one
    frontal = lms[0.0]
    assert torch.allclose(width(frontal, 36, 39), width(frontal, 42, 45), atol=1e-5)
    ear_gap = lambda lm: lm[:, 16, 0] - lm[:, 30, 0]  # noqa: E731
    assert (ear_gap(lms[30.0]) < ear_gap(frontal)).all()


def test_attributes_change_their_region():
    _, plain = faces(6, 64, expression="neutral")
    lm = plain["landmarks2d"]
    for attr, region in (("glasses", lambda img, lm: img[..., 20:34, :]),
                         ("beard", lambda img, lm: img[..., 44:58, 16:48]),
                         ("hat", lambda img, lm: img[..., 0:16, :])):
        _, on = faces(6, 64, expression="neutral", **{attr: 1})
        changed = (region(on["image"], lm) - region(plain["image"], lm)).abs().mean(dim=(1, 2, 3))
        assert (changed > 0.02).all(), attr


def test_every_size_from_32_to_256_renders_the_same_geometry():
    outs = {s: WorldDataset(3, s, 0).batch(range(3)) for s in (32, 100, 256)}
    for s, b in outs.items():
        assert b["image"].shape == (3, 3, s, s) and torch.isfinite(b["image"]).all()
    assert torch.allclose(outs[32]["landmarks2d"], outs[256]["landmarks2d"], atol=1e-6)
    with pytest.raises(ConfigError):
        WorldDataset(3, 16, 0)


def test_factorial_design_has_exactly_the_requested_cells():
    design = Factorial(n_identities=3, expressions=("neutral", "happy", "anger"), intensities=(0.5, 1.0),
                       views=(0.0, 30.0))
    ds = WorldDataset(None, 32, 0, design=design)
    assert len(ds) == 3 * (1 + 2 * 2) * 2
    f = ds.draw(range(len(ds)))
    cells = {(int(i), EXPRESSIONS[int(e)], float(t), float(y))
             for i, e, t, y in zip(f["identity"], f["expression"], f["intensity"], f["yaw"])}
    expected = {(i, "neutral", 0.0, y) for i in range(3) for y in (0.0, 30.0)}
    expected |= {(i, e, t, y) for i, e, t, y in itertools.product(range(3), ("happy", "anger"), (0.5, 1.0), (0.0, 30.0))}
    assert cells == expected and len(cells) == len(ds)
    # identity factors are constant within an identity and differ between identities
    shape = f["shape_face_width"]
    for i in range(3):
        assert len(set(shape[f["identity"] == i].tolist())) == 1
    assert len(set(shape.tolist())) == 3
    assert len(WorldDataset(design="factorial", size=32)) == 100 * 25 * 2


def test_identity_pool_repeats_identities():
    ds = WorldDataset(200, 32, 0, n_identities=5)
    f = ds.draw(range(200))
    assert set(f["identity"].tolist()) == set(range(5))
    for i in range(5):
        sel = f["identity"] == i
        assert len(set(f["shape_nose_length"][sel].tolist())) == 1
        assert len(set(f["yaw"][sel].tolist())) > 1


def test_correlated_design_couples_factors_and_keeps_marginals():
    n = 4000
    corr = WorldDataset(n, 32, 0, design="correlated", correlations={("age", "glasses"): 0.7}).draw(range(n))
    iid = WorldDataset(n, 32, 0).draw(range(n))
    r = lambda f: np.corrcoef(f["age"].numpy(), f["glasses"].numpy())[0, 1]  # noqa: E731
    assert r(corr) > 0.4 and abs(r(iid)) < 0.06
    assert abs(corr["glasses"].float().mean() - 0.3) < 0.03 and abs(corr["age"].mean() - 0.5) < 0.03


def test_weights_replace_a_discrete_marginal_and_leave_other_factors_alone():
    n = 6000
    weighted = WorldDataset(n, 32, 0, weights={"expression": {"happy": 0.5}, "glasses": {"yes": 0.8}}).draw(range(n))
    plain = WorldDataset(n, 32, 0).draw(range(n))
    share = torch.bincount(weighted["expression"], minlength=len(EXPRESSIONS)).double() / n
    others = (1 - 0.5) / (len(EXPRESSIONS) - 1)  # unnamed values share the rest equally
    expected = torch.full((len(EXPRESSIONS),), others, dtype=torch.float64)
    expected[EXPRESSIONS.index("happy")] = 0.5
    assert (share - expected).abs().max() < 0.02
    assert abs(weighted["glasses"].float().mean() - 0.8) < 0.02
    assert torch.equal(weighted["yaw"], plain["yaw"]) and torch.equal(weighted["sex"], plain["sex"])


def test_lens_tint_darkens_the_lenses_only_with_glasses():
    base = {"expression": "neutral", "glasses": 1, "glasses_shape": 0}
    _, clear = faces(4, 64, glasses_tint=0.0, **base)
    _, dark = faces(4, 64, glasses_tint=1.0, **base)
    eyes = lambda img: img[..., 20:34, 16:48].mean(dim=(1, 2, 3))  # noqa: E731
    assert (eyes(dark["image"]) < eyes(clear["image"]) - 0.05).all()
    _, bare_clear = faces(4, 64, expression="neutral", glasses=0, glasses_tint=0.0)
    _, bare_dark = faces(4, 64, expression="neutral", glasses=0, glasses_tint=1.0)
    assert torch.equal(bare_clear["image"], bare_dark["image"])


def test_aux_points_are_a_linear_function_of_landmarks():
    ds = WorldDataset(8, 32, 0)
    f = ds.draw(range(8))
    coeffs = torch.stack([f[f"shape_{m}"] for m in geo.SHAPE_MODES], 1)
    shape = geo.neutral_shape(coeffs, f["sex"], f["age"]) + geo.expression_displacement(f["expression"], f["intensity"])
    assert torch.allclose(geo.aux_from_landmarks(shape[:, :68]), shape, atol=1e-4)
    img_a = render_faces(f, 64)[0]
    img_b = render_faces(f, 64, landmarks=shape[:, :68])[0]
    assert (img_a - img_b).abs().max() < 0.05


@pytest.mark.parametrize("kwargs, match", [
    ({"design": "grid"}, "unknown design"),
    ({"fixed": {"smile": 1}}, "unknown world factor"),
    ({"fixed": {"expression": "joy"}}, "has no value"),
    ({"ranges": {"yaw": (-90, 10)}}, "must lie inside"),
    ({"weights": {"yaw": {"0": 0.5}}}, "discrete factor"),
    ({"weights": {"expression": {"joy": 0.5}}}, "has no value"),
    ({"weights": {"expression": {"happy": 0.7, "sad": 0.6}}}, "summing to at most 1"),
    ({"weights": {"glasses": {"yes": 0.5, "no": 0.4}}}, "exactly 1"),
    ({"weights": {"glasses": {"yes": "many"}}}, "not a number"),
    ({"design": "correlated", "correlations": {("age", "glasses"): 0.99, ("age", "beard"): 0.99,
                                               ("glasses", "beard"): -0.99}}, "valid correlation"),
    ({"design": "factorial", "n": 10**6}, "not possible"),
])
def test_bad_world_options_give_clear_errors(kwargs, match):
    kwargs = dict(kwargs)
    n = kwargs.pop("n", 4)
    with pytest.raises(ConfigError, match=match):
        ds = WorldDataset(n, 32, 0, **kwargs)
        ds.draw(range(4))
