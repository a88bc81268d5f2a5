"""Text-only reference model: encode the transcript, pool, regress.

The floor every multimodal model must clear. With `finetune_text=True` the MiniLM
encoder (all-MiniLM-L6-v2) is trained end to end on `Batch.raw_text` instead of
reading precomputed token states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from msakit.batch import Batch, ModelOutput, modality_index
from msakit.config import ModelConfig, tunable
from msakit.errors import ConfigError
from msakit.layers import MLP, SequenceEncoder
from msakit.layers.text_reencoder import RawTextEncoder
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model


@dataclass
class TextOnlyConfig(ModelConfig):
    encoder: str = tunable("transformer", choices=("mean", "lstm", "transformer"))  # over token states
    head_depth: int = tunable(1, low=1, high=3)
    finetune_text: bool = False  # fine-tune MiniLM on raw text instead of precomputed features
    text_lr: float = 2e-5  # learning rate of the fine-tuned encoder
    max_tokens: int = 50


@register_model("text_only")
class TextOnly(MSAModel):
    config_class = TextOnlyConfig
    config: TextOnlyConfig

    @classmethod
    def capabilities_for(cls, config: ModelConfig) -> Capabilities:
        """Reads raw text when it fine-tunes MiniLM on the transcripts."""
        return Capabilities(reads_raw_text=isinstance(config, TextOnlyConfig) and config.finetune_text)

    def __init__(self, config: TextOnlyConfig) -> None:
        super().__init__(config)
        if "text" not in self.modalities:
            raise ConfigError("model 'text_only' needs text, the data has none")
        self.text_reader: RawTextEncoder | None = None
        if config.finetune_text:
            if config.text_dim != 384:
                raise ConfigError("model 'text_only': finetune_text uses MiniLM, so text_dim must be 384")
            self.text_reader = RawTextEncoder(max_tokens=config.max_tokens, trainable=True)
        self.encoder = SequenceEncoder(config.text_dim, config.hidden_dim, kind=config.encoder, dropout=config.dropout)
        self.head = MLP(
            config.hidden_dim,
            config.num_classes,
            hidden_dim=config.hidden_dim,
            depth=config.head_depth,
            dropout=config.dropout,
        )

    def forward(self, batch: Batch) -> ModelOutput:
        tokens, mask = self._text_states(batch)  # (B, Lt, Dt), (B, Lt)
        _, pooled = self.encoder(tokens, mask)  # (B, H)
        prediction = self.bound_prediction(self.head(pooled))
        weights = torch.zeros_like(batch.present, dtype=pooled.dtype)
        weights[:, modality_index("text")] = 1.0
        return ModelOutput(prediction=prediction, modality_weights=weights, features={"text": pooled})

    @property
    def text_model(self) -> nn.Module | None:
        """The fine-tuned MiniLM (None on precomputed features)."""
        return self.text_reader.model if self.text_reader is not None else None

    def load_pretrained(self) -> None:
        """The packaged MiniLM weights, the starting point of fine-tuning."""
        if self.text_reader is not None:
            self.text_reader.load_base()

    def _text_states(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.text_reader is None:
            return batch.features["text"], batch.masks["text"]
        if batch.raw_text is None:
            raise ConfigError("model 'text_only' with finetune_text=True needs raw text in the dataset")
        return self.text_reader(batch.raw_text, batch.present_mask("text"))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        if self.text_model is None:
            return super().param_groups(lr, weight_decay)
        encoder_ids = {id(p) for p in self.text_model.parameters()}
        rest = [p for p in self.parameters() if id(p) not in encoder_ids]
        return [
            {"params": rest, "lr": lr, "weight_decay": weight_decay},
            {"params": list(self.text_model.parameters()), "lr": self.config.text_lr, "weight_decay": weight_decay},
        ]
