"""The regressor phi: latent code -> NRSfM parameters q (Haas P-III §3.2, §4.1; thesis Ch. 4.3).

phi is an MLP with three hidden layers of 512 units and ReLU (P-III §4.1; renhaa/rankonegan ships
four), trained with Adam on the landmark loss of P-III Eq. 12,

    L(w) = || R(phi(w)) - psi_L(G(w)) ||_F^2,

so no q targets are needed: the landmarks psi_L(G(w)) of generated faces (the evaluator's landmark
head) are precomputed once and the loss flows through the differentiable backbone R(q) only.

Departures, named: the codes are standardised per coordinate before the MLP and phi predicts the
mean-centred q^ = (q - mean) / std with the mean and std of the NRSfM's own fitted q (an output
scaling; the thesis says "mean-centred q^" and leaves the scale open); the last layer starts at
zero, so phi starts at the mean q. The loss is reported per landmark, mean over points of the
squared 2-D distance in [0, 1] image units (:func:`landmark_loss`). Learning rate (1e-3, cosine
decay), steps and batch size are unspecified in the thesis.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mien.control.nrsfm.estimator import RankOneNRSfM, backbone
from mien.errors import ConfigError, DataError

SPACES = ("z", "w", "w+")


def landmark_loss(X_hat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Eq. 12 per face: mean over the L points of ||x^_l - x_l||^2 (B x L x 2 -> B)."""
    return (X_hat - X).pow(2).sum(-1).mean(-1)


def mlp(n_in: int, n_out: int, hidden: int = 512, depth: int = 3) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units with ReLU, a linear output started at zero."""
    layers, width = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    out = nn.Linear(width, n_out)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return nn.Sequential(*layers, out)


class NRSfMRegressor:
    """phi for one latent ``space`` (z, w or w+), scikit-learn style. ``fit(codes, landmarks,
    nrsfm)`` takes N codes (N x the space's shape), their generated faces' landmarks (N x L x 2)
    and a fitted :class:`RankOneNRSfM`; learned: ``net_``, ``code_shape_``, ``code_mean_``,
    ``code_std_``, ``q_mean_``, ``q_std_``, ``loss_history_`` (Eq. 12 every 50 steps) and
    ``train_loss_`` (Eq. 12 on all N at the end). ``phi(codes)`` is differentiable in the codes."""

    def __init__(self, space: str = "w", hidden: int = 512, depth: int = 3, steps: int = 2000, batch: int = 256,
                 lr: float = 1e-3, seed: int = 0):
        self.space, self.hidden, self.depth, self.steps, self.batch = space, hidden, depth, steps, batch
        self.lr, self.seed = lr, seed

    def _check(self, codes, landmarks, nrsfm: RankOneNRSfM):
        if self.space not in SPACES:
            raise ConfigError(f"unknown latent space {self.space!r}; choose one of {', '.join(SPACES)}")
        if not (self.hidden >= 1 and self.depth >= 1 and self.steps >= 1 and self.batch >= 1 and self.lr > 0):
            raise ConfigError("hidden, depth, steps and batch must be >= 1 and lr > 0")
        if not hasattr(nrsfm, "bases_"):
            raise ConfigError("fit the RankOneNRSfM first: phi is trained through its backbone R(q)")
        codes, landmarks = torch.as_tensor(codes).float(), torch.as_tensor(landmarks).float()
        N = nrsfm.mean_shape_.shape[1]
        if landmarks.dim() != 3 or landmarks.shape[1:] != (N, 2) or len(landmarks) != len(codes):
            raise DataError(f"{len(codes)} codes but landmarks of shape {tuple(landmarks.shape)}; "
                            f"give one {N} x 2 landmark set per code")
        if not (torch.isfinite(codes).all() and torch.isfinite(landmarks).all()):
            raise DataError("the codes or landmarks hold NaN or infinite values")
        return codes, landmarks

    def fit(self, codes, landmarks, nrsfm: RankOneNRSfM) -> "NRSfMRegressor":
        codes, X = self._check(codes, landmarks, nrsfm)
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        x = codes.flatten(1)
        self.code_shape_ = tuple(codes.shape[1:])
        self.code_mean_, self.code_std_ = x.mean(0), x.std(0).clamp_min(1e-6)
        q = nrsfm.q_.float()
        self.q_mean_, self.q_std_ = q.mean(0), q.std(0).clamp_min(1e-6)
        self.mean_shape_, self.bases_ = nrsfm.mean_shape_.float(), nrsfm.bases_.float()
        self.net_ = mlp(x.shape[1], q.shape[1], self.hidden, self.depth)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps, eta_min=self.lr * 0.01)
        self.loss_history_ = []
        for step in range(self.steps):
            idx = torch.randint(0, len(x), (min(self.batch, len(x)),), generator=g)
            loss = landmark_loss(self.render(self(codes[idx])), X[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % 50 == 0 or step == self.steps - 1:
                self.loss_history_.append(loss.item())
        with torch.no_grad():
            self.train_loss_ = landmark_loss(self.render(self(codes)), X).mean().item()
        return self

    def _check_fitted(self):
        if not hasattr(self, "net_"):
            raise ConfigError("this NRSfMRegressor is not fitted yet; call fit(codes, landmarks, nrsfm) first")

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """q = phi(codes): B x the space's shape -> B x (K + 8), differentiable."""
        self._check_fitted()
        if tuple(codes.shape[1:]) != self.code_shape_:
            raise DataError(f"codes of shape {tuple(codes.shape[1:])} per face, but this phi reads "
                            f"{self.space} codes of shape {self.code_shape_}; use codes of the GAN it was fitted on")
        x = (codes.float().flatten(1) - self.code_mean_) / self.code_std_
        return self.q_mean_ + self.q_std_ * self.net_(x)

    def render(self, q: torch.Tensor) -> torch.Tensor:
        """R(q), the backbone of the NRSfM phi was fitted with (B x L x 2)."""
        return backbone(q, self.mean_shape_, self.bases_)

    @property
    def n_bases(self) -> int:
        return self.bases_.shape[0]

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, JSON-able settings) that :meth:`from_state` rebuilds phi from (safetensors + json)."""
        self._check_fitted()
        tensors = {f"net.{k}": v.detach().contiguous() for k, v in self.net_.state_dict().items()}
        tensors.update({k: getattr(self, k + "_").contiguous() for k in ("code_mean", "code_std", "q_mean", "q_std",
                                                                         "mean_shape", "bases")})
        settings = {"space": self.space, "hidden": self.hidden, "depth": self.depth, "code_shape": list(self.code_shape_),
                    "train_loss": self.train_loss_, "steps": self.steps, "lr": self.lr, "seed": self.seed}
        return tensors, settings

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], settings: dict) -> "NRSfMRegressor":
        try:
            phi = cls(settings["space"], settings["hidden"], settings["depth"], settings["steps"],
                      lr=settings["lr"], seed=settings["seed"])
            for k in ("code_mean", "code_std", "q_mean", "q_std", "mean_shape", "bases"):
                setattr(phi, k + "_", tensors[k].float())
            phi.code_shape_, phi.train_loss_ = tuple(settings["code_shape"]), settings["train_loss"]
            phi.net_ = mlp(math.prod(phi.code_shape_), len(phi.q_mean_), phi.hidden, phi.depth)
            phi.net_.load_state_dict({k[4:]: v.float() for k, v in tensors.items() if k.startswith("net.")})
        except (KeyError, RuntimeError, TypeError) as e:
            raise DataError(f"the stored regressor is incomplete or corrupt ({str(e).splitlines()[0]}); "
                            "fit it again with mien control nrsfm fit") from None
        return phi
