"""Multilinear algebra of Haas Ch. 3.1 (digest §1.5; Kolda & Bader 2009), in torch.

Conventions (stated because libraries differ):

- modes are numbered from 0 here (the thesis numbers them from 1: its mode 1, the latent
  coordinates, is our mode 0);
- :func:`unfold` is Kolda-Bader's mode-n unfolding (Eq. 3.1): entry (i_1, ..., i_N) goes to row i_n
  and column j = sum_{k != n} i_k J_k, J_k = prod_{m < k, m != n} I_m, i.e. the *first* remaining
  index varies fastest (NumPy: ``reshape(moveaxis(T, n, 0), (I_n, -1), order="F")``). tensorly's
  ``unfold`` keeps C order (the *last* remaining index fastest): the columns are permuted, the left
  singular vectors (hence HOSVD) are the same (tested);
- :func:`mode_product` is T x_n A = fold_n(A T_(n)) for A of shape J x I_n (Eq. 3.2).

HOSVD (Alg. 1, Eq. 3.4): U^(n) = left singular vectors of T_(n), S = T x_1 U^(1)T ... x_N U^(N)T;
truncated HOSVD keeps the first ranks[n] columns (Eq. 3.8) with the error bound of Eq. 3.9
(corrected, errata §1.9): ||T - T^||_F^2 <= sum_n sum_{i > r_n} sigma_i^(n)2. HOOI (De Lathauwer et
al. 2000) refines a truncated HOSVD; with a mask it fills missing cells by the current model (EM).
"""

from __future__ import annotations

import torch

from mien.errors import ConfigError, DataError


def unfold(tensor: torch.Tensor, mode: int) -> torch.Tensor:
    """Kolda-Bader mode-``mode`` unfolding: I_n x prod_{k != n} I_k (first remaining index fastest)."""
    _check_mode(tensor, mode)
    rest = [k for k in range(tensor.dim()) if k != mode]
    return tensor.permute(mode, *reversed(rest)).reshape(tensor.shape[mode], -1)


def fold(matrix: torch.Tensor, mode: int, shape) -> torch.Tensor:
    """The inverse of :func:`unfold`: a tensor of ``shape`` from its mode-``mode`` unfolding."""
    shape = list(shape)
    rest = [k for k in range(len(shape)) if k != mode]
    if matrix.shape[0] != shape[mode] or matrix.numel() != torch.Size(shape).numel():
        raise DataError(f"a {tuple(matrix.shape)} matrix is not a mode-{mode} unfolding of shape {tuple(shape)}")
    permuted = matrix.reshape(shape[mode], *[shape[k] for k in reversed(rest)])
    order = [mode, *reversed(rest)]
    return permuted.permute(*[order.index(k) for k in range(len(shape))])


def mode_product(tensor: torch.Tensor, matrix: torch.Tensor, mode: int) -> torch.Tensor:
    """T x_n A = fold_n(A T_(n)) (Eq. 3.2); A is J x I_n (a vector is taken as 1 x I_n)."""
    _check_mode(tensor, mode)
    matrix = matrix[None] if matrix.dim() == 1 else matrix
    if matrix.shape[1] != tensor.shape[mode]:
        raise DataError(f"mode-{mode} product needs a matrix with {tensor.shape[mode]} columns, "
                        f"got {tuple(matrix.shape)}")
    shape = list(tensor.shape)
    shape[mode] = matrix.shape[0]
    return fold(matrix @ unfold(tensor, mode), mode, shape)


def multi_mode_product(tensor: torch.Tensor, matrices: dict[int, torch.Tensor], transpose: bool = False) -> torch.Tensor:
    """T x_n A_n over the modes n of ``matrices`` (their order does not matter, Eq. 3.3); with
    ``transpose``, A_n^T is used (projection onto the factor bases)."""
    for mode, a in matrices.items():
        tensor = mode_product(tensor, a.T if transpose else a, mode)
    return tensor


def hosvd(tensor: torch.Tensor, ranks=None) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """(core S, factors U^(n) (I_n x r_n), singular values sigma^(n) of each unfolding) of the
    (truncated, when ``ranks`` is given; None entries keep a mode whole) HOSVD."""
    ranks = _ranks(tensor, ranks)
    factors, sigmas = [], []
    for mode, r in enumerate(ranks):
        u, s = left_singular(unfold(tensor, mode))
        factors.append(u[:, :r])
        sigmas.append(s)
    core = multi_mode_product(tensor, dict(enumerate(factors)), transpose=True)
    return core, factors, sigmas


def left_singular(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, sigma) of a matrix's thin SVD. A wide unfolding (e.g. a person mode: 100 x 442368 at
    paper scale) goes through the eigendecomposition of its I_n x I_n Gram matrix, so the right
    singular vectors (as large as the tensor) are never formed."""
    if matrix.shape[0] >= matrix.shape[1]:
        u, s, _ = torch.linalg.svd(matrix, full_matrices=False)
        return u, s
    values, vectors = torch.linalg.eigh(matrix @ matrix.T)
    return vectors.flip(1), values.flip(0).clamp_min(0).sqrt()


def reconstruct(core: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
    """S x_1 U^(1) ... x_N U^(N)."""
    return multi_mode_product(core, dict(enumerate(factors)))


def truncation_bound(sigmas: list[torch.Tensor], ranks) -> float:
    """Eq. 3.9 (corrected): sum over modes of the squared discarded singular values."""
    return float(sum(s[r:].pow(2).sum() for s, r in zip(sigmas, ranks)))


def hooi(tensor: torch.Tensor, ranks, mask: torch.Tensor | None = None, iters: int = 50,
         tol: float = 1e-9) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Higher-order orthogonal iteration from the truncated HOSVD: U^(n) <- the leading r_n left
    singular vectors of (T x_{k != n} U^(k)T)_(n). With ``mask`` (True = observed), missing cells are
    set to the current reconstruction before each sweep (EM imputation); without a mask every cell
    must be finite."""
    ranks = _ranks(tensor, ranks)
    if mask is None:
        if not torch.isfinite(tensor).all():
            raise DataError("the tensor has missing (non-finite) cells; pass a mask of the observed ones")
        filled = tensor
    else:
        if mask.shape != tensor.shape:
            raise DataError(f"the mask has shape {tuple(mask.shape)}; the tensor {tuple(tensor.shape)}")
        filled = torch.where(mask, tensor, tensor[mask].mean() if mask.any() else 0.0)
    core, factors, _ = hosvd(filled, ranks)
    previous = None
    for _ in range(iters):
        for mode, r in enumerate(ranks):
            others = {k: u for k, u in enumerate(factors) if k != mode}
            u, _, _ = torch.linalg.svd(unfold(multi_mode_product(filled, others, transpose=True), mode),
                                       full_matrices=False)
            factors[mode] = u[:, :r]
        core = multi_mode_product(filled, dict(enumerate(factors)), transpose=True)
        fit = reconstruct(core, factors)
        if mask is not None:
            filled = torch.where(mask, tensor, fit)
        error = float((filled - fit).pow(2).sum())
        if previous is not None and abs(previous - error) <= tol * max(1.0, previous):
            break
        previous = error
    return core, factors


def _check_mode(tensor: torch.Tensor, mode: int) -> None:
    if not 0 <= mode < tensor.dim():
        raise ConfigError(f"mode {mode} does not exist; the tensor has modes 0..{tensor.dim() - 1}")


def _ranks(tensor: torch.Tensor, ranks) -> list[int]:
    ranks = [None] * tensor.dim() if ranks is None else list(ranks)
    if len(ranks) != tensor.dim():
        raise ConfigError(f"{len(ranks)} ranks for a tensor of {tensor.dim()} modes; give one per mode")
    out = []
    for mode, r in enumerate(ranks):
        full = min(tensor.shape[mode], unfold(tensor, mode).shape[1])
        r = full if r is None else int(r)
        if not 1 <= r <= full:
            raise ConfigError(f"rank {r} of mode {mode} must lie in 1..{full}")
        out.append(r)
    return out
