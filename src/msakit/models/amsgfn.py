"""AMSGFN: Adaptive Modality Selection and Guided Fusion Network.

Source: "Multimodal sentiment analysis based on adaptive modality selection and
contrastive learning alignment" (AMSGFN), section 2; ablations in its Table 6.

    unimodal   X_m = Linear(F_m)                                   (B, L_m, H)
    CCAM       X'_m = avgpool(X_m); NT-Xent over t-a, t-v, a-v, both ways       eqs. 1-2
    DMSM       s = softmax(MLP([X'_t; X'_a; X'_v])), p = argmax s, X̃_m = s_m X_m   eqs. 3-5
    DMGF ×N    dominant p queries each auxiliary, self-attends, gated injection    eqs. 6-13
    predict    Q_p = TB(X̃_p); X_pred = CMA(Q_p, X_p^[N]); y = MLP(X_pred)          eqs. 14-16
    loss       MSE + α·L_align + β·L_cor                                          eqs. 17-19

Dimension legend: B batch, M modalities the model was built for (MODALITIES order),
A = M - 1 auxiliaries, L common padded length (max over modalities), H hidden width.

The dominant modality differs per sample, so all modalities are padded to one length
and stacked as (B, M, L, H); the dominant sequence and the auxiliaries are gathered per
sample by index, and the auxiliaries are folded into the batch axis for one attention
call per layer. There is no loop over samples.

Interpretations (where the paper leaves a choice):
- "Linear projection to d" is msakit's SequenceEncoder(kind="mean"): LayerNorm + Linear.
  X'_m is the masked mean over valid steps; absent modalities give X'_m = 0.
- CCAM projects X'_m with a per-modality MLP into the shared space; only the loss uses
  that space (the paper feeds X'_m, not the projection, to DMSM). Eq. 2 sums both
  directions, i.e. 2 × the mean of the two NT-Xent directions; a pair is contrasted only
  over samples that have both modalities. τ defaults to 0.1.
- DMSM: the softmax runs over the modalities present in the sample (absent ones get
  s_m = 0 and can never be dominant). With `fixed_dominant` (Table 6 x-oriented rows) p
  is that modality, falling back to argmax s for samples where it is absent; s still
  reweights the sequences (eq. 5).
- DMGF: X_p^[0] = X̃_p (the weighted dominant sequence). Auxiliary identities change per
  sample, so each layer has ONE cross-modal attention shared by both auxiliaries
  (eqs. 6-7 share CMA(·) in the paper's notation too). Attention is applied without a
  LayerNorm on the keys, so the contribution weights s_m of eq. 5 are not normalised
  away. Absent auxiliaries contribute zero to eq. 9.
- "w/o DMGF": the N layers are replaced by X̃_p + Σ_a mean(X̃_a) broadcast over steps (no
  attention, no gate), so auxiliaries still reach the prediction.
- "w/o TB": Q_p = X̃_p. X_pred is mean-pooled over the dominant's valid steps before the MLP.
- L_cor (eq. 18): InfoNCE from the pooled X_p^[N], through a per-modality linear
  predictor, to each present X'_m (MMIM-style CPC), one direction, same τ.
- The output is not bounded (the paper's eq. 16 is a plain MLP); task loss is MSE (eq. 17).
- The MOSI preset (`amsgfn/mosi`) turns L_align and L_cor off (use_ccam, use_cor), chosen on
  validation: with e5 sentence vectors and audio that carries no sentiment they cost
  validation MAE (docs/models/amsgfn.md). The defaults keep the paper's full objective.
- Search space: beside the shared fields (hidden_dim, dropout; the trainer's lr, ...) the loss
  weights α, β of eq. 19 (the paper gives no values) and the depth N are declared tunable.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput, masked_mean, modality_index
from msakit.config import ModelConfig, tunable
from msakit.errors import ConfigError
from msakit.layers import MLP, SequenceEncoder, info_nce, masked_softmax, safe_key_padding_mask, symmetric_info_nce
from msakit.layers.gated_fusion import GatedResidualFusion
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model


@dataclass
class AMSGFNConfig(ModelConfig):
    task_loss: str = "mse"  # eq. 17
    encoder: str = "mean"  # SequenceEncoder kind for the unimodal projection
    heads: int = 4
    fusion_layers: int = tunable(2, low=1, high=3)  # N stacked DMGF layers
    temperature: float = 0.1  # τ of NT-Xent (eq. 1) and of the NCE in L_cor
    alpha: float = tunable(0.1, low=0.0, high=0.5)  # weight of L_align (eq. 19)
    beta: float = tunable(0.1, low=0.0, high=0.5)  # weight of L_cor (eq. 19)
    use_ccam: bool = True  # False: no alignment loss (Table 6 "w/o CCAM")
    fixed_dominant: str = ""  # "": per-sample argmax (eq. 4); "text" | "audio" | "visual" fixes p
    use_dmgf: bool = True  # False: additive fusion instead of the N DMGF layers
    use_tb: bool = True  # False: Q_p = X̃_p without the Transformer block (eq. 14)
    use_cor: bool = True  # False: no L_cor

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "w/o CCAM": {"use_ccam": False},
        "t-oriented": {"fixed_dominant": "text"},
        "v-oriented": {"fixed_dominant": "visual"},
        "a-oriented": {"fixed_dominant": "audio"},
        "w/o DMGF": {"use_dmgf": False},
        "w/o TB": {"use_tb": False},
        "w/o Cor": {"use_cor": False},
    }


class DMGFLayer(nn.Module):
    """One dominant-modality-guided fusion layer (eqs. 6-13), batched over auxiliaries."""

    def __init__(self, dim: int, *, heads: int, dropout: float) -> None:
        super().__init__()
        self.cma = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.sa = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.fuse = GatedResidualFusion(dim)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(
        self, xp: Tensor, p_mask: Tensor, aux: Tensor, aux_mask: Tensor, aux_present: Tensor
    ) -> tuple[Tensor, Tensor]:
        b, a, length, h = aux.shape
        query = xp.unsqueeze(1).expand(b, a, length, h).reshape(b * a, length, h)  # (B·A, L, H)
        keys = aux.reshape(b * a, length, h)
        pad = safe_key_padding_mask(aux_mask.reshape(b * a, length))
        attended = self.cma(query, keys, keys, key_padding_mask=pad, need_weights=False)[0]  # eqs. 6-7
        attended = attended.view(b, a, length, h) * aux_present[:, :, None, None].to(xp.dtype)
        x_aux = attended.sum(1)  # (B, L, H)  eq. 9
        pad_p = safe_key_padding_mask(p_mask)
        x_tmp = xp + self.sa(xp, xp, xp, key_padding_mask=pad_p, need_weights=False)[0]  # eq. 8
        x_hat, gate = self.fuse(x_tmp, x_aux)  # eqs. 10-12
        x_next = x_hat + self.ffn(self.norm(x_hat))  # eq. 13
        return x_next * p_mask.unsqueeze(-1).to(xp.dtype), gate


@register_model("amsgfn")
class AMSGFN(MSAModel):
    config_class = AMSGFNConfig
    config: AMSGFNConfig
    capabilities = Capabilities(min_modalities=2)  # a dominant modality and at least one auxiliary
    columns: Tensor  # (M,) buffer: index in MODALITIES of each modality the model was built for

    def __init__(self, config: AMSGFNConfig) -> None:
        super().__init__(config)  # checks capabilities.min_modalities
        if config.fixed_dominant and config.fixed_dominant not in self.modalities:
            raise ConfigError(
                f"model 'amsgfn': fixed_dominant={config.fixed_dominant!r} is not one of the data's modalities "
                f"{list(self.modalities)}"
            )
        if config.fusion_layers < 1 or config.hidden_dim % config.heads:
            raise ConfigError(
                f"model 'amsgfn': fusion_layers must be >= 1 and heads must divide hidden_dim, got "
                f"fusion_layers={config.fusion_layers}, heads={config.heads}, hidden_dim={config.hidden_dim}"
            )
        h, m = config.hidden_dim, len(self.modalities)
        self.encoders = nn.ModuleDict(
            {k: SequenceEncoder(config.dim(k), h, kind=config.encoder, dropout=config.dropout) for k in self.modalities}
        )
        self.register_buffer("columns", torch.tensor([modality_index(k) for k in self.modalities]), persistent=False)
        if config.use_ccam:
            self.shared = nn.ModuleDict({k: MLP(h, h, hidden_dim=h) for k in self.modalities})
        self.scorer = MLP(m * h, m, hidden_dim=h, dropout=config.dropout)  # eq. 3
        if config.use_dmgf:
            self.fusion = nn.ModuleList(
                DMGFLayer(h, heads=config.heads, dropout=config.dropout) for _ in range(config.fusion_layers)
            )
        if config.use_tb:
            self.tb = nn.TransformerEncoderLayer(
                h, config.heads, 2 * h, config.dropout, batch_first=True, norm_first=True
            )
        self.readout = nn.MultiheadAttention(h, config.heads, dropout=config.dropout, batch_first=True)
        self.head = MLP(h, config.num_classes, hidden_dim=h, dropout=config.dropout)  # eq. 16
        if config.use_cor:
            self.cor_heads = nn.ModuleDict({k: nn.Linear(h, h) for k in self.modalities})

    def forward(self, batch: Batch) -> ModelOutput:
        cfg, mods = self.config, self.modalities
        encoded = {k: self.encoders[k](batch.features[k], batch.masks[k]) for k in mods}  # (B, L_m, H), (B, H)
        pooled = {k: v[1] for k, v in encoded.items()}  # X'_m
        length = max(v[0].shape[1] for v in encoded.values())
        x = torch.stack([F.pad(encoded[k][0], (0, 0, 0, length - encoded[k][0].shape[1])) for k in mods], 1)
        mask = torch.stack([F.pad(batch.masks[k], (0, length - batch.masks[k].shape[1])) for k in mods], 1)
        present = batch.present[:, self.columns]  # (B, M)
        rows = torch.arange(batch.size, device=x.device)

        # DMSM: contribution scores, dominant modality, reweighted sequences (eqs. 3-5)
        s = masked_softmax(self.scorer(torch.cat([pooled[k] for k in mods], dim=-1)), present)  # (B, M)
        p = s.argmax(dim=-1)  # (B,)
        if cfg.fixed_dominant:
            fixed = torch.full_like(p, mods.index(cfg.fixed_dominant))
            p = torch.where(present[rows, fixed], fixed, p)
        x = s[:, :, None, None] * x  # X̃_m  (B, M, L, H)
        xp, p_mask = x[rows, p], mask[rows, p]  # (B, L, H), (B, L)
        others = torch.arange(len(mods), device=x.device).expand(batch.size, -1)
        aux_idx = others[others != p[:, None]].view(batch.size, len(mods) - 1)  # (B, A)
        aux, aux_mask = x[rows[:, None], aux_idx], mask[rows[:, None], aux_idx]  # (B, A, L, H), (B, A, L)
        aux_present = present[rows[:, None], aux_idx]  # (B, A)

        # DMGF (eqs. 6-13), or plain additive fusion for "w/o DMGF"
        explanations: dict[str, Tensor] = {"dominant": self.columns[p]}
        fused = xp
        if cfg.use_dmgf:
            gate = fused
            for layer in self.fusion:
                fused, gate = layer(fused, p_mask, aux, aux_mask, aux_present)
            explanations["aux_gate"] = masked_mean(gate, p_mask).mean(-1)  # (B,) mean gate of the last layer
        else:
            aux_pooled = (
                masked_mean(aux.flatten(0, 1), aux_mask.flatten(0, 1)).view(*aux_present.shape, -1)
                * aux_present.unsqueeze(-1).to(x.dtype)
            ).sum(1)  # (B, H)
            fused = (xp + aux_pooled.unsqueeze(1)) * p_mask.unsqueeze(-1).to(x.dtype)

        # prediction: TB query, attention readout, MLP (eqs. 14-16)
        pad_p = safe_key_padding_mask(p_mask)
        query = self.tb(xp, src_key_padding_mask=pad_p) if cfg.use_tb else xp  # Q_p
        x_pred = self.readout(query, fused, fused, key_padding_mask=pad_p, need_weights=False)[0]  # (B, L, H)
        x_pred = masked_mean(x_pred, p_mask)  # (B, H)
        prediction = self.bound_prediction(self.head(x_pred))

        weights = torch.zeros(batch.size, batch.present.shape[1], dtype=s.dtype, device=s.device)
        weights[:, self.columns] = s
        return ModelOutput(
            prediction=prediction,
            modality_weights=weights,
            aux_losses=self._aux_losses(pooled, masked_mean(fused, p_mask), present) if self.training else {},
            features={"fused": x_pred, **pooled},
            explanations=explanations,
        )

    def _aux_losses(self, pooled: dict[str, Tensor], fused: Tensor, present: Tensor) -> dict[str, Tensor]:
        cfg, mods, tau = self.config, self.modalities, self.config.temperature
        aux = {}
        if cfg.use_ccam and cfg.alpha > 0:  # eq. 2: every pair, both directions
            z = {k: self.shared[k](pooled[k]) for k in mods}
            pairs = [
                2 * symmetric_info_nce(z[a], z[b], temperature=tau, valid=present[:, i] & present[:, j])
                for (i, a), (j, b) in combinations(enumerate(mods), 2)
            ]
            aux["align"] = cfg.alpha * torch.stack(pairs).sum()
        if cfg.use_cor and cfg.beta > 0:  # eq. 18: fused representation against each modality
            terms = [
                info_nce(self.cor_heads[k](fused), pooled[k], temperature=tau, valid=present[:, i])
                for i, k in enumerate(mods)
            ]
            aux["cor"] = cfg.beta * torch.stack(terms).sum()
        return aux
