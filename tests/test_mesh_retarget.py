"""Z1 + Z2 (Zou §3.4.3): landmark sequences retargeted to a neutral mesh by the mesh decoder, their
files, and `mien expr4d sample --mesh --neutral-mesh` refusing what it cannot use."""

from __future__ import annotations

import numpy as np
import torch

from mien.control.mesh_retarget import mesh_landmarks, retarget
from mien.data.meshio import read_mesh, write_mesh
from mien.data.world.mesh import MM_PER_UNIT, mesh_template
from mien.data.world.mesh_data import MeshSequenceDataset
from mien.models import build_model
from mien.report.mesh_sequences import write_mesh_sequences
from model_helpers import run_main  # noqa: F401 (fixtures)

TINY = {"name": "meshdecoder", "variant": "s2d", "widths": [4, 4, 4, 4, 4]}


def test_retarget_feeds_landmark_displacements_in_mm_from_the_meshs_own_landmarks():
    decoder = build_model(TINY).eval()  # a fresh decoder's last layer is zero: M_f = M
    seen, deform = [], decoder.deform
    decoder.deform = lambda neutral, delta: seen.append(delta) or deform(neutral, delta)
    item = MeshSequenceDataset(1, 1, 4)[0]
    sequences = (item["landmarks"] / MM_PER_UNIT)[None]  # the diffusion model's units
    meshes, seconds = retarget(decoder, item["neutral"], sequences)
    assert torch.allclose(seen[0][0], item["landmarks"] - item["neutral_landmarks"], atol=1e-3) and seconds >= 0
    assert torch.allclose(mesh_landmarks(decoder, item["neutral"]) * MM_PER_UNIT, item["neutral_landmarks"], atol=1e-3)
    assert meshes.shape == (1, 4, decoder.n_vertices, 3) and torch.allclose(meshes[0], item["neutral"].expand(4, -1, -1))


def test_mesh_sequences_are_written_as_gifs_and_ply_frames(tmp_path):
    item = MeshSequenceDataset(1, 1, 4)[0]
    faces = mesh_template("small").faces
    gifs = write_mesh_sequences(item["mesh"][None], faces, tmp_path, size=48)
    assert [g.name for g in gifs] == ["sequence_000.gif"] and gifs[0].stat().st_size > 0
    frames = sorted((tmp_path / "sequence_000").glob("*.ply"))
    assert len(frames) == 4
    vertices, read_faces = read_mesh(frames[2])
    assert np.allclose(vertices, item["mesh"][2].numpy(), atol=1e-4) and np.array_equal(read_faces, faces)


def test_expr4d_sample_with_a_mesh_refuses_a_lone_option_and_another_topology(monkeypatch, capsys, tmp_path):
    from mien.models import checkpoint

    decoder = build_model(TINY)
    run = checkpoint.save(decoder, tmp_path / "z2", {"model": decoder.config_dict()}, {})
    code, _, err = run_main(monkeypatch, capsys, "expr4d", "sample", tmp_path / "z1", "--mesh", run)
    assert code == 2 and "--mesh and --neutral-mesh go together" in err
    write_mesh(tmp_path / "tri.ply", np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]))
    code, _, err = run_main(monkeypatch, capsys, "expr4d", "sample", tmp_path / "z1", "--mesh", run,
                            "--neutral-mesh", tmp_path / "tri.ply")
    assert code == 2 and "not the decoder's small mesh topology (625 vertices" in err and "Traceback" not in err
