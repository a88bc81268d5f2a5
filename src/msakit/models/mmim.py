"""MMIM: MultiModal InfoMax, hierarchical mutual information maximisation.

Paper: Han, Chen and Poria, "Improving Multimodal Fusion with Hierarchical Mutual
Information Maximization for Multimodal Sentiment Analysis" (EMNLP 2021); MMSA
reference: thuiar/MMSA `models/singleTask/MMIM.py` (after declare-lab/Multimodal-Infomax).

    h_m = Enc_m(X_m)                                         (§3.2 modality encoders)
    z   = Fusion([h_t; h_a; h_v]),  ŷ = Head(z)              (§3.2 fusion network)
    I(h_t; h_a) ≥ E log q(h_a | h_t) + H(h_a)                 (§3.3 input level, BA bound)
    q(y | x) = N(y; μ(x), diag σ²(x))                          (Eq. 6, Gaussian variational q)
    I(z; h_m) ≥ CPC: InfoNCE between G_m(z) and h_m           (§3.4 fusion level, Eq. 10-11)
    L = L_task − α·L_CPC-MI − β·L_BA   (as losses: + α·InfoNCE − β·log q)   (Eq. 13)

Absence: pairs and CPC terms only use samples where both sides are present (the
shared `info_nce` takes a `valid` mask); an absent modality's h_m is 0 in the fusion.
Pairs with a modality the dataset lacks are not built.

Interpretations:
- Text: msakit's precomputed MiniLM token states stand in for fine-tuned BERT, through
  the shared `SequenceEncoder`; audio and visual use its length-aware LSTM.
- The paper trains the BA estimators in a separate first stage per batch and drops the
  entropy term H(h_m) estimated from a Gaussian-mixture memory. We train everything in
  one step and keep the target of each BA bound out of the gradient (y is detached),
  so maximising log q cannot be won by shrinking the target's entropy.
- CPC scores are dot products of L2-normalised vectors with temperature 1, as in the
  paper's code.
- α = β = 0.1 (MMSA MOSI config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig, tunable
from msakit.layers import MLP, info_nce
from msakit.layers.encoders import modality_encoders
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class MMIMConfig(ModelConfig):
    text_encoder: str = "mean"  # over MiniLM token states (the paper's BERT)
    other_encoder: str = "lstm"  # audio and visual (the paper's bidirectional LSTM)
    cpc_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # α, fusion-level CPC (InfoNCE) loss
    ba_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # β, input-level BA lower bound
    cpc_temperature: float = 1.0  # the paper's code scores normalised vectors without temperature

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "no_cpc": {"cpc_weight": 0.0},
        "no_ba": {"ba_weight": 0.0},
        "neither": {"cpc_weight": 0.0, "ba_weight": 0.0},
    }


class GaussianLikelihood(nn.Module):
    """q(y | x) = N(μ(x), σ²(x)) (Eq. 6): returns log q(y | x) per sample, up to a constant."""

    def __init__(self, x_dim: int, y_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.mu = MLP(x_dim, y_dim, hidden_dim=hidden_dim)
        self.logvar = nn.Sequential(MLP(x_dim, y_dim, hidden_dim=hidden_dim), nn.Tanh())  # bounded log σ²

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        mu, logvar = self.mu(x), self.logvar(x)  # (B, Dy)
        return -0.5 * (((y - mu) ** 2) / logvar.exp() + logvar).sum(-1)  # (B,)


@register_model("mmim")
class MMIM(MSAModel):
    config_class = MMIMConfig
    config: MMIMConfig

    def __init__(self, config: MMIMConfig) -> None:
        super().__init__(config)
        h, mods = config.hidden_dim, self.modalities
        self.encoders = modality_encoders(config, mods, text_kind=config.text_encoder, other_kind=config.other_encoder)
        self.fusion = nn.Sequential(nn.Linear(h * len(mods), h), nn.Tanh(), nn.Dropout(config.dropout))  # z
        self.head = nn.Linear(h, config.num_classes)
        # input level: text paired with each other modality (the paper's (t, a) and (t, v))
        self.pairs = [("text", m) for m in mods if m != "text"] if "text" in mods else []
        self.ba = nn.ModuleDict({f"{x}_{y}": GaussianLikelihood(h, h, h) for x, y in self.pairs})
        # fusion level: G_m predicts h_m from z
        self.cpc = nn.ModuleDict({m: nn.Linear(h, h) for m in mods})

    def forward(self, batch: Batch) -> ModelOutput:
        enc = {m: self.encoders[m](batch.features[m], batch.masks[m])[1] for m in self.modalities}  # (B, H)
        z = self.fusion(torch.cat(list(enc.values()), dim=-1))  # (B, H)
        aux: dict[str, Tensor] = {}
        if self.training:
            aux = self._mi_losses(batch, enc, z)
        return ModelOutput(prediction=self.bound_prediction(self.head(z)), aux_losses=aux, features={"fused": z, **enc})

    def _mi_losses(self, batch: Batch, enc: dict[str, Tensor], z: Tensor) -> dict[str, Tensor]:
        cfg = self.config
        cpc = torch.stack(
            [
                info_nce(self.cpc[m](z), enc[m], temperature=cfg.cpc_temperature, valid=batch.present_mask(m))
                for m in self.modalities
            ]
        ).sum()  # Eq. 10-11
        out = {"cpc": cfg.cpc_weight * cpc}
        if self.pairs:
            lld = []
            for x, y in self.pairs:
                both = batch.present_mask(x) & batch.present_mask(y)
                log_q = self.ba[f"{x}_{y}"](enc[x], enc[y].detach())  # (B,)
                lld.append((log_q * both).sum() / both.sum().clamp_min(1))
            out["ba"] = -cfg.ba_weight * torch.stack(lld).sum()  # maximise the BA bound
        return out
