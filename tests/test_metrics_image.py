"""PSNR and SSIM against scikit-image; lpips_mien and csim_mien on world images; landmark NME."""

import functools

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mien.data.world import WorldDataset
from mien.errors import DataError
from mien.metrics.image import PSNR_CAP, csim_mien, landmark_nme, lpips_mien, psnr, ssim


@functools.lru_cache(maxsize=None)
def faces(n: int = 24, size: int = 64) -> torch.Tensor:
    return WorldDataset(n, size, seed=31).batch(range(n))["image"]


def _distorted(x, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def _to01(x):
    return ((x + 1) / 2).double().numpy()


def test_psnr_matches_scikit_image():
    a = faces(8)
    b = _distorted(a)
    reference = np.mean([peak_signal_noise_ratio(_to01(a[i]), _to01(b[i]), data_range=1.0) for i in range(8)])
    assert psnr(a, b) == pytest.approx(reference, abs=1e-3)
    assert psnr(a, a) == PSNR_CAP


def test_ssim_matches_scikit_image():
    a = faces(8)
    b = _distorted(a, 1)
    reference = np.mean([structural_similarity(_to01(a[i]), _to01(b[i]), data_range=1.0, channel_axis=0,
                                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                         for i in range(8)])
    assert ssim(a, b) == pytest.approx(reference, abs=2e-3)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)


def _blur(x, sigma):
    r = int(3 * sigma) + 1
    k = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    x = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def _noise(x, s):
    return (x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))).clamp(-1, 1)


@pytest.mark.parametrize("distort,strengths", [(_blur, (0.6, 1.2, 2.4)), (_noise, (0.05, 0.15, 0.4))])
def test_lpips_mien_grows_with_distortion_strength_and_is_zero_for_identical_images(distort, strengths):
    x = faces()
    assert lpips_mien(x, x.clone()) == 0.0
    d = [lpips_mien(x, distort(x, s)) for s in strengths]
    assert 0 < d[0] < d[1] < d[2], d


def test_csim_mien_is_one_for_identical_images_and_lower_across_identities():
    x = faces()
    assert csim_mien(x, x) == pytest.approx(1.0, abs=1e-5)
    assert csim_mien(x, x.roll(1, 0)) < 0.8


def test_landmark_nme_is_normalised_by_the_inter_ocular_distance():
    target = torch.rand(2, 68, 2)
    target[:, 36], target[:, 45] = torch.tensor([0.3, 0.4]), torch.tensor([0.7, 0.4])  # distance 0.4
    assert landmark_nme(target + torch.tensor([0.04, 0.0]), target).item() == pytest.approx(0.1, abs=1e-6)


def test_bad_pairs_are_clear_errors():
    x = faces(4)
    with pytest.raises(DataError, match="one shape"):
        psnr(x, x[:2])
    with pytest.raises(DataError, match="NaN"):
        ssim(x, torch.full_like(x, float("nan")))
