"""Heteroscedastic heads: a mean and a log-variance, the Gaussian NLL, predictive entropy.

`HeteroscedasticHead` predicts N(μ, σ²) per output; trained with `gaussian_nll` its σ²
is an aleatoric uncertainty (Kendall & Gal, 2017). With a label-free target (a clean
view of the input) it is self-supervised, as in QA-MoE; with the label it is the
predictive uncertainty of a unimodal expert, as in PRLF and EBMC.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: log σ² is clamped to this range so that exp() neither vanishes nor explodes
LOG_VAR_RANGE: tuple[float, float] = (-8.0, 8.0)


class HeteroscedasticHead(nn.Module):
    """(…, in_dim) -> mean (…, out_dim) and log-variance (…, out_dim).

    The mean and the log-variance read a shared hidden layer (`depth` 1) or the input
    directly (`depth` 0); `mean_layer` / `log_var_layer` are the final linear maps, which
    PRLF reads to compute its Fisher information in closed form.
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden_dim: int = 64, depth: int = 1, dropout: float = 0.0):
        super().__init__()
        self.body: nn.Module = (
            nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout)) if depth else nn.Identity()
        )
        width = hidden_dim if depth else in_dim
        self.mean_layer = nn.Linear(width, out_dim)
        self.log_var_layer = nn.Linear(width, out_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mean_layer(h), self.log_var_layer(h).clamp(*LOG_VAR_RANGE)


def gaussian_nll(mean: Tensor, log_var: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean of 0.5·(log σ² + (y - μ)² / σ²) over the rows `valid` ((N,) bool) and the last axis.

    Returns 0 (with a graph) when no row is valid.
    """
    per = 0.5 * (log_var + (target - mean).pow(2) * torch.exp(-log_var))  # (N, D)
    if valid is not None:
        per = per[valid]
    if per.numel() == 0:
        return mean.sum() * 0.0 + log_var.sum() * 0.0
    return per.mean()


def predictive_entropy(logits: Tensor) -> Tensor:
    """(…, C) logits -> (…,) entropy of the softmax, in nats."""
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)
