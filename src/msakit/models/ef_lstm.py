"""EF-LSTM: early fusion, one LSTM over the concatenated per-step features.

Paper: the early-fusion baseline of Zadeh et al., "Memory Fusion Network for
Multi-view Sequential Learning" (AAAI 2018) and Poria et al. (2017), as implemented in
MMSA (thuiar/MMSA, `models/singleTask/EF_LSTM.py`): concatenate the aligned text,
audio and visual features of every step, normalise, run an LSTM and regress from it.

    x_t = [x^text_t ; x^audio_t ; x^visual_t]          (early fusion, per step)
    h   = LSTM(x_1 .. x_T)                              (temporal model)
    ŷ   = MLP(h)

Interpretations:
- Our data is unaligned (MOSI: 50 text tokens, one utterance-level audio vector), so
  every modality is resampled per sample onto the longest valid sequence of that
  sample by nearest step (step t of a T-step sample reads step ⌊t·n_m/T⌋ of a modality
  with n_m valid steps); a one-step modality is thus repeated along the sequence.
- MMSA reads the LSTM's final state and ignores lengths, so it only learns when
  sequences are padded at the start. We use the shared length-aware bidirectional
  `SequenceEncoder(kind="lstm")` and pool over valid steps, which is padding-agnostic.
- An absent modality contributes zeros to its slice of x_t (its features are zero);
  a modality the dataset lacks has no slice at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig
from msakit.layers import MLP, SequenceEncoder
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class EFLSTMConfig(ModelConfig):
    encoder: str = "lstm"  # SequenceEncoder kind over the fused sequence (the paper's LSTM)


def align_to_longest(features: list[Tensor], masks: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Resample each (B, L_m, D_m) sequence onto each sample's longest valid length.

    Returns the fused sequence (B, T, Σ D_m) and its mask (B, T), T = max_m L_m.
    """
    lengths = torch.stack([m.sum(1) for m in masks], dim=1)  # (B, M) valid steps
    target = lengths.max(dim=1).values.clamp_min(1)  # (B,)
    steps = max(x.shape[1] for x in features)
    t = torch.arange(steps, device=target.device)[None, :]  # (1, T)
    parts = []
    for i, x in enumerate(features):
        n = lengths[:, i : i + 1].clamp_min(1)  # (B, 1)
        index = (t * n) // target[:, None]  # (B, T) nearest source step
        index = index.clamp_max(x.shape[1] - 1)
        parts.append(torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[2])))  # (B, T, D_m)
    mask = t < lengths.max(dim=1).values[:, None]  # (B, T)
    fused = torch.cat(parts, dim=-1) * mask.unsqueeze(-1).to(parts[0].dtype)
    return fused, mask


@register_model("ef_lstm")
class EFLSTM(MSAModel):
    config_class = EFLSTMConfig
    config: EFLSTMConfig

    def __init__(self, config: EFLSTMConfig) -> None:
        super().__init__(config)
        width = sum(config.dim(m) for m in self.modalities)
        self.encoder = SequenceEncoder(width, config.hidden_dim, kind=config.encoder, dropout=config.dropout)
        self.head = MLP(config.hidden_dim, config.num_classes, hidden_dim=config.hidden_dim, dropout=config.dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        x, mask = align_to_longest(
            [batch.features[m] for m in self.modalities], [batch.masks[m] for m in self.modalities]
        )  # (B, T, ΣD), (B, T)
        _, h = self.encoder(x, mask)  # (B, H)
        return ModelOutput(prediction=self.bound_prediction(self.head(h)), features={"fused": h})
