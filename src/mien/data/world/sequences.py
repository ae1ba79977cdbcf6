"""4D expression sequences of the world: absolute 3-D landmark sequences (F x 68 x 3, model
units) of an identity going neutral-to-expression (N2E) or expression-to-neutral (E2N), with a
random onset and speed (the data of Zou thesis ch. 3, digest A.1: L_f = L + Delta L_f).

Classes are the 7 emotions plus 4 facial actions; each sequence has a text description
("from the neutral face to happy"). Sequences render to frames with the world renderer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mien.data.factors import Factor
from mien.data.world import geometry as geo
from mien.data.world.factors import IDENTITY_FACTORS, NEUTRAL_VALUES, WORLD_FACTORS, IID, uniforms
from mien.errors import ConfigError

SEQUENCE_CLASSES = geo.EXPRESSIONS[1:] + geo.ACTIONS
DIRECTIONS = ("N2E", "E2N")
_PHRASE = {"mouth_open": "mouth open", "mouth_side": "mouth pulled to the side",
           "brow_raise": "raised brows", "cheeks_puff": "puffed cheeks"}
SEQUENCE_FACTORS = [
    Factor("class", "categorical", values=SEQUENCE_CLASSES, group="expression"),
    Factor("direction", "binary", values=DIRECTIONS, group="expression"),
    Factor("peak", "continuous", range=(0.6, 1.0), group="expression"),
    Factor("onset", "continuous", range=(0.05, 0.35), group="expression"),
    Factor("duration", "continuous", range=(0.3, 0.6), group="expression"),
]
_STREAMS = {f.name: 100 + i for i, f in enumerate(SEQUENCE_FACTORS)}


def describe(cls: int, direction: int) -> str:
    """The text of a sequence: 'from the neutral face to happy' or 'from happy to the neutral face'."""
    name = SEQUENCE_CLASSES[cls]
    phrase = _PHRASE.get(name, name)
    return f"from the neutral face to {phrase}" if direction == 0 else f"from {phrase} to the neutral face"


def intensity_curve(frames: int, direction, peak, onset, duration) -> torch.Tensor:
    """Per-frame intensity (B x F): a smoothstep ramp from onset over duration (fractions of the
    sequence), rising to peak for N2E, falling from it for E2N."""
    t = torch.linspace(0, 1, frames)[None]
    x = ((t - onset[:, None]) / duration[:, None]).clamp(0, 1)
    ramp = x * x * (3 - 2 * x)
    return peak[:, None] * torch.where(direction[:, None] == 0, ramp, 1 - ramp)


class WorldSequenceDataset(Dataset):
    """``n`` landmark sequences from ``seed``; ``frames`` is a length or a (low, high) range drawn
    per sequence (variable-length training, Zou ch. 3 uses [35, 45]); ``n_identities`` draws the
    identities from a finite pool. Items: ``sequence`` (F x 68 x 3), ``label`` (class), ``text``,
    ``factors``; :func:`pad_sequences` collates items of different lengths."""

    def __init__(self, n: int, seed: int = 0, frames: int | tuple[int, int] = 40, n_identities: int | None = None):
        lo, hi = (frames, frames) if isinstance(frames, int) else tuple(frames)
        if not 2 <= lo <= hi:
            raise ConfigError(f"frames {frames!r} must be a length >= 2 or a range (low, high) with low <= high")
        if n < 1:
            raise ConfigError(f"n={n}: a sequence data set needs at least one sequence")
        self.n, self.seed, self.frames = int(n), int(seed), (lo, hi)
        self.identity = IID(n_identities=n_identities)
        ident = [f for f in self.identity.factors() if f.name == "identity" or f.name in IDENTITY_FACTORS]
        self.factors: list[Factor] = ident + SEQUENCE_FACTORS

    def __len__(self) -> int:
        return self.n

    def draw(self, i: int) -> dict[str, torch.Tensor]:
        """Factor values of sequence i (identity and appearance from the world, then the motion)."""
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} sequences")
        f = self.identity.draw(self.seed, [i])
        u = {name: uniforms(self.seed, [i], s) for name, s in _STREAMS.items()}
        out = {k: v for k, v in f.items() if k == "identity" or k in IDENTITY_FACTORS}
        out["class"] = (u["class"] * len(SEQUENCE_CLASSES)).long().clamp(max=len(SEQUENCE_CLASSES) - 1)
        out["direction"] = (u["direction"] > 0.5).long()
        for fac in SEQUENCE_FACTORS[2:]:
            lo, hi = fac.range
            out[fac.name] = (lo + (hi - lo) * u[fac.name]).float()
        lo, hi = self.frames
        out["frames"] = (lo + (uniforms(self.seed, [i], 120) * (hi - lo + 1)).long()).clamp(max=hi)
        return out

    def __getitem__(self, i: int) -> dict:
        f = self.draw(i)
        frames = int(f["frames"])
        coeffs = torch.stack([f[f"shape_{m}"] for m in geo.SHAPE_MODES], 1).float()
        neutral = geo.neutral_shape(coeffs, f["sex"], f["age"])[:, : geo.N_LANDMARKS]
        motion = f["class"] + 1  # index into geo.MOTIONS, which starts with 'neutral'
        curve = intensity_curve(frames, f["direction"], f["peak"], f["onset"], f["duration"])
        disp = geo.expression_displacement(motion, curve)[:, :, : geo.N_LANDMARKS]
        cls, direction = int(f["class"]), int(f["direction"])
        factors = {k: v[0] for k, v in f.items() if k != "frames"}
        return {"sequence": (neutral[:, None] + disp)[0], "label": cls, "text": describe(cls, direction),
                "factors": factors}


def pad_sequences(items: list[dict]) -> dict:
    """Collate sequence items of different lengths: ``sequence`` B x Fmax x 68 x 3 padded with the
    last frame, ``length`` B, ``mask`` B x Fmax (True on real frames)."""
    lengths = torch.tensor([len(it["sequence"]) for it in items])
    fmax = int(lengths.max())
    seqs = torch.stack([torch.cat([it["sequence"], it["sequence"][-1:].expand(fmax - len(it["sequence"]), -1, -1)])
                        for it in items])
    return {"sequence": seqs, "length": lengths, "mask": torch.arange(fmax)[None] < lengths[:, None],
            "label": torch.tensor([it["label"] for it in items]), "text": [it["text"] for it in items],
            "factors": {k: torch.stack([torch.as_tensor(it["factors"][k]) for it in items]) for k in items[0]["factors"]}}


def render_sequence(sequence: torch.Tensor, size: int = 64, appearance: dict | None = None) -> torch.Tensor:
    """Frames (F x 3 x S x S) of a landmark sequence (F x 68 x 3, model units) drawn by the world
    renderer, frontal, with the appearance factors given (identity, hair, ... ) or neutral defaults."""
    seq = torch.as_tensor(sequence, dtype=torch.float32)
    if seq.dim() != 3 or seq.shape[1:] != (geo.N_LANDMARKS, 3):
        raise ConfigError(f"a sequence must be F x 68 x 3 landmarks, got {tuple(seq.shape)}")
    n = len(seq)
    f = IID().draw(0, np.zeros(n, dtype=np.int64))
    defaults = {**NEUTRAL_VALUES, "skin_tone": 0.6, "hair_colour": 0.3, "hair_style": 0, "eye_colour": 0,
                "age": 0.2, "sex": 0, "expression": 0, "intensity": 0.0}
    names = {fac.name for fac in WORLD_FACTORS}
    for k in names:
        v = (appearance or {}).get(k, defaults.get(k, f[k][0]))
        f[k] = torch.as_tensor(v).reshape(-1)[:1].expand(n).to(f[k].dtype)
    from mien.data.world.render import render

    return render(f, size, landmarks=seq)[0]


def save_animation(frames: torch.Tensor, path, fps: int = 12) -> None:
    """Write frames (F x 3 x S x S in [-1, 1]) as a GIF or, with the video extra, an MP4."""
    import imageio.v3 as iio

    from mien.errors import OutputError

    array = ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    path = str(path)
    try:
        if path.endswith(".mp4"):
            iio.imwrite(path, array, fps=fps, codec="libx264", macro_block_size=1)
        elif path.endswith(".gif"):
            iio.imwrite(path, array, duration=1000 / fps, loop=0)
        else:
            raise ConfigError(f"{path}: animations are written as .gif or .mp4")
    except (ImportError, ValueError, RuntimeError) as e:
        if path.endswith(".mp4"):
            raise ConfigError(f"cannot write {path} ({e}); install the video extra (pip install 'mien[video]') or use .gif") from None
        raise
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}; choose another output folder") from None
