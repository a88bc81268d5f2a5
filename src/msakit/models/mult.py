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
- The self-attention over each target: by default (`memory="project"`) the (M−1)·d
  concatenation is projected to d first, which keeps the model small. `memory="concat"`
  runs it on the concatenation itself, (M−1)·d wide, as the paper's and MMSA's
  `trans_*_mem` do (2·d for three modalities); with `ffn_mult=4` (MMSA's feed-forward
  width) the model has MMSA's layout and parameter count (benchmarks/compare_mmsa.py
  --size-matched), and with `ffn_dropout=0` its dropout sites (MMSA's MOSI config has
  relu_dropout = res_dropout = 0: dropout only on attention weights and embeddings).
- A crossmodal block whose source no sample of the batch has, and a target no sample
  has, are skipped outright: the block's output would be discarded (Z_{s→t} = X̂_t) and
  the target would pool to 0 anyway, so the function is the same, with less work (MOSI
  here has no visual features; MMSA runs those blocks on its zero array). Never while
  tracing, so an export keeps one graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig, tunable
from msakit.errors import ConfigError
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
    memory: str = "project"  # self-attention over a target: "project" (to d) | "concat" ((M-1)·d wide: paper, MMSA)
    ffn_mult: int = 2  # feed-forward width of every block, in multiples of its width (MMSA: 4)
    ffn_dropout: float | None = None  # dropout in the FFNs and residual branches; None: attn_dropout (MMSA: 0)


class CrossmodalTransformer(nn.Module):
    """CM_{s→t}: `layers` crossmodal blocks, target queries over the source (§3.2)."""

    def __init__(
        self, dim: int, *, layers: int, heads: int, dropout: float, ffn_mult: int = 2, ffn_dropout: float | None = None
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                CrossModalAttention(dim, heads=heads, dropout=dropout, ffn_mult=ffn_mult, ffn_dropout=ffn_dropout)
                for _ in range(layers)
            ]
        )

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
        if config.memory not in ("project", "concat"):
            raise ConfigError(f"model {self.model_name!r}: memory must be 'project' or 'concat', got {config.memory!r}")
        if config.ffn_mult < 1:
            raise ConfigError(f"model {self.model_name!r}: ffn_mult must be >= 1, got {config.ffn_mult}")
        self.embed = nn.ModuleDict({m: SequenceEncoder(config.dim(m), d, dropout=config.embed_dropout) for m in mods})
        self.pos = PositionalEncoding(d)
        # one crossmodal transformer per (source, target) pair the dataset has
        self.cross = nn.ModuleDict(
            {
                f"{s}_to_{t}": CrossmodalTransformer(
                    d,
                    layers=config.cross_layers,
                    heads=config.heads,
                    dropout=config.attn_dropout,
                    ffn_mult=config.ffn_mult,
                    ffn_dropout=config.ffn_dropout,
                )
                for t in mods
                for s in mods
                if s != t
            }
        )
        width = d * max(len(mods) - 1, 1)  # a target concatenates its M-1 crossmodal views
        concat = config.memory == "concat"
        self.pooled_dim = width if concat else d
        self.self_attn = nn.ModuleDict(
            {
                m: SequenceEncoder(
                    width,
                    self.pooled_dim,
                    kind="transformer",
                    layers=config.self_layers,
                    heads=config.heads,
                    dropout=config.attn_dropout,
                    ffn_mult=config.ffn_mult,
                    ffn_dropout=config.ffn_dropout,
                    project=not concat,
                )
                for m in mods
            }
        )
        fused = self.pooled_dim * len(mods)
        self.proj = MLP(fused, fused, hidden_dim=fused, dropout=config.dropout)  # residual block of §3.3
        self.out = nn.Linear(fused, config.num_classes)

    def forward(self, batch: Batch) -> ModelOutput:
        x = {m: self.pos(self.embed[m](batch.features[m], batch.masks[m])[0]) for m in self.modalities}  # (B, L_m, d)
        tracing = torch.jit.is_tracing()
        present = {m: batch.present_mask(m) for m in self.modalities}  # (B,) each
        in_batch = {m: tracing or bool(present[m].any()) for m in self.modalities}
        pooled = {}
        for t in self.modalities:
            if not in_batch[t]:  # no sample has the target: it pools to 0 (the same as running it)
                pooled[t] = x[t].new_zeros(x[t].shape[0], self.pooled_dim)
                continue
            views = []
            for s in self.modalities:
                if s == t:
                    continue
                if not in_batch[s]:  # no sample has the source: every sample skips the block
                    views.append(x[t])
                    continue
                z = self.cross[f"{s}_to_{t}"](x[t], x[s], batch.masks[s])  # (B, L_t, d)
                views.append(torch.where(present[s][:, None, None], z, x[t]))  # skip the block where s is absent
            z_t = torch.cat(views, dim=-1) if views else x[t]  # (B, L_t, (M-1)·d)
            _, pooled[t] = self.self_attn[t](z_t, batch.masks[t])  # (B, pooled_dim), 0 where t is absent
        h = torch.cat(list(pooled.values()), dim=-1)  # (B, M·pooled_dim)
        h = h + self.proj(h)
        return ModelOutput(prediction=self.bound_prediction(self.out(h)), features={"fused": h, **pooled})
