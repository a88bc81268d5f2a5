"""`msakit pretrain`: run a registered self-supervised objective."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from msakit.cli.common import FORMATTER


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised pretraining with a registered objective",
        description=(
            "Train OBJECTIVE on the training split of DATA without labels and save what it learned to OUT. "
            "`msakit pretrain --list` shows the objectives; `-o key=value` overrides the objective's config."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("objective", nargs="?", help="objective name")
    p.add_argument("--list", action="store_true", help="list registered objectives and exit")
    p.add_argument("--data", help="dataset spec")
    p.add_argument("--out", type=Path, help="output folder for the learned weights")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE", help="objective config override")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> int:
    from msakit.config import parse_override
    from msakit.data import load_dataset
    from msakit.errors import ConfigError
    from msakit.pretrain import create_objective, list_objectives

    if args.list:
        for name in list_objectives():
            print(name)
        return 0
    if not args.objective or not args.data or not args.out:
        raise ConfigError("pretrain needs OBJECTIVE, --data and --out (or --list)")
    objective = create_objective(args.objective, **dict(parse_override(o) for o in args.opt))
    dataset = load_dataset(args.data)
    objective.check(dataset)
    summary = objective.fit(dataset, args.out, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0
