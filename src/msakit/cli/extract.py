"""`msakit extract`: features from a folder of raw clips (MMSA-FET layout) into a dataset folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from msakit.cli.common import FORMATTER
from msakit.config import parse_override
from msakit.errors import ConfigError, DataError


def add_pipeline_options(parser: argparse.ArgumentParser, *, with_extractors: bool = True) -> None:
    from msakit.extract.pipeline import PipelineConfig

    d = PipelineConfig()
    group = parser.add_argument_group("extraction")
    if with_extractors:
        group.add_argument("--text-extractor", default=d.text, help="text extractor (see --list-extractors)")
        group.add_argument(
            "--audio", nargs="*", default=list(d.audio), help="audio extractors, concatenated (none: no audio)"
        )
        group.add_argument(
            "--visual", nargs="*", default=list(d.visual), help="visual extractors, concatenated (none: no visual)"
        )
        group.add_argument(
            "-x", "--extractor-opt", action="append", default=[], metavar="NAME.KEY=VALUE",
            help="override a field of one extractor's config, e.g. prosody.pitch_ceiling=500 (repeatable)",
        )  # fmt: skip
        group.add_argument("--audio-hop", type=float, default=d.audio_hop, help="seconds per audio step")
        group.add_argument(
            "--max-steps", type=int, default=d.max_steps, help="longer audio/visual sequences are pooled to this"
        )
    group.add_argument("--fps", type=float, default=d.fps, help="video frames sampled per second")
    group.add_argument(
        "--max-side", type=int, default=d.max_side, help="downscale larger frames to this side (0: never)"
    )
    group.add_argument("--max-mb", type=float, default=d.max_mb, help="refuse media files larger than this (MB)")


def pipeline_config_from(args: argparse.Namespace) -> Any:
    from msakit.extract.pipeline import PipelineConfig

    fields: dict[str, Any] = {"fps": args.fps, "max_side": args.max_side, "max_mb": args.max_mb}
    if args.fps <= 0 or args.max_mb <= 0:
        raise ConfigError("--fps and --max-mb must be positive")
    if hasattr(args, "audio"):
        options: dict[str, dict[str, Any]] = {}
        for item in args.extractor_opt:
            key, value = parse_override(item)
            name, dot, field = key.partition(".")
            if not dot:
                raise ConfigError(f"extractor option {item!r} must look like NAME.KEY=VALUE")
            options.setdefault(name, {})[field] = value
        fields.update(text=args.text_extractor, audio=tuple(args.audio), visual=tuple(args.visual),
                      audio_hop=args.audio_hop, max_steps=args.max_steps, options=options)  # fmt: skip
    return PipelineConfig(**fields)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract",
        help="extract text/audio/visual features from raw clips into a dataset folder",
        description=(
            "Read DATASET_DIR in MMSA-FET's layout (label.csv with video_id, clip_id, text, label, mode; "
            "Raw/<video_id>/<clip_id>.mp4), extract every clip's features offline and write an msakit dataset "
            "folder to OUT. Clips whose file is unusable are listed in OUT/errors.csv (they keep their text); "
            "modalities missing for a clip are in OUT/missing.csv. Interrupted runs resume from the work dir."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("dataset_dir", type=Path, nargs="?", help="folder with label.csv and Raw/")
    p.add_argument("--out", type=Path, help="dataset folder to write")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--work-dir", type=Path, help="per-clip cache for resuming (default: OUT.work beside OUT)")
    p.add_argument("--metric-set", default="mosi", choices=("mosi", "sims"), help="label scale of label.csv")
    p.add_argument("--label-range", type=float, default=3.0, help="|label| bound (MOSI 3, SIMS 1)")
    p.add_argument("--name", help="dataset name in meta.json (default: the folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--list-extractors", action="store_true", help="list the registered extractors and exit")
    add_pipeline_options(p)
    p.set_defaults(func=run_extract)


def run_extract(args: argparse.Namespace) -> int:
    from msakit.extract import create_extractor, list_extractors

    if args.list_extractors:
        for name in list_extractors():
            e = create_extractor(name)
            print(f"{name:<20} {e.modality:<7} {e.output_dim:>4}-d  {e.licence}")
        return 0
    if args.dataset_dir is None or args.out is None:
        raise DataError("give DATASET_DIR and --out (or --list-extractors)")
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    from msakit.extract.dataset import extract_dataset

    report = extract_dataset(
        args.dataset_dir, args.out, config=pipeline_config_from(args), workers=args.workers, work_dir=args.work_dir,
        metric_set=args.metric_set, label_range=args.label_range, name=args.name, overwrite=args.overwrite,
        progress=not args.no_progress,
    )  # fmt: skip
    print(
        f"{report.clips} clips: {report.extracted} extracted, {report.cached} from cache, {len(report.errors)} failed "
        f"(errors.csv), {len(report.missing)} missing modalities (missing.csv); wrote {report.out}"
    )
    return 0
