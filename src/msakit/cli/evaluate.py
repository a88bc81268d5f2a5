"""`msakit eval` and `msakit predict`: thin faces over `msakit.service`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from msakit.cli.common import FORMATTER

if TYPE_CHECKING:  # torch and the service are imported by the command that runs, not by `msakit --help`
    from msakit.data.core import MSADataset
    from msakit.service import LoadedModel


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset split",
        description="Load CHECKPOINT (a folder with model.safetensors + config.json) and print its metrics on a split.",
        formatter_class=FORMATTER,
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint folder, e.g. runs/x/seed1/best")
    p.add_argument("--data", required=True, help="dataset spec; must match the checkpoint's features")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split to evaluate")
    p.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    p.set_defaults(func=run_eval)

    p = subparsers.add_parser(
        "predict",
        help="write per-sample predictions and explanations to CSV",
        description=(
            "Predict every sample of a split with CHECKPOINT and write a CSV: id, label, prediction, and per "
            "modality its weight (when the model reports one), uncertainty and whether it was present."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint folder")
    p.add_argument("--data", required=True, help="dataset spec")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split to predict")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--batch-size", type=int, default=128, help="samples per batch")
    p.add_argument(
        "--onnx",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="run these graphs (`msakit export onnx CHECKPOINT`, e.g. at several --steps) in onnxruntime instead "
        "of PyTorch, each batch on the shortest graph it fits; each is checked against the checkpoint first",
    )
    p.set_defaults(func=run_predict)


def _load(args: argparse.Namespace) -> tuple[LoadedModel, MSADataset]:
    from msakit.data import load_dataset
    from msakit.service import load_model
    from msakit.training.sealed import check_split_open

    check_split_open(args.checkpoint, args.split)  # before anything is loaded or written
    return load_model(args.checkpoint), load_dataset(args.data)


def run_eval(args: argparse.Namespace) -> int:
    from msakit.report import format_value
    from msakit.service import evaluate_split, write_metrics_json

    loaded, dataset = _load(args)
    result = evaluate_split(loaded, dataset, args.split)
    print(f"{result.model} on {result.dataset} [{result.split}]")
    for k, v in result.metrics.items():
        print(f"  {k:<14} {format_value(k, v)}")
    if args.json:
        write_metrics_json(result, args.json)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from msakit.errors import ConfigError
    from msakit.service import predict_split, write_predictions_csv

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    loaded, dataset = _load(args)
    onnx = None
    if args.onnx is not None:
        from msakit.export import open_for

        onnx = open_for(loaded, args.onnx)
    result = predict_split(loaded, dataset, args.split, batch_size=args.batch_size, onnx=onnx)
    write_predictions_csv(result, args.out)
    print(f"wrote {len(result.samples)} predictions to {args.out}")
    return 0
