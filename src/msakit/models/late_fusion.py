"""Late fusion reference model: one encoder and one head per modality, mixed per sample.

Each modality m predicts ŷ_m from its own pooled encoding; a gate scores the
modalities from the concatenated encodings and the prediction is Σ_m w_m·ŷ_m with
w = softmax over the modalities *present* in the sample. Every unimodal head also
gets its own task loss (weight `unimodal_weight`), so each ŷ_m stays a calibrated
prediction and the gate learns how far to trust it: a weak modality (MOSI's audio)
ends up with a small weight instead of dragging the fused prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from msakit.batch import Batch, ModelOutput, modality_index
from msakit.config import ModelConfig, tunable
from msakit.layers import MLP, SequenceEncoder, masked_softmax
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class LateFusionConfig(ModelConfig):
    encoder: str = tunable("transformer", choices=("mean", "lstm", "transformer"))  # SequenceEncoder kind
    unimodal_weight: float = tunable(0.5, low=0.0, high=1.0)  # weight of each unimodal head's own task loss


@register_model("late_fusion")
class LateFusion(MSAModel):
    config_class = LateFusionConfig
    config: LateFusionConfig

    def __init__(self, config: LateFusionConfig) -> None:
        super().__init__(config)
        h = config.hidden_dim
        self.encoders = nn.ModuleDict(
            {m: SequenceEncoder(config.dim(m), h, kind=config.encoder, dropout=config.dropout) for m in self.modalities}
        )
        self.heads = nn.ModuleDict(
            {m: MLP(h, config.num_classes, hidden_dim=h, dropout=config.dropout) for m in self.modalities}
        )
        self.gate = MLP(h * len(self.modalities), len(self.modalities), hidden_dim=h, dropout=config.dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        pooled = {m: self.encoders[m](batch.features[m], batch.masks[m])[1] for m in self.modalities}  # (B, H) each
        unimodal = torch.stack([self.heads[m](pooled[m]) for m in self.modalities], dim=1)  # (B, m, C)
        columns = [modality_index(m) for m in self.modalities]
        present = batch.present[:, columns]  # (B, m)
        weights = masked_softmax(self.gate(torch.cat(list(pooled.values()), dim=-1)), present)  # (B, m)
        fused = (weights.unsqueeze(-1) * unimodal).sum(1)  # (B, C)
        aux = {}
        if self.training and self.config.unimodal_weight > 0:
            losses = []
            for i in range(len(self.modalities)):
                keep = present[:, i]
                if keep.any():
                    losses.append(self.task_loss(self.bound_prediction(unimodal[keep, i]), batch.labels[keep]))
            if losses:
                aux["unimodal"] = self.config.unimodal_weight * torch.stack(losses).mean()
        all_weights = torch.zeros(batch.size, batch.present.shape[1], dtype=weights.dtype, device=weights.device)
        all_weights[:, columns] = weights
        return ModelOutput(
            prediction=self.bound_prediction(fused),
            modality_weights=all_weights,
            aux_losses=aux,
            features={f"{m}": v for m, v in pooled.items()},
            explanations={"unimodal_predictions": unimodal if self.is_classifier else unimodal.squeeze(-1)},
        )
