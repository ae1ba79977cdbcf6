"""What every landmark-sequence model of system Z1 shares: input checks, coordinate
standardisation (a per-coordinate mean and one scale fitted on the first training batch before step 0, digest A.3),
the range of trained lengths, and label names."""

from __future__ import annotations

import torch

from mien.errors import ConfigError, DataError
from mien.models.base import GenerativeModel, class_index


class SequenceModel(GenerativeModel):
    """Config fields read here: ``landmarks``, ``class_names``, ``directions``."""

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("coord_mean", torch.zeros(3 * config.landmarks))
        self.register_buffer("coord_scale", torch.zeros(()))
        self.register_buffer("trained_frames", torch.zeros(2, dtype=torch.long))

    def observe(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked sequences (B x F x N x 3) and frame mask of a training batch; in training mode,
        widen the range of trained lengths."""
        seq = self.check_sequences(batch["sequence"], "training batch")
        mask = batch.get("mask")
        mask = torch.ones(seq.shape[:2], dtype=torch.bool, device=seq.device) if mask is None else mask.bool()
        if self.training:
            lengths = mask.sum(1)
            lo, hi = int(lengths.min()), int(lengths.max())
            if self.trained_frames[1] > 0:
                lo, hi = min(lo, int(self.trained_frames[0])), max(hi, int(self.trained_frames[1]))
            self.trained_frames.copy_(torch.tensor([lo, hi]))
        return seq, mask

    def check_sequences(self, seq: torch.Tensor, what: str = "sequence") -> torch.Tensor:
        """B x F x N x 3 (or F x N x 3) finite landmarks in model units, else a DataError."""
        seq = torch.as_tensor(seq, dtype=torch.float32)
        n = self.config.landmarks
        if seq.dim() == 3:
            seq = seq[None]
        if seq.dim() != 4 or seq.shape[2:] != (n, 3):
            raise DataError(f"the {what} has shape {tuple(seq.shape)}; it must be frames x {n} landmarks x 3 "
                            f"(this model was trained on {n} landmarks)")
        if not torch.isfinite(seq).all():
            raise DataError(f"the {what} holds NaN or infinite values; remove or repair those frames")
        return seq.to(self.coord_mean.device)

    def normalise(self, seq: torch.Tensor) -> torch.Tensor:
        """B x F x N x 3 model units -> B x F x 3N standardised coordinates."""
        if float(self.coord_scale) == 0:
            raise ConfigError("this model has not seen data yet (no coordinate statistics); train it first")
        return (seq.flatten(2) - self.coord_mean) / self.coord_scale

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.coord_scale + self.coord_mean).unflatten(2, (self.config.landmarks, 3))

    @torch.no_grad()
    def fit_data(self, batch: dict) -> dict:
        """Mean per coordinate and one scale (the std of the centred coordinates) over the real
        frames of ``batch`` (digest A.3), once; averaged over processes under DDP so that every
        replica standardises alike."""
        if float(self.coord_scale) != 0:
            return {}
        seq = self.check_sequences(batch["sequence"], "training batch")
        mask = batch.get("mask")
        mask = torch.ones(seq.shape[:2], dtype=torch.bool, device=seq.device) if mask is None else mask.bool()
        flat = seq.flatten(2)[mask]
        mean = flat.mean(0)
        scale = (flat - mean).pow(2).mean().sqrt()
        stats = torch.cat([mean, scale[None]])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
            stats /= torch.distributed.get_world_size()
        self.coord_mean.copy_(stats[:-1])
        self.coord_scale.copy_(stats[-1].clamp_min(1e-8))
        return {"coord_scale": float(self.coord_scale)}

    def label_index(self, label) -> int:
        return class_index(label, self.config.class_names, what="expression label")

    def direction_index(self, direction) -> int:
        return class_index(direction, self.config.directions, what="sequence type")

    def check_frames(self, frames: int) -> int:
        lo, hi = (int(v) for v in self.trained_frames)
        if hi == 0:
            raise ConfigError("this model has not been trained (no trained sequence lengths); train it first")
        if not lo <= frames <= hi:
            raise ConfigError(f"{frames} frames lies outside the trained range {lo}..{hi}; ask for a length in it "
                              "or retrain with data.frames covering it")
        return frames
