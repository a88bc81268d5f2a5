"""Per-modality sequence encoders: project, optionally contextualise, pool."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from msakit.batch import masked_mean
from msakit.config import ModelConfig
from msakit.layers.attention import safe_key_padding_mask
from msakit.layers.valid_lstm import valid_steps_lstm

LSTM_PATHS = ("packed", "auto", "segments", "valid")
_LSTM_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("msakit_lstm_path", default="packed")
#: below this fraction of valid steps in a batch the packed LSTM was faster than the split one
#: (batch 128, hidden 160, MOSI's random batches: 30 % valid, packed 116 vs split 148 ms per step)
SPLIT_MIN_FILL = 1 / 3
#: a segment of the "segments" path costs about this many padded sample-steps beyond its arithmetic (one more
#: fused LSTM call, its slicing and padding); measured on MOSI's bucketed batches, 16-256 alike within noise
SEGMENT_COST = 64
#: each segment runs over a multiple of this many samples (or the whole batch): oneDNN builds a primitive per
#: new input shape (about 1 ms each, cached), so fewer distinct shapes keep the calls on cached primitives
SEGMENT_ROWS = 16


@contextlib.contextmanager
def lstm_path(path: str) -> Iterator[None]:
    """Within the block, eager bidirectional LSTM encoders take `path` ("packed" or "auto").

    "auto" runs each direction as one fused (unpacked) LSTM over the padded batch, the backward
    one over per-sample reversed valid steps: the packed result to float rounding (tests/test_speed.py),
    without the packed loop's per-step slicing, whose backward pass zero-fills a full-size gradient per
    step. It is used when at least `SPLIT_MIN_FILL` of the batch's steps are valid, packing otherwise.
    A process-wide switch rather than a config field so that every model with the shared encoder gets it
    unchanged; the trainer sets it from `TrainConfig.lstm`.

    "segments" is "packed" for the bidirectional encoder (only "auto" takes its split path), and makes the
    unidirectional one ("unilstm") skip nearly all padding: the batch is sorted by length and the LSTM runs in
    a few time segments, each over only the samples still running, carrying their (h, c) into the next
    (`_segment_ends` picks the cut points). The same recurrence on every valid step, so the same outputs to
    float rounding, and in evaluation too, where a batch spans the split's whole range of lengths.

    "valid" is "packed" for the bidirectional encoder (valid steps only), and runs the unidirectional one
    over each sample's valid steps with no gradient for the text features (`msakit.layers.valid_lstm`): the
    same outputs and weight gradients to float rounding, less arithmetic than any fused path; where no
    gradient is taken (evaluation) it is "segments", whose fused forward is cheaper than the per-step loop.
    """
    if path not in LSTM_PATHS:
        raise ValueError(f"lstm path must be one of {LSTM_PATHS}, got {path!r}")
    token = _LSTM_PATH.set(path)
    try:
        yield
    finally:
        _LSTM_PATH.reset(token)


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


SEQUENCE_KINDS = ("mean", "lstm", "unilstm", "transformer")


class SequenceEncoder(nn.Module):
    """(B, L, D) features + (B, L) mask -> sequence (B, L, H) and pooled vector (B, H).

    kind: "mean" (projection only), "lstm" (one bidirectional LSTM layer, length-aware),
    "unilstm" or "transformer" (`layers` encoder layers with sinusoidal positions, feed-forward
    width `ffn_mult`·H; `ffn_dropout`, when given, replaces `dropout` everywhere but on the attention
    weights: in the FFN and on both residual branches).

    "unilstm" is MMSA's TextSubNet: one unidirectional LSTM of width H read straight from the
    input features (no LayerNorm, no input projection, no per-step dropout), pooled over the valid
    steps, dropout on the pooled vector. Valid steps come first, so one fused LSTM call over the
    padded batch is exact on them, and the padded steps are masked out: no packing. It is the
    size-matched baselines' text encoder (benchmarks/compare_mmsa.py), the same arithmetic as
    MMSA's per valid step.

    `project=False` (transformer only, `in_dim == hidden_dim`) drops the input LayerNorm and
    projection, so the transformer reads the features as they come (MulT's `memory="concat"`).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        *,
        kind: str = "mean",
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.1,
        ffn_mult: int = 2,
        ffn_dropout: float | None = None,
        project: bool = True,
    ) -> None:
        super().__init__()
        if kind not in SEQUENCE_KINDS:
            raise ValueError(f"SequenceEncoder kind must be one of {', '.join(SEQUENCE_KINDS)}, got {kind!r}")
        if not project and (kind != "transformer" or in_dim != hidden_dim):
            raise ValueError(
                f"SequenceEncoder project=False needs kind transformer and in_dim == hidden_dim, "
                f"got {kind!r}, {in_dim} -> {hidden_dim}"
            )
        self.kind = kind
        self.norm: nn.Module = nn.LayerNorm(in_dim) if project and kind != "unilstm" else nn.Identity()
        self.proj: nn.Module = nn.Linear(in_dim, hidden_dim) if project and kind != "unilstm" else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        if kind == "lstm":
            self.lstm = nn.LSTM(hidden_dim, hidden_dim // 2, batch_first=True, bidirectional=True)
        elif kind == "unilstm":
            self.lstm = nn.LSTM(in_dim, hidden_dim, batch_first=True)
        elif kind == "transformer":
            self.pos = PositionalEncoding(hidden_dim)
            layer = nn.TransformerEncoderLayer(
                hidden_dim, heads, hidden_dim * ffn_mult, dropout, batch_first=True, norm_first=True
            )
            if (
                ffn_dropout is not None
            ):  # the FFN's and the residual branches' dropout; attention weights keep `dropout`
                for drop in (layer.dropout, layer.dropout1, layer.dropout2):
                    drop.p = ffn_dropout
            self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "unilstm":
            path = _LSTM_PATH.get() if not torch.jit.is_tracing() else "auto"
            if path == "valid" and torch.is_grad_enabled():
                h = valid_steps_lstm(self.lstm, x, mask)
            elif path in ("segments", "valid"):  # without a gradient, oneDNN's fused forward is the cheaper one
                h = self._segmented_lstm(x, mask)
            else:
                h = self.lstm(x)[0]
            h = h * mask.unsqueeze(-1).to(x.dtype)  # (B, L, H): exact on valid steps, 0 on padding
            return h, self.dropout(masked_mean(h, mask))
        h = self.dropout(self.proj(self.norm(x)))  # (B, L, H)
        if self.kind == "lstm":
            # eager: packing skips padding. The masked path (twice the arithmetic over the padded length)
            # was 0.78x per TFN epoch at batch 32 but far slower for size-matched LF-DNN (batch 128, hidden
            # 160; docs/benchmarks.md), so it is not the eager default. A trace (ONNX export) takes it: the
            # graph then holds plain LSTM ops on the fixed-length inputs (the packed trace also passed the
            # export's parity check when tried; the choice is for the simpler graph)
            if torch.jit.is_tracing():
                h = self._masked_lstm(h, mask)
            elif _LSTM_PATH.get() == "auto" and _fill(mask) >= SPLIT_MIN_FILL:
                h = self._split_lstm(h, mask)
            else:
                h = self._packed_lstm(h, mask)
        elif self.kind == "transformer":
            h = self.transformer(self.pos(h), src_key_padding_mask=safe_key_padding_mask(mask))
        h = h * mask.unsqueeze(-1).to(h.dtype)
        return h, masked_mean(h, mask)

    def _segmented_lstm(self, x: Tensor, mask: Tensor) -> Tensor:
        """The unidirectional LSTM over each sample's valid steps (padding skipped), as a few fused calls.

        Samples sorted by length (longest first); segment k covers steps [t_{k-1}, t_k) of the samples longer
        than t_{k-1}, starting from their state at the end of segment k-1. Values at padded steps are garbage
        or 0; the caller masks them."""
        batch, steps, _ = x.shape
        lengths, order = torch.sort(mask.sum(1), descending=True, stable=True)
        running = lengths.tolist()
        xs = x.index_select(0, order)
        outs: list[Tensor] = []
        state: tuple[Tensor, Tensor] | None = None
        start = 0
        for end in _segment_ends(running):
            n = _segment_rows(running, start)
            if state is not None:
                state = (state[0][:, :n], state[1][:, :n])
            out, state = self.lstm(xs[:n, start:end], state)
            outs.append(nn.functional.pad(out, (0, 0, 0, 0, 0, batch - n)))
            start = end
        h = torch.cat(outs, 1) if outs else x.new_zeros(batch, 0, self.lstm.hidden_size)
        h = nn.functional.pad(h, (0, 0, 0, steps - h.shape[1]))
        return h.index_select(0, torch.argsort(order))

    def _packed_lstm(self, h: Tensor, mask: Tensor) -> Tensor:
        """Each direction runs over the valid steps only (packed: no work on padding)."""
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])[0]

    def _split_lstm(self, h: Tensor, mask: Tensor) -> Tensor:
        """The packed path's result from two fused unidirectional LSTM calls over the padded batch.

        Valid steps come first, so the forward direction is exact on them as it stands; the backward
        direction runs over each sample's valid steps reversed in place (padding stays behind them),
        and its outputs are reversed back. Values at padded steps are garbage; the caller masks them."""
        batch, steps, _ = h.shape
        lengths = mask.sum(1, keepdim=True).clamp_min(1)  # (B, 1)
        t = torch.arange(steps, device=h.device)[None, :]  # (1, L)
        flip = torch.where(t < lengths, lengths - 1 - t, t)  # (B, L): reverses valid steps, an involution
        lstm = self.lstm
        zeros = h.new_zeros(1, batch, lstm.hidden_size)

        def run(x: Tensor, suffix: str) -> Tensor:  # one direction's weights as a unidirectional layer
            weights = [getattr(lstm, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            return torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)[0]

        forward = run(h, "")  # (B, L, H/2)
        backward = run(torch.gather(h, 1, flip.unsqueeze(-1).expand_as(h)), "_reverse")  # (B, L, H/2), reversed
        backward = torch.gather(backward, 1, flip.unsqueeze(-1).expand_as(backward))
        return torch.cat([forward, backward], dim=-1)

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


def _segment_ends(lengths: list[int], cost: float = SEGMENT_COST) -> list[int]:
    """Cut points t_1 < … < t_K = max(lengths) of the "segments" LSTM path, at the least total cost.

    A segment [s, t) costs (samples longer than s) · (t - s) padded sample-steps, plus `cost` for the call;
    the cuts are chosen among the distinct lengths by dynamic programming (at most L of them, L² steps)."""
    ends = sorted({length for length in lengths if length > 0})
    starts = [0, *ends]
    longer = [_segment_rows(lengths, s) for s in starts]
    best, prev = [0.0] + [math.inf] * len(ends), [0] * (len(ends) + 1)
    for j, end in enumerate(ends, 1):
        for i in range(j):
            total = best[i] + longer[i] * (end - starts[i]) + cost
            if total < best[j]:
                best[j], prev[j] = total, i
    cuts, j = [], len(ends)
    while j:
        cuts.append(ends[j - 1])
        j = prev[j]
    return cuts[::-1]


def _segment_rows(lengths: list[int], start: int) -> int:
    """Rows of the segment starting at `start`: the samples still running, rounded up to `SEGMENT_ROWS`
    (the extra rows are samples that have ended: sorted longest first, they sit right after the running ones)."""
    running = sum(1 for length in lengths if length > start)
    return min(len(lengths), -(-running // SEGMENT_ROWS) * SEGMENT_ROWS)


def _fill(mask: Tensor) -> float:
    """Fraction of a (B, L) mask's steps that are valid."""
    return float(mask.sum()) / max(mask.numel(), 1)


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
