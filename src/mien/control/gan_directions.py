"""GAN latent directions (Haas digest §1.4, thesis ch. 2.5) as estimators in the style of
:mod:`mien.control.directions`: ``__init__`` stores the parameters, ``fit`` returns self, learned
values end in ``_``, and ``direction_`` is the house's :class:`~mien.control.direction.Direction`.

- :class:`InterFaceGAN` (Shen et al. 2020; Haas P-I Eq. 12): the unit normal of a linear SVM
  separating codes by a factor, after the paper's top/bottom-percentile selection, optionally made
  orthogonal to other directions (conditional editing, digest §1.4 with the Eq. 6.35 erratum of §1.9);
- :class:`GANSpace` (Haerkoenen et al. 2020): principal components of sampled w = f(z), applied on
  a layer range of W+;
- :class:`SeFa` (Shen & Zhou 2021; Haas Eqs. 2.23-2.24): the top eigenvectors of A^T A, A the
  stacked, row-normalised style-affine weights of the chosen W+ layers.

:func:`sample_codes` draws the codes a GAN's estimators are fitted on; :class:`FactorMeter` measures
world factors on images with mien's evaluator (heads where it has them, ridge probes on its
features for the factors it has no head for).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from mien.control.direction import Direction, check_space
from mien.control.directions import _DirectionEstimator, _json
from mien.errors import ConfigError, DataError

CODE_SPACES = ("z", "w", "w+", "s")


# --- codes of a GAN ------------------------------------------------------------------------------
@torch.no_grad()
def sample_codes(model, n: int, generator: torch.Generator | None = None, batch: int = 256,
                 images: bool = False, on_batch=None) -> dict[str, torch.Tensor]:
    """n fresh codes of a GAN in every space: ``z``, ``w`` = f(z), ``w+`` (w broadcast), ``s``
    (styles of w+); with ``images``, also the untruncated images g(w+) under fixed noise.
    ``on_batch(count)`` is called after each batch (a progress bar)."""
    check_space(model, "w")
    out: dict[str, list] = {k: [] for k in (*CODE_SPACES, *(["image"] if images else []))}
    for start in range(0, n, batch):
        m = min(batch, n - start)
        z, _, _ = model.draw_z(m, generator)
        labels = model.labels_for(None, m, generator) if hasattr(model, "labels_for") else None
        w = model.map(z, labels)
        ws = model.broadcast(w)
        for key, value in (("z", z), ("w", w), ("w+", ws), ("s", model.styles(ws))):
            out[key].append(value.cpu())
        if images:
            out["image"].append(model.synthesize(ws, model.noise_maps(m, generator)).clamp(-1, 1).cpu())
        if on_batch is not None:
            on_batch(m)
    return {k: torch.cat(v) for k, v in out.items()}


def parse_layers(text: str | None, num_ws: int | None = None) -> list[int] | None:
    """'0-3' -> [0, 1, 2, 3]; '0,2,5' -> [0, 2, 5]; None or 'all' -> None (every layer). With
    ``num_ws``, a layer outside 0 .. num_ws - 1 is a ConfigError."""
    if text is None or str(text).strip() in ("", "all"):
        return None
    layers: list[int] = []
    try:
        for part in str(text).replace(" ", "").split(","):
            lo, _, hi = part.partition("-")
            layers += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise ConfigError(f"layers {text!r}: give a range such as 0-3 or a list such as 0,2,5") from None
    layers = sorted(set(layers))
    if not layers:
        raise ConfigError(f"layers {text!r} is an empty range; give low-high with low <= high")
    if num_ws is not None and not all(0 <= i < num_ws for i in layers):
        raise ConfigError(f"layers {text!r} leave the generator's W+ layers 0..{num_ws - 1}")
    return layers


def _fix_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Eigen/singular vectors up to sign, made unique: the largest-magnitude entry is positive."""
    flat = vectors.flatten(1)
    signs = torch.sign(flat.gather(1, flat.abs().argmax(1, keepdim=True)))
    return vectors * signs.reshape(-1, *[1] * (vectors.dim() - 1))


# --- InterFaceGAN ----------------------------------------------------------------------------------
def extreme_indices(scores: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices of the top ``ratio`` fraction of ``scores``, of the bottom fraction): the sample
    selection of InterFaceGAN (Shen et al. 2020, §3.3: the 2 % most confident of each side; the
    count per side is int(N * ratio))."""
    if not 0 < ratio <= 0.5:
        raise ConfigError(f"ratio {ratio} must lie in (0, 0.5]: the fraction kept on each side")
    count = int(len(scores) * ratio)
    if count < 1:
        raise DataError(f"{len(scores)} scores x ratio {ratio} keeps no sample; score more codes or raise ratio")
    order = torch.argsort(torch.as_tensor(scores, dtype=torch.float64), descending=True, stable=True)
    return order[:count], order[-count:]


def orthogonal_to(normal: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Conditional editing: n1 - sum_i <n1, e_i> e_i with e_i the orthonormalised ``others`` (k x D),
    renormalised to unit length. For one other direction this is n1 - <n1,n2>/<n2,n2> n2, the
    corrected Eq. 6.35 (digest §1.9: the projection onto n2 is subtracted, not onto n1)."""
    others = others.reshape(len(others), -1).double()
    basis, _ = torch.linalg.qr(others.T)  # D x k, orthonormal columns spanning the others
    n = normal.reshape(-1).double()
    n = n - basis @ (basis.T @ n)
    if n.norm() < 1e-8:
        raise DataError("the direction lies in the span of the directions to remove; nothing is left to edit")
    return (n / n.norm()).reshape(normal.shape).to(normal.dtype)


class InterFaceGAN(_DirectionEstimator):
    """The unit normal of a linear SVM (scikit-learn LinearSVC) on codes in ``space`` against a
    factor (Shen et al. 2020; Haas P-I Eq. 12: edit w + alpha n). ``fit(codes, labels)``: labels are
    binary (used as they are), or continuous scores (a factor's value or a classifier's
    probability): then the ``ratio`` most extreme of each side are kept as positives and negatives
    (the paper's 2 %), or, with ``threshold``, every code is labelled score > threshold. A
    ``split`` fraction trains the SVM and the rest measures ``accuracy_`` (the paper's 0.7).
    ``conditions`` (k x the space's shape, or Directions in the same space) are projected out
    (:func:`orthogonal_to`). ``layers`` marks a ``w`` direction as moving those W+ inputs only."""

    def __init__(self, space: str = "w", ratio: float | None = 0.02, threshold: float | None = None,
                 split: float = 0.7, C: float = 1.0, conditions=None, layers: list[int] | None = None,
                 num_ws: int | None = None, factor: str = "", data: str = "", seed: int = 0):
        self.space, self.ratio, self.threshold, self.split, self.C = space, ratio, threshold, split, C
        self.conditions, self.layers, self.num_ws = conditions, layers, num_ws
        self.factor, self.data, self.seed = factor, data, seed

    def _select(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices of the codes used, their 0/1 labels)."""
        values = scores.unique()
        if len(values) <= 2 and self.threshold is None:
            if len(values) < 2:
                raise DataError(f"every label is {values.tolist()}; the factor must vary to fit a hyperplane")
            idx = torch.arange(len(scores))
            return idx, (scores == values.max()).long()
        if self.threshold is not None:
            idx = torch.arange(len(scores))
            return idx, (scores > self.threshold).long()
        if self.ratio is None:
            raise ConfigError("continuous labels need ratio (percentile selection) or threshold")
        top, bottom = extreme_indices(scores, self.ratio)
        return torch.cat([top, bottom]), torch.cat([torch.ones(len(top)), torch.zeros(len(bottom))]).long()

    def fit(self, codes: torch.Tensor, labels) -> "InterFaceGAN":
        from sklearn.svm import LinearSVC

        if self.space not in CODE_SPACES:
            raise ConfigError(f"InterFaceGAN space {self.space!r}: choose one of {', '.join(CODE_SPACES)}")
        scores = torch.as_tensor(np.asarray(labels.cpu() if torch.is_tensor(labels) else labels), dtype=torch.float64)
        if scores.dim() != 1 or len(scores) != len(codes):
            raise DataError(f"{len(codes)} codes but labels of shape {tuple(scores.shape)}; give one label per code")
        if not torch.isfinite(scores).all() or not torch.isfinite(codes).all():
            raise DataError("codes or labels contain NaN or infinite values")
        idx, y = self._select(scores)
        if len(y.unique()) < 2:
            raise DataError(f"threshold {self.threshold} puts every code on one side; choose one inside the scores")
        x = codes[idx].flatten(1).double().cpu().numpy()
        perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(self.seed)).numpy()
        n_train = max(2, int(round(len(idx) * self.split))) if self.split < 1 else len(idx)
        train, val = perm[:n_train], perm[n_train:]
        if len(np.unique(y.numpy()[train])) < 2:
            raise DataError("the training split holds one class only; score more codes")
        svm = LinearSVC(C=self.C, max_iter=20_000, random_state=self.seed).fit(x[train], y.numpy()[train])
        self.accuracy_ = float(svm.score(x[val], y.numpy()[val])) if len(val) else float("nan")
        normal = torch.as_tensor(svm.coef_[0]).float()
        normal = (normal / normal.norm()).reshape(codes.shape[1:])
        if self.conditions is not None:
            conditions = self.conditions if isinstance(self.conditions, (list, tuple)) else [self.conditions]
            others = torch.cat([c.vectors if isinstance(c, Direction) else torch.as_tensor(c) for c in conditions])
            normal = orthogonal_to(normal, others.reshape(-1, *codes.shape[1:]).float())
        self.normal_, self.n_selected_ = normal, len(idx)
        provenance = {"method": "interfacegan", "factor": self.factor, "ratio": self.ratio,
                      "threshold": self.threshold, "n_codes": len(codes), "n_selected": len(idx),
                      "val_accuracy": None if np.isnan(self.accuracy_) else self.accuracy_,
                      "conditions": 0 if self.conditions is None else len(others), "data": self.data, "seed": self.seed}
        if self.num_ws is not None:
            provenance["num_ws"] = self.num_ws
        self.direction_ = Direction(self.space, normal[None], layers=self.layers,
                                    sign=f"towards higher {self.factor}".strip(), provenance=provenance)
        return self


# --- GANSpace --------------------------------------------------------------------------------------
class GANSpace(_DirectionEstimator):
    """The first ``k`` principal components of sampled W codes (Haerkoenen et al. 2020): centre the
    codes, take the top right-singular vectors of the centred matrix. ``direction_`` holds the k
    components in space ``w`` moving W+ inputs ``layers`` (None: all); ``std_`` is the standard
    deviation of the codes along each component (strengths in sigma units: alpha * std_),
    ``mean_`` the mean code, ``explained_`` each component's share of the variance."""

    def __init__(self, k: int = 10, layers: list[int] | None = None, num_ws: int | None = None, data: str = "",
                 seed: int | None = None):
        self.k, self.layers, self.num_ws, self.data, self.seed = k, layers, num_ws, data, seed

    def fit(self, codes: torch.Tensor) -> "GANSpace":
        if codes.dim() != 2:
            raise DataError(f"GANSpace fits W codes (n x w_dim), got shape {tuple(codes.shape)}")
        if not 1 <= self.k <= min(codes.shape):
            raise ConfigError(f"k={self.k} components: choose 1..{min(codes.shape)} "
                              f"(codes of shape {tuple(codes.shape)})")
        x = codes.double()
        self.mean_ = x.mean(0).float()
        _, sv, vt = torch.linalg.svd(x - x.mean(0), full_matrices=False)
        variance = sv ** 2 / (len(x) - 1)
        self.std_ = variance[:self.k].sqrt().float()
        self.explained_ = (variance[:self.k] / variance.sum()).float()
        components = _fix_sign(vt[:self.k]).float()
        provenance = {"method": "ganspace", "k": self.k, "n_codes": len(codes), "std": self.std_.tolist(),
                      "data": self.data, "seed": self.seed}
        if self.num_ws is not None:
            provenance["num_ws"] = self.num_ws
        self.direction_ = Direction("w", components, layers=self.layers,
                                    sign="+1 moves along the principal component", provenance=provenance)
        return self


# --- SeFa ------------------------------------------------------------------------------------------
def sefa_weight(model, layers: list[int] | None = None) -> torch.Tensor:
    """A (rows x w_dim): the style-affine weights of the W+ inputs ``layers`` (None: all), stacked,
    each row (one style channel; a column of genforce/sefa's transposed weight) scaled to unit norm
    as in the official code (``weight / np.linalg.norm(weight, axis=0, keepdims=True)``). As there,
    ``layers`` index W+: each input contributes the modulated convolution that reads it, and the last
    input (read only by the final toRGB) that toRGB's affine."""
    synthesis = model.synthesis
    num_ws, reads = model.config.num_ws, synthesis.style_ws()
    chosen = list(range(num_ws)) if layers is None else layers
    if not chosen or not all(0 <= i < num_ws for i in chosen):
        raise ConfigError(f"SeFa layers {chosen}: this generator has W+ layers 0..{num_ws - 1}")
    convs = {id(layer.conv) for layer in synthesis.layers}
    style_layers = synthesis.style_layers()
    rows = []
    for i in chosen:
        readers = [conv for conv, j in zip(style_layers, reads) if j == i]
        picked = [conv for conv in readers if id(conv) in convs] or readers
        rows.append(picked[0].affine.weight.detach().double())
    a = torch.cat(rows)
    return a / a.norm(dim=1, keepdim=True)


def sefa_eig(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-k eigenvalues, eigenvectors k x d) of A^T A: n* = argmax_{|n|=1} |A n|^2 (Eq. 2.24)."""
    values, vectors = torch.linalg.eigh(a.T @ a)
    order = torch.argsort(values, descending=True)[:k]
    return values[order], _fix_sign(vectors[:, order].T)


def sefa_svd(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same from the SVD of A: eigenvalues sigma_i^2, eigenvectors the right-singular vectors."""
    _, sv, vt = torch.linalg.svd(a, full_matrices=False)
    return sv[:k] ** 2, _fix_sign(vt[:k])


class SeFa(_DirectionEstimator):
    """Closed-form factorisation (Shen & Zhou 2021; Haas Eqs. 2.23-2.24): the top ``k`` eigenvectors
    of A^T A for A = :func:`sefa_weight` of W+ inputs ``layers``; ``direction_`` is in ``w`` moving
    those layers, ``eigenvalues_`` the matching eigenvalues. ``fit(model)`` reads the generator's
    weights; no data is used."""

    def __init__(self, k: int = 5, layers: list[int] | None = None, data: str = ""):
        self.k, self.layers, self.data = k, layers, data

    def fit(self, model) -> "SeFa":
        a = sefa_weight(model, self.layers)
        if not 1 <= self.k <= a.shape[1]:
            raise ConfigError(f"k={self.k} components: choose 1..{a.shape[1]} (w_dim)")
        values, vectors = sefa_eig(a, self.k)
        self.eigenvalues_ = values.float()
        self.direction_ = Direction("w", vectors.float(), layers=self.layers,
                                    sign="+1 moves along the eigenvector",
                                    provenance={"method": "sefa", "k": self.k, "eigenvalues": values.tolist(),
                                                "num_ws": model.config.num_ws, "data": self.data, "seed": None})
        return self


# --- measuring factors on images -------------------------------------------------------------------
HEAD_FACTORS = ("yaw", "pitch", "roll", "intensity", "sex", "glasses", "beard", "hat")
PROBED_FACTORS = ("age", "skin_tone", "light_azimuth")


class FactorMeter:
    """World factors measured on images by mien's evaluator: ``yaw``/``pitch``/``roll`` (degrees),
    ``intensity``, the probability of each expression (its name, e.g. ``happy``) and of each binary
    attribute, from the evaluator's heads; and ``age``, ``skin_tone``, ``light_azimuth`` (the factors
    it has no head for) from ridge probes on its features (:meth:`probe_features`), fitted by :meth:`fit_probes` on
    world faces with their exact values (``probe_r2_``: R^2 on held-out faces)."""

    ridges = (0.1, 1.0, 10.0, 100.0, 1000.0)

    def __init__(self, evaluator):
        self.evaluator = evaluator
        self.probes_: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def names(self) -> list[str]:
        return [*HEAD_FACTORS, *self.evaluator.expression_names, *self.probes_]

    @torch.no_grad()
    def fit_probes(self, size: int, n: int = 768, seed: int = 4242, names=PROBED_FACTORS) -> "FactorMeter":
        """Ridge probes for ``names`` on ``n`` world faces at ``size`` px: fitted on 60 %, the ridge
        weight chosen among :attr:`ridges` on 20 %, R^2 reported on the last 20 % (``probe_r2_``).
        Also ``world_spread_``: the std of every measured factor over these faces (a fixed scale)."""
        from mien.data.world import WorldDataset

        data = WorldDataset(n, size=size, seed=seed).batch(range(n))
        feats = self.probe_features(data["image"]).double()
        fit, val = int(n * 0.6), int(n * 0.8)
        mu = feats[:fit].mean(0)
        x = feats - mu
        self.probe_r2_ = {}
        for name in names:
            y = data["factors"][name].double()
            bias = y[:fit].mean()
            best = None
            for ridge in self.ridges:
                gram = x[:fit].T @ x[:fit] + ridge * torch.eye(x.shape[1], dtype=x.dtype)
                coef = torch.linalg.solve(gram, x[:fit].T @ (y[:fit] - bias))
                r2 = _r2(x[fit:val] @ coef + bias, y[fit:val])
                best = (r2, coef) if best is None or r2 > best[0] else best
            coef = best[1]
            self.probe_r2_[name] = _r2(x[val:] @ coef + bias, y[val:])
            self.probes_[name] = (coef.float(), (bias - mu @ coef).float())
        self.world_spread_ = {k: float(v.std().clamp_min(1e-6)) for k, v in self(data["image"]).items()}
        return self

    def probe_features(self, images: torch.Tensor) -> torch.Tensor:
        """What the probes read: the neck vector and the first three stages' activations averaged
        over 2 x 2 cells (global pooling alone loses left/right shading: light azimuth)."""
        taps = self.evaluator.taps(images)
        pooled = [F.adaptive_avg_pool2d(t, 2).flatten(1) for t in taps[:3]]
        return torch.cat([self.evaluator.neck(taps[-1]), *pooled], 1)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
        """factor name -> values (B) for every name of :attr:`names`."""
        parts = []
        for start in range(0, len(images), batch):
            out = self.evaluator(images[start:start + batch])
            pose = self.evaluator.pose_degrees(out["pose"])
            probs = out["expression"].softmax(1)
            attributes = out["attributes"].sigmoid()
            values = {"yaw": pose[:, 0], "pitch": pose[:, 1], "roll": pose[:, 2], "intensity": out["intensity"],
                      **{a: attributes[:, i] for i, a in enumerate(("sex", "glasses", "beard", "hat"))},
                      **{e: probs[:, i] for i, e in enumerate(self.evaluator.expression_names)}}
            if self.probes_:
                feats = self.probe_features(images[start:start + batch])
                values.update({k: feats @ coef + bias for k, (coef, bias) in self.probes_.items()})
            parts.append(values)
        return {k: torch.cat([p[k] for p in parts]).cpu() for k in parts[0]}

    def check(self, factor: str) -> str:
        if factor not in self.names:
            raise ConfigError(f"factor {factor!r} cannot be measured; choose one of {', '.join(self.names)}")
        return factor


def _r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float(1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum().clamp_min(1e-12))


def fit_interfacegan(model, meter: FactorMeter, factor: str, n: int = 2000, space: str = "w", ratio: float = 0.02,
                     layers: list[int] | None = None, seed: int = 0, on_batch=None, conditions=None,
                     threshold: float | None = None) -> InterFaceGAN:
    """InterFaceGAN on ``n`` generated faces scored by the evaluator for ``factor`` (Shen et al.
    2020's recipe: sample, score with a classifier, keep the extremes, fit the SVM), orthogonal to
    ``conditions`` when given; with ``threshold``, every face labelled score > threshold instead."""
    meter.check(factor)
    drawn = sample_codes(model, n, torch.Generator().manual_seed(seed), images=True, on_batch=on_batch)
    scores = meter(drawn["image"])[factor]
    estimator = InterFaceGAN(space, ratio=ratio, threshold=threshold, conditions=conditions, layers=layers, num_ws=model.config.num_ws,
                             factor=factor, data=f"{n} generated faces scored by the evaluator", seed=seed)
    return estimator.fit(drawn[space], scores)


def describe(direction: Direction) -> dict:
    """A JSON summary of a direction for printing."""
    return {"space": direction.space, "k": len(direction.vectors), "layers": direction.layers,
            **{k: _json(v) for k, v in direction.provenance.items() if not isinstance(v, (list, dict))}}
