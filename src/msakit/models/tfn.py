"""TFN: Tensor Fusion Network.

Paper: Zadeh et al., "Tensor Fusion Network for Multimodal Sentiment Analysis" (EMNLP
2017); MMSA reference: thuiar/MMSA `models/singleTask/TFN.py` (after A2Zadeh's code).

    z_m = SubNet_m(x_m)                                   (modality embedding sub-networks)
    z   = [1; z_text] ⊗ [1; z_audio] ⊗ [1; z_visual]        (Eq. 1: tensor fusion layer)
    ŷ   = 2L·σ(MLP(z)) − L = L·tanh(MLP(z) / 2)             (sentiment inference sub-network)

The constant 1 keeps the unimodal and bimodal terms in z. It also handles absence: an
absent modality has z_m = 0, so its factor [1; 0] leaves the product of the others;
a modality the dataset lacks is left out of the product altogether.

Interpretations:
- Text: the shared length-aware LSTM encoder pooled over valid steps (the paper's
  LSTM final state; MMSA reads it without lengths). Audio and visual: average over
  valid steps, then the MLP sub-network (the paper's, as in MMSA's SubNet, without
  BatchNorm so that absent modalities stay exactly zero).
- Output bound: the paper and MMSA scale a sigmoid to [−3, 3]; we use the config's
  label_range L for the same map, so SIMS ([−1, 1]) works unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig, tunable
from msakit.layers import MLP
from msakit.layers.tensor_fusion import ModalitySubNet, tensor_fusion
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class TFNConfig(ModelConfig):
    text_encoder: str = "lstm"  # SequenceEncoder kind for text (the paper's LSTM)
    other_encoder: str = "mean"  # audio and visual: averaged over time, as in the paper
    text_out: int = tunable(32, choices=(16, 32, 64))  # width of z_text (MMSA MOSI: 32)
    other_out: int = 8  # width of z_audio and z_visual, kept small: |z| grows as their product
    post_fusion_dim: int = tunable(64, choices=(32, 64, 128))  # width of the inference sub-network's hidden layers
    post_fusion_dropout: float = tunable(0.2, low=0.0, high=0.5)


@register_model("tfn")
class TFN(MSAModel):
    config_class = TFNConfig
    config: TFNConfig

    def __init__(self, config: TFNConfig) -> None:
        super().__init__(config)
        self.widths = {m: config.text_out if m == "text" else config.other_out for m in self.modalities}
        self.subnets = nn.ModuleDict(
            {
                m: ModalitySubNet(
                    config.dim(m),
                    config.hidden_dim,
                    self.widths[m],
                    kind=config.text_encoder if m == "text" else config.other_encoder,
                    dropout=config.dropout,
                )
                for m in self.modalities
            }
        )
        fused = 1
        for width in self.widths.values():
            fused *= width + 1
        self.fused_dim = fused  # Π_m (|z_m| + 1)
        self.dropout = nn.Dropout(config.post_fusion_dropout)
        self.head = MLP(
            fused, config.num_classes, hidden_dim=config.post_fusion_dim, depth=2, dropout=config.post_fusion_dropout
        )

    def forward(self, batch: Batch) -> ModelOutput:
        z = {m: self.subnets[m](batch.features[m], batch.masks[m]) for m in self.modalities}  # (B, |z_m|), 0 if absent
        fused = tensor_fusion(list(z.values()))  # (B, Π (|z_m| + 1)), Eq. 1
        absent = self._absent_from_batch(batch)
        raw = self._head_without(absent, z) if absent else self.head(self.dropout(fused))  # (B, C)
        if not self.is_classifier:
            raw = self.config.label_range * torch.tanh(raw / 2)  # = 2L·σ(raw) − L
        return ModelOutput(prediction=self.bound_prediction(raw), features={"fused": fused, **z})

    def _absent_from_batch(self, batch: Batch) -> list[str]:
        """Modalities no sample of the batch has (never while tracing: the export keeps one graph)."""
        if torch.jit.is_tracing() or len(self.modalities) < 2:
            return []
        return [m for m in self.modalities if not bool(batch.present_mask(m).any())]

    def _head_without(self, absent: list[str], z: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head on the product of the other modalities: the same function as on the full z, less work.

        An absent modality's factor is [1; 0], so z is zero outside the slice where that modality's
        index is 0; dropout leaves zeros at zero, and the first Linear reads only the weight columns
        of that slice (1/(|z_m| + 1) of them). For size-matched TFN on MOSI without visual features
        that is 1/66 of the fusion layer's multiply-adds (docs/benchmarks.md).
        """
        kept = tensor_fusion([z[m] for m in self.modalities if m not in absent])  # (B, Π_kept (|z_m| + 1))
        first = self.head[0]
        assert isinstance(first, nn.Linear)
        weight = first.weight.view(first.out_features, *(self.widths[m] + 1 for m in self.modalities))
        weight = weight[(slice(None), *(0 if m in absent else slice(None) for m in self.modalities))]
        hidden = nn.functional.linear(self.dropout(kept), weight.reshape(first.out_features, -1), first.bias)
        for layer in list(self.head)[1:]:
            hidden = layer(hidden)
        return hidden  # (B, C)
