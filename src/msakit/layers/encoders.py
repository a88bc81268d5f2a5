"""Per-modality sequence encoders: project, optionally contextualise, pool."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from msakit.batch import masked_mean
from msakit.config import ModelConfig
from msakit.layers.attention import safe_key_padding_mask


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal positions added to a (B, L, H) sequence."""

    def __init__(self, dim: int, max_len: int = 4096) -> None:
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
        self.pe: Tensor
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] > self.pe.shape[0]:
            raise ValueError(f"sequence of {x.shape[1]} steps exceeds PositionalEncoding max_len {self.pe.shape[0]}")
        return x + self.pe[: x.shape[1]]


class SequenceEncoder(nn.Module):
    """(B, L, D) features + (B, L) mask -> sequence (B, L, H) and pooled vector (B, H).

    kind: "mean" (projection only), "lstm" (one bidirectional LSTM layer, length-aware)
    or "transformer" (`layers` encoder layers with sinusoidal positions).
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, *, kind: str = "mean", layers: int = 1, heads: int = 4, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if kind not in ("mean", "lstm", "transformer"):
            raise ValueError(f"SequenceEncoder kind must be mean, lstm or transformer, got {kind!r}")
        self.kind = kind
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        if kind == "lstm":
            self.lstm = nn.LSTM(hidden_dim, hidden_dim // 2, batch_first=True, bidirectional=True)
        elif kind == "transformer":
            self.pos = PositionalEncoding(hidden_dim)
            layer = nn.TransformerEncoderLayer(
                hidden_dim, heads, hidden_dim * 2, dropout, batch_first=True, norm_first=True
            )
            self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = self.dropout(self.proj(self.norm(x)))  # (B, L, H)
        if self.kind == "lstm":
            # eager: packing skips padding. The masked path (twice the arithmetic over the padded length)
            # was 0.78x per TFN epoch at batch 32 but far slower for size-matched LF-DNN (batch 128, hidden
            # 160; docs/benchmarks.md), so it is not the eager default. A trace (ONNX export) takes it: the
            # graph then holds plain LSTM ops on the fixed-length inputs (the packed trace also passed the
            # export's parity check when tried; the choice is for the simpler graph)
            h = self._masked_lstm(h, mask) if torch.jit.is_tracing() else self._packed_lstm(h, mask)
        elif self.kind == "transformer":
            h = self.transformer(self.pos(h), src_key_padding_mask=safe_key_padding_mask(mask))
        h = h * mask.unsqueeze(-1).to(h.dtype)
        return h, masked_mean(h, mask)

    def _packed_lstm(self, h: Tensor, mask: Tensor) -> Tensor:
        """Each direction runs over the valid steps only (packed: no work on padding)."""
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])[0]

    def _masked_lstm(self, h: Tensor, mask: Tensor) -> Tensor:
        """The packed path's result without packing. Valid steps come first, so the forward
        direction over the padded sequence is exact on them; the backward direction is exact on
        the same sequence shifted to end at the last step (padding first), then shifted back.
        Twice the LSTM arithmetic over the padded length; the path a trace (ONNX export) records."""
        steps = h.shape[1]
        lengths = mask.sum(1, keepdim=True).clamp_min(1)  # (B, 1)
        t = torch.arange(steps, device=h.device)[None, :]  # (1, L)
        half = self.lstm.hidden_size
        forward = self.lstm(h)[0][..., :half]  # (B, L, H/2)
        shift = steps - lengths  # (B, 1) padding steps
        to_end = (t - shift).clamp_min(0)  # position read into each step of the end-aligned copy
        aligned = torch.gather(h, 1, to_end.unsqueeze(-1).expand_as(h)) * (t >= shift).unsqueeze(-1).to(h.dtype)
        backward = self.lstm(aligned)[0][..., half:]  # (B, L, H/2), valid steps at the end
        back = (t + shift).clamp_max(steps - 1)
        backward = torch.gather(backward, 1, back.unsqueeze(-1).expand_as(backward))
        return torch.cat([forward, backward], dim=-1)


def modality_encoders(
    config: ModelConfig, modalities: Iterable[str], *, text_kind: str, other_kind: str
) -> nn.ModuleDict:
    """One SequenceEncoder per modality to `config.hidden_dim`: `text_kind` for text, `other_kind` otherwise."""
    return nn.ModuleDict(
        {
            m: SequenceEncoder(
                config.dim(m),
                config.hidden_dim,
                kind=text_kind if m == "text" else other_kind,
                dropout=config.dropout,
            )
            for m in modalities
        }
    )
