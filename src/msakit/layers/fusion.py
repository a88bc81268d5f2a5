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


def mean_of_others(x: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """For each modality, the mean of x over the *other* modalities present in the sample.

    x: (B, M, H), present: (B, M) -> mean (B, M, H) (0 where no other is present) and
    whether any other is present (B, M). Used to impute or reconstruct one modality from
    the rest.
    """
    w = present.to(x.dtype)  # (B, M)
    total = (x * w.unsqueeze(-1)).sum(1, keepdim=True)  # (B, 1, H)
    count = w.sum(1, keepdim=True) - w  # (B, M): the others present
    return (total - x * w.unsqueeze(-1)) / count.clamp_min(1.0).unsqueeze(-1), count > 0
