"""`msakit test`: open the sealed test split of a `msakit train --seal-test` run."""

from __future__ import annotations

import argparse
from pathlib import Path

from msakit.cli.common import print_result


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "test",
        help="open the sealed test split of a `msakit train --seal-test` run (after the validation choice)",
        description=(
            "Evaluate every seed's best checkpoint of RUN on the test split, once, as `msakit train` would have "
            "(the trainer's evaluation batch, the recorded device), recompute the degenerate-training warnings "
            "and complete RUN/results.json in one write: the folder then equals a plain run's, apart from timing "
            "and its test_split record, which says when the split was sealed and opened. A run already opened, "
            "or never sealed, is not evaluated again: its recorded test table is printed. A run with seeds "
            "still to train, or a missing seed checkpoint, is refused with nothing written."
        ),
        formatter_class=argparse.HelpFormatter,  # no option has a fixed default: each help says what it falls back to
    )
    p.add_argument("run", type=Path, help="a run folder of `msakit train --seal-test` (holds results.json)")
    p.add_argument("--data", help="dataset spec (default: the one the run recorded at training)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the device the run trained on)")
    p.set_defaults(func=run_test)


def run_test(args: argparse.Namespace) -> int:
    from msakit.training.sealed import SEAL_KEY, SEALED, open_test, read_results

    result, before = open_test(args.run, data=args.data, device=args.device)
    record = read_results(args.run).get(SEAL_KEY) or {}
    if before == SEALED:
        print(f"opened the test split of {args.run} at {record['opened_at']} (sealed at {record['sealed_at']})")
    elif before == "plain":
        print(f"{args.run} was not sealed: its test split was evaluated at training; the recorded numbers:")
    else:
        print(f"{args.run}: the test split was already opened at {record.get('opened_at')}; the recorded numbers:")
    print_result(result, args.run)
    return 0
