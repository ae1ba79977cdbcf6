"""Distribution distances on evaluator features: the Fréchet distance (FID, Zou Eq. 2.38,
Pikoulis digest §4.1, Haas Eq. 2.14) and the kernel distance (KID, Bińkowski et al. 2018; the
polynomial-kernel unbiased MMD of torchmetrics), named ``fid_mien``/``kid_mien`` because the
features come from mien's evaluator, not from Inception: compare orderings, not absolute values
with published numbers (Zou digest, Evaluators). A user's own TorchScript feature network
(:func:`load_feature_network`) gives ``fid_features``/``kid_features`` on its features instead."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from mien.errors import DataError


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}), in float64. The trace of the square root
    is the sum of the square roots of the eigenvalues of S1 S2 (real and >= 0 for PSD S1, S2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def _check(f: torch.Tensor, name: str, minimum: int = 2) -> np.ndarray:
    f = torch.as_tensor(f).double()
    if f.dim() != 2 or len(f) < minimum:
        raise DataError(f"{name} must be an N x D feature array with N >= {minimum}, got {tuple(f.shape)}")
    if not torch.isfinite(f).all():
        raise DataError(f"{name} contains NaN or infinite values; check the images or the model")
    return f.numpy()


def fid_from_features(gen, ref) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N x D each)."""
    g, r = _check(gen, "generated features"), _check(ref, "reference features")
    return frechet_distance(g.mean(0), np.cov(g, rowvar=False), r.mean(0), np.cov(r, rowvar=False))


def kid_from_features(gen, ref, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and std over ``subsets`` random subsets of the unbiased MMD^2 with the kernel
    k(x, y) = (x.y / D + 1)^3 (torchmetrics' ``poly_mmd``)."""
    from torchmetrics.image.kid import poly_mmd

    g, r = torch.from_numpy(_check(gen, "generated features")), torch.from_numpy(_check(ref, "reference features"))
    m = min(subset_size, len(g), len(r))
    rng = torch.Generator().manual_seed(seed)
    vals = torch.stack([poly_mmd(r[torch.randperm(len(r), generator=rng)[:m]], g[torch.randperm(len(g), generator=rng)[:m]])
                        for _ in range(subsets)])
    return float(vals.mean()), float(vals.std(unbiased=False))


def _batches(images, batch_size: int) -> Iterable[torch.Tensor]:
    if torch.is_tensor(images):
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]
    else:
        yield from images


@torch.no_grad()
def image_features(images, evaluator=None, batch_size: int = 250) -> torch.Tensor:
    """Evaluator neck features (N x 256) of images (N x 3 x S x S in [-1, 1], or an iterable of
    such batches). ``evaluator`` defaults to the shipped one for the images' size."""
    out = []
    for x in _batches(images, batch_size):
        if evaluator is None:
            from mien.evaluator import evaluator_for

            evaluator = evaluator_for(x.shape[-1])
        if not torch.isfinite(x).all():
            raise DataError("images contain NaN or infinite values; check the model or the image files")
        out.append(evaluator.features(x.float()))
    if not out:
        raise DataError("no images to score")
    return torch.cat(out)


class MienFeatures(nn.Module):
    """mien's feature extractor in torchmetrics' convention (uint8 [0, 255] or float [0, 1]
    images -> N x 256), for ``FrechetInceptionDistance(feature=MienFeatures())`` and KID."""

    def __init__(self, evaluator=None, size: int = 64):
        super().__init__()
        if evaluator is None:
            from mien.evaluator import load_evaluator

            evaluator = load_evaluator(size)
        self.evaluator = evaluator
        self.num_features = evaluator.config.neck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return self.evaluator.features(x * 2 - 1)


def fid_mien(gen_images, ref_images, evaluator=None) -> float:
    """Fréchet distance on evaluator features between two image sets."""
    return fid_from_features(image_features(gen_images, evaluator), image_features(ref_images, evaluator))


def kid_mien(gen_images, ref_images, evaluator=None, subsets: int = 100, subset_size: int = 1000) -> tuple[float, float]:
    """KID (mean, std) on evaluator features between two image sets."""
    return kid_from_features(image_features(gen_images, evaluator), image_features(ref_images, evaluator),
                             subsets, subset_size)


class ScriptedFeatures:
    """A user's TorchScript feature network (for example the standard Inception-v3 pool features,
    for users who have those weights locally) in the place of the evaluator's neck: it receives
    N x 3 x S x S float images in [0, 1] and returns N x D features (trailing 1 x 1 dims are
    flattened). Loaded by :func:`load_feature_network` only when the user names the file."""

    def __init__(self, module, path):
        self.module, self.path = module, str(path)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        try:
            f = self.module((x.float() + 1) / 2)
        except Exception as e:  # a TorchScript module raises torch.jit.Error and others on bad input
            raise DataError(f"the feature network {self.path} failed on {tuple(x.shape)} images ({str(e).splitlines()[0]}); "
                            "it must take N x 3 x S x S float images in [0, 1]") from None
        if not torch.is_tensor(f) or f.dim() < 2 or f.shape[0] != len(x):
            raise DataError(f"the feature network {self.path} must return N x D features, got "
                            f"{tuple(f.shape) if torch.is_tensor(f) else type(f).__name__}")
        return f.reshape(len(x), -1).float()


def load_feature_network(path) -> ScriptedFeatures:
    """``torch.jit.load`` of a TorchScript file on CPU (a TorchScript archive, not a pickle)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"feature network {path} does not exist; pass a TorchScript file saved with torch.jit.save")
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # RuntimeError and others for a file that is not a TorchScript archive
        raise DataError(f"{path} is not a TorchScript file ({str(e).splitlines()[0][:120]}); "
                        "save the network with torch.jit.save(torch.jit.script(net), path)") from None
    return ScriptedFeatures(module, path)
