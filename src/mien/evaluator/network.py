"""The evaluator CNN: one small convolutional trunk read by every metric that the field computes
with a pretrained network (design.md, Conventions: ``fid_mien``, ``lpips_mien``, ``csim_mien``).

Heads (all from one 256-d neck): expression class, intensity, the binary attributes in world
schema order (sex, glasses, beard, hat), pose (yaw, pitch, roll, scaled to [-1, 1]), 68
landmarks (in [0, 1] image coordinates) and a unit-norm identity embedding trained with an
additive angular margin (ArcFace). ``taps`` gives the per-stage activations for the LPIPS
formula, ``features`` the neck vector for FID/KID/precision-recall (the role of Inception's pool
features, Pikoulis digest §4.1; Zou Eq. 2.38).

Fine-tuning on a prepared real data set (``labels: data``, ``mien evaluator train --data``):
the heads learn what the data labels, mapped by name onto the evaluator's classes and
attributes when the config is built from the data (:meth:`EvaluatorConfig.from_data`): its
expression classes (AffectNet's eight are the world's; FER2013's "angry" is "anger"; a class
with no match is not scored), its binary factors for sex, glasses, beard and hat (the world's
names, or CelebA's Male, Eyeglasses, No_Beard inverted, Wearing_Hat), and its 68 landmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mien.data.world.geometry import EXPRESSIONS
from mien.errors import ConfigError
from mien.models.base import GenerativeModel, ModelConfig, register

ATTRIBUTES = ("sex", "glasses", "beard", "hat")
POSE = ("yaw", "pitch", "roll")
POSE_SCALE = (35.0, 15.0, 12.0)  # degrees mapped to 1 (the world's pose ranges)
EXPRESSION_SYNONYMS = {"angry": "anger", "surprised": "surprise", "happiness": "happy", "sadness": "sad",
                       "disgusted": "disgust", "fearful": "fear", "afraid": "fear"}
ATTRIBUTE_SOURCES = {"sex": ("sex", "Male"), "glasses": ("glasses", "Eyeglasses"), "beard": ("beard", "!No_Beard"),
                     "hat": ("hat", "Wearing_Hat")}  # a leading ! inverts the data's factor


@dataclass
class EvaluatorConfig(ModelConfig):
    """An evaluator: input ``size`` (32..256, a power of two; from the data), stage widths
    (stages at 32, 16, 8 and 4 px), the neck width and the identity embedding width. Training
    only: ``identities``, the ArcFace classes (the world identities trained on; 0: no ArcFace
    head, as in the shipped weights, which keep only the embedding), and ``sex_weight``, the
    weight of the sex label against the other attributes. ``expressions``: the names of the
    expression classes (the world's, by default)."""

    name: str = "evaluator"
    size: int = 64
    widths: list[int] = field(default_factory=lambda: [24, 48, 96, 160])
    neck: int = 256
    embed_dim: int = 64
    n_expressions: int = 8
    identities: int = 0
    sex_weight: float = 4.0
    expressions: list[str] = field(default_factory=lambda: list(EXPRESSIONS))
    labels: str = "world"
    expression_map: list[int] = field(default_factory=list)
    attribute_sources: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.labels not in ("world", "data"):
            raise ConfigError(f"model.labels {self.labels!r}: use world (the world's factors) or data (a real data set)")
        if len(self.expressions) != self.n_expressions:
            raise ConfigError(f"model.expressions names {len(self.expressions)} classes, model.n_expressions "
                              f"is {self.n_expressions}; give one name per class")

    @classmethod
    def from_data(cls, section: dict, data) -> "EvaluatorConfig":
        size = getattr(data, "size", None)
        section = {"size": size, **section} if size else dict(section)
        if section.get("labels") == "data" and data is not None:
            section.setdefault("expression_map", _expression_map(data, section.get("expressions", EXPRESSIONS)))
            section.setdefault("attribute_sources", _attribute_sources(data))
        return super().from_data(section, data)


def _expression_map(data, names) -> list[int]:
    """Data label code -> evaluator expression class (-1: none), when the data's label is an expression."""
    factor = {f.name: f for f in getattr(data, "factors", [])}.get(getattr(data, "label_factor", None))
    if factor is None or factor.name != "expression":
        return []
    ours = [n.lower() for n in names]
    found = [EXPRESSION_SYNONYMS.get(v.lower(), v.lower()) for v in factor.values]
    return [ours.index(v) if v in ours else -1 for v in found]


def _attribute_sources(data) -> list[str]:
    """Per evaluator attribute, the data's binary factor that labels it ("" none, "!" inverted)."""
    binary = {f.name for f in getattr(data, "factors", []) if f.kind == "binary"}
    sources = [next((s for s in ATTRIBUTE_SOURCES[a] if s.lstrip("!") in binary), "") for a in ATTRIBUTES]
    return sources if any(sources) else []


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ArcFace(nn.Module):
    """Additive angular margin softmax (Deng et al. 2019): logits s * cos(theta_y + m) for the
    true class and s * cos(theta_j) for the others, on unit embeddings and unit class weights."""

    def __init__(self, embed_dim: int, n_classes: int, s: float = 30.0, m: float = 0.3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, embed_dim) * 0.01)
        self.s, self.m = s, m

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1)).clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(cos.gather(1, labels[:, None]))
        target = torch.cos((theta + self.m).clamp(max=math.pi))
        return F.cross_entropy(self.s * cos.scatter(1, labels[:, None], target), labels)


@register("evaluator", EvaluatorConfig)
class Evaluator(GenerativeModel):
    """Images B x 3 x S x S in [-1, 1] -> dict of head outputs (see :meth:`forward`); trained by
    the engine on :meth:`loss` (``mien evaluator train``)."""

    def __init__(self, config: EvaluatorConfig | None = None):
        super().__init__(config or EvaluatorConfig())
        c = self.config
        if c.size < 32 or c.size > 256 or c.size & (c.size - 1):
            raise ConfigError(f"evaluator size {c.size} is not supported; use 32, 64, 128 or 256")
        if len(c.widths) != 4:
            raise ConfigError("an evaluator has four stages; give four widths")
        w = c.widths
        stem = [_conv(3, w[0], 2) for _ in range(int(math.log2(c.size // 32)))]
        stem += [_conv(w[0] if stem else 3, w[0])]  # every size reaches the 32-px stage 0
        self.stages = nn.ModuleList([nn.Sequential(*stem)] + [
            nn.Sequential(_conv(w[i - 1], w[i], 2), _conv(w[i], w[i])) for i in range(1, 4)])
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(w[3] * 16, c.neck), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({
            "expression": nn.Linear(c.neck, c.n_expressions), "intensity": nn.Linear(c.neck, 1),
            "attributes": nn.Linear(c.neck, len(ATTRIBUTES)), "pose": nn.Linear(c.neck, len(POSE)),
            "landmarks": nn.Linear(c.neck, 68 * 2), "identity": nn.Linear(c.neck, c.embed_dim)})
        if c.identities:
            self.arcface = ArcFace(c.embed_dim, c.identities)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.size
        if x.dim() != 4 or x.shape[1] != 3:
            raise ConfigError(f"the evaluator takes B x 3 x H x W images, got {tuple(x.shape)}")
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each of the four stages (32, 16, 8, 4 px), for ``lpips_mien``."""
        out, h = [], self._check(x)
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The neck vector (B x 256): the feature space of fid_mien, kid_mien and precision/recall."""
        return self.neck(self.taps(x)[-1])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs: ``expression`` logits, ``intensity`` (B), ``attributes`` logits (B x 4),
        ``pose`` (B x 3, scaled), ``landmarks`` (B x 68 x 2), ``identity`` (B x D, unit norm),
        ``features`` (the neck)."""
        h = self.features(x)
        out = {k: head(h) for k, head in self.heads.items()}
        out["intensity"] = out["intensity"][:, 0]
        out["landmarks"] = out["landmarks"].view(-1, 68, 2)
        out["identity"] = F.normalize(out["identity"], dim=1)
        out["features"] = h
        return out

    @property
    def expression_names(self) -> tuple[str, ...]:
        """Names of the expression classes, in logit order (the world's expression factor)."""
        return tuple(self.config.expressions)

    def pose_degrees(self, pose: torch.Tensor) -> torch.Tensor:
        """Scaled pose outputs -> (yaw, pitch, roll) in degrees."""
        return pose * pose.new_tensor(POSE_SCALE)

    def data_targets(self, batch: dict) -> dict[str, torch.Tensor]:
        """Targets of a real data set's batch in the heads' terms: ``expression`` (B, -1 unknown),
        ``attributes`` (B x 4, NaN unknown), ``landmarks`` (B x 68 x 2), as far as the data labels them."""
        c, out = self.config, {}
        if c.expression_map and "label" in batch:
            out["expression"] = torch.tensor(c.expression_map, device=batch["label"].device)[batch["label"].long()]
        if c.attribute_sources and "factors" in batch:
            n = len(batch["image"])
            cols = [torch.full((n,), float("nan")) if not src else batch["factors"][src.lstrip("!")].float()
                    for src in c.attribute_sources]
            cols = [1 - col if src.startswith("!") else col for col, src in zip(cols, c.attribute_sources)]
            out["attributes"] = torch.stack(cols, 1).to(batch["image"].device)
        if "landmarks2d" in batch:
            out["landmarks"] = batch["landmarks2d"].float()
        return out

    def _data_loss(self, batch: dict) -> dict:
        """Cross-entropy on the known expressions, BCE on the known attributes, L1 on the landmarks."""
        t, out = self.data_targets(batch), self(batch["image"])
        terms = {}
        if "expression" in t and (known := t["expression"] >= 0).any():
            terms["expression"] = F.cross_entropy(out["expression"][known], t["expression"][known])
        if "attributes" in t and (known := ~torch.isnan(t["attributes"])).any():
            terms["attributes"] = F.binary_cross_entropy_with_logits(out["attributes"][known], t["attributes"][known])
        if "landmarks" in t:
            terms["landmarks"] = 20 * F.l1_loss(out["landmarks"], t["landmarks"])
        if not terms:
            raise ConfigError("the data labels nothing this evaluator has a head for (expressions, sex, glasses, "
                              "beard, hat or 68 landmarks); prepare a labelled data set (mien data prepare)")
        return {"loss": sum(terms.values()), **{k: v.detach() for k, v in terms.items()}}

    def loss(self, batch: dict, step: int = 0) -> dict:
        """Sum of the head losses (``labels: data``: :meth:`_data_loss`). Expression cross-entropy is weighted by min(1, intensity / 0.2)
        for non-neutral faces (a face at intensity 0 looks neutral whatever its label); the
        intensity target is 0 for neutral faces; the sex label, shown only by small shape and brow
        cues, has ``sex_weight`` times the weight of the other attributes; identity by ArcFace."""
        if self.config.labels == "data":
            return self._data_loss(batch)
        if not self.config.identities:
            raise ConfigError("this evaluator has no ArcFace head; train one with model.identities = the "
                              "number of world identities (data.n_identities)")
        out = self(batch["image"])
        f, label = batch["factors"], batch["label"]
        expressive = (label != 0).float()
        weight = 1 - expressive + expressive * (f["intensity"] / 0.2).clamp(max=1)
        attribute_weight = out["attributes"].new_tensor([self.config.sex_weight, 1.0, 1.0, 1.0])
        pose = torch.stack([f["yaw"], f["pitch"], f["roll"]], 1) / out["pose"].new_tensor(POSE_SCALE)
        terms = {
            "expression": (F.cross_entropy(out["expression"], label, reduction="none") * weight).mean(),
            "intensity": F.mse_loss(out["intensity"], f["intensity"] * expressive),
            "attributes": (F.binary_cross_entropy_with_logits(out["attributes"], batch["attributes"], reduction="none")
                           * attribute_weight).mean(),
            "pose": F.mse_loss(out["pose"], pose),
            "landmarks": 20 * F.l1_loss(out["landmarks"], batch["landmarks2d"]),
            "identity": 0.2 * self.arcface(out["identity"], f["identity"].long()),
        }
        return {"loss": sum(terms.values()), **{k: v.detach() for k, v in terms.items()}}
