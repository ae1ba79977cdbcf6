"""VQ-VAE (van den Oord et al. 2017; lecture 002, "Variational auto-encoders with vector
quantization"; Zou thesis ch. 6, variant A of §6.3.4: VQ with a one-hot posterior).

The encoder maps x to an M x M map of D-dimensional vectors z_e(x); each is replaced by its nearest
codebook vector e_k (K codes), z_q = e_{k*}, k* = argmin_k ||z_e - e_k||_2 (van den Oord Eq. 1-2),
and the decoder reconstructs x from z_q. The loss (van den Oord Eq. 3; lecture 002; Zou §6.3.3):

    L = MSE(x, D(z_q)) + ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2,   beta = 0.25,

with straight-through gradients, z_q = z_e + sg[z_q - z_e]. With ``ema_decay`` > 0 the codebook is
instead the exponential moving average of the encoder vectors assigned to each code, with
Laplace-smoothed cluster sizes (van den Oord App. A.1), and the codebook term is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mien.errors import ConfigError
from mien.models.base import GenerativeModel, ImageConfig, images_of, register
from mien.nn.conv import ConvDecoder, ConvEncoder, check_geometry


@dataclass
class VQVAEConfig(ImageConfig):
    num_codes: int = 512
    code_dim: int = 16
    beta: float = 0.25
    ema_decay: float = 0.0
    ema_eps: float = 1e-5

    def __post_init__(self):
        if self.num_codes < 2 or self.code_dim < 1:
            raise ConfigError(f"model.num_codes must be >= 2 and model.code_dim >= 1, "
                              f"got {self.num_codes} and {self.code_dim}")
        if self.beta < 0:
            raise ConfigError(f"model.beta must be >= 0, got {self.beta}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"model.ema_decay must lie in [0, 1) (0 = codebook loss, e.g. 0.99 = EMA), got {self.ema_decay}")
        if self.ema_eps <= 0:
            raise ConfigError(f"model.ema_eps must be > 0, got {self.ema_eps}")


def perplexity(usage: torch.Tensor) -> torch.Tensor:
    """exp of the entropy of the code-usage distribution ``usage`` (K, summing to 1): K when all
    codes are used equally, 1 when one code takes everything."""
    return torch.exp(-(usage * torch.log(usage + 1e-10)).sum())


def squared_distances(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """||z - e_k||^2 for every row z of ``flat`` (N x D) and code e_k of ``codebook`` (K x D): N x K."""
    return flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)[None]


@torch.no_grad()
def pick_vectors(flat: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` rows of ``flat`` chosen at random (repeated if it has fewer), rank 0's choice broadcast
    under data parallelism: the encoder vectors a codebook starts from."""
    pick = torch.randint(len(flat), (k,), device=flat.device) if len(flat) < k else \
        torch.randperm(len(flat), device=flat.device)[:k]
    out = flat[pick].contiguous()
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(out, 0)
    return out


def _all_reduce(*tensors: torch.Tensor) -> None:
    """Sum statistics over processes when training data-parallel."""
    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t)


@register("vqvae", VQVAEConfig)
class VQVAE(GenerativeModel):
    """VQ-VAE with a K x D codebook (``num_codes`` x ``code_dim``) on an M x M latent map,
    M = image_size / 2^len(widths).

    The codebook is initialised from encoder vectors of the first training batch (:meth:`fit_data`,
    called by the engine before step 0), so that codes do not start out of the encoder's reach. Loss dict: ``loss``, ``mse``,
    ``codebook`` (0 with EMA), ``commitment``, ``perplexity`` (exp of the entropy of the average
    code usage over the batch) and ``codes_used`` (fraction of codes used in the batch).

    ``sample`` draws every code index uniformly and independently: the model has no learned prior
    over indices yet (a PixelCNN or transformer prior would be fitted separately), so samples show
    the codebook's vocabulary, not the data distribution.
    """

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        c = config
        self.m = check_geometry(c.image_size, c.widths)
        self.encoder = nn.Sequential(ConvEncoder(c.in_channels, c.widths, c.blocks),
                                     nn.Conv2d(c.widths[-1], c.code_dim, 1))
        self.decoder = nn.Sequential(nn.Conv2d(c.code_dim, c.widths[-1], 1),
                                     ConvDecoder(c.in_channels, c.widths, c.blocks))
        k = c.num_codes
        self.codebook = nn.Parameter(torch.empty(k, c.code_dim).uniform_(-1 / k, 1 / k),
                                     requires_grad=c.ema_decay == 0)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        if c.ema_decay > 0:
            self.register_buffer("ema_cluster_size", torch.zeros(k))
            self.register_buffer("ema_embed_sum", self.codebook.detach().clone())

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.config.code_dim, self.m, self.m)

    @property
    def latent_dim(self) -> int:
        """Number of components of z_q (code_dim x M x M)."""
        return self.config.code_dim * self.m * self.m

    # --- quantisation -------------------------------------------------------------------------
    def nearest_codes(self, z_e: torch.Tensor) -> torch.Tensor:
        """argmin_k ||z_e - e_k||^2 at every position: B x D x M x M -> B x M x M indices."""
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])
        return squared_distances(flat, self.codebook).argmin(1).view(z_e.shape[0], *z_e.shape[2:])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices B x M x M -> z_q B x D x M x M."""
        return F.embedding(idx, self.codebook).permute(0, 3, 1, 2)

    # --- public interface ---------------------------------------------------------------------
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.nearest_codes(self.encoder(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised latent map z_q (B x code_dim x M x M)."""
        return self.lookup(self.encode_indices(x))

    def decode(self, zq: torch.Tensor) -> torch.Tensor:
        return self.decoder(zq)

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        return self.decode(self.lookup(idx))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # --- first stage of latent diffusion (Pikoulis §3.4) ---------------------------------------
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latents z_e: latent diffusion runs there and quantises when decoding."""
        return self.encoder(x)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(self.lookup(self.nearest_codes(z)))

    def sample(self, n: int, cond=None, generator=None) -> dict:
        """A sample dict: ``image`` decoded from code maps with indices drawn uniformly and
        independently (no prior yet)."""
        if cond is not None:
            raise ConfigError("vqvae is unconditional; sample it without a condition")
        device = generator.device if generator is not None else self.codebook.device
        idx = torch.randint(self.config.num_codes, (n, self.m, self.m), generator=generator, device=device)
        return {"image": self.decode_indices(idx.to(self.codebook.device))}

    # --- training -----------------------------------------------------------------------------
    @torch.no_grad()
    def fit_data(self, batch: dict) -> dict:
        """Initialise the codebook from the encoder vectors of ``batch`` (once)."""
        if bool(self.initialised):
            return {}
        z_e = self.encoder(images_of(batch))
        self._init_codebook(z_e.permute(0, 2, 3, 1).reshape(-1, self.config.code_dim))
        return {"codebook_init": "encoder vectors of the first batch"}

    @torch.no_grad()
    def _init_codebook(self, flat: torch.Tensor) -> None:
        """Set the codebook to randomly chosen encoder vectors (repeated if the batch has fewer
        vectors than codes); rank 0's choice is broadcast under data parallelism."""
        self.codebook.data.copy_(pick_vectors(flat, self.config.num_codes))
        if self.config.ema_decay > 0:
            self.ema_embed_sum.copy_(self.codebook.data)
            self.ema_cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, onehot: torch.Tensor) -> None:
        """N_k <- g N_k + (1-g) n_k;  m_k <- g m_k + (1-g) sum_{i: k*_i = k} z_e,i;
        e_k = m_k / N~_k with N~_k = (N_k + eps) / (n + K eps) * n  (van den Oord App. A.1)."""
        g, eps, k = self.config.ema_decay, self.config.ema_eps, self.config.num_codes
        flat, onehot = flat.float(), onehot.float()  # statistics in float32 under mixed precision
        counts, sums = onehot.sum(0), onehot.t() @ flat
        _all_reduce(counts, sums)
        self.ema_cluster_size.mul_(g).add_(counts, alpha=1 - g)
        self.ema_embed_sum.mul_(g).add_(sums, alpha=1 - g)
        n = self.ema_cluster_size.sum()
        smoothed = (self.ema_cluster_size + eps) / (n + k * eps) * n
        self.codebook.data.copy_(self.ema_embed_sum / smoothed[:, None])

    def loss(self, batch: dict, step: int = 0) -> dict:
        c = self.config
        x = images_of(batch)
        z_e = self.encoder(x)
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, c.code_dim)
        idx = self.nearest_codes(z_e)
        onehot = F.one_hot(idx.reshape(-1), c.num_codes).type(flat.dtype)
        z_q = self.lookup(idx)
        if self.training and c.ema_decay > 0:
            self._ema_update(flat.detach(), onehot)
        commitment = F.mse_loss(z_e, z_q.detach())
        codebook = F.mse_loss(z_q, z_e.detach()) if c.ema_decay == 0 else torch.zeros((), device=x.device)
        z_st = z_e + (z_q - z_e).detach()  # straight-through estimator
        mse = F.mse_loss(self.decode(z_st), x)
        usage = onehot.mean(0)
        return {"loss": mse + codebook + c.beta * commitment, "mse": mse.detach(), "codebook": codebook.detach(),
                "commitment": commitment.detach(), "perplexity": perplexity(usage).detach(),
                "codes_used": (usage > 0).float().mean().detach()}
