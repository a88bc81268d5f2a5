"""Helpers for weighting modalities per sample."""

from __future__ import annotations

from torch import Tensor


def masked_softmax(scores: Tensor, present: Tensor, dim: int = -1) -> Tensor:
    """Softmax over `dim` restricted to `present` entries; rows with none present give 0.

    scores, present: (B, M). Absent modalities get weight exactly 0 and the weights of the
    present ones sum to 1, i.e. weights are renormalised over what each sample has.
    """
    masked = scores.masked_fill(~present, float("-inf"))
    weights = masked.softmax(dim=dim)
    return weights.nan_to_num(0.0)
