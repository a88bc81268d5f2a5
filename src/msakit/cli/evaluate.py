"""`msakit eval` and `msakit predict`: use a trained checkpoint."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import torch

from msakit.batch import MODALITIES
from msakit.cli.common import FORMATTER
from msakit.data.core import MSADataset
from msakit.io import atomic_open, atomic_write_json
from msakit.models.base import MSAModel


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
    p.set_defaults(func=run_predict)


def _load(args: argparse.Namespace) -> tuple[MSAModel, dict[str, Any], MSADataset]:
    from msakit.data import load_dataset
    from msakit.training import load_checkpoint
    from msakit.training.compat import check_compatible

    model, meta = load_checkpoint(args.checkpoint)
    dataset = load_dataset(args.data)
    check_compatible(meta, dataset.info, args.checkpoint)
    return model, meta, dataset


def run_eval(args: argparse.Namespace) -> int:
    from msakit.report import format_value
    from msakit.training import evaluate

    model, meta, dataset = _load(args)
    metrics = evaluate(model, dataset.split(args.split), dataset.info.metric_set)
    print(f"{meta['model']} on {dataset.info.name} [{args.split}]")
    for k, v in metrics.items():
        print(f"  {k:<14} {format_value(k, v)}")
    if args.json:
        atomic_write_json(args.json, {"checkpoint": str(args.checkpoint), "split": args.split, "metrics": metrics})
    return 0


def run_predict(args: argparse.Namespace) -> int:
    model, _, dataset = _load(args)
    split = dataset.split(args.split)
    header = ["id", "label", "prediction"]
    header += [f"{kind}_{m}" for kind in ("present", "weight", "uncertainty") for m in MODALITIES]
    with atomic_open(args.out, "w", newline="") as fh, torch.no_grad():
        writer = csv.writer(fh)
        writer.writerow(header)
        for batch in split.loader(128, shuffle=False):
            out = model(batch)
            pred = out.prediction.argmax(-1) if model.is_classifier else out.prediction
            for i, sample_id in enumerate(batch.ids):
                row = [sample_id, float(batch.labels[i]), float(pred[i])]
                row += [int(batch.present[i, j]) for j in range(len(MODALITIES))]
                for extra in (out.modality_weights, out.uncertainty):
                    row += [float(extra[i, j]) if extra is not None else "" for j in range(len(MODALITIES))]
                writer.writerow(row)
    print(f"wrote {len(split)} predictions to {args.out}")
    return 0
