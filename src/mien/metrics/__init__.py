"""The field's metrics on mien's evaluator features (design.md, Conventions): distribution
distances (``fid_mien``, ``kid_mien``, precision/recall, density/coverage), pairwise image metrics
(PSNR, SSIM, ``lpips_mien``, ``csim_mien``, accuracies, landmark NME), disentanglement scores,
the label-swap metrics of Zou ch. 5-6 and sequence metrics of Zou ch. 3. ``registry.METRICS``
names them for ``mien eval``."""

from mien.metrics.disentangle import (beta_vae_score, dci, disentanglement_suite, explicitness, factor_vae_score, mig,
                                      modularity, sap)
from mien.metrics.fid import MienFeatures, fid_from_features, fid_mien, frechet_distance, kid_from_features, kid_mien
from mien.metrics.image import (attribute_accuracy, csim_mien, expression_accuracy, image_landmark_nme, landmark_nme,
                                lpips_mien, psnr, ssim)
from mien.metrics.pr import precision_recall, precision_recall_per_class
from mien.metrics.sequence import landmark_error, sequence_accuracy, sequence_fd
from mien.metrics.swap import bca, cfd, sr_minus, sr_plus, swap_scores

__all__ = ["frechet_distance", "fid_from_features", "kid_from_features", "fid_mien", "kid_mien", "MienFeatures",
           "precision_recall", "precision_recall_per_class", "psnr", "ssim", "lpips_mien", "csim_mien",
           "expression_accuracy", "attribute_accuracy", "landmark_nme", "image_landmark_nme", "beta_vae_score",
           "factor_vae_score", "mig", "sap", "dci", "modularity", "explicitness", "disentanglement_suite",
           "sr_plus", "sr_minus", "cfd", "bca", "swap_scores", "sequence_accuracy", "sequence_fd", "landmark_error"]
