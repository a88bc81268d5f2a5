"""MulT: Multimodal Transformer for unaligned multimodal sequences.

Paper: Tsai et al., "Multimodal Transformer for Unaligned Multimodal Language
Sequences" (ACL 2019); MMSA reference: thuiar/MMSA `models/singleTask/MULT.py` (after
yaohungt/Multimodal-Transformer).

    X̂_m = Conv1D(X_m) + PE                         (§3.1 temporal convolution, positions)
    Z_{s→t} = CM_{s→t}(X̂_t, X̂_s)                   (§3.2 crossmodal transformer, D layers)
    Z_t = [Z_{s1→t} ; Z_{s2→t}]                     (concatenated along features)
    Z_t ← Transformer(Z_t),  pooled                 (§3.3 self-attention over each target)
    ŷ = MLP([Z_text ; Z_audio ; Z_visual]) with a residual projection

Absence: a crossmodal block whose source the dataset lacks is not built; for a sample
whose source is absent, Z_{s→t} is the unattended target X̂_t (the block is skipped
for that sample). A target absent for a sample pools to 0 (masked mean of no step).

Interpretations:
- The paper's temporal 1-D convolution (kernel 1 in MMSA's MOSI config) is the shared
  `SequenceEncoder(kind="mean")` projection; positions are added before the blocks.
- MulT reads the last step of each target sequence (MMSA ignores lengths, so it needs
  start padding); we take the masked mean over valid steps, which is padding-agnostic.
- The crossmodal blocks are the shared pre-norm `CrossModalAttention` (the paper's
  block is also pre-norm: LN on queries and keys, then a position-wise FFN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig, tunable
from msakit.layers import MLP, CrossModalAttention, PositionalEncoding, SequenceEncoder
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class MulTConfig(ModelConfig):
    hidden_dim: int = tunable(32, choices=(16, 32, 48, 64))  # d, the common width (MMSA MOSI: 30 with 5 heads)
    heads: int = 4
    cross_layers: int = 2  # D, layers per crossmodal transformer (MMSA MOSI: 4; 2 keeps CPU time low)
    self_layers: int = 1  # layers of the self-attention transformer over each target
    attn_dropout: float = tunable(0.1, low=0.0, high=0.3)
    embed_dropout: float = tunable(0.2, low=0.0, high=0.4)  # dropout on the projected inputs


class CrossmodalTransformer(nn.Module):
    """CM_{s→t}: `layers` crossmodal blocks, target queries over the source (§3.2)."""

    def __init__(self, dim: int, *, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([CrossModalAttention(dim, heads=heads, dropout=dropout) for _ in range(layers)])

    def forward(self, target: Tensor, source: Tensor, source_mask: Tensor) -> Tensor:
        for block in self.blocks:
            target = block(target, source, source_mask)  # (B, Lt, d)
        return target


@register_model("mult")
class MulT(MSAModel):
    config_class = MulTConfig
    config: MulTConfig

    def __init__(self, config: MulTConfig) -> None:
        super().__init__(config)
        d, mods = config.hidden_dim, self.modalities
        self.embed = nn.ModuleDict({m: SequenceEncoder(config.dim(m), d, dropout=config.embed_dropout) for m in mods})
        self.pos = PositionalEncoding(d)
        # one crossmodal transformer per (source, target) pair the dataset has
        self.cross = nn.ModuleDict(
            {
                f"{s}_to_{t}": CrossmodalTransformer(
                    d, layers=config.cross_layers, heads=config.heads, dropout=config.attn_dropout
                )
                for t in mods
                for s in mods
                if s != t
            }
        )
        width = d * max(len(mods) - 1, 1)  # a target concatenates its M-1 crossmodal views
        self.self_attn = nn.ModuleDict(
            {
                m: SequenceEncoder(
                    width,
                    d,
                    kind="transformer",
                    layers=config.self_layers,
                    heads=config.heads,
                    dropout=config.attn_dropout,
                )
                for m in mods
            }
        )
        fused = d * len(mods)
        self.proj = MLP(fused, fused, hidden_dim=fused, dropout=config.dropout)  # residual block of §3.3
        self.out = nn.Linear(fused, config.num_classes)

    def forward(self, batch: Batch) -> ModelOutput:
        x = {m: self.pos(self.embed[m](batch.features[m], batch.masks[m])[0]) for m in self.modalities}  # (B, L_m, d)
        pooled = {}
        for t in self.modalities:
            views = []
            for s in self.modalities:
                if s == t:
                    continue
                z = self.cross[f"{s}_to_{t}"](x[t], x[s], batch.masks[s])  # (B, L_t, d)
                has_source = batch.present_mask(s)[:, None, None]
                views.append(torch.where(has_source, z, x[t]))  # skip the block where s is absent
            z_t = torch.cat(views, dim=-1) if views else x[t]  # (B, L_t, (M-1)·d)
            _, pooled[t] = self.self_attn[t](z_t, batch.masks[t])  # (B, d), 0 where t is absent
        h = torch.cat(list(pooled.values()), dim=-1)  # (B, M·d)
        h = h + self.proj(h)
        return ModelOutput(prediction=self.bound_prediction(self.out(h)), features={"fused": h, **pooled})
