"""Attribute-regularised VAE (AR-VAE; Pati & Lerch 2021; lecture 002, "VAE latent space
regularization based on image attributes").

Latent dimension i is tied to ``attributes[i]``: for a batch of m images, with
D_r(j, k) = z_j^i - z_k^i and D_a(j, k) = a(x_j) - a(x_k), the term

    L_{r,a} = MAE(tanh(delta * D_r) - sign(D_a))

(lecture 002, "Attribute regularization term"; Pati & Lerch 2021, Sec. 3) pushes z^i to increase
monotonically with the attribute. The objective is the VAE loss of ``mien.models.vae.VAE`` plus
gamma * sum_a L_{r,a}; the attribute values are the data set's ``factors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mien.errors import ConfigError
from mien.models.base import register
from mien.models.vae import VAE, VAEConfig


@dataclass
class ARVAEConfig(VAEConfig):
    attributes: list[str] = field(default_factory=lambda: ["intensity"])
    gamma: float = 10.0
    delta: float = 1.0
    code: str = "sample"  # the regularised code: z sampled from q(z|x) (Pati & Lerch) or its mean mu_x

    def __post_init__(self):
        super().__post_init__()
        if not self.attributes:
            raise ConfigError("model.attributes must name at least one factor of the data, e.g. [intensity, yaw]")
        if len(self.attributes) > self.latent_dim:
            raise ConfigError(f"{len(self.attributes)} attributes need latent_dim >= {len(self.attributes)}, "
                              f"got latent_dim={self.latent_dim}")
        if len(set(self.attributes)) != len(self.attributes):
            raise ConfigError(f"model.attributes lists a factor twice: {self.attributes}")
        if self.gamma < 0 or self.delta <= 0:
            raise ConfigError("model.gamma must be >= 0 and model.delta > 0")
        if self.code not in ("sample", "mean"):
            raise ConfigError(f"model.code {self.code!r} is unknown; use sample (z ~ q(z|x)) or mean (mu_x)")


def attribute_regularisation(z_i: torch.Tensor, a: torch.Tensor, delta: float) -> torch.Tensor:
    """MAE(tanh(delta * D_r) - sign(D_a)) over all pairs of the batch (lecture 002; Pati & Lerch Sec. 3)."""
    d_r = z_i[:, None] - z_i[None, :]
    d_a = a[:, None] - a[None, :]
    return (torch.tanh(delta * d_r) - torch.sign(d_a)).abs().mean()


@register("arvae", ARVAEConfig)
class ARVAE(VAE):
    """AR-VAE: VAE loss + gamma * sum_i L_{r_i, a_i}, with the regularised z sampled from q(z|x)
    as in Pati & Lerch (Sec. 3), or with ``code: mean`` the posterior mean mu_x. Logs
    ``ar_<attribute>`` for each attribute.

    Why ``mean``: while a dimension is unused by the decoder its posterior stays near N(0, 1), so
    with delta = 10 every tanh(delta * D_r) of sampled codes saturates and the term has no
    gradient; attributes that carry little pixel variance (expression intensity) are then never
    found. On mu_x the ranking gradient exists from the first step."""

    def attribute_dims(self) -> dict[str, int]:
        """Attribute name -> the latent dimension it is tied to."""
        return {a: i for i, a in enumerate(self.config.attributes)}

    def attribute_values(self, batch: dict) -> dict[str, torch.Tensor]:
        factors = batch.get("factors")
        if not isinstance(factors, dict):
            raise ConfigError("arvae needs data with 'factors' (attribute values per image); "
                              "use a data set that knows its generative factors, such as the world")
        missing = [a for a in self.config.attributes if a not in factors]
        if missing:
            raise ConfigError(f"arvae attribute {missing[0]!r} is not a factor of the data; "
                              f"available: {', '.join(sorted(factors))}")
        return {a: torch.as_tensor(factors[a]).float().reshape(-1) for a in self.config.attributes}

    def loss(self, batch: dict, step: int = 0) -> dict:
        c = self.config
        values = self.attribute_values(batch)
        x, mu, logvar, z, out = self.forward_terms(batch)
        out_dict = self._vae_terms(x, mu, logvar, out, step)
        total = out_dict["loss"]
        code = z if c.code == "sample" else mu
        for a, i in self.attribute_dims().items():
            term = attribute_regularisation(code[:, i], values[a].to(z.device), c.delta)
            total = total + c.gamma * term
            out_dict[f"ar_{a}"] = term.detach()
        out_dict["loss"] = total
        return out_dict
