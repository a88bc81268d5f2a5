"""`msakit train`: train a registered model on a dataset over several seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from msakit.cli.common import FORMATTER, add_training_options, overrides_from, print_result


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on a dataset (several seeds, validation-based selection)",
        description=(
            "Train MODEL on DATA for each seed: select the epoch on the validation split, stop early on it, "
            "then evaluate that checkpoint once on the test split. Prints mean ± std over seeds and writes "
            "OUT/results.json, OUT/seed<N>/best (safetensors + config.json), log.csv and TensorBoard logs."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("--model", required=True, help="registered model name (see `msakit models`)")
    p.add_argument(
        "--data",
        required=True,
        help="dataset: 'synthetic[:preset]', a folder from `msakit data prepare`, or an MMSA/MulT .pkl",
    )
    p.add_argument("--out", type=Path, help="output folder (default: runs/<model>-<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue each seed from OUT/seed<N>/last if present")
    add_training_options(p)
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.training import Trainer

    model_overrides, train_config = overrides_from(args)
    dataset = load_dataset(args.data)
    out = args.out or Path("runs") / f"{args.model}-{dataset.info.name.replace(':', '-').replace('/', '-')}"
    trainer = Trainer(args.model, dataset, model_overrides=model_overrides, train_config=train_config, out_dir=out)
    result = trainer.fit(resume=args.resume)
    print_result(result, out)
    return 0
