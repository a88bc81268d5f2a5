"""Cross-modal attention that tolerates samples with no valid key at all."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def safe_key_padding_mask(mask: Tensor) -> Tensor:
    """(B, L) valid-step mask -> key_padding_mask for nn.MultiheadAttention.

    A row with no valid step would make softmax produce NaN; such rows attend to the
    first (zero) step instead, and callers zero their result via `present`.
    """
    pad = ~mask
    first = torch.zeros_like(pad)
    first[:, 0] = True
    return pad & ~(first & pad.all(dim=1, keepdim=True))  # branch-free, so that a trace (ONNX) keeps it


class CrossModalAttention(nn.Module):
    """Pre-norm multi-head attention of a query sequence over a key sequence, with FFN.

    query (B, Lq, H), key (B, Lk, H), key_mask (B, Lk) -> (B, Lq, H).
    """

    def __init__(
        self, dim: int, *, heads: int = 4, dropout: float = 0.1, ffn_mult: int = 2, ffn_dropout: float | None = None
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_k = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)  # on attention weights
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(  # ffn_dropout: inside the FFN (None: the same as the attention's)
            nn.Linear(dim, dim * ffn_mult),
            nn.GELU(),
            nn.Dropout(dropout if ffn_dropout is None else ffn_dropout),
            nn.Linear(dim * ffn_mult, dim),
        )

    def forward(self, query: Tensor, key: Tensor, key_mask: Tensor) -> Tensor:
        k = self.norm_k(key)
        attended, _ = self.attn(self.norm_q(query), k, k, key_padding_mask=safe_key_padding_mask(key_mask))
        x = query + attended
        return x + self.ffn(self.norm_ffn(x))
