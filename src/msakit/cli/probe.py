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
    p.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="score the probe under the K folds `msakit tune --cv K` uses (pooled train + valid; each fold chooses "
        "pooling and α on its held-out part); prints the means over folds and never reads the test split",
    )
    p.add_argument("--json", type=Path, help="also write the rows (choices, valid and test metrics) as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.set_defaults(func=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.io import atomic_write_json
    from msakit.probe import linear_probe

    dataset = load_dataset(args.data)
    if args.cv:
        from msakit.probe import cross_validated_probe

        result = cross_validated_probe(dataset, args.cv, modalities=args.modalities, poolings=args.pooling)
        print(
            f"linear probe on {dataset.info.name}, {args.cv}-fold cross-validation over train + valid (the folds of "
            f"`msakit tune --cv {args.cv}`; each fold's pooling and α chosen on its held-out part by "
            f"{result.select_key}; means over folds; the test split is not read)"
        )
        print(result.table(markdown=args.markdown, split="valid"))
    else:
        result = linear_probe(dataset, modalities=args.modalities, poolings=args.pooling)
        chosen = f"pooling and α chosen on validation {result.select_key}"
        print(f"linear probe on {dataset.info.name} (test split; {chosen})")
        print(result.table(markdown=args.markdown))
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        atomic_write_json(args.json, result.to_dict())
    return 0
