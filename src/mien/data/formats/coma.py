"""Real mesh folders: the CoMA layout ``<subject>/<motion>/<motion>.NNNNNN.ply`` (Ranjan et al.
2018; anchors.md), ``<subject>/<mesh>.ply``, or a flat folder of same-topology ``.ply``/``.obj``
meshes. They give the same sample dicts as the mesh world (mesh_data.py), so the same models
train on them.

Beside the meshes: ``landmarks.txt`` (optional; 68 rows, each a vertex index or ``face b0 b1 b2``)
and ``labels.csv`` (optional; columns ``subject`` or ``file``, and ``label``). A topology that is
the mesh world's (e.g. an export of ``mien data synth --meshes``) reuses the world's exact
hierarchy and landmarks; any other gets a decimated, cached one (mesh_hierarchy.py). Units:
meshes less than 2 units across are taken to be in metres (CoMA's FLAME fits) and scaled to mm.
Departure: no Procrustes step here; CoMA's registrations already share one frame.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mien.data.factors import Factor
from mien.data.mesh_hierarchy import decimated_hierarchy
from mien.data.meshio import MESH_SUFFIXES, read_mesh
from mien.data.world.mesh import MESH_SIZES, MeshTemplate, mesh_template
from mien.errors import DataError, OutputError
from mien.io import atomic_write_text, claim_folder, is_incomplete

LANDMARKS_FILE, LABELS_FILE = "landmarks.txt", "labels.csv"
N_LANDMARKS = 68


def mesh_files(root: Path) -> list[Path]:
    """The mesh files under ``root`` in path order, hidden folders skipped."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MESH_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def is_mesh_folder(root) -> bool:
    """Whether ``root`` holds meshes (a .ply or .obj file anywhere below it)."""
    root = Path(root)
    return root.is_dir() and any(True for suffix in MESH_SUFFIXES for _ in root.rglob(f"*{suffix}"))


def describe(folder: "MeshFolder") -> list[str]:
    """Lines saying what a mesh folder holds (for ``mien data inspect``)."""
    layout = (f"coma ({len(folder.subject_names)} subjects x {len(folder.motion_names)} motions)"
              if (folder.motion >= 0).all() else f"mesh folder ({len(folder.subject_names)} subjects)")
    h = folder.template.hierarchy
    return [f"layout: {layout}",
            f"meshes: {len(folder.files)} of {h.n_vertices[0]} vertices and {len(folder.faces)} triangles, "
            f"in mm (x{folder.scale:g})",
            f"hierarchy: levels of {'/'.join(map(str, h.n_vertices))} vertices",
            f"landmarks: {'68' if len(folder.template.landmark_faces) else 'none (add landmarks.txt)'}",
            f"labels: {'from ' + LABELS_FILE if folder.labels is not None else 'none'}"]


def read_landmarks(path: Path, faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """(landmark_faces (68,), landmark_bary (68 x 3)) from a landmark file."""
    try:
        rows = np.loadtxt(path, ndmin=2)
    except ValueError as e:
        raise DataError(f"cannot read {path} ({e}); give 68 rows of a vertex index or 'face b0 b1 b2'") from None
    if rows.shape == (1, N_LANDMARKS):
        rows = rows.T
    if rows.shape[0] != N_LANDMARKS or rows.shape[1] not in (1, 4):
        raise DataError(f"{path} has {rows.shape[0]} rows of {rows.shape[1]} values; give {N_LANDMARKS} rows, "
                        "each a vertex index or 'face b0 b1 b2'")
    if rows.shape[1] == 1:
        vertex = rows[:, 0].astype(np.int64)
        if vertex.min() < 0 or vertex.max() >= n_vertices:
            raise DataError(f"{path} names vertices outside 0..{n_vertices - 1}")
        hit = faces[None] == vertex[:, None, None]  # 68 x F x 3
        face = hit.any(-1).argmax(1)
        return face.astype(np.int64), hit[np.arange(N_LANDMARKS), face].astype(np.float32)
    face, bary = rows[:, 0].astype(np.int64), rows[:, 1:].astype(np.float32)
    if face.min() < 0 or face.max() >= len(faces) or not np.allclose(bary.sum(1), 1, atol=1e-3):
        raise DataError(f"{path}: face indices must lie in 0..{len(faces) - 1} and barycentric rows sum to 1")
    return face, bary


def _named(name: str, values: tuple, group: str) -> list[Factor]:
    """A categorical factor over the folder's names, none when there is only one name."""
    return [Factor(name, "categorical", values=values, group=group)] if len(values) > 1 else []


class MeshFolder:
    """The meshes of a folder, read and checked once: ``vertices`` (N x V x 3, mm), ``faces``,
    ``subject``/``motion`` indices per file (motion -1 outside the CoMA layout), their names,
    ``labels`` (per file, or None) and ``template``."""

    def __init__(self, root, levels: int = 4, cache: Path | None = None):
        self.root = root = Path(root)
        if not root.is_dir():
            raise DataError(f"mesh folder {root} does not exist or is not a folder; check the path")
        if is_incomplete(root):
            raise DataError(f"{root} is an interrupted export; rerun the export or delete the folder")
        self.files = mesh_files(root)
        if not self.files:
            raise DataError(f"no .ply or .obj meshes under {root}; point data.path at a mesh folder")
        v0, self.faces = read_mesh(self.files[0])
        meshes = [v0]
        for path in self.files[1:]:
            v, f = read_mesh(path)
            if v.shape != v0.shape or not np.array_equal(f, self.faces):
                raise DataError(f"{path} has {len(v)} vertices and {len(f)} triangles, but {self.files[0]} has "
                                f"{len(v0)} and {len(self.faces)} (or other triangles); a mesh folder holds one topology")
            meshes.append(v)
        extent = float(np.ptp(v0, axis=0).max())
        self.scale = 1000.0 if extent < 2 else 1.0
        self.vertices = np.stack(meshes) * np.float32(self.scale)
        self._index_layout()
        self.labels = self._labels()
        self.template = self._template(levels, cache)

    def _index_layout(self) -> None:
        parts = [p.relative_to(self.root).parts for p in self.files]
        depth = {len(p) for p in parts}
        if len(depth) > 1 or depth.pop() > 3:
            raise DataError(f"{self.root} mixes folder depths; use <subject>/<motion>/<frame>.ply, <subject>/<mesh>.ply "
                            "or a flat folder of meshes")
        subjects = [p[0] if len(p) > 1 else Path(p[0]).stem for p in parts]
        self.subject_names = tuple(dict.fromkeys(subjects))
        self.subject = np.array([self.subject_names.index(s) for s in subjects])
        motions = [p[1] for p in parts] if len(parts[0]) == 3 else []
        self.motion_names = tuple(sorted(set(motions)))
        self.motion = np.array([self.motion_names.index(m) for m in motions]) if motions else np.full(len(parts), -1)

    def _labels(self) -> np.ndarray | None:
        path = self.root / LABELS_FILE
        if not path.is_file():
            return None
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        key = "subject" if rows and "subject" in rows[0] else "file"
        if not rows or "label" not in rows[0] or key not in rows[0]:
            raise DataError(f"{path} needs a header with 'label' and 'subject' or 'file'")
        given = {r[key]: r["label"] for r in rows}
        names = self.subject_names if key == "subject" else [str(p.relative_to(self.root)) for p in self.files]
        missing = [n for n in names if n not in given]
        if missing:
            raise DataError(f"{path} has no label for {key} {missing[0]!r}; label every {key}")
        values = sorted(set(given[n] for n in names))
        codes = {v: int(v) if all(x.isdigit() for x in values) else values.index(v) for v in values}
        per_name = np.array([codes[given[n]] for n in names])
        return per_name[self.subject] if key == "subject" else per_name

    def _template(self, levels: int, cache: Path | None) -> MeshTemplate:
        rest = self.vertices.mean(0)
        world = next((mesh_template(s) for s in MESH_SIZES if mesh_template(s).n_vertices == len(rest)
                      and np.array_equal(mesh_template(s).faces, self.faces)), None)
        if world is not None:
            return MeshTemplate(torch.from_numpy(rest), world.hierarchy, world.landmark_faces, world.landmark_bary)
        path = self.root / LANDMARKS_FILE
        if path.is_file():
            face, bary = read_landmarks(path, self.faces, len(rest))
        else:
            face, bary = np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.float32)
        return MeshTemplate(torch.from_numpy(rest), decimated_hierarchy(rest, self.faces, levels, cache=cache),
                            face, torch.from_numpy(bary))


class MeshFolderDataset(Dataset):
    """``source: meshes`` from a folder: ``mesh`` (V x 3, mm), ``identity`` (subject), ``label``
    where labels.csv gives one."""

    def __init__(self, root, cache: Path | None = None):
        self.folder = MeshFolder(root, cache=cache)
        self.template = self.folder.template
        self.factors = _named("identity", self.folder.subject_names, "identity")

    def __len__(self) -> int:
        return len(self.folder.files)

    def __getitem__(self, i: int) -> dict:
        out = {"mesh": torch.from_numpy(self.folder.vertices[i]), "identity": torch.tensor(int(self.folder.subject[i]))}
        if self.folder.labels is not None:
            out["label"] = torch.tensor(int(self.folder.labels[i]))
        return out


class MeshFolderSequences(Dataset):
    """``source: mesh_sequences`` from a CoMA-layout folder: one item per (subject, motion), its
    frames resampled to ``frames`` evenly spaced ones, its first frame as the neutral mesh."""

    def __init__(self, root, frames: int = 40, cache: Path | None = None):
        self.folder = f = MeshFolder(root, cache=cache)
        if (f.motion < 0).any():
            raise DataError(f"{root} is not in the CoMA layout <subject>/<motion>/<frame>.ply; mesh sequences need it")
        if len(f.template.landmark_faces) != N_LANDMARKS:
            raise DataError(f"{root} has no {LANDMARKS_FILE}; mesh sequences need the 68 landmarks of the topology")
        self.template, self.frames = f.template, frames
        keys = sorted(set(zip(f.subject.tolist(), f.motion.tolist())))
        self.groups = [(s, m, np.flatnonzero((f.subject == s) & (f.motion == m))) for s, m in keys]
        self.factors = _named("subject", f.subject_names, "identity") + _named("motion", f.motion_names, "expression")

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict:
        s, m, files = self.groups[i]
        pick = files[np.round(np.linspace(0, len(files) - 1, self.frames)).astype(int)]
        mesh = torch.from_numpy(self.folder.vertices[pick])
        neutral = torch.from_numpy(self.folder.vertices[files[0]])
        return {"mesh": mesh, "neutral": neutral, "landmarks": self.template.landmarks(mesh),
                "neutral_landmarks": self.template.landmarks(neutral), "subject": torch.tensor(s), "motion": torch.tensor(m)}


def _remove_previous_export(out: Path) -> None:
    """Delete the meshes a previous export listed in factors.csv; refuse a folder of other meshes."""
    table = out / "factors.csv"
    if table.is_file():
        with open(table, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("file"):
                    (out / row["file"]).unlink(missing_ok=True)
    if mesh_files(out):
        raise OutputError(f"{out} holds meshes that are not a mien export; choose an empty --out")


def export_sequences(dataset, out) -> int:
    """Write mesh sequences (items of a MeshSequenceDataset) in the CoMA layout under ``out``:
    ``<subject>/<motion>/<motion>.NNNNNN.ply`` per frame, ``factors.csv`` (one row per frame: file,
    subject, motion, frame, intensity and the subject's factors), ``labels.csv`` (subject, label =
    sex) and ``landmarks.txt`` (the topology's barycentric landmarks). Returns the number of meshes."""
    from mien.data.meshio import write_mesh

    out = Path(out)
    faces, t = dataset.template.faces, dataset.template
    rows, labels, written = [], {}, 0
    with claim_folder(out):
        _remove_previous_export(out)
        for i in range(len(dataset)):
            item = dataset.batch([i])
            s, m = f"subject{int(item['subject'][0]):03d}", dataset.motion_names[int(item["motion"][0])]
            intensity = dataset.intensity(np.array([i]))[0]
            factors = {k: v[0].item() for k, v in item["factors"].items()}
            labels[s] = int(factors["sex"])
            for frame, mesh in enumerate(item["mesh"][0]):
                rel = f"{s}/{m}/{m}.{frame:06d}.ply"
                write_mesh(out / rel, mesh.numpy(), faces)
                rows.append({"file": rel, "subject": s, "motion": m, "frame": frame,
                             "intensity": round(float(intensity[frame]), 6), **factors})
                written += 1
        header = list(rows[0])
        atomic_write_text(out / "factors.csv", "\n".join([",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]) + "\n")
        atomic_write_text(out / LABELS_FILE, "subject,label\n" + "".join(f"{k},{v}\n" for k, v in labels.items()))
        lm = np.concatenate([t.landmark_faces[:, None], t.landmark_bary.numpy()], 1)
        atomic_write_text(out / LANDMARKS_FILE, "".join(f"{int(r[0])} {r[1]:.7f} {r[2]:.7f} {r[3]:.7f}\n" for r in lm))
    return written
