"""mien.control: the Direction object and its files, the one apply/traverse over latent spaces, the
estimators' scikit-learn conventions, inversion and the Pikoulis §4.4 edit against the sampler."""

import json
import struct

import pytest
import torch
from model_helpers import SMALL

from safetensors.torch import save_file

from mien.control import AxisDirection, Direction, MeanDifference, apply, edit, invert, record_h, render, traverse
from mien.diffusion import sampling
from mien.diffusion.hspace import HSpace
from mien.errors import ConfigError, DataError
from mien.models import build_model

DIFFUSION = {"name": "diffusion", "image_size": 16, "condition": "expression", "num_classes": 3, "sample_steps": 4,
             "denoiser": {"preset": "tiny", "channels": [8, 16], "norm_groups": 4}}


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_model({"name": "vae", **SMALL, "latent_dim": 5}).eval()


@pytest.fixture(scope="module")
def diffusion():
    torch.manual_seed(0)
    return build_model(DIFFUSION).eval()


def images(n, seed=1, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- the Direction and its files --------------------------------------------------------------------------
def test_direction_round_trip_is_bit_identical(tmp_path):
    g = torch.Generator().manual_seed(0)
    for d in (Direction("z", torch.randn(3, 7, generator=g, dtype=torch.float64), sign="towards happy",
                        provenance={"method": "mean_difference", "data": "world:512", "seed": 3, "positive": "happy"}),
              Direction("h", torch.randn(1, 4, 16, 2, 2, generator=g).half(), timesteps=[750, 500, 250, 0],
                        sign="older", provenance={"method": "pca", "component": 4}),
              Direction("w+", torch.randn(2, 8, generator=g), layers=[0, 1, 2])):
        folder = d.save(tmp_path / d.space)
        assert sorted(p.name for p in folder.iterdir()) == ["direction.json", "vectors.safetensors"]
        back = Direction.load(folder)
        assert back.vectors.dtype == d.vectors.dtype and torch.equal(back.vectors, d.vectors)
        assert (back.space, back.layers, back.timesteps, back.sign, back.provenance) == \
               (d.space, d.layers, d.timesteps, d.sign, d.provenance)
        assert json.loads((folder / "direction.json").read_text())["provenance"] == d.provenance


def _json_with(**fields):
    """A damage that rewrites direction.json with ``fields`` changed."""

    def damage(folder):
        meta = json.loads((folder / "direction.json").read_text())
        (folder / "direction.json").write_text(json.dumps({**meta, **fields}))
    return damage


DAMAGES = {  # each writes one hostile or corrupt file into a saved direction folder
    "json garbage": lambda f: (f / "direction.json").write_bytes(b"\xff\x00{not json"),
    "json list": lambda f: (f / "direction.json").write_text("[1, 2]"),
    "foreign format": _json_with(format="other"),
    "malformed field": _json_with(timesteps="all"),
    "malformed list": _json_with(timesteps=[1, "0"]),
    "missing field": lambda f: (f / "direction.json").write_text(json.dumps({"format": "mien.direction/1"})),
    "inconsistent": _json_with(timesteps=[1, 2, 3]),
    "tensor garbage": lambda f: (f / "vectors.safetensors").write_bytes(b"\x00" * 64),
    "hostile header": lambda f: (f / "vectors.safetensors").write_bytes(struct.pack("<Q", 2 ** 60) + b"{}"),
    "pickle": lambda f: torch.save({"vectors": torch.zeros(1, 2, 4)}, f / "vectors.safetensors"),
    "no vectors key": lambda f: save_file({"other": torch.zeros(1, 2, 4)}, f / "vectors.safetensors"),
    "missing file": lambda f: (f / "vectors.safetensors").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_corrupt_or_hostile_direction_files_give_one_line_data_errors(tmp_path, damage):
    folder = Direction("h", torch.ones(1, 2, 4), timesteps=[10, 0]).save(tmp_path / "d")
    DAMAGES[damage](folder)
    with pytest.raises(DataError) as e:
        Direction.load(folder)
    message = str(e.value)
    assert "\n" not in message and str(folder) in message
    assert "Direction.save" in message


def test_direction_rejects_bad_vectors_and_unserialisable_provenance(tmp_path):
    with pytest.raises(ConfigError, match="k directions"):
        Direction("z", torch.ones(4))
    with pytest.raises(ConfigError, match="timesteps"):
        Direction("h", torch.ones(1, 3, 2), timesteps=[5, 0])
    with pytest.raises(ConfigError, match="timesteps"):
        Direction("h", torch.ones(1, 3, 2))
    with pytest.raises(ConfigError, match="JSON"):
        Direction("z", torch.ones(1, 4), provenance={"data": torch.ones(1)}).save(tmp_path / "d")
    assert not (tmp_path / "d" / "vectors.safetensors").exists()


# --- apply and traverse -----------------------------------------------------------------------------------
def test_apply_on_a_vae_is_decode_of_the_shifted_code(vae):
    g = torch.Generator().manual_seed(0)
    z, v = torch.randn(4, 5, generator=g), torch.randn(1, 5, generator=g)
    with torch.no_grad():
        assert torch.equal(apply(vae, z, Direction("z", v), 1.5), vae.decode(z + 1.5 * v))
        two = Direction("z", torch.cat([v, -2 * v]))
        assert torch.allclose(apply(vae, z, two, [1.0, 0.25]), vae.decode(z + 0.5 * v), atol=1e-6)
        assert torch.equal(render(vae, "z", z), vae.decode(z))
    with pytest.raises(ConfigError, match="one alpha per vector"):
        apply(vae, z, two, 1.0)


def test_apply_on_a_space_the_model_does_not_expose_names_its_spaces(vae, diffusion):
    with pytest.raises(ConfigError, match=r"has no latent space 'h'; it exposes: z$"):
        apply(vae, torch.zeros(1, 5), Direction("h", torch.zeros(1, 1, 16, 8, 8), timesteps=[0]), 1.0)
    with pytest.raises(ConfigError, match=r"no latent space 'w\+'; it exposes: x_t, h"):
        apply(diffusion, torch.zeros(1, 3, 16, 16), Direction("w+", torch.zeros(1, 8), layers=[0]), 1.0)
    vq = build_model({"name": "vqvae", **SMALL})
    with pytest.raises(ConfigError, match="it exposes: none"):
        invert(vq, images(1, size=32), "z")
    with pytest.raises(ConfigError, match=r"shape \(4,\)"):
        apply(vae, torch.zeros(1, 5), Direction("z", torch.zeros(1, 4)), 1.0)


def old_axis_traversal(z, dims, values):
    """The traversal ``mien traverse`` drew before control had directions (the old
    ``control.directions.axis_traversal``), kept here as the reference."""
    values = values.expand(len(dims), values.shape[-1]) if values.dim() == 1 else values
    steps = values.shape[1]
    codes = z.repeat(len(dims) * steps, 1)
    for r, d in enumerate(dims):
        codes[r * steps:(r + 1) * steps, d] = values[r]
    return codes


def test_axis_direction_traversal_equals_the_old_axis_traversal(vae):
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(200, 5, generator=g) * torch.tensor([0.5, 1, 2, 3, 0.1])
    z, dims = codes[:1], [0, 2, 4]
    with torch.no_grad():
        fixed = AxisDirection(dims, latent_dim=5).fit()
        values = torch.linspace(-3, 3, 7)
        assert torch.equal(traverse(vae, z, fixed.direction_, values, absolute=True),
                           vae.decode(old_axis_traversal(z[0], dims, values)))
        data = AxisDirection(dims).fit(codes)
        lo, hi = torch.quantile(codes[:, dims], 0.02, dim=0), torch.quantile(codes[:, dims], 0.98, dim=0)
        ranges = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, 9)[None]  # the old data_ranges
        assert torch.equal(data.sweep(9), ranges)
        assert torch.equal(traverse(vae, z, data.direction_, ranges, absolute=True),
                           vae.decode(old_axis_traversal(z[0], dims, ranges)))
        relative = traverse(vae, codes[:2], fixed.direction_, values)
        assert relative.shape == (2 * 3 * 7, 3, 32, 32)
        assert torch.equal(relative[3 * 7 + 7:3 * 7 + 14], vae.decode(codes[1] + values[:, None] * torch.eye(5)[2]))
    with pytest.raises(ConfigError, match="dimensions 0..4"):
        AxisDirection([5]).fit(codes)


# --- estimators -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, fit_args", [
    (lambda: AxisDirection([1, 3], latent_dim=4), lambda c, y: (c,)),
    (lambda: MeanDifference("happy", data="test codes"), lambda c, y: (c, y)),
])
def test_estimators_follow_scikit_learn_conventions(make, fit_args):
    codes = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    labels = ["happy" if c[1] > 0 else "sad" for c in codes]
    est = make()
    params = dict(vars(est))
    assert not [k for k in params if k.endswith("_")]  # __init__ stores parameters only, unchanged
    with pytest.raises(ConfigError, match="not fitted"):
        est.transform(codes)
    assert est.fit(*fit_args(codes, labels)) is est
    learned = {k for k in vars(est) if k not in params}
    assert learned and all(k.endswith("_") for k in learned)
    assert {k: vars(est)[k] for k in params} == params
    assert isinstance(est.direction_, Direction) and est.direction_.provenance["method"]
    assert est.transform(codes).shape == (40, len(est.direction_.vectors))


def test_mean_difference_is_the_difference_of_the_group_means():
    codes = torch.randn(30, 3, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(30) % 3
    d = MeanDifference(2, negative=0).fit(codes, labels).direction_
    assert torch.allclose(d.vectors[0], codes[2::3].mean(0) - codes[0::3].mean(0))
    assert d.sign == "towards 2" and d.provenance["n_positive"] == 10 and d.provenance["negative"] == 0
    with pytest.raises(DataError, match="no positive"):
        MeanDifference(7).fit(codes, labels)
    with pytest.raises(DataError, match="one label per code"):
        MeanDifference(1).fit(codes, labels[:5])


# --- diffusion: h-space, inversion and the edit ------------------------------------------------------------
def test_h_space_directions_are_recorded_fitted_and_injected(diffusion, tmp_path):
    x_T = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    h, ts, base = record_h(diffusion, x_T, cond=1, guidance=2.0)
    assert ts == sampling.timesteps(1000, 4) and h.shape == (6, 4, *diffusion.latent_spaces()["h"])
    est = MeanDifference(1, space="h", timesteps=ts).fit(h, torch.tensor([1, 0, 1, 0, 1, 0]))
    d = Direction.load(est.direction_.save(tmp_path / "smile"))
    with torch.no_grad():
        unchanged = apply(diffusion, x_T, d, 0.0, cond=1, guidance=2.0)
        edited = apply(diffusion, x_T, d, 3.0, cond=1, guidance=2.0)
        hook = HSpace(diffusion.net)
        with hook.inject({t: 3.0 * v for t, v in zip(ts, d.vectors[0])}):
            ref = sampling.sample(hook.denoiser(diffusion.denoiser(torch.ones(6, dtype=torch.long), 2.0)),
                                  diffusion.schedule, x_T, ts)
        hook.remove()
        grid = traverse(diffusion, x_T[:1], d, torch.tensor([0.0, 3.0]), cond=1, guidance=2.0)
    assert torch.equal(unchanged, base) and torch.equal(edited, diffusion.from_latent(ref))
    assert (edited - base).abs().max() > 1e-3 and torch.equal(grid, torch.cat([base[:1], edited[:1]]))
    with pytest.raises(ConfigError, match="not on the sampler's grid"):
        apply(diffusion, x_T, d, 1.0, steps=5)
    with pytest.raises(ConfigError, match="offset"):
        traverse(diffusion, x_T, d, [1.0], absolute=True)


def test_invert_to_z_is_the_posterior_mean(vae):
    x = images(3, size=32)
    assert torch.equal(invert(vae, x, "z"), vae.posterior(x)[0])
    with pytest.raises(ConfigError, match="choose one of z, x_t0"):
        invert(vae, x, "h")
    with pytest.raises(ConfigError, match="not a GAN"):
        invert(vae, x, "w")
    with pytest.raises(ConfigError, match="cannot edit"):
        edit(vae, x, 0, 1)


def test_invert_and_edit_reproduce_the_ddim_inversion_edit_bit_for_bit(diffusion):
    """The output of the former ``Diffusion.edit`` (Pikoulis §4.4): DDIM inversion to t0 under the
    source label at gamma = 1, then DDIM sampling under the target label with CFG."""
    x, src, trg = images(2), torch.tensor([0, 0]), torch.tensor([2, 2])
    grid = sampling.timesteps(1000, 4, t0=300)
    x_t0 = sampling.ddim_invert(diffusion.denoiser(src, 1.0), diffusion.schedule, diffusion.to_latent(x), grid)
    expected = diffusion.from_latent(sampling.sample(diffusion.denoiser(trg, 3.0), diffusion.schedule, x_t0, grid))
    assert torch.equal(invert(diffusion, x, "x_t0", source=0, t0=300, steps=4), x_t0)
    got = edit(diffusion, x, 0, 2, t0=300, steps=4, guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, expected)
    noisy = edit(diffusion, x, 0, 2, t0=300, steps=4, method="noise", generator=torch.Generator().manual_seed(0))
    assert noisy.shape == x.shape and not torch.equal(noisy, got)
    with pytest.raises(ConfigError, match="choose ddim or noise"):
        edit(diffusion, x, 0, 2, t0=300, steps=4, method="sdedit")
