"""Time2Vec (Kazemi et al. 2019, "Time2Vec: Learning a Vector Representation of Time")."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Time2Vec(nn.Module):
    """t (..., 1) -> (..., K): one linear channel ω0·t + φ0 and K-1 periodic channels sin(ω·t + φ)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"Time2Vec needs dim >= 2 (one linear, at least one periodic channel), got {dim}")
        self.linear = nn.Linear(1, 1)
        self.periodic = nn.Linear(1, dim - 1)

    def forward(self, t: Tensor) -> Tensor:
        return torch.cat([self.linear(t), torch.sin(self.periodic(t))], dim=-1)
