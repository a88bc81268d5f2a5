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

    LinearDecoupler a module, not a loss: removes from a code y its least-squares linear
                    prediction from a code x, with batch-norm-like running statistics, so
                    that no linear probe from x recovers the output (structural, where the
                    losses above only push towards it)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


class LinearDecoupler(nn.Module):
    """y ↦ y − (x − μ_x) W with W = (Σ_xx + λ I)⁻¹ Σ_xy: the part of y no linear map of x predicts.

    μ_x, Σ_xx = Cov(x) and Σ_xy = Cov(x, y) are running estimates, as in batch norm, that
    `update` folds each batch into (over its `valid` rows) with weight m = max(`momentum`,
    1 / t) at step t: a plain average over the first 1 / `momentum` steps, then
    exponential. `update` recomputes and stores W; `forward` only applies it, so a
    sample's output never depends on the rest of its batch, and it is an affine map (no
    gradient through the statistics). Cov(x, output) = Σ_xy − Σ_xx W ≈ 0 on the data the
    statistics describe; feed `update` the codes the model will be probed on (e.g. without
    dropout), or the estimates are attenuated by the noise. λ = `ridge` · tr(Σ_xx) / D_x
    keeps the solve well conditioned when x varies in few directions (a batch smaller
    than D_x, a nearly constant code). Before the first update the output is y.
    """

    mean: Tensor
    cov_xx: Tensor
    cov_xy: Tensor
    weight: Tensor
    steps: Tensor

    def __init__(self, x_dim: int, y_dim: int, *, momentum: float = 0.1, ridge: float = 1e-3) -> None:
        super().__init__()
        self.momentum, self.ridge = momentum, ridge
        self.register_buffer("mean", torch.zeros(x_dim))
        self.register_buffer("cov_xx", torch.zeros(x_dim, x_dim))
        self.register_buffer("cov_xy", torch.zeros(x_dim, y_dim))
        self.register_buffer("weight", torch.zeros(x_dim, y_dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, x: Tensor, y: Tensor, valid: Tensor | None = None, *, exact: bool = False) -> None:
        """Fold the (n, Dx), (n, Dy) rows marked `valid` (n,) into the statistics; W follows.

        `exact`: replace the statistics by these rows' (e.g. a whole split, after training).
        """
        if valid is not None:
            x, y = x[valid], y[valid]
        n = len(x)
        if n < 2:
            return
        m = 1.0 if exact else max(self.momentum, 1.0 / (int(self.steps) + 1))
        xc = x - x.mean(0)
        self.mean.mul_(1 - m).add_(m * x.mean(0))
        self.cov_xx.mul_(1 - m).add_(m * (xc.T @ xc / (n - 1)))
        self.cov_xy.mul_(1 - m).add_(m * (xc.T @ (y - y.mean(0)) / (n - 1)))
        ridge = self.ridge * torch.diagonal(self.cov_xx).mean().clamp_min(1e-12)
        eye = torch.eye(len(self.cov_xx), device=x.device, dtype=x.dtype)
        self.weight.copy_(torch.linalg.solve(self.cov_xx + ridge * eye, self.cov_xy))
        self.steps += 1

    def forward(self, x: Tensor, y: Tensor, center: Tensor | None = None) -> Tensor:
        """(n, Dx), (n, Dy) -> (n, Dy); x enters without gradient (the shift is a constant).

        `center` (Dx,) replaces μ_x, e.g. the batch mean in training: then the shift has mean 0
        over the batch and a lagging W moves no output's mean.
        """
        return y - (x.detach() - (self.mean if center is None else center.detach())) @ self.weight


__all__ = ["LinearDecoupler", "cross_correlation", "hsic", "l2_alignment", "orthogonality"]
