"""`msakit analyze`: a per-utterance sentiment timeline of one video, with what it rests on; or of a
whole folder (or glob) of videos at once (`msakit.analyze_batch`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from msakit.cli.common import FORMATTER
from msakit.cli.extract import add_pipeline_options
from msakit.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="sentiment timeline of a video: per utterance score, polarity, modality weights and cues",
        description=(
            "Split VIDEO into utterances (from --transcript, else offline ASR flagged low quality), extract the "
            "features the model was trained on and predict each utterance. Writes OUT/timeline.json, "
            "OUT/timeline.csv and OUT/timeline.png. Only the modalities the checkpoint was trained on are fused; "
            "facial emotions, pitch and other measurements of other modalities are reported as cues. "
            "Given a folder or a glob (quote it), every media file in it is analysed into OUT/files/<file>/, and "
            "OUT/table.csv (utterances x aspects x scenes, --meta columns joined), OUT/errors.csv (file, stage, "
            "reason, outcome) and OUT/sentiment.png (sentiment per outlet over time) are written; a file that "
            "fails is listed in errors.csv and the batch goes on; --resume continues an interrupted batch."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("video", type=Path, help="video (or audio) file, or a folder or quoted glob of them (a batch)")
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
    p.add_argument("--no-aspects", action="store_true", help="skip aspect-based sentiment")
    p.add_argument("--no-scenes", action="store_true", help="skip the scene labels of sampled frames")
    batch = p.add_argument_group("folder batches (VIDEO is a folder or a glob)")
    batch.add_argument(
        "--meta", type=Path,
        help="CSV with a 'file' column (path under the folder, or bare name) and any others (outlet, date, ...) "
        "joined into the table; optional 'transcript' (path relative to the CSV) and 'language' columns",
    )  # fmt: skip
    batch.add_argument("--resume", action="store_true", help="continue the batch in OUT, skipping finished files")
    batch.add_argument("--retry-errors", action="store_true", help="with --resume: analyse failed files again")
    batch.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_pipeline_options(p, with_extractors=False)
    p.set_defaults(func=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    from msakit.analyze import Analyzer, write_outputs
    from msakit.analyze_batch import is_batch_input
    from msakit.cli.extract import pipeline_config_from

    batch = is_batch_input(args.video)
    if batch and args.transcript is not None:
        raise ConfigError("--transcript names one file's transcript; for a folder use a 'transcript' column in --meta")
    if not batch and (args.meta is not None or args.resume or args.retry_errors):
        raise ConfigError("--meta, --resume and --retry-errors need a folder or a glob, not one file")
    base = pipeline_config_from(args)
    plan = _plan(args) if batch else None  # inputs, --meta and OUT are checked before the models load
    analyzer = Analyzer(args.model, aspects=not args.no_aspects, scenes=not args.no_scenes)
    cfg = analyzer.pipeline.config
    cfg.fps, cfg.max_side, cfg.max_mb = base.fps, base.max_side, base.max_mb
    if plan is not None:
        return _run_batch(plan, analyzer, progress=not args.no_progress, debug=bool(args.debug))
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


def _plan(args: argparse.Namespace) -> Any:
    from msakit.analyze import resolve_checkpoint
    from msakit.analyze_batch import BatchSettings, plan_batch

    settings = BatchSettings(
        checkpoint=str(resolve_checkpoint(args.model)), asr=args.asr, language=args.language, fps=args.fps,
        max_side=args.max_side, max_mb=args.max_mb, aspects=not args.no_aspects, scenes=not args.no_scenes,
    )  # fmt: skip
    return plan_batch(
        args.video, args.out, settings=settings, meta=args.meta, resume=args.resume, retry_errors=args.retry_errors
    )


def _run_batch(plan: Any, analyzer: Any, *, progress: bool, debug: bool) -> int:
    from msakit.analyze_batch import run_batch
    from msakit.cli import EXIT_BUG, classify

    try:
        report = run_batch(analyzer, plan, progress=progress)
    except Exception as exc:  # returned, not raised: the CLI would remove an OUT it created, finished files too
        if debug or os.environ.get("MSAKIT_DEBUG"):
            raise
        code, message = classify(exc)
        hint = " (an msakit bug; rerun with `msakit --debug analyze ...` for the traceback)" if code == EXIT_BUG else ""
        print(f"msakit analyze: error: {message}{hint}; the files finished so far are kept in {plan.out}: "
              "rerun with --resume", file=sys.stderr)  # fmt: skip
        return code
    print(report.line())
    for e in report.failed:
        print(f"  failed  {e['file']}  [{e['stage']}] {e['reason'][:110]}")
    print("wrote " + ", ".join(str(p) for p in report.outputs.values()))
    if report.files and not report.summary.get("analysed"):
        print(f"msakit analyze: no file could be analysed (see {report.outputs['errors']})", file=sys.stderr)
        return 2
    return 0
