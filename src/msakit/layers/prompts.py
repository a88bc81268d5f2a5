"""Learnable prompt tokens: shared prompts, their modality-specific private parts, and a
prompted self-attention stack whose prompt slots are re-joined with the shared prompts.

Legend: B batch, K prompts, L steps, H width, r rank of a private part.

    P_s ∈ R^{K×H}                                   shared prompts
    P_m = P_s + (P_s U_m) V_m,  U_m ∈ R^{H×r}, V_m ∈ R^{r×H}     private prompts of modality m
    [P_m; X_m] → layer_1 → (prompt slots += g_1 ⊙ P_s) → layer_2 → ...   prompted encoder

`DisentangledPrompts.orthogonality()` keeps the private parts P_m − P_s of different
modalities, and each private part and P_s, apart (mean squared cosine), so what is
shared stays in P_s and what is specific stays in the private parts.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.layers.attention import safe_key_padding_mask
from msakit.layers.encoders import PositionalEncoding


class DisentangledPrompts(nn.Module):
    """Shared prompts P_s (K, H) and, per name, a private low-rank offset of them.

    `private=False` gives every name the shared prompts themselves (the knockout).
    """

    def __init__(self, names: tuple[str, ...], num_prompts: int, dim: int, *, rank: int = 4, private: bool = True):
        super().__init__()
        self.shared = nn.Parameter(torch.randn(num_prompts, dim) * 0.02)
        self.private = private
        if private:
            self.down = nn.ParameterDict({m: nn.Parameter(torch.randn(dim, rank) * dim**-0.5) for m in names})
            self.up = nn.ParameterDict({m: nn.Parameter(torch.randn(rank, dim) * rank**-0.5) for m in names})

    def offset(self, name: str) -> Tensor:
        """P_m − P_s: (K, H); zeros without private parts."""
        if not self.private:
            return torch.zeros_like(self.shared)
        return (self.shared @ self.down[name]) @ self.up[name]

    def forward(self, name: str) -> Tensor:
        """Private prompts P_m of `name`: (K, H)."""
        return self.shared + self.offset(name)

    def orthogonality(self) -> Tensor:
        """Mean squared cosine between private offsets of different names and each offset and P_s."""
        if not self.private:
            return self.shared.sum() * 0.0
        flat = {m: self.offset(m).flatten() for m in self.down}
        shared = self.shared.flatten()
        terms = [F.cosine_similarity(v, shared, dim=0) ** 2 for v in flat.values()]
        terms += [F.cosine_similarity(flat[a], flat[b], dim=0) ** 2 for a, b in itertools.combinations(flat, 2)]
        return torch.stack(terms).mean()


class PromptedEncoder(nn.Module):
    """Self-attention over [prompts; sequence], `levels` layers deep.

    After each layer the prompt slots are joined with the shared prompts through a
    residual connection scaled by a learned per-level gate (`connect=False` drops it):
    (B, L, H), (B, L), private (K, H), shared (K, H) -> prompt slots (B, K, H), sequence (B, L, H).
    """

    def __init__(self, dim: int, *, levels: int = 2, heads: int = 4, dropout: float = 0.1, connect: bool = True):
        super().__init__()
        self.pos = PositionalEncoding(dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout, batch_first=True, norm_first=True)
            for _ in range(levels)
        )
        self.connect = connect
        if connect:
            self.gates = nn.Parameter(torch.full((levels,), 0.5))

    def forward(self, x: Tensor, mask: Tensor, private: Tensor, shared: Tensor) -> tuple[Tensor, Tensor]:
        k = private.shape[0]
        prompts = private.unsqueeze(0).expand(x.shape[0], -1, -1)  # (B, K, H)
        h = torch.cat([prompts, self.pos(x)], dim=1)  # (B, K + L, H)
        full_mask = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, k), mask], dim=1)  # prompts always valid
        pad = safe_key_padding_mask(full_mask)
        for level, layer in enumerate(self.layers):
            h = layer(h, src_key_padding_mask=pad)
            if self.connect:
                h = torch.cat([h[:, :k] + self.gates[level] * shared, h[:, k:]], dim=1)
        return h[:, :k], h[:, k:] * mask.unsqueeze(-1).to(h.dtype)


__all__ = ["DisentangledPrompts", "PromptedEncoder"]
