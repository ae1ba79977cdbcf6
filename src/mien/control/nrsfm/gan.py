"""NRSfM control of a GAN (Haas P-III §3, "Alg. B" of the digest): sample latents, take the landmarks
psi_L of the generated faces (the evaluator's landmark head, the stand-in for Dlib), fit the rank-one
NRSfM on them, train phi in each latent space, and store it all as safetensors + json (no pickle).

Departures, named: the thesis samples 5 x 10^4 faces and K = 12; the presets here are smaller. The
rank-one fit is P-III's Eq. 10 (``method="gradient"``) as in the thesis, but the rigid split gets
the orthographic metric upgrade (P-III keeps the raw M_0 = U_0 Sigma_0): on the zoo GAN (yaw only,
+-25 degrees) ALS leaves coefficients of std 64 on depth-pointing bases that make a 10 degree turn
of R(q) move the landmarks 49x more than the rigid turn, and on world renders the scaled upgrade's
yaw is 10.6 degrees RMS from the truth against 1.1 for the orthographic one (docs/haas-nrsfm)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from mien.control.gan_directions import sample_codes
from mien.control.nrsfm.estimator import RankOneNRSfM
from mien.control.nrsfm.regressor import SPACES, NRSfMRegressor
from mien.errors import ConfigError, DataError
from mien.io import atomic_write_bytes, atomic_write_text, ensure_writable_dir

FORMAT = "mien-nrsfm-control/1"
NOSE_TIP = 30  # iBUG index of a point in front of the centroid (resolves SfM's depth reversal)


def renderer(model, space: str, noise=None):
    """codes of ``space`` (z, w or w+) -> images g(...) in [-1, 1] under fixed ``noise``, differentiable."""
    if space not in SPACES:
        raise ConfigError(f"unknown latent space {space!r}; choose one of {', '.join(SPACES)}")

    def render(codes):
        if space == "z":
            codes = model.map(codes, None)
        ws = model.broadcast(codes) if space in ("z", "w") else codes
        maps = None if noise is None else [m[:len(ws)] for m in noise]
        return model.synthesize(ws, maps).clamp(-1, 1)

    return render


@torch.no_grad()
def generated_faces(model, evaluator, n: int, seed: int = 0, batch: int = 128) -> dict:
    """n generated faces: their codes ``z``, ``w``, ``w+``, fixed ``noise`` maps, ``image`` and
    ``landmarks`` = psi_L(G(w)) (n x 68 x 2 in [0, 1], the evaluator's landmark head)."""
    gen = torch.Generator().manual_seed(seed)
    codes = sample_codes(model, n, gen, batch=batch)
    noise = model.noise_maps(n, gen)
    images, landmarks = [], []
    for s in range(0, n, batch):
        x = model.synthesize(codes["w+"][s:s + batch], [m[s:s + batch] for m in noise]).clamp(-1, 1)
        images.append(x)
        landmarks.append(evaluator(x)["landmarks"])
    return {"z": codes["z"], "w": codes["w"], "w+": codes["w+"], "noise": noise, "image": torch.cat(images),
            "landmarks": torch.cat(landmarks)}


class NRSfMControl:
    """The rank-one NRSfM of a GAN's generated landmarks (``nrsfm_steps``: Adam steps of Eq. 10)
    plus phi per latent space (``steps`` Adam steps of Eq. 12 each). ``fit(model,
    evaluator)`` learns ``nrsfm_`` (a fitted :class:`RankOneNRSfM`), ``regressors_`` (space ->
    :class:`NRSfMRegressor`) and ``latent_shapes_`` (space -> shape, checked on every use)."""

    def __init__(self, n_bases: int = 12, spaces=SPACES, n: int = 2000, steps: int = 2000, batch: int = 256,
                 lr: float = 1e-3, method: str = "gradient", metric: str = "orthographic", nrsfm_steps: int = 2000,
                 seed: int = 0):
        self.n_bases, self.spaces, self.n, self.steps, self.batch = n_bases, tuple(spaces), n, steps, batch
        self.lr, self.method, self.metric, self.nrsfm_steps, self.seed = lr, method, metric, nrsfm_steps, seed

    def fit(self, model, evaluator, faces: dict | None = None) -> "NRSfMControl":
        unknown = [s for s in self.spaces if s not in SPACES]
        if unknown or not self.spaces:
            raise ConfigError(f"latent spaces {list(self.spaces)}: choose among {', '.join(SPACES)}")
        faces = faces or generated_faces(model, evaluator, self.n, self.seed)
        X = faces["landmarks"].double()
        front = NOSE_TIP if X.shape[1] == 68 else None
        self.nrsfm_ = RankOneNRSfM(self.n_bases, method=self.method, metric=self.metric, front=front,
                                   steps=self.nrsfm_steps, seed=self.seed).fit(X)
        self.regressors_ = {s: NRSfMRegressor(s, steps=self.steps, batch=self.batch, lr=self.lr, seed=self.seed)
                            .fit(faces[s], faces["landmarks"], self.nrsfm_) for s in self.spaces}
        self.latent_shapes_ = {s: tuple(model.latent_spaces()[s]) for s in self.spaces}
        return self

    def phi(self, space: str) -> NRSfMRegressor:
        if space not in self.regressors_:
            raise ConfigError(f"no regressor for space {space!r}; this model has {', '.join(self.regressors_)}")
        return self.regressors_[space]

    def check(self, model) -> None:
        """A DataError unless ``model``'s latent spaces have the shapes phi was fitted on."""
        spaces = model.latent_spaces() if hasattr(model, "latent_spaces") else {}
        for s, shape in self.latent_shapes_.items():
            if tuple(spaces.get(s, ())) != tuple(shape):
                raise DataError(f"this NRSfM model reads {s} codes of shape {tuple(shape)} but the generator's are "
                                f"{tuple(spaces.get(s, ())) or 'absent'}; use the GAN it was fitted on")

    def save(self, folder, meta: dict | None = None) -> Path:
        """``nrsfm.safetensors`` then ``nrsfm.json`` (format, settings, shapes, ``meta``), each atomically."""
        folder = ensure_writable_dir(folder)
        m = self.nrsfm_
        tensors = {f"nrsfm.{k}": getattr(m, k + "_").contiguous() for k in ("mean_shape", "bases", "directions", "b")}
        settings = {}
        for s, phi in self.regressors_.items():
            t, settings[s] = phi.state()
            tensors.update({f"{s}/{k}": v for k, v in t.items()})
        info = {"format": FORMAT, "n_bases": self.n_bases, "spaces": list(self.spaces), "n": self.n, "method": self.method,
                "metric": self.metric, "seed": self.seed, "front": m.front, "reprojection_error": m.reprojection_error_,
                "latent_shapes": {s: list(v) for s, v in self.latent_shapes_.items()}, "regressors": settings,
                **(meta or {})}
        atomic_write_bytes(folder / "nrsfm.safetensors", save(tensors))
        atomic_write_text(folder / "nrsfm.json", json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(cls, folder) -> "NRSfMControl":
        """Read a folder written by :meth:`save`; a missing, corrupt or foreign folder is a DataError."""
        folder = Path(folder)
        again = "fit it again with mien control nrsfm fit"
        try:
            info = json.loads((folder / "nrsfm.json").read_text(encoding="utf-8"))
            tensors = load_file(str(folder / "nrsfm.safetensors"))
        except FileNotFoundError:
            raise DataError(f"{folder} holds no NRSfM model (nrsfm.json + nrsfm.safetensors); {again}") from None
        except (OSError, ValueError, RuntimeError) as e:
            raise DataError(f"{folder}: unreadable NRSfM model ({str(e).splitlines()[0] if str(e) else e}); {again}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise DataError(f"{folder}/nrsfm.json is not a mien NRSfM model ({FORMAT}); {again}")
        try:
            control = cls(info["n_bases"], info["spaces"], info["n"], method=info["method"], metric=info["metric"],
                          seed=info["seed"])
            m = RankOneNRSfM(info["n_bases"], method=info["method"], metric=info["metric"], front=info["front"])
            for k in ("mean_shape", "bases", "directions", "b"):
                setattr(m, k + "_", tensors[f"nrsfm.{k}"].double())
            m.reprojection_error_ = info["reprojection_error"]
            control.nrsfm_, control.info_ = m, info
            control.latent_shapes_ = {s: tuple(v) for s, v in info["latent_shapes"].items()}
            control.regressors_ = {s: NRSfMRegressor.from_state(
                {k[len(s) + 1:]: v for k, v in tensors.items() if k.startswith(s + "/")}, info["regressors"][s])
                for s in info["spaces"]}
        except (KeyError, TypeError) as e:
            raise DataError(f"{folder}: the NRSfM model is incomplete ({e}); {again}") from None
        return control


def face_code(model, space: str, index: int = 0, seed: int = 0, image=None, align: bool = True):
    """(code 1 x the space's shape, fixed noise maps, landmarks) of face ``index`` of the seeded
    sample (landmarks None: phi gives its q), or of the photo ``image`` (loaded and aligned by
    :func:`mien.data.photo.load_face`, inverted into ``space`` by optimisation with its noise maps;
    Z has no inversion; landmarks: the detector's 68 x 2 in [0, 1] when aligned, else None)."""
    noise = model.noise_maps(1, torch.Generator().manual_seed(seed + index))
    if image is None:
        return sample_codes(model, index + 1, torch.Generator().manual_seed(seed))[space][index:index + 1], noise, None
    if space == "z":
        raise ConfigError("a photo cannot be inverted into Z; use --space w or w+")
    from mien.control.gan_invert import optimise
    from mien.data.photo import load_face

    face = load_face(image, model.config.image_size, align=align)
    inversion = optimise(model, face["image"][None], space, generator=torch.Generator().manual_seed(seed))
    return inversion.codes.detach(), [m.detach() for m in inversion.noise], face.get("landmarks2d")


def pose_sweep(control: NRSfMControl, model, evaluator, space: str, code, noise, yaw: float = 0.0, pitch: float = 0.0,
               roll: float = 0.0, columns: int = 5, editor: str = "gradient", lam: float = 0.01, steps: int = 100,
               landmarks=None):
    """(images, labels): the face, then ``columns`` edits of its q turned by t (yaw, pitch, roll) for
    t from -1 to 1 (:func:`editors.turn`), by the ``linear`` (Eq. 14) or ``gradient`` (Eq. 15,
    identity term weighted ``lam``) editor; labels give the target yaw and the evaluator's yaw change.
    The start q0 is phi(code), or with ``landmarks`` (a photo's detected 68 x 2, P-III §4.3) the
    Eq. 11 fit of the NRSfM to them, so the edit starts from the pose the photo shows."""
    from mien.control.nrsfm import editors

    control.check(model)
    model.requires_grad_(False), evaluator.requires_grad_(False)  # only the codes are optimised
    phi, render = control.phi(space), renderer(model, space, noise)
    with torch.no_grad():
        q0 = phi(code) if landmarks is None else control.nrsfm_.transform(landmarks[None]).to(code.dtype)
    ts = torch.linspace(-1, 1, columns).tolist() if columns > 1 else [1.0]
    targets = torch.cat([editors.turn(q0, phi.n_bases, t * yaw, t * pitch, t * roll) for t in ts])
    codes = code.expand(len(ts), *code.shape[1:])
    render_all = renderer(model, space, [m.expand(len(ts), -1, -1, -1) for m in noise])
    options = ({"distance": editors.identity_distance(render_all, evaluator, codes), "lam": lam, "steps": steps}
               if editor == "gradient" else {})
    edited = editors.edit(phi, codes, targets, editor, **options)
    with torch.no_grad():
        images = torch.cat([render(code), render_all(edited)])
        measured = evaluator.pose_degrees(evaluator(images)["pose"])[:, 0]
    labels = ["input" if landmarks is None else "inverted"] + [f"{t * yaw:+.0f}/{measured[i + 1] - measured[0]:+.0f}" for i, t in enumerate(ts)]
    return images, labels
