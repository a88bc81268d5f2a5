"""Speech: utterances with times and words, from a transcript file or from offline ASR.

Transcript files:
- ``.srt``: subtitle blocks (``HH:MM:SS,mmm --> HH:MM:SS,mmm`` then the text lines);
- ``.csv`` / ``.tsv``: a header with start, end and text columns (separator sniffed; MOUD's
  ``#starttime;#endtime;transcription`` is recognised); times in seconds;
- ``.txt``: plain text, one utterance spanning the whole clip (no times are known).

Without a transcript, silero-vad (Silero Team 2024, MIT) finds the speech segments and
pocketsphinx (CMU Sphinx, BSD-2; US-English acoustic model shipped in the wheel) decodes
each one. That ASR is weak (word error rates well above modern neural ASR); every
utterance it produces carries ``quality="low"`` so reports can say so.
"""

from __future__ import annotations

import csv
import io
import itertools
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
    if suffix == ".srt":
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
    for u in utterances:
        if u.end < u.start:
            raise DataError(f"utterance ends ({u.end}) before it starts ({u.start})", path=path)
    return utterances


_SRT_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)\s*-->\s*(\d+):(\d+):(\d+)[,.](\d+)")


def _parse_srt(content: str, path: Path) -> list[Utterance]:
    out = []
    for block in re.split(r"\n\s*\n", content.replace("\r\n", "\n").strip()):
        lines = [line for line in block.split("\n") if line.strip()]
        idx = next((k for k, line in enumerate(lines) if _SRT_TIME.search(line)), None)
        if idx is None:
            raise DataError(f"SRT block without a 'start --> end' line: {block[:60]!r}", path=path)
        g = [int(x) for x in _SRT_TIME.search(lines[idx]).groups()]  # type: ignore[union-attr]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
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
    rows = list(csv.reader(io.StringIO(content), dialect))
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
