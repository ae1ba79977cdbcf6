"""The multilinear (HOSVD) model of GAN latents, Haas Papers I-II (thesis Ch. 3; digest §2.1), as a
scikit-learn style estimator.

Glossary (modes numbered from 0; mode 0 holds the D latent coordinates):

    T        data tensor D x I_1 x ... x I_N (e.g. P-II: D x persons x emotions x intensities x views)
    w_bar    mean latent (P-II centring: the mean of the data, not the generator's w_avg)
    U_k      factor of mode k (I_k x r_k), from the HOSVD of the normalised tensor
    C        S x_0 U_0, the core in latent coordinates (D x r_1 x ... x r_N)
    q'_k     canonical parameters of mode k (I_k; one-hot for a training cell), q_k = U_k^T q'_k
    tau(q')  = w_bar + C x_1 q_1^T ... x_N q_N^T (P-II Eqs. 2-3, 7), the model
    tau^-1   the estimator: rank-one q' minimising ||tau(q') - w||^2 + sum_k [ridge ||q'_k||^2 +
             sum_to_one (1^T q'_k - 1)^2 + lasso ||q'_k||_1] (P-I Eqs. 6-7, P-II Eqs. 4-6), by ALS
             (P-I Eqs. 8-11: closed form per mode, ISTA when lasso > 0) or by Adam; or the full-rank
             relaxation, a free Q in place of q'_1 x ... x q'_N, by least squares (P-II Eq. 8)

Normalisation: ``centre`` (P-II) or ``standardise`` (P-I: zero mean, unit variance per latent
coordinate; tau returns to latent units). Initialisation of ALS and Adam (unstated in the
sources): q'_k = 1 / I_k (the mean row of U_k, as the digest suggests).
"""

from __future__ import annotations

import math

import torch

from mien.control.direction import Direction
from mien.control.multilinear import hosvd, mode_product, multi_mode_product, unfold
from mien.errors import ConfigError, DataError

NORMALISATIONS = ("centre", "standardise")
SOLVERS = ("als", "adam")


class TensorModel:
    """HOSVD model of a latent tensor; see the module docstring for the symbols."""

    def __init__(self, normalise: str = "centre", ranks=None, ridge: float = 1.0, sum_to_one: float = 1.0,
                 lasso: float = 0.0, solver: str = "als", iters: int = 100, tol: float = 1e-6,
                 lr: float = 0.05, adam_steps: int = 500):
        self.normalise, self.ranks, self.ridge, self.sum_to_one, self.lasso = normalise, ranks, ridge, sum_to_one, lasso
        self.solver, self.iters, self.tol, self.lr, self.adam_steps = solver, iters, tol, lr, adam_steps

    # --- fitting ---------------------------------------------------------------------------------
    def fit(self, tensor: torch.Tensor, modes: list[str], latent_shape=None) -> "TensorModel":
        """HOSVD of the normalised ``tensor`` (D x I_1 x ... x I_N, every cell observed); ``modes``
        names modes 1..N (factor names of the schema, e.g. ["identity", "expression", "intensity",
        "yaw"]); ``latent_shape`` (e.g. (num_ws, w_dim)) the shape of one code (default (D,))."""
        self._check_params()
        tensor = torch.as_tensor(tensor, dtype=torch.float64)
        if tensor.dim() < 2 or len(modes) != tensor.dim() - 1:
            raise DataError(f"a tensor of {tensor.dim()} modes needs {tensor.dim() - 1} mode names, got {len(modes)}")
        if not torch.isfinite(tensor).all():
            raise DataError("the latent tensor has missing or non-finite cells; the HOSVD model needs a full "
                            "grid (use multilinear.hooi with a mask for missing cells)")
        d = tensor.shape[0]
        self.latent_shape_ = tuple(latent_shape or (d,))
        if math.prod(self.latent_shape_) != d:
            raise DataError(f"latent shape {self.latent_shape_} does not hold the tensor's {d} coordinates")
        self.modes_ = list(modes)
        flat = unfold(tensor, 0)
        self.mean_ = flat.mean(1)
        self.scale_ = flat.std(1).clamp_min(1e-12) if self.normalise == "standardise" else torch.ones(d, dtype=flat.dtype)
        del flat
        centred = (tensor - self._expand(self.mean_, tensor)).div_(self._expand(self.scale_, tensor))
        ranks = [None] + (list(self.ranks) if self.ranks is not None else [None] * len(modes))
        core, factors, self.sigmas_ = hosvd(centred, ranks)
        del centred  # the model keeps the core and the factors only (paper scale: 9216 x 4800 cells)
        self.factors_ = factors[1:]
        self.core_ = mode_product(core, factors[0], 0)  # C = S x_0 U_0
        return self

    @staticmethod
    def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.reshape(-1, *[1] * (like.dim() - 1))

    def _check_params(self):
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(f"normalise={self.normalise!r}; choose one of {', '.join(NORMALISATIONS)}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"solver={self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if min(self.ridge, self.sum_to_one, self.lasso) < 0 or not all(
                map(math.isfinite, (self.ridge, self.sum_to_one, self.lasso))):
            raise ConfigError("ridge, sum_to_one and lasso must be finite and >= 0")

    def _fitted(self):
        if not hasattr(self, "core_"):
            raise ConfigError("this TensorModel is not fitted yet; call fit first")

    # --- the model tau ---------------------------------------------------------------------------
    def mode_index(self, mode) -> int:
        """Position (1..N) of a mode given by name or number."""
        if isinstance(mode, str):
            if mode not in self.modes_:
                raise ConfigError(f"no mode {mode!r}; the model's modes are {', '.join(self.modes_)}")
            return self.modes_.index(mode) + 1
        if not 1 <= int(mode) <= len(self.modes_):
            raise ConfigError(f"mode {mode} does not exist; modes are 1..{len(self.modes_)}")
        return int(mode)

    def _contract(self, q: list[torch.Tensor], skip: int | None = None) -> torch.Tensor:
        """C contracted with the factor-space q_k (n x r_k) of every mode but ``skip``: n x D (x r_skip)."""
        letters = "ijklmopqrstuvwxy"[:len(self.factors_)]  # modes 1..N; z: latent, n: sample
        terms = [f"n{letters[k]}" for k in range(len(q)) if k + 1 != skip]
        out = "nz" + (letters[skip - 1] if skip else "")
        operands = [v for k, v in enumerate(q) if k + 1 != skip]
        with torch.backends.opt_einsum.flags(enabled=False):  # left to right: the path search costs more
            return torch.einsum(f"z{letters}," + ",".join(terms) + f"->{out}", self.core_, *operands)

    def inverse_transform(self, params: list[torch.Tensor]) -> torch.Tensor:
        """tau(q'): codes (n x latent shape) of rank-one canonical parameters, one n x I_k per mode."""
        self._fitted()
        q = [torch.as_tensor(p, dtype=torch.float64) @ u for p, u in zip(self._check_q(params), self.factors_)]
        y = self._contract(q)
        return (self.mean_ + self.scale_ * y).reshape(len(y), *self.latent_shape_)

    def _check_q(self, params):
        if len(params) != len(self.factors_):
            raise DataError(f"{len(params)} parameter blocks for a model of {len(self.factors_)} modes")
        for k, (p, u) in enumerate(zip(params, self.factors_)):
            if p.dim() != 2 or p.shape[1] != u.shape[0]:
                raise DataError(f"parameters of mode {self.modes_[k]!r} must be n x {u.shape[0]}, got {tuple(p.shape)}")
        return params

    # --- the estimator tau^-1 --------------------------------------------------------------------
    def _targets(self, codes: torch.Tensor) -> torch.Tensor:
        self._fitted()
        codes = torch.as_tensor(codes, dtype=torch.float64).reshape(len(codes), -1)
        if codes.shape[1] != self.core_.shape[0]:
            raise DataError(f"codes of {codes.shape[1]} coordinates for a model of {self.core_.shape[0]}; "
                            "use codes of the generator the model was fitted on")
        if not torch.isfinite(codes).all():
            raise DataError("the codes hold NaN or infinite values")
        return (codes - self.mean_) / self.scale_

    def transform(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """tau^-1(w): rank-one canonical parameters (one n x I_k per mode) of codes (n x latent shape)."""
        y = self._targets(codes)
        params = [torch.full((len(y), u.shape[0]), 1.0 / u.shape[0], dtype=y.dtype) for u in self.factors_]
        return self._als(y, params) if self.solver == "als" else self._adam(y, params)

    def _design(self, params: list[torch.Tensor], mode: int) -> torch.Tensor:
        """A'^(k) (n x D x I_k): y^ = A'^(k) q'_k with the other modes' parameters fixed (P-I Eqs. 8-10)."""
        q = [p @ u for p, u in zip(params, self.factors_)]
        return self._contract(q, skip=mode) @ self.factors_[mode - 1].T

    def objective(self, y: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        """Per-sample ||y^ - y||^2 + the penalties of every mode (in normalised units)."""
        fit = (self._contract([p @ u for p, u in zip(params, self.factors_)]) - y).pow(2).sum(1)
        for p in params:
            fit = fit + self.ridge * p.pow(2).sum(1) + self.sum_to_one * (p.sum(1) - 1).pow(2) + self.lasso * p.abs().sum(1)
        return fit

    def _als(self, y: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        previous = self.objective(y, params).sum()
        for _ in range(self.iters):
            for k in range(1, len(params) + 1):
                params[k - 1] = self._solve_mode(self._design(params, k), y)
            current = self.objective(y, params).sum()
            if abs(previous - current) <= self.tol * max(1.0, float(previous)):
                break
            previous = current
        return params

    def _solve_mode(self, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """argmin_q ||A q - y||^2 + ridge ||q||^2 + s (1^T q - 1)^2 (+ lasso ||q||_1 by ISTA), batched."""
        i = a.shape[2]
        ones = torch.ones(i, dtype=a.dtype)
        gram = a.transpose(1, 2) @ a + self.ridge * torch.eye(i, dtype=a.dtype) + self.sum_to_one * torch.outer(ones, ones)
        rhs = (a.transpose(1, 2) @ y[:, :, None]).squeeze(2) + self.sum_to_one * ones
        q = torch.linalg.solve(gram, rhs)
        if self.lasso == 0:
            return q
        step = 1.0 / torch.linalg.eigvalsh(gram)[:, -1:]  # 1 / L of the smooth part's gradient / 2
        for _ in range(200):
            grad = (gram @ q[:, :, None]).squeeze(2) - rhs
            q = _soft(q - step * grad, step * self.lasso / 2)
        return q

    def _adam(self, y: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
        params = [p.clone().requires_grad_(True) for p in params]
        opt = torch.optim.Adam(params, lr=self.lr)
        for _ in range(self.adam_steps):
            opt.zero_grad(set_to_none=True)
            self.objective(y, params).sum().backward()
            opt.step()
        return [p.detach() for p in params]

    def transform_full_rank(self, codes: torch.Tensor) -> torch.Tensor:
        """The full-rank relaxation (P-II Eq. 8): Q (n x I_1 x ... x I_N) with y = C'_(0) vec(Q), C' =
        C x_k U_k, by (minimum-norm) least squares."""
        y = self._targets(codes)
        design = unfold(multi_mode_product(self.core_, {k + 1: u for k, u in enumerate(self.factors_)}), 0)
        vec = torch.linalg.lstsq(design, y.T, driver="gelsd").solution.T
        shape = [u.shape[0] for u in self.factors_]
        return torch.stack([_unvec(v, shape) for v in vec])

    def inverse_transform_full_rank(self, q: torch.Tensor) -> torch.Tensor:
        design = unfold(multi_mode_product(self.core_, {k + 1: u for k, u in enumerate(self.factors_)}), 0)
        y = torch.stack([design @ _vec(v) for v in torch.as_tensor(q, dtype=torch.float64)])
        return (self.mean_ + self.scale_ * y).reshape(len(y), *self.latent_shape_)

    def approximation_error(self, codes: torch.Tensor, params=None) -> torch.Tensor:
        """eps_approx = ||tau(tau^-1(w)) - w||^2 per code, in latent units (P-I §IV-E)."""
        params = self.transform(codes) if params is None else params
        w = torch.as_tensor(codes, dtype=torch.float64).reshape(len(codes), -1)
        return (self.inverse_transform(params).reshape(len(w), -1) - w).pow(2).sum(1)

    def transfer(self, codes: torch.Tensor, mode, value: torch.Tensor, params=None) -> torch.Tensor:
        """Codes with mode ``mode``'s estimated parameters replaced by ``value`` (I_k or n x I_k):
        expression transfer (P-I §IV-F) or, with ``value = q'_k + gamma m``, rotation (Eqs. 13-14)."""
        k = self.mode_index(mode)
        params = list(self.transform(codes) if params is None else params)
        value = torch.as_tensor(value, dtype=torch.float64)
        params[k - 1] = value.expand(len(params[0]), -1) if value.dim() == 1 else value
        return self.inverse_transform(params)

    # --- global directions (P-II §2.2-2.3, Eqs. 9-18) -----------------------------------------
    def global_directions(self, expression="expression", intensity="intensity", view="yaw") -> dict:
        """One direction per emotion and a yaw direction, applicable to any code (P-II Fig. 6).
        The intensity mode is truncated to its first factor column u~ (Eqs. 9-12), giving the core
        C~ (D x I_other modes); with the mean rows q_bar of the other factors (persons, views) and
        the scalar q4_bar = mean(u~): n_e = C~ x q2_bar x (row e of U_expr) x q5_bar (Eqs. 13-15) and
        n_rot = C~ x q4_bar (q2_bar x q3_bar x (1/sqrt(2)) [1, -1] U_view) (Eqs. 16-18, the thesis's
        1/sqrt(2); the first two views). Returns {"emotions": E x D, "yaw": D, "intensity_factor": u~}."""
        self._fitted()
        e, i, r = (self.mode_index(m) for m in (expression, intensity, view))
        u_int = self.factors_[i - 1][:, 0]
        sign = -1.0 if u_int[-1] < u_int[0] else 1.0  # the sign that makes the last level the strongest
        u_int = sign * u_int
        # (T - T_bar) x_i u~^T x_k U_k^T ... x_0 U_0 is the core C sliced at the intensity's first column
        first = torch.zeros(1, self.factors_[i - 1].shape[1], dtype=self.core_.dtype)
        first[0, 0] = sign
        rows = [u.mean(0, keepdim=True) for u in self.factors_]  # mean rows q_bar
        q4_bar = float(u_int.mean())

        def contract(vectors: dict[int, torch.Tensor]) -> torch.Tensor:
            q = [vectors.get(k + 1, rows[k]) for k in range(len(rows))]
            return self._contract([*q[:i - 1], first, *q[i:]])[0] * self.scale_

        u_expr = self.factors_[e - 1]
        emotions = torch.stack([contract({e: u_expr[[j]]}) for j in range(u_expr.shape[0])])
        u_view = self.factors_[r - 1]
        if u_view.shape[0] < 2:
            raise DataError(f"the yaw direction needs at least two levels of {self.modes_[r - 1]!r}")
        rot = (u_view[[0]] - u_view[[1]]) / math.sqrt(2)
        yaw = q4_bar * contract({r: rot})
        return {"emotions": emotions, "yaw": yaw, "intensity_factor": u_int, "q4_bar": q4_bar}

    def directions(self, expression="expression", intensity="intensity", view="yaw", names=None,
                   space: str = "w+") -> dict[str, Direction]:
        """:meth:`global_directions` as :class:`Direction` objects in ``space`` (one per emotion, yaw)."""
        found = self.global_directions(expression, intensity, view)
        names = names or [f"{expression}_{j}" for j in range(len(found["emotions"]))]
        prov = {"method": "tensor (Haas P-II Eqs. 9-18)", "normalise": self.normalise, "modes": self.modes_}
        out = {name: Direction(space, v.float().reshape(1, *self.latent_shape_), sign=f"+1 towards {name}",
                               provenance=prov) for name, v in zip(names, found["emotions"])}
        out["yaw"] = Direction(space, found["yaw"].float().reshape(1, *self.latent_shape_),
                               sign="+1 from the second view towards the first", provenance=prov)
        return out


def apathy_point(points: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """The point nearest to every group's line (Haas P-I §IV-C, Fig. 3.5; the procedure is unstated,
    the digest's suggestion): fit a line a_e + t d_e to each group's points (mean and first principal
    direction), then p = argmin sum_e ||(I - d_e d_e^T)(p - a_e)||^2 = (sum P_e)^-1 sum P_e a_e."""
    points = torch.as_tensor(points, dtype=torch.float64)
    eye = torch.eye(points.shape[1], dtype=points.dtype)
    lhs, rhs = torch.zeros_like(eye), torch.zeros(points.shape[1], dtype=points.dtype)
    if len(groups) < 2:
        raise DataError("the apathy point needs at least two expression trajectories")
    for g in groups:
        x = points[g]
        if len(x) < 2:
            raise DataError("each expression trajectory needs at least two intensity levels")
        a = x.mean(0)
        d = torch.linalg.svd(x - a, full_matrices=False)[2][0]
        proj = eye - torch.outer(d, d)
        lhs, rhs = lhs + proj, rhs + proj @ a
    return torch.linalg.solve(lhs, rhs)


def planted_tensor(persons: int = 6, emotions: int = 6, intensities: int = 4, views: int = 2, dim: int = 32,
                   apathy: float = 1.0, noise: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """A latent tensor D x P x E x I x R (the P-II layout) whose ground truth is known: codes
    w = m + G x_1 a_p x_2 x_(e,i) x_3 v_r + noise with a random core G, identity codes a_p, view
    codes v_r and expression codes x_(e,i) = c0 + s_i d_e, s_i = (i + 1) / I, on lines from an
    apathy point c0 (``apathy`` times a random unit vector; 0: the lines meet at the origin)."""
    g = torch.Generator().manual_seed(seed)
    k = emotions + 1
    a = torch.randn(persons, 3, generator=g, dtype=torch.float64)
    v = torch.randn(views, 2, generator=g, dtype=torch.float64)
    d = torch.randn(emotions, k, generator=g, dtype=torch.float64)
    c0 = torch.randn(k, generator=g, dtype=torch.float64)
    c0 = apathy * c0 / c0.norm()
    s = torch.arange(1, intensities + 1, dtype=torch.float64) / intensities
    x = c0 + s[None, :, None] * d[:, None, :]  # E x I x k
    core = torch.randn(dim, 3, k, 2, generator=g, dtype=torch.float64)
    mean = torch.randn(dim, generator=g, dtype=torch.float64)
    t = torch.einsum("dakv,pa,eik,rv->dpeir", core, a, x, v) + mean[:, None, None, None, None]
    t = t + noise * torch.randn(t.shape, generator=g, dtype=torch.float64)
    return t, {"mean": mean, "core": core, "identity": a, "view": v, "directions": d, "apathy": c0, "levels": s}


def _soft(x: torch.Tensor, threshold) -> torch.Tensor:
    return torch.sign(x) * (x.abs() - threshold).clamp_min(0)


def _vec(q: torch.Tensor) -> torch.Tensor:
    """Kolda-Bader vec (first index fastest), matching the columns of unfold(., 0)."""
    return q.permute(*reversed(range(q.dim()))).reshape(-1)


def _unvec(v: torch.Tensor, shape) -> torch.Tensor:
    return v.reshape(*reversed(shape)).permute(*reversed(range(len(shape))))
