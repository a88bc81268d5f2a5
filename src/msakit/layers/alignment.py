"""Distribution-level distances between two modalities' token clouds (AlignMamba-2's dual alignment).

Both come from `geomloss` (Feydy et al., "Interpolating between Optimal Transport and MMD
using Sinkhorn Divergences", AISTATS 2019), batched over samples, with each sample's
valid steps as a uniform empirical measure:

    sinkhorn_distance  debiased entropic OT (Sinkhorn divergence), cost ½‖x − y‖², blur ε
    mmd                squared maximum mean discrepancy with a Gaussian kernel of width σ

x (B, Lx, H), x_mask (B, Lx), y (B, Ly, H), y_mask (B, Ly) -> (B,); a row where either
side has no valid step is 0 (callers average over `valid` rows only).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from msakit.errors import ConfigError


def _samples_loss(kind: str, blur: float) -> Any:
    try:
        from geomloss import SamplesLoss
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigError("the alignment losses need 'geomloss'; install it with: pip install 'msakit[mamba]'") from exc
    return SamplesLoss(kind, p=2, blur=blur, debias=True, backend="tensorized")


def _measures(x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    valid = x_mask.any(1) & y_mask.any(1)  # (B,)
    a = x_mask.to(x.dtype) / x_mask.sum(1, keepdim=True).clamp_min(1).to(x.dtype)  # (B, Lx), sums to 1
    b = y_mask.to(y.dtype) / y_mask.sum(1, keepdim=True).clamp_min(1).to(y.dtype)
    return a, b, valid


def _distance(kind: str, blur: float, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor) -> Tensor:
    a, b, valid = _measures(x, x_mask, y, y_mask)
    out = x.new_zeros(x.shape[0])
    if valid.any():
        loss = _samples_loss(kind, blur)
        out[valid] = loss(a[valid], x[valid], b[valid], y[valid]).to(x.dtype)
    return out


def sinkhorn_distance(x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, *, blur: float = 0.5) -> Tensor:
    """Per-sample Sinkhorn divergence between the valid steps of x and of y, (B,)."""
    return _distance("sinkhorn", blur, x, x_mask, y, y_mask)


def mmd(x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor, *, sigma: float = 1.0) -> Tensor:
    """Per-sample squared Gaussian-kernel MMD between the valid steps of x and of y, (B,)."""
    return _distance("gaussian", sigma, x, x_mask, y, y_mask)


def batch_mmd(x: Tensor, y: Tensor, *, sigma: float = 1.0) -> Tensor:
    """Squared Gaussian-kernel MMD between two sets of vectors (Nx, H), (Ny, H) -> scalar."""
    mask_x = torch.ones(1, x.shape[0], dtype=torch.bool, device=x.device)
    mask_y = torch.ones(1, y.shape[0], dtype=torch.bool, device=y.device)
    return mmd(x[None], mask_x, y[None], mask_y, sigma=sigma)[0]


__all__ = ["batch_mmd", "mmd", "sinkhorn_distance"]
