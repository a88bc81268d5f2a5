"""LMF: Low-rank Multimodal Fusion.

Paper: Liu et al., "Efficient Low-rank Multimodal Fusion with Modality-Specific
Factors" (ACL 2018); MMSA reference: thuiar/MMSA `models/singleTask/LMF.py` (after
Justin1904/Low-rank-Multimodal-Fusion).

TFN's fusion h = W·Z with Z = ⊗_m [1; z_m] (Eq. 1-2), with W factorised into R
modality-specific rank-1 factors, W = Σ_r ⊗_m w_m^(r) (Eq. 4), so that

    h = Σ_r Π_m (w_m^(r) · [1; z_m])        (Eq. 5-6, Z is never formed)

Like TFN, an absent modality has z_m = 0 and contributes [1; 0]; a modality the
dataset lacks has no factor.

Interpretations:
- As in the paper and MMSA, the fused h is the output itself (regression: one value,
  classification: the logits), weighted over ranks by a learned vector.
- Sub-networks as in our TFN: text through the shared length-aware LSTM encoder,
  audio and visual averaged over valid steps, then a bias-free layer (MMSA's SubNet
  uses BatchNorm, which would make absent modalities non-zero).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig, tunable
from msakit.layers.tensor_fusion import LowRankFusion, ModalitySubNet
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class LMFConfig(ModelConfig):
    rank: int = tunable(4, choices=(2, 4, 8, 16))  # R, the rank of the fusion weight tensor (MMSA MOSI: 4)
    text_encoder: str = "lstm"  # SequenceEncoder kind for text (the paper's LSTM)
    other_encoder: str = "mean"  # audio and visual: averaged over time
    text_out: int = 32  # width of z_text
    other_out: int = 16  # width of z_audio and z_visual


@register_model("lmf")
class LMF(MSAModel):
    config_class = LMFConfig
    config: LMFConfig

    def __init__(self, config: LMFConfig) -> None:
        super().__init__(config)
        widths = {m: config.text_out if m == "text" else config.other_out for m in self.modalities}
        self.subnets = nn.ModuleDict(
            {
                m: ModalitySubNet(
                    config.dim(m),
                    config.hidden_dim,
                    widths[m],
                    kind=config.text_encoder if m == "text" else config.other_encoder,
                    dropout=config.dropout,
                )
                for m in self.modalities
            }
        )
        self.fusion = LowRankFusion(list(widths.values()), config.num_classes, rank=config.rank)

    def forward(self, batch: Batch) -> ModelOutput:
        z = {m: self.subnets[m](batch.features[m], batch.masks[m]) for m in self.modalities}  # (B, |z_m|) each
        out = self.fusion(list(z.values()))  # (B, C), Eq. 6
        return ModelOutput(prediction=self.bound_prediction(out), features=z)
