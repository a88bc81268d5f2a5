"""MISA: Modality-Invariant and -Specific Representations.

Paper: Hazarika et al., "MISA: Modality-Invariant and -Specific Representations for
Multimodal Sentiment Analysis" (ACM MM 2020); MMSA reference: thuiar/MMSA
`models/singleTask/MISA.py` (after declare-lab/MISA).

    u_m   = LayerNorm(ReLU(W_m · Enc_m(X_m)))           (§3.2 utterance representation)
    h^c_m = σ(E_c(u_m)),  h^p_m = σ(E_p^m(u_m))          (§3.3 shared and private encoders)
    û_m   = D(h^c_m + h^p_m)                              (§3.3 decoder)
    H     = Transformer([h^p_t, h^p_v, h^p_a, h^c_t, h^c_v, h^c_a]),  ŷ = MLP(flatten(H))   (§3.4)
    L = L_task + α·L_sim + β·L_diff + γ·L_recon           (Eq. 6)
    L_sim   = CMD between shared vectors of each modality pair         (Eq. 7-8)
    L_diff  = ‖H_c^T H_p‖_F² per modality and between private vectors   (Eq. 9)
    L_recon = ‖u_m − û_m‖² / d_h                                        (Eq. 10)

Absence: an absent modality's two tokens are masked out of the fusion transformer and
zeroed in flatten(H); the auxiliary losses only pair samples where both sides are
present. A modality the dataset lacks has no encoders and no tokens.

Interpretations:
- Text: msakit's precomputed MiniLM token states stand in for fine-tuned BERT (no
  bert-base download); Enc_text is the shared `SequenceEncoder` over them. Audio and
  visual use the shared length-aware LSTM encoder (the paper's sLSTM).
- The fusion transformer is the shared `SequenceEncoder(kind="transformer")` run over
  the 2M tokens (its positional encoding tells the token slots apart).
- Loss weights follow MMSA's MOSI config: α = 0.3 (sim), β = 0.1 (diff), γ = 1.0 (recon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig, tunable
from msakit.layers import MLP, SequenceEncoder
from msakit.layers.encoders import modality_encoders
from msakit.layers.subspace import orthogonality  # the difference loss, Eq. 9
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class MISAConfig(ModelConfig):
    text_encoder: str = "mean"  # over MiniLM token states (the paper's BERT)
    other_encoder: str = "lstm"  # audio and visual (the paper's sLSTM)
    sim_weight: float = tunable(0.3, low=0.01, high=1.0, log=True)  # α, CMD similarity loss
    diff_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # β, orthogonality loss
    recon_weight: float = tunable(1.0, low=0.1, high=2.0, log=True)  # γ, reconstruction loss
    cmd_moments: int = 5  # K, central moments matched by CMD

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "no_sim": {"sim_weight": 0.0},
        "no_diff": {"diff_weight": 0.0},
        "no_recon": {"recon_weight": 0.0},
    }


def cmd(x: Tensor, y: Tensor, moments: int) -> Tensor:
    """Central moment discrepancy (Eq. 8): ‖E x − E y‖ + Σ_{k=2..K} ‖c_k(x) − c_k(y)‖."""
    mx, my = x.mean(0), y.mean(0)
    cx, cy = x - mx, y - my
    total = (mx - my).norm()
    for k in range(2, moments + 1):
        total = total + (cx.pow(k).mean(0) - cy.pow(k).mean(0)).norm()
    return total


@register_model("misa")
class MISA(MSAModel):
    config_class = MISAConfig
    config: MISAConfig

    def __init__(self, config: MISAConfig) -> None:
        super().__init__(config)
        d, mods = config.hidden_dim, self.modalities
        self.encoders = modality_encoders(config, mods, text_kind=config.text_encoder, other_kind=config.other_encoder)
        self.project = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.LayerNorm(d)) for m in mods})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, d), nn.Sigmoid()) for m in mods})
        self.shared = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())  # E_c, one for every modality
        self.decoder = nn.Linear(d, d)  # D, shared
        self.fusion = SequenceEncoder(d, d, kind="transformer", heads=2, dropout=config.dropout)
        self.head = MLP(2 * len(mods) * d, config.num_classes, hidden_dim=len(mods) * d, dropout=config.dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        mods = self.modalities
        present = {m: batch.present_mask(m) for m in mods}
        u = {m: self.project[m](self.encoders[m](batch.features[m], batch.masks[m])[1]) for m in mods}  # (B, d)
        private = {m: self.private[m](u[m]) for m in mods}  # h^p_m
        shared = {m: self.shared(u[m]) for m in mods}  # h^c_m
        tokens = torch.stack([private[m] for m in mods] + [shared[m] for m in mods], dim=1)  # (B, 2M, d)
        token_mask = torch.stack([present[m] for m in mods] * 2, dim=1)  # (B, 2M)
        fused, _ = self.fusion(tokens, token_mask)  # (B, 2M, d), 0 on absent tokens
        h = fused.flatten(1)  # (B, 2M·d)
        aux: dict[str, Tensor] = {}
        if self.training:
            aux = self._losses(u, private, shared, present)
        return ModelOutput(
            prediction=self.bound_prediction(self.head(h)),
            aux_losses=aux,
            features={
                "fused": h,
                **{f"shared_{m}": shared[m] for m in mods},
                **{f"private_{m}": private[m] for m in mods},
            },
        )

    def _losses(
        self, u: dict[str, Tensor], private: dict[str, Tensor], shared: dict[str, Tensor], present: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        cfg, mods = self.config, self.modalities
        zero = torch.stack([p.sum() for p in private.values()]).sum() * 0.0  # keeps a graph when no pair qualifies
        sim, diff, recon = [zero], [zero], [zero]
        for i, m in enumerate(mods):
            keep = present[m]
            if keep.sum() >= 2:
                diff.append(orthogonality(private[m][keep], shared[m][keep]))
                recon_m = self.decoder(private[m][keep] + shared[m][keep])
                recon.append(F.mse_loss(recon_m, u[m][keep]))
            for n in mods[i + 1 :]:
                both = keep & present[n]
                if both.sum() >= 2:
                    sim.append(cmd(shared[m][both], shared[n][both], cfg.cmd_moments))
                    diff.append(orthogonality(private[m][both], private[n][both]))
        return {
            "sim": cfg.sim_weight * torch.stack(sim).sum() / max(len(sim) - 1, 1),
            "diff": cfg.diff_weight * torch.stack(diff).sum(),
            "recon": cfg.recon_weight * torch.stack(recon).sum() / max(len(recon) - 1, 1),
        }
