"""Tensor fusion (TFN, Zadeh et al. 2017) and its low-rank factorisation (LMF, Liu et al. 2018).

Both fuse per-modality vectors h_m by appending a constant 1 and taking the outer
product z = [1; h_1] ⊗ [1; h_2] ⊗ ... (TFN Eq. 1). The constant 1 keeps every unimodal
and bimodal term inside z, which is also what makes absence free: a modality that is
absent for a sample has h_m = 0, so [1; 0] multiplies the other factors by 1 and z holds
exactly the lower-order interactions of the modalities that are present. LMF computes
W·z without forming z: with W = Σ_r ⊗_m w_m^(r), W·z = Σ_r Π_m (w_m^(r) · [1; h_m])
(LMF Eq. 5-6).

Legend: B batch, H_m width of modality m's vector, R rank, O output width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from msakit.layers.encoders import SequenceEncoder


class ModalitySubNet(nn.Module):
    """The sub-network feeding a tensor fusion: (B, L, D), (B, L) -> (B, O).

    A `SequenceEncoder` pooled over valid steps, then ReLU and a bias-free Linear, so a
    modality absent for a sample maps to exactly 0 (and [1; 0] in the fusion).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, kind: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = SequenceEncoder(in_dim, hidden_dim, kind=kind, dropout=dropout)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(hidden_dim, out_dim, bias=False))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.out(self.encoder(x, mask)[1])


def append_one(h: Tensor) -> Tensor:
    """(B, H) -> (B, H + 1): [1; h]."""
    return torch.cat([torch.ones_like(h[:, :1]), h], dim=-1)


def tensor_fusion(vectors: list[Tensor]) -> Tensor:
    """Flattened outer product of [1; h_m] over the modalities: (B, Π_m (H_m + 1))."""
    z = append_one(vectors[0])  # (B, H_1 + 1)
    for h in vectors[1:]:
        z = torch.einsum("bi,bj->bij", z, append_one(h)).flatten(1)  # (B, |z| · (H_m + 1))
    return z


class LowRankFusion(nn.Module):
    """W·([1; h_1] ⊗ ... ⊗ [1; h_M]) + b with W of rank `rank`, never forming the tensor."""

    def __init__(self, in_dims: list[int], out_dim: int, *, rank: int = 4) -> None:
        super().__init__()
        # one factor per modality: (R, H_m + 1, O), initialised like the LMF reference (Xavier)
        self.factors = nn.ParameterList(
            [nn.Parameter(nn.init.xavier_normal_(torch.empty(rank, d + 1, out_dim))) for d in in_dims]
        )
        self.rank_weights = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, rank)))  # (1, R)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, vectors: list[Tensor]) -> Tensor:
        product = None
        for h, factor in zip(vectors, self.factors, strict=True):
            rank, width, out = factor.shape
            # einsum("bi,rio->rbo", [1; h], factor), LMF Eq. 6, as torch.einsum computes it (one (1, B, H+1) x
            # (1, H+1, R·O) bmm, then a view), without einsum's per-call parsing and permutes: bit-identical values
            # and gradients, about a sixth less CPU for the fusion (tests/test_baselines.py)
            right = factor.permute(1, 0, 2).reshape(1, width, rank * out)  # (1, H + 1, R·O)
            projected = torch.bmm(append_one(h).unsqueeze(0), right).view(h.shape[0], rank, out).permute(1, 0, 2)
            product = projected if product is None else product * projected  # (R, B, O)
        assert product is not None
        return torch.einsum("r,rbo->bo", self.rank_weights[0], product) + self.bias  # (B, O)


__all__ = ["LowRankFusion", "ModalitySubNet", "append_one", "tensor_fusion"]
