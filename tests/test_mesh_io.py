"""Mesh files and mesh folders: round trips, the CoMA export and reader, decimated hierarchies,
and the bad inputs that must give one line and exit 2."""

import numpy as np
import pytest
import torch

from model_helpers import run_main
from mien.data.formats.coma import MeshFolder, MeshFolderDataset, read_landmarks
from mien.data.mesh_hierarchy import decimated_hierarchy
from mien.data.meshio import read_mesh, write_mesh
from mien.data.source import DataConfig, make_dataset
from mien.data.world.mesh import mesh_template
from mien.data.world.mesh_surface import grid_faces
from mien.errors import DataError


def _grid(n=5, seed=0):
    v, u = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    z = np.random.default_rng(seed).normal(scale=0.01, size=n * n)
    return np.stack([u.ravel(), v.ravel(), z], 1).astype(np.float32), grid_faces(n)


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_round_trip_keeps_vertices_and_faces(tmp_path, suffix):
    t = mesh_template("small")
    path = write_mesh(tmp_path / f"face{suffix}", t.vertices.numpy(), t.faces)
    v, f = read_mesh(path)
    assert np.array_equal(f, t.faces) and v.dtype == np.float32
    tol = 0 if suffix == ".ply" else 1e-6  # binary ply is exact; obj is decimal text
    assert np.abs(v - t.vertices.numpy()).max() <= tol


def test_synth_meshes_writes_the_coma_layout_and_reads_back(tmp_path, monkeypatch, capsys):
    out = tmp_path / "coma"
    code, stdout, _ = run_main(monkeypatch, capsys, "data", "synth", "--out", out, "--meshes", "--subjects", 2,
                               "--motions", 2, "--frames", 4)
    assert code == 0 and "wrote 16 meshes" in stdout
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.ply"))
    assert files[0] == "subject000/happy/happy.000000.ply" and len(files) == 16
    assert {p.split("/")[1] for p in files} == {"happy", "sad"}
    rows = (out / "factors.csv").read_text().splitlines()
    assert len(rows) == 17 and rows[0].startswith("file,subject,motion,frame,intensity,")
    world = make_dataset(DataConfig(source="mesh_sequences", n_identities=2, motions=2, mesh_frames=4))
    read = make_dataset(DataConfig(source="mesh_sequences", path=str(out), mesh_frames=4))
    assert len(read) == 4 and read.template.hierarchy is mesh_template("small").hierarchy
    a, b = read[3], world[3]
    assert torch.equal(a["mesh"], b["mesh"]) and torch.allclose(a["landmarks"], b["landmarks"])
    meshes = make_dataset(DataConfig(source="meshes", path=str(out)))
    sex = [int(world.batch([s * 2])["factors"]["sex"][0]) for s in range(2)]
    assert [int(meshes[i]["label"]) for i in (0, 15)] == [sex[0], sex[1]]
    code, stdout, _ = run_main(monkeypatch, capsys, "data", "inspect", out)
    assert code == 0 and "coma (2 subjects x 2 motions)" in stdout and "landmarks: 68" in stdout
    code, _, _ = run_main(monkeypatch, capsys, "data", "synth", "--out", out, "--meshes", "--subjects", 1,
                          "--motions", 1, "--frames", 4)  # a smaller export over it leaves no stale meshes
    assert code == 0 and len(list(out.rglob("*.ply"))) == 4
    other = tmp_path / "other"
    write_mesh(other / "face.ply", *_grid())
    code, _, err = run_main(monkeypatch, capsys, "data", "synth", "--out", other, "--meshes", "--subjects", 1,
                            "--motions", 1, "--frames", 4)
    assert code == 2 and "not a mien export" in err


def test_foreign_topology_gets_a_cached_decimated_hierarchy(tmp_path):
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces, dtype=np.int64)
    h = decimated_hierarchy(v, f, levels=3, cache=tmp_path)
    assert h.n_vertices[0] == 642 and 120 < h.n_vertices[1] < 200 and len(list(tmp_path.glob("hierarchy_*.npz"))) == 1
    for l, (d, u) in enumerate(zip(h.down, h.up)):
        dd, uu = d.to_dense(), u.to_dense()
        assert torch.equal(dd.sum(1), torch.ones(h.n_vertices[l + 1])) and torch.allclose(uu.sum(1), torch.ones(h.n_vertices[l]))
    pts = torch.tensor(v, dtype=torch.float32)
    smooth = pts[:, :1] + 0.5 * pts[:, 1:2]  # an affine function of the sphere points
    again = h.up[0] @ (h.down[0] @ smooth)
    assert (again - smooth).abs().max() < 0.15 * (smooth.max() - smooth.min())
    cached = decimated_hierarchy(v, f, levels=3, cache=tmp_path)
    assert cached.fingerprint() == h.fingerprint()


def _bad(tmp_path, case):
    v, f = _grid()
    root = tmp_path / case
    write_mesh(root / "a.ply", v, f)
    if case == "topology":
        write_mesh(root / "b.ply", *_grid(6))
    elif case == "empty":
        (root / "b.ply").write_bytes(b"")
    elif case == "nonmanifold":
        fan = np.concatenate([f, [[0, 1, 7]]])  # a third triangle on edge (0, 1)
        (root / "b.obj").write_text("".join(f"v {x} {y} {z}\n" for x, y, z in v) + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in fan))
    elif case == "nan":
        (root / "b.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    elif case == "landmarks":
        (root / "landmarks.txt").write_text("".join(f"{i}\n" for i in range(10)))
    return root


@pytest.mark.parametrize("case,words", [("topology", "one topology"), ("empty", "is empty"),
                                        ("nonmanifold", "non-manifold"), ("nan", "NaN"), ("landmarks", "68 rows")])
def test_bad_mesh_folders_give_one_line_and_exit_2(tmp_path, monkeypatch, capsys, case, words):
    root = _bad(tmp_path, case)
    monkeypatch.setenv("MIEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=words):
        MeshFolderDataset(root)
    code, out, err = run_main(monkeypatch, capsys, "data", "inspect", root)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_landmark_file_of_vertex_indices_embeds_those_vertices(tmp_path):
    v, f = _grid(9)
    (tmp_path / "lm.txt").write_text("".join(f"{i}\n" for i in range(68)))
    face, bary = read_landmarks(tmp_path / "lm.txt", f, len(v))
    picked = (v[f[face]] * bary[..., None]).sum(1)
    assert np.allclose(picked, v[:68])
    with pytest.raises(DataError, match="outside"):
        (tmp_path / "bad.txt").write_text("".join(f"{i + 50}\n" for i in range(68)))
        read_landmarks(tmp_path / "bad.txt", f, len(v))


def test_flat_folder_reads_subjects_and_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("MIEN_CACHE", str(tmp_path / "cache"))
    v, f = _grid(17)
    for i in range(3):
        write_mesh(tmp_path / "m" / f"s{i}.ply", v + i, f)
    (tmp_path / "m" / "labels.csv").write_text("subject,label\ns0,female\ns1,male\ns2,female\n")
    folder = MeshFolder(tmp_path / "m")
    assert folder.subject_names == ("s0", "s1", "s2") and folder.labels.tolist() == [0, 1, 0]
    assert folder.template.hierarchy.n_vertices[0] == 289 and len(folder.template.hierarchy.n_vertices) == 4
