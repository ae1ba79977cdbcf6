"""Z2, the landmark-guided mesh decoder (Zou §3.4.3, Eq. 3.11) and its Tab. 3.5 baselines, on
stand-in mesh sequences with planted structure (mesh_helpers.standin_sequences)."""

from __future__ import annotations

import pytest
import torch

from mesh_helpers import standin_sequences
from mien.data.world.mesh import mesh_template
from mien.errors import ConfigError
from mien.models import build_model
from mien.models.mesh.decoder import s2d_loss

TINY = {"name": "meshdecoder", "widths": [8, 16, 16, 32, 32], "frames": 4, "latent": 8, "hidden": 64}


@pytest.fixture(scope="module")
def sequences():
    return standin_sequences(mesh_template("small"), n_subjects=6, n_motions=6, frames=10)


def part(data, mask):
    return {k: v[mask] for k, v in data.items()}


def fit(variant, data, steps, lr):
    torch.manual_seed(0)
    model = build_model({**TINY, "variant": variant})
    model.fit_data(data)
    opt = torch.optim.Adam(model.parameters(), lr)
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        out = model.loss(part(data, torch.randint(len(data["mesh"]), (4,), generator=g)), step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return model.eval()


def held_out_error(model, data):
    with torch.no_grad():
        pred = model.deform(data["neutral"], data["landmarks"] - data["neutral_landmarks"][:, None])
    return float((pred - data["mesh"]).norm(dim=-1).mean())


def test_z2_beats_the_linear_baseline_on_held_out_expressions(sequences):
    """The expression split of Tab. 3.5: the Linear autoencoder's decoder only spans the training
    motions' fields, the spiral decoder generalises; both see the same data, loss and steps."""
    seen = sequences["motion"] < 4
    train, held = part(sequences, seen), part(sequences, ~seen)
    z2 = held_out_error(fit("proposed", train, 150, 3e-3), held)
    linear = held_out_error(fit("linear", train, 150, 2e-3), held)
    assert z2 < 0.8 * linear, (z2, linear)


def test_s2d_ignores_the_neutral_mesh_and_lambda_zero_cuts_the_attention_branch(sequences):
    batch = part(sequences, slice(0, 2))
    dl = (batch["landmarks"] - batch["neutral_landmarks"][:, None])[:, :3]
    other = batch["neutral"] + 2.0 * torch.randn(batch["neutral"].shape, generator=torch.Generator().manual_seed(0))
    for variant, reads in (("proposed", True), ("s2d", False), ("coma", True), ("linear", True)):
        model = build_model({**TINY, "variant": variant})
        model.fit_data(batch)
        for p in [*model.decoder.parameters(), *getattr(model, "to_id", torch.nn.Identity()).parameters()]:
            torch.nn.init.normal_(p, std=0.1)  # the last decoder layer and Z2's map to z_id start at zero
        with torch.no_grad():
            changed = not torch.allclose(model.displacements(batch["neutral"], dl), model.displacements(other, dl))
            if variant == "proposed":  # lambda = 0 leaves z = dL_f: Eq. 3.11's branch is cut
                model.lam.zero_()
                assert torch.allclose(model.displacements(batch["neutral"], dl), model.displacements(other, dl))
        assert changed == reads, variant


def test_s2d_loss_weights_the_mesh_term_and_adds_a_tenth_of_the_displacement_term():
    target = torch.zeros(2, 3, 4, 3)
    pred = target + 0.5
    weights = torch.tensor([0.5, 0.5, 1.5, 1.5])
    out = s2d_loss(pred, target, weights, 0.1)
    assert torch.isclose(out["loss"], torch.tensor(0.5 * 1.0 + 0.1 * 0.5))
    pred[..., 2:, :] = 1.5  # residuals on the heavy vertices count three times as much
    assert torch.isclose(s2d_loss(pred, target, weights, 0.0)["loss"], torch.tensor((0.25 + 0.25 + 2.25 + 2.25) / 4))


def test_fit_data_weighs_moving_vertices_and_sampling_returns_meshes(sequences):
    model = build_model({**TINY, "variant": "s2d"})
    model.fit_data(sequences)
    motion = (sequences["mesh"] - sequences["neutral"][:, None]).norm(dim=-1).mean((0, 1))
    w = model.vertex_weight
    assert torch.isclose(w.mean(), torch.tensor(1.0)) and w[motion.argmax()] > w[motion.argmin()]
    drawn = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert set(drawn) == {"mesh"} and drawn["mesh"].shape == (3, model.n_vertices, 3)
    with pytest.raises(ConfigError, match="3 x 68 x 3"):
        model.sample(3, cond=torch.zeros(3, 5, 3))


def test_bad_configs_and_data_name_the_fix():
    with pytest.raises(ConfigError, match="variant"):
        build_model({**TINY, "variant": "flame"})
    with pytest.raises(ConfigError, match="five layers"):
        build_model({**TINY, "widths": [8, 8]})
    with pytest.raises(ConfigError, match="mesh_sequences"):
        build_model(TINY, data=object())
    with pytest.raises(ConfigError, match="'neutral'"):
        build_model(TINY).loss({"mesh": torch.zeros(1, 2, 625, 3)})


def test_z2_starts_as_s2d_and_its_attention_branch_gets_gradients(sequences):
    """The map to z_id starts at zero (a named departure): the neutral mesh has no effect at step 0,
    yet the loss's gradient reaches that map, so the branch can grow."""
    batch = part(sequences, torch.tensor([0, 6]))  # two subjects (items are subject-major, 6 motions each)
    model = build_model({**TINY, "variant": "proposed"})
    model.fit_data(batch)
    for p in model.decoder.parameters():
        torch.nn.init.normal_(p, std=0.1)
    dl = (batch["landmarks"] - batch["neutral_landmarks"][:, None])[:, :3]
    other = batch["neutral"] + 2.0
    with torch.no_grad():
        assert torch.allclose(model.displacements(batch["neutral"], dl), model.displacements(other, dl))
    model.loss(batch)["loss"].backward()
    assert model.to_id.weight.grad.abs().sum() > 0
