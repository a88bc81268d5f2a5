"""LF-DNN: late fusion of per-modality deep networks by concatenation.

Paper: the late-fusion DNN baseline of Williams et al., "Recognizing Emotions in Video
Using Multimodal DNN Feature Fusion" (ACL 2018 workshop), as implemented in MMSA
(thuiar/MMSA, `models/singleTask/LF_DNN.py`): a sub-network per modality (an LSTM over
the text, MLPs over the time-averaged audio and visual features), the unimodal
representations concatenated, and a post-fusion MLP.

    h_m = SubNet_m(x_m)                    (one encoder per modality)
    h   = [h_text ; h_audio ; h_visual]     (late fusion by concatenation)
    ŷ   = MLP(h)

Interpretations:
- Text uses the shared length-aware bidirectional LSTM encoder pooled over valid steps
  (MMSA reads the final state of a unidirectional LSTM); audio and visual are averaged
  over their valid steps and passed through a two-layer MLP, as in MMSA's SubNet
  (without its BatchNorm, which misbehaves on zero vectors of absent modalities).
- An absent modality's h_m is exactly zero (masked mean of nothing, no bias added),
  so it adds nothing to the fusion MLP's input beyond its bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig, tunable
from msakit.layers import MLP
from msakit.layers.tensor_fusion import ModalitySubNet
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class LFDNNConfig(ModelConfig):
    text_encoder: str = "lstm"  # SequenceEncoder kind for text (the paper's LSTM)
    other_encoder: str = "mean"  # for audio and visual (the paper averages over time)
    fusion_depth: int = tunable(2, low=1, high=3)  # hidden layers of the post-fusion MLP


@register_model("lf_dnn")
class LFDNN(MSAModel):
    config_class = LFDNNConfig
    config: LFDNNConfig

    def __init__(self, config: LFDNNConfig) -> None:
        super().__init__(config)
        h = config.hidden_dim
        self.subnets = nn.ModuleDict(
            {
                m: ModalitySubNet(
                    config.dim(m),
                    h,
                    h,
                    kind=config.text_encoder if m == "text" else config.other_encoder,
                    dropout=config.dropout,
                )
                for m in self.modalities
            }
        )
        self.head = MLP(
            h * len(self.modalities),
            config.num_classes,
            hidden_dim=h,
            depth=config.fusion_depth,
            dropout=config.dropout,
        )

    def forward(self, batch: Batch) -> ModelOutput:
        unimodal = {m: self.subnets[m](batch.features[m], batch.masks[m]) for m in self.modalities}  # (B, H) each
        fused = torch.cat(list(unimodal.values()), dim=-1)  # (B, M·H)
        return ModelOutput(prediction=self.bound_prediction(self.head(fused)), features={"fused": fused, **unimodal})
