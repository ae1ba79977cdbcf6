"""Encoders into a frozen StyleGAN's W+ (Haas thesis Ch. 2.4 and Ch. 5, digest §1.3, §2.3):

- ``variant: psp``, pixel2style2pixel (Richardson et al. 2021): pSp(x) := G(E(x) + w_avg). A
  residual CNN gives three feature maps, fine (highest resolution), medium and coarse; a top-down
  feature pyramid adds each coarser map, up-sampled, to the next finer one; one "map2style" block per
  style input (strided convolutions down to 1 x 1, then a linear layer) maps the coarse level to the
  first codes, the medium level to the middle ones and the fine level to the last.
- ``variant: e4e``, encoder4editing (Tov et al. 2021): one w from the coarse level plus offsets,
  the code (w, w + Delta_1, ..., w + Delta_{N-1}) + w_avg, with L_d-reg = sum_{i=1}^{N-1}
  ||Delta_i||_2 (:func:`delta_regularisation`); ``progressive_every`` > 0 switches the offsets on
  one at a time, one more every ``progressive_every`` steps (e4e's progressive training).

Loss per batch: ``mse_weight`` MSE + ``lpips_weight`` lpips_mien (the frozen shipped evaluator, in
place of LPIPS-VGG) of G(codes) against the input, plus pSp's w-norm ||E(x)||_2 (``w_norm_weight``)
and e4e's d-reg (``d_reg_weight``). A fraction ``synthetic`` of each batch is replaced by generated
pairs (w, G(w)), w = f(z), whose codes are also pulled to w by an MSE latent loss
(``latent_weight``; the synthetic-pair training of Haas P-I's ResNet encoder, Fig. 3.4a), so the
encoder learns on small data too.

e4e's latent discriminator (``latent_disc_weight`` > 0, e4e only): an MLP D_W scoring W vectors,
trained in its own phase (group ``disc``) with the logistic loss to tell w = f(z) from the
encoder's codes (w and every switched-on w + Delta_i, w_avg added), with lazy R1 on the real w
(gamma ``latent_r1_gamma`` every ``latent_r1_every`` steps); the encoder adds
``latent_disc_weight`` softplus(-D_W(codes)) (e4e's defaults: 0.1, 4 layers, R1 10 every 16).

The generator is frozen and kept out of the state dict: the config stores its checkpoint folder
(``generator``) and the sha256 fingerprint of its weights (``generator_fingerprint``, filled in
when the encoder is built for training); building an encoder whose generator's weights changed
is a DataError. :func:`load_encoder` can point an encoder at a moved generator folder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mien.errors import ConfigError, DataError
from mien.evaluator.perceptual import lpips_distance
from mien.models import checkpoint
from mien.models.base import GenerativeModel, ImageConfig, Phase, images_of, register
from mien.models.stylegan.losses import d_logistic, g_nonsaturating, r1_penalty
from mien.nn.equalized import EqualLinear

GAN_FAMILIES = ("stylegan", "cgan", "infogan")


def generator_fingerprint(folder) -> str:
    """sha256 (16 hex digits) of a checkpoint's ``model.safetensors``."""
    path = Path(folder) / "model.safetensors"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        raise DataError(f"generator checkpoint {folder} has no readable model.safetensors; pass the folder of a "
                        "trained stylegan (model.generator=...)") from None


def load_generator(folder):
    """The frozen StyleGAN of checkpoint folder ``folder`` (a DataError for any other family)."""
    if not folder:
        raise ConfigError("a GAN encoder needs model.generator=<folder of a trained stylegan checkpoint>")
    name = checkpoint.read_config(folder)["model"].get("name")
    if name not in GAN_FAMILIES:
        raise DataError(f"{folder} holds a {name!r} model, not a GAN; model.generator needs a stylegan, cgan or "
                        "infogan checkpoint")
    return checkpoint.load(folder).requires_grad_(False)


@dataclass
class GANEncoderConfig(ImageConfig):
    """pSp / e4e encoder of a frozen StyleGAN.

    generator: the GAN's checkpoint folder; generator_fingerprint: filled in from it;
    variant: ``psp`` or ``e4e``; widths: channels of the residual backbone's stages, each halving
    the resolution (at least three; the last three give the fine, medium and coarse maps, all
    projected to ``widths[-1]`` channels by the pyramid); blocks: residual blocks per stage;
    coarse, medium: the number of style inputs read from the coarse level and the index where the
    fine level takes over (0: pSp's proportions 3 and 7 of 18, scaled to the GAN's num_ws);
    mse_weight, lpips_weight, w_norm_weight, d_reg_weight, latent_weight: the loss weights;
    synthetic: the fraction of each batch made of generated (w, G(w)) pairs;
    progressive_every: e4e's progressive training period (0 = every offset from the start);
    latent_disc_weight, latent_disc_layers, latent_r1_gamma, latent_r1_every: e4e's latent
    discriminator (weight 0 = none; unused by pSp);
    w_dim, num_ws: taken from the generator."""

    generator: str = ""
    generator_fingerprint: str = ""
    variant: str = "psp"
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks: int = 1
    coarse: int = 0
    medium: int = 0
    mse_weight: float = 1.0
    lpips_weight: float = 0.8
    w_norm_weight: float = 0.0
    d_reg_weight: float = 2e-4
    latent_weight: float = 1.0
    synthetic: float = 0.5
    progressive_every: int = 0
    latent_disc_weight: float = 0.1
    latent_disc_layers: int = 4
    latent_r1_gamma: float = 10.0
    latent_r1_every: int = 16
    w_dim: int = 0
    num_ws: int = 0

    def __post_init__(self):
        checks = {"variant": self.variant in ("psp", "e4e"), "widths": len(self.widths) >= 3 and min(self.widths) >= 1,
                  "blocks": self.blocks >= 1, "synthetic": 0 <= self.synthetic <= 1,
                  "progressive_every": self.progressive_every >= 0, "latent_disc_layers": self.latent_disc_layers >= 1,
                  "latent_r1_every": self.latent_r1_every >= 1, "latent_r1_gamma": self.latent_r1_gamma >= 0,
                  "latent_disc_weight": self.latent_disc_weight >= 0,
                  **{k: getattr(self, k) >= 0 for k in ("mse_weight", "lpips_weight", "w_norm_weight", "d_reg_weight",
                                                         "latent_weight", "coarse", "medium")}}
        bad = next((k for k, ok in checks.items() if not ok), None)
        if bad:
            raise ConfigError(f"model.{bad} = {getattr(self, bad)!r} is out of range; see the GANEncoderConfig docstring")
        if self.image_size < 2 ** (len(self.widths)):
            raise ConfigError(f"{self.image_size}-px images are too small for {len(self.widths)} backbone stages; "
                              "drop a width from model.widths")

    @classmethod
    def from_data(cls, section: dict, data) -> "GANEncoderConfig":
        """Completed with the generator's fingerprint, w_dim and num_ws (the generator is a fact of
        the training setup like the data), and checked against the data's image size."""
        section = dict(section)
        folder = section.get("generator")
        if not folder:
            raise ConfigError("a GAN encoder needs model.generator=<folder of a trained stylegan checkpoint>")
        gan = checkpoint.read_config(folder)["model"]
        if gan.get("name") not in GAN_FAMILIES:
            raise DataError(f"{folder} holds a {gan.get('name')!r} model, not a GAN; model.generator needs a "
                            "stylegan, cgan or infogan checkpoint")
        section.setdefault("generator_fingerprint", generator_fingerprint(folder))
        section.setdefault("w_dim", gan.get("w_dim"))
        section.setdefault("num_ws", 2 * len(gan.get("widths", [])))
        size = getattr(data, "size", None)
        if size is not None and gan.get("image_size") != size:
            raise ConfigError(f"the generator makes {gan.get('image_size')}-px images but data.size is {size}; "
                              "set data.size to the generator's size")
        return super().from_data(section, data)


def delta_regularisation(deltas: torch.Tensor) -> torch.Tensor:
    """e4e's L_d-reg = sum_{i=1}^{N-1} ||Delta_i||_2 per sample (deltas: n x (N-1) x w_dim)."""
    return deltas.norm(dim=2).sum(1)


def w_norm(codes: torch.Tensor) -> torch.Tensor:
    """pSp's w-norm ||E(x)||_2 per sample: the norm of the whole code before w_avg is added."""
    return codes.flatten(1).norm(dim=1)


class LatentDiscriminator(nn.Module):
    """e4e's latent-codes discriminator: ``layers`` linear layers of width w_dim (leaky ReLU 0.2
    between them), the last giving one logit per W vector."""

    def __init__(self, w_dim: int, layers: int):
        super().__init__()
        blocks = []
        for _ in range(layers - 1):
            blocks += [nn.Linear(w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks, nn.Linear(w_dim, 1))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w)[..., 0]


class ResidualBlock(nn.Module):
    """x + body(x) with body = conv3x3 (stride) -> leaky ReLU -> conv3x3; the shortcut is a
    strided 1 x 1 convolution when the shape changes (pSp's IR bottleneck without normalisation)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(out_channels, out_channels, 3, 1, 1))
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else nn.Conv2d(in_channels, out_channels, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


class MapToStyle(nn.Module):
    """pSp's map2style: log2(size) strided 3 x 3 convolutions with leaky ReLU take a size x size
    map to 1 x 1, then an equalised linear layer gives one w_dim code."""

    def __init__(self, channels: int, w_dim: int, size: int):
        super().__init__()
        convs = []
        while size > 1:
            convs += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.2)]
            size //= 2
        self.convs = nn.Sequential(*convs)
        self.linear = EqualLinear(channels, w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


class FeaturePyramid(nn.Module):
    """Residual backbone plus the top-down pyramid: (fine, medium, coarse) maps, each with
    ``widths[-1]`` channels: coarse = c3, medium = up(coarse) + lateral(c2), fine = up(medium) +
    lateral(c1), where c1..c3 are the last three stages' outputs."""

    def __init__(self, in_channels: int, widths: list[int], blocks: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1), nn.LeakyReLU(0.2))
        stages, prev = [], widths[0]
        for w in widths:
            stages.append(nn.Sequential(ResidualBlock(prev, w, 2), *[ResidualBlock(w, w) for _ in range(blocks - 1)]))
            prev = w
        self.stages = nn.ModuleList(stages)
        self.lateral_medium = nn.Conv2d(widths[-2], widths[-1], 1)
        self.lateral_fine = nn.Conv2d(widths[-3], widths[-1], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, outs = self.stem(x), []
        for stage in self.stages:
            h = stage(h)
            outs.append(h)
        c1, c2, c3 = outs[-3:]
        medium = F.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=False) + self.lateral_medium(c2)
        fine = F.interpolate(medium, size=c1.shape[-2:], mode="bilinear", align_corners=False) + self.lateral_fine(c1)
        return fine, medium, c3


@register("psp", GANEncoderConfig)
class GANEncoder(GenerativeModel):
    """E: image -> W+ of a frozen StyleGAN (pSp or e4e, see the module docstring); ``encode`` gives
    the codes E(x) + w_avg (n x num_ws x w_dim), ``decode`` G(codes), ``reconstruct`` both."""

    def __init__(self, config: GANEncoderConfig):
        super().__init__(config)
        c = config
        gan = load_generator(c.generator)
        if c.generator_fingerprint and generator_fingerprint(c.generator) != c.generator_fingerprint:
            raise DataError(f"the generator in {c.generator} is not the one this encoder was trained for (fingerprint "
                            f"{generator_fingerprint(c.generator)} != {c.generator_fingerprint}); restore that "
                            "generator or retrain the encoder")
        if gan.config.image_size != c.image_size or gan.config.in_channels != c.in_channels:
            raise ConfigError(f"the generator makes {gan.config.image_size}-px images, the encoder takes "
                              f"{c.image_size}-px ones; set model.image_size (data.size) to the generator's")
        if (c.w_dim or gan.config.w_dim, c.num_ws or gan.config.num_ws) != (gan.config.w_dim, gan.config.num_ws):
            raise DataError(f"the encoder's codes ({c.num_ws} x {c.w_dim}) do not fit the generator in {c.generator} "
                            f"({gan.config.num_ws} x {gan.config.w_dim}); pass the generator it was trained for")
        self.w_dim, self.num_ws = gan.config.w_dim, gan.config.num_ws
        object.__setattr__(self, "_gan", [gan])  # frozen, outside the state dict and the optimiser
        self.coarse = c.coarse or max(1, round(self.num_ws * 3 / 18))
        self.medium = c.medium or max(self.coarse + 1, round(self.num_ws * 7 / 18))
        if not 1 <= self.coarse < self.medium <= self.num_ws:
            raise ConfigError(f"model.coarse and model.medium must satisfy 1 <= coarse < medium <= {self.num_ws}")
        self.pyramid = FeaturePyramid(c.in_channels, c.widths, c.blocks)
        sizes = [c.image_size // 2 ** (len(c.widths) - k) for k in (2, 1, 0)]  # fine, medium, coarse
        self.styles = nn.ModuleList([MapToStyle(c.widths[-1], self.w_dim, sizes[self.level(i)])
                                     for i in range(self.num_ws)])
        self.register_buffer("offsets_active", torch.tensor(self.num_ws - 1 if c.progressive_every == 0 else 0))
        self.latent_disc = (LatentDiscriminator(self.w_dim, c.latent_disc_layers)
                            if c.variant == "e4e" and c.latent_disc_weight > 0 else None)

    # --- the contract --------------------------------------------------------------------------
    def param_groups(self) -> dict:
        encoder = [*self.pyramid.parameters(), *self.styles.parameters()]
        if self.latent_disc is None:
            return {"model": encoder}
        return {"model": encoder, "disc": list(self.latent_disc.parameters())}

    def ema_modules(self) -> list[str]:
        return ["pyramid", "styles"]

    def phases(self) -> list[Phase]:
        phases = [Phase("model", self.loss)]
        if self.latent_disc is not None:
            phases.append(Phase("disc", self.latent_disc_loss))
            if self.config.latent_r1_gamma > 0:
                phases.append(Phase("disc", self.latent_r1_loss, every=self.config.latent_r1_every, lazy=True,
                                    name="latent_r1"))
        return phases

    @property
    def generator(self):
        """The frozen GAN (moved to the encoder's device on first use)."""
        gan, device = self._gan[0], self.styles[0].linear.weight.device
        if gan.w_avg.device != device:
            self._gan[0] = gan = gan.to(device)
        return gan

    def level(self, i: int) -> int:
        """The pyramid level of style input i: 2 coarse, 1 medium, 0 fine."""
        return 2 if i < self.coarse else 1 if i < self.medium else 0

    def offsets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """E(x) before w_avg is added (n x num_ws x w_dim) and, for e4e, the offsets Delta_1..N-1."""
        levels = self.pyramid(x)
        if self.config.variant == "psp":
            return torch.stack([m(levels[self.level(i)]) for i, m in enumerate(self.styles)], 1), None
        w = self.styles[0](levels[2])
        k = int(self.offsets_active)
        deltas = [m(levels[self.level(i)]) if i <= k else w.new_zeros(w.shape)
                  for i, m in enumerate(self.styles) if i > 0]
        deltas = torch.stack(deltas, 1) if deltas else w.new_zeros(len(w), 0, w.shape[1])
        return torch.cat([w[:, None], w[:, None] + deltas], 1), deltas

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        shape = (c.in_channels, c.image_size, c.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise DataError(f"the encoder takes n x {' x '.join(map(str, shape))} images, got {tuple(x.shape)}")
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """W+ codes E(x) + w_avg (n x num_ws x w_dim)."""
        return self.offsets(self._check(x))[0] + self.generator.w_avg

    def decode(self, ws: torch.Tensor, noise=None) -> torch.Tensor:
        return self.generator.synthesize(ws, noise)

    def reconstruct(self, x: torch.Tensor, noise=None) -> torch.Tensor:
        return self.decode(self.encode(x), noise)

    def latent_spaces(self) -> dict[str, tuple[int, ...]]:
        return {"w+": (self.num_ws, self.w_dim)}

    def _synthetic_pairs(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """n generated pairs (W+ codes of w = f(z), G(w)) without gradient."""
        gan = self.generator
        with torch.no_grad():
            z, _, _ = gan.draw_z(n, device=device)
            ws = gan.broadcast(gan.map(z, gan.labels_for(None, n)))
            return ws, gan.synthesize(ws).clamp(-1, 1)

    def loss(self, batch: dict, step: int = 0) -> dict:
        c = self.config
        x = self._check(images_of(batch))
        if c.progressive_every:
            self.offsets_active.fill_(min(self.num_ws - 1, step // c.progressive_every))
        k = round(c.synthetic * len(x))
        ws_true = None
        if k:
            ws_true, fake = self._synthetic_pairs(k, x.device)
            x = torch.cat([x[: len(x) - k], fake])
        codes, deltas = self.offsets(x)
        ws = codes + self.generator.w_avg
        x_hat = self.decode(ws)
        mse = F.mse_loss(x_hat, x)
        out = {"mse": mse}
        if c.lpips_weight > 0:
            out["lpips"] = lpips_distance(self._frozen_evaluator(x), x_hat, x).mean()
        if c.w_norm_weight > 0:
            out["w_norm"] = w_norm(codes).mean()
        if deltas is not None and c.d_reg_weight > 0:
            out["d_reg"] = delta_regularisation(deltas).mean()
        if ws_true is not None and c.latent_weight > 0:
            out["latent"] = F.mse_loss(ws[len(x) - k:], ws_true)
        if self.latent_disc is not None:
            out["latent_adv"] = g_nonsaturating(self.latent_disc(self._active_codes(ws)))
        weights = {"mse": c.mse_weight, "lpips": c.lpips_weight, "w_norm": c.w_norm_weight, "d_reg": c.d_reg_weight,
                   "latent": c.latent_weight, "latent_adv": c.latent_disc_weight}
        loss = sum(weights[name] * term for name, term in out.items())
        return {"loss": loss, **{name: term.detach() for name, term in out.items()}}

    def _active_codes(self, ws: torch.Tensor) -> torch.Tensor:
        """The distinct codes of e4e: w and each switched-on w + Delta_i (n x (1 + active) x w_dim)."""
        return ws[:, : int(self.offsets_active) + 1]

    def _real_w(self, n: int, device) -> torch.Tensor:
        gan = self.generator
        with torch.no_grad():
            z, _, _ = gan.draw_z(n, device=device)
            return gan.map(z, gan.labels_for(None, n))

    def latent_disc_loss(self, batch: dict, step: int = 0) -> dict:
        """D_W's logistic loss: real w = f(z) against the encoder's codes (detached)."""
        x = self._check(images_of(batch))
        with torch.no_grad():
            fake = self._active_codes(self.encode(x))
        real_logits, fake_logits = self.latent_disc(self._real_w(len(x), x.device)), self.latent_disc(fake)
        return {"loss": d_logistic(real_logits, fake_logits), "latent_real": real_logits.mean().detach(),
                "latent_fake": fake_logits.mean().detach()}

    def latent_r1_loss(self, batch: dict, step: int = 0) -> dict:
        """gamma / 2 * R1 of D_W on real w (lazy, e4e's w-discriminator regulariser)."""
        real = self._real_w(len(images_of(batch)), images_of(batch).device).requires_grad_(True)
        penalty = r1_penalty(self.latent_disc(real), real)
        return {"loss": self.config.latent_r1_gamma / 2 * penalty, "latent_r1": penalty.detach()}

    def _frozen_evaluator(self, x: torch.Tensor):
        """The shipped evaluator of this image size, frozen and outside the state dict (lpips_mien
        in place of LPIPS-VGG)."""
        from mien.evaluator import evaluator_for

        return evaluator_for(self.config.image_size).to(x.device).requires_grad_(False)


def load_encoder(folder, generator=None, device="cpu") -> GANEncoder:
    """The encoder of checkpoint ``folder``; ``generator`` (a folder) replaces the stored generator
    path, checked against the stored fingerprint (a DataError when it is another generator)."""
    config = checkpoint.read_config(folder)
    section = dict(config["model"])
    if section.get("name") != "psp":
        raise DataError(f"{folder} holds a {section.get('name')!r} model, not a GAN encoder; pass the folder of a "
                        "`mien train psp/...` run")
    if generator is not None:
        if generator_fingerprint(generator) != section.get("generator_fingerprint"):
            raise DataError(f"encoder {folder} was trained for another generator ({section.get('generator')}), "
                            f"not {generator}; train an encoder on this generator (model.generator={generator})")
        section["generator"] = str(generator)
    from mien.models.base import build_model

    model = build_model(section)
    try:
        model.load_state_dict(checkpoint.read_weights(folder, device))
    except RuntimeError as e:
        raise DataError(f"{folder}/model.safetensors does not match its config.yaml ({str(e).splitlines()[-1].strip()})"
                        "; use the files written together by one run") from None
    return model.to(device).eval()
