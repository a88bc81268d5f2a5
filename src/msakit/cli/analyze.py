"""`msakit analyze`: a per-utterance sentiment timeline of one video, with what it rests on."""

from __future__ import annotations

import argparse
from pathlib import Path

from msakit.cli.common import FORMATTER
from msakit.cli.extract import add_pipeline_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="sentiment timeline of a video: per utterance score, polarity, modality weights and cues",
        description=(
            "Split VIDEO into utterances (from --transcript, else offline ASR flagged low quality), extract the "
            "features the model was trained on and predict each utterance. Writes OUT/timeline.json, "
            "OUT/timeline.csv and OUT/timeline.png. Only the modalities the checkpoint was trained on are fused; "
            "facial emotions, pitch and other measurements of other modalities are reported as cues."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("video", type=Path, help="video (or audio) file")
    p.add_argument("--transcript", type=Path, help="transcript: .srt, .vtt, .csv with start/end/text, or plain .txt")
    p.add_argument(
        "--model", default="default_text",
        help="checkpoint folder, or the name of a checkpoint packaged in msakit/checkpoints",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--language", help="ISO 639-1 code of the speech (e.g. es); default: detected by Whisper")
    p.add_argument(
        "--asr", choices=("auto", "whisper", "pocketsphinx"), default="auto",
        help="ASR without --transcript: auto = Whisper when installed, else pocketsphinx (low quality)",
    )  # fmt: skip
    add_pipeline_options(p, with_extractors=False)
    p.set_defaults(func=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    from msakit.analyze import Analyzer, write_outputs
    from msakit.cli.extract import pipeline_config_from

    analyzer = Analyzer(args.model)
    base = pipeline_config_from(args)
    cfg = analyzer.pipeline.config
    cfg.fps, cfg.max_side, cfg.max_mb = base.fps, base.max_side, base.max_mb
    analysis = analyzer.analyze(args.video, args.transcript, language=args.language, asr=args.asr)
    paths = write_outputs(analysis, args.out)
    print(f"model {analysis.model} fused: {', '.join(analysis.fused_modalities)}")
    for u in analysis.utterances:
        score = "   n/a" if u.score is None else f"{u.score:+.2f}"
        print(f"  {u.start:7.2f}-{u.end:7.2f}  {score}  {u.polarity:<8}  {u.text[:60]}")
    for note in analysis.notes:
        print(f"note: {note}")
    for warning in analysis.warnings:
        print(f"warning: {warning}")
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['png']}")
    return 0
