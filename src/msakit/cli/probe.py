"""`msakit probe`: the linear-probe floor of a dataset (ridge / logistic on pooled features)."""

from __future__ import annotations

import argparse
from pathlib import Path

from msakit.cli.common import FORMATTER


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "probe",
        help="linear-probe floor: ridge / logistic regression on pooled features, per modality and together",
        description=(
            "Fit ridge regression (regression datasets) or logistic regression (classification) on mean- or "
            "mean+std-pooled features of each modality alone and of all of them together; pooling and penalty "
            "are chosen on the validation split, then the test split is scored once. Prints the same metric "
            "table as `msakit train`. A model below this floor has not learned more than a linear map of its "
            "inputs."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("--data", required=True, help="dataset spec (a prepared folder, 'synthetic[:preset]', a .pkl)")
    p.add_argument("--modalities", nargs="+", help="probe only these modalities (default: every one)")
    p.add_argument(
        "--pooling",
        nargs="+",
        choices=("mean", "mean+std"),
        default=["mean", "mean+std"],
        help="poolings to choose from on validation",
    )
    p.add_argument("--json", type=Path, help="also write the rows (choices, valid and test metrics) as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.set_defaults(func=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.io import atomic_write_json
    from msakit.probe import linear_probe

    dataset = load_dataset(args.data)
    result = linear_probe(dataset, modalities=args.modalities, poolings=args.pooling)
    print(f"linear probe on {dataset.info.name} (test split; pooling and α chosen on validation {result.select_key})")
    print(result.table(markdown=args.markdown))
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        atomic_write_json(args.json, result.to_dict())
    return 0
