"""InfoNCE / NT-Xent between two views of the same samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(
    anchor: Tensor, positive: Tensor, *, temperature: float | Tensor = 0.1, valid: Tensor | None = None
) -> Tensor:
    """One-directional InfoNCE: row i of `anchor` should match row i of `positive`.

    anchor, positive: (B, H); valid: (B,) bool, samples that take part (both views
    present). Returns 0 (with a graph) when fewer than two samples are valid, since a
    contrast needs at least one negative.
    """
    if valid is not None:
        anchor, positive = anchor[valid], positive[valid]
    if anchor.shape[0] < 2:
        return anchor.sum() * 0.0 + positive.sum() * 0.0
    logits = F.normalize(anchor, dim=-1) @ F.normalize(positive, dim=-1).T / temperature  # (B, B)
    target = torch.arange(anchor.shape[0], device=anchor.device)
    return F.cross_entropy(logits, target)


def symmetric_info_nce(
    a: Tensor, b: Tensor, *, temperature: float | Tensor = 0.1, valid: Tensor | None = None
) -> Tensor:
    """Both directions averaged (CLIP / NT-Xent style)."""
    return 0.5 * (
        info_nce(a, b, temperature=temperature, valid=valid) + info_nce(b, a, temperature=temperature, valid=valid)
    )
