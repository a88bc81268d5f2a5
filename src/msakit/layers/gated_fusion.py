"""A sigmoid gate that decides, per element, how much of an auxiliary signal to inject.

    G = σ(W_g [x; aux] + b_g)        x, aux: (..., H)
    out = x + G ⊙ aux

Used by AMSGFN's dominant-modality-guided fusion (its equations 10-12); any model that
adds a secondary stream onto a primary one under a learned gate can reuse it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GatedResidualFusion(nn.Module):
    """(x, aux) -> (x + G ⊙ aux, G), with G = σ(Linear([x; aux])) of the same shape as x."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor, aux: Tensor) -> tuple[Tensor, Tensor]:
        g = torch.sigmoid(self.gate(torch.cat([x, aux], dim=-1)))  # (..., H)
        return x + g * aux, g
