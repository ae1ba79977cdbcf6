"""Pairwise and per-image metrics of Pikoulis digest §4 (PSNR Eq. 4.4-4.5, SSIM Eq. 4.6-4.10,
LPIPS, CSIM, emotion accuracy) and Haas digest §1.8 (LPIPS Eq. 2.12), with mien's evaluator in
place of the pretrained networks: ``lpips_mien``, ``csim_mien``. Images are B x 3 x S x S in
[-1, 1]; every function returns the mean over the batch."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mien.errors import DataError
from mien.evaluator.perceptual import lpips_distance

PSNR_CAP = 100.0  # dB for identical images (Pikoulis digest: "identical images need special handling")


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    if a.shape != b.shape or a.dim() != 4:
        raise DataError(f"image pairs must be two B x C x H x W arrays of one shape, "
                        f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise DataError("images contain NaN or infinite values; check the model or the image files")
    return a, b


def _evaluator(evaluator, images: torch.Tensor):
    if evaluator is not None:
        return evaluator
    from mien.evaluator import evaluator_for

    return evaluator_for(images.shape[-1])


def psnr(a, b) -> float:
    """Mean per-image PSNR in dB, 10 log10(MAX^2 / MSE) on [0, 1] intensities, capped at 100 dB."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = _pair(a, b)
    per = peak_signal_noise_ratio((a + 1) / 2, (b + 1) / 2, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return per.nan_to_num(posinf=PSNR_CAP).clamp(max=PSNR_CAP).mean().item()


def ssim(a, b) -> float:
    """Mean SSIM on [0, 1] intensities: 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
    averaged over the positions whose window lies inside the image (as Wang et al.'s reference
    code and scikit-image; torchmetrics' own mean also counts the reflect-padded border). In
    float64: in float32 the variances of flat regions cancel badly."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _pair(a, b)
    if min(a.shape[-2:]) < 11:
        raise DataError(f"SSIM needs images of at least 11 x 11 pixels, got {tuple(a.shape[-2:])}")
    _, full = structural_similarity_index_measure((a.double() + 1) / 2, (b.double() + 1) / 2, data_range=1.0,
                                                  return_full_image=True)
    return full[..., 5:-5, 5:-5].mean().item()


@torch.no_grad()
def lpips_mien(a, b, evaluator=None, layer_weights=None, per_image: bool = False):
    """lpips_mien of paired images (:func:`lpips_distance`): mean, or per image."""
    a, b = _pair(a, b)
    d = lpips_distance(_evaluator(evaluator, a), a, b, layer_weights)
    return d if per_image else d.mean().item()


@torch.no_grad()
def csim_mien(a, b, evaluator=None) -> float:
    """Mean cosine similarity of the evaluator's identity embeddings of paired images (CSIM,
    Pikoulis digest §4: ArcFace/CosFace cosine between source and edited image)."""
    a, b = _pair(a, b)
    ev = _evaluator(evaluator, a)
    return (ev(a)["identity"] * ev(b)["identity"]).sum(1).mean().item()


@torch.no_grad()
def expression_accuracy(images, labels, evaluator=None) -> float:
    """Share of images whose evaluator expression is ``labels`` (e.g. the target of an edit)."""
    images = torch.as_tensor(images).float()
    pred = _evaluator(evaluator, images)(images)["expression"].argmax(1)
    return (pred == torch.as_tensor(labels)).float().mean().item()


@torch.no_grad()
def attribute_accuracy(images, attributes, evaluator=None) -> float:
    """Share of correct binary attributes (B x 4 in sex, glasses, beard, hat order; NaN = not scored)."""
    images, attributes = torch.as_tensor(images).float(), torch.as_tensor(attributes).float()
    pred = (_evaluator(evaluator, images)(images)["attributes"] > 0).float()
    known = ~torch.isnan(attributes)
    return (pred == attributes)[known].float().mean().item()


def landmark_nme(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over images of the mean landmark error (B x 68 x 2) divided by the distance between the
    outer eye corners (landmarks 36 and 45) of the target."""
    iod = (target[:, 36] - target[:, 45]).norm(dim=-1).clamp_min(1e-8)
    return ((pred - target).norm(dim=-1).mean(1) / iod).mean()


@torch.no_grad()
def image_landmark_nme(images, landmarks, evaluator=None) -> float:
    """NME of the evaluator's landmarks of ``images`` against ``landmarks`` (B x 68 x 2 in [0, 1])."""
    images = torch.as_tensor(images).float()
    return landmark_nme(_evaluator(evaluator, images)(images)["landmarks"], torch.as_tensor(landmarks).float()).item()


def verification_auc(embeddings: torch.Tensor, identities: torch.Tensor) -> float:
    """ROC AUC of cosine similarity for telling same-identity pairs from different-identity pairs
    (all unordered pairs; 0.5 is chance)."""
    from sklearn.metrics import roc_auc_score

    e = F.normalize(torch.as_tensor(embeddings).float(), dim=1)
    i, j = torch.triu_indices(len(e), len(e), 1)
    same = (torch.as_tensor(identities)[i] == torch.as_tensor(identities)[j]).numpy()
    return float(roc_auc_score(same, (e[i] * e[j]).sum(1).numpy()))
