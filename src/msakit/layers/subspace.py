"""Regularisers that keep representation subspaces apart (TSD's structured losses).

    hsic            Hilbert-Schmidt independence criterion (Gretton et al. 2005), biased
                    estimator tr(K H L H) / (n − 1)² with Gaussian kernels, bandwidth by the
                    median heuristic; 0 iff independent (for characteristic kernels)
    orthogonality   soft orthogonality ‖Āᵀ B̄‖²_F / H² of row-centred, L2-normalised codes
                    (MISA's difference loss, Bousmalis et al. 2016)
    cross_correlation  XCov (Cheung et al. 2015, "Discovering hidden factors of variation
                    in deep networks"), on standardised columns: the squared batch
                    correlations between every feature of one code and every feature of
                    the other, summed over the first code's features and averaged over the
                    second's. 0 iff no feature of one is linearly correlated with a feature
                    of the other, which is what a linear probe from one code to the other
                    needs to fail (orthogonality's per-sample rows and mean over H² pairs
                    make it a far weaker handle on that)
    l2_alignment    mean squared distance between two codes of the same samples

All take (n, H) codes of the same n samples and return a scalar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _gaussian_gram(x: Tensor) -> Tensor:
    d2 = torch.cdist(x, x).pow(2)  # (n, n)
    off = d2[~torch.eye(len(x), dtype=torch.bool, device=x.device)]
    bandwidth = off.detach().median().clamp_min(1e-6) if off.numel() else d2.new_tensor(1.0)
    return torch.exp(-d2 / bandwidth)


def hsic(x: Tensor, y: Tensor) -> Tensor:
    """Biased HSIC between (n, Hx) and (n, Hy); 0 for n < 2."""
    n = x.shape[0]
    if n < 2:
        return x.new_zeros(())
    centre = torch.eye(n, device=x.device, dtype=x.dtype) - 1.0 / n
    k, m = _gaussian_gram(x), _gaussian_gram(y)
    return torch.trace(k @ centre @ m @ centre) / (n - 1) ** 2


def orthogonality(a: Tensor, b: Tensor) -> Tensor:
    """Soft orthogonality of row-centred, L2-normalised (n, H) codes; 0 for n < 2."""
    if a.shape[0] < 2:
        return a.new_zeros(())
    a = F.normalize(a - a.mean(0), dim=1)
    b = F.normalize(b - b.mean(0), dim=1)
    return (a.T @ b).pow(2).mean()


def cross_correlation(a: Tensor, b: Tensor, eps: float = 1e-5) -> Tensor:
    """Σ_i mean_j corr(a_i, b_j)² over the batch for (n, Ha), (n, Hb) codes; 0 for n < 2."""
    n = a.shape[0]
    if n < 2:
        return a.new_zeros(())
    a = (a - a.mean(0)) / (a.std(0) + eps)
    b = (b - b.mean(0)) / (b.std(0) + eps)
    corr = a.T @ b / (n - 1)  # (Ha, Hb)
    return corr.pow(2).sum(0).mean()


def l2_alignment(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared Euclidean distance between paired rows of a and b."""
    if a.shape[0] == 0:
        return a.new_zeros(())
    return (a - b).pow(2).sum(-1).mean()


__all__ = ["cross_correlation", "hsic", "l2_alignment", "orthogonality"]
