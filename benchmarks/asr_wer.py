"""Word error rate of the offline ASR engines on every clip with a reference transcript.

Clips: the two MOSI media files (reference: labels.csv ``text``), the MOUD video (Spanish;
reference: the ``transcription`` column of 101_movies.csv joined in order) and English
sentences synthesised here with espeak-ng (not committed). Engines: Whisper ``base``
(multilingual, language detected), Whisper ``tiny.en`` (English only) and pocketsphinx
(US English, silero-vad segments). WER = word-level edit distance / reference words after
`msakit.extract.asr.normalise_words` (lower case, accents and punctuation removed, MOUD's
``:`` elongations and ``c-`` cut-offs dropped). CPU s / audio s is the real-time factor in
process CPU time (the machine is shared, so wall time is not reported).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/asr_wer.py --out docs/results/asr_wer.json
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from msakit.extract import asr
from msakit.extract.media import AUDIO_RATE, load_audio
from msakit.extract.speech import recognise
from msakit.io import atomic_path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SENTENCES = (
    "the movie was really good and i loved the music",
    "i did not like the ending at all it was far too long",
    "the actors were brilliant but the story made no sense",
    "honestly this is the worst film i have seen this year",
    "the special effects looked cheap and the dialogue was boring",
)


def clips(data: Path, tmp: Path) -> list[tuple[str, Path, str]]:
    """(name, media, reference) of every clip with a reference transcript that is present."""
    out = []
    labels = data / "mosi" / "labels.csv"
    if labels.is_file():
        text = {row["id"]: row["text"] for row in csv.DictReader(labels.open())}
        for f in sorted((data / "mosi" / "media").glob("*")):
            if f.stem in text:
                out.append((f"mosi/{f.name}", f, text[f.stem]))
    moud = data / "moud" / "101_movies.csv"
    if moud.is_file():
        rows = list(csv.reader(moud.open(encoding="utf-8"), delimiter=";"))[1:]
        out.append(("moud/101_movies.mp4 (es)", moud.with_suffix(".mp4"), " ".join(r[2] for r in rows if len(r) > 2)))
    if shutil.which("espeak-ng"):
        for k, sentence in enumerate(SENTENCES):
            wav = tmp / f"espeak_{k}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), sentence], check=True)
            out.append((f"espeak-ng/{k}", wav, sentence))
    return out


def run(engine: str, samples, model: str) -> tuple[str, str, float]:  # type: ignore[no-untyped-def]
    cpu = time.process_time()
    if engine == "pocketsphinx":
        utterances, info = recognise(samples, engine="pocketsphinx")
    else:
        utterances, info = recognise(samples, engine="whisper", whisper=asr.WhisperConfig(model=model))
    return " ".join(u.text for u in utterances), info.language, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("docs/results/asr_wer.json"))
    args = ap.parse_args()
    engines = [("whisper", "base"), ("whisper", "tiny.en"), ("pocketsphinx", "en-us")]
    engines = [(e, m) for e, m in engines if e == "pocketsphinx" or asr.available_model(m) is not None]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, media, reference in clips(args.data, Path(tmp)):
            samples = load_audio(media)
            seconds = len(samples) / AUDIO_RATE
            for engine, model in engines:
                run(engine, samples[: AUDIO_RATE // 2], model)  # load the model outside the timing
                hypothesis, language, cpu = run(engine, samples, model)
                row = {
                    "clip": name, "engine": f"{engine} {model}", "language": language,
                    "wer": round(asr.word_error_rate(reference, hypothesis), 3),
                    "ref_words": len(asr.normalise_words(reference)), "cpu_rtf": round(cpu / seconds, 3),
                    "hypothesis": hypothesis[:200],
                }  # fmt: skip
                rows.append(row)
                print(f"{name:28s} {row['engine']:16s} {language:3s} WER {row['wer']:.3f} CPU RTF {row['cpu_rtf']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out, suffix=".json") as tmp_path:
        Path(tmp_path).write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
