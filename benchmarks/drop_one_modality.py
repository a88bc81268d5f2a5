"""What dropping one modality at test time costs, over the seeds of a training run.

    python benchmarks/drop_one_modality.py runs/tssp_syn --data synthetic
    python benchmarks/drop_one_modality.py runs/tssp_yt --data data/youtube --split test

For every `RUN/seed*/best` checkpoint: the split's primary metric (Non0 Acc-2 for
regression, Acc for classification; `msakit robustness`'s choice) with all modalities,
then with each modality the model and data share removed for every sample
(`Batch.drop_modalities`: features zeroed, masks cleared, `present` False). Prints one
row per condition: mean ± sample std over seeds of the metric and of the paired drop
(clean − dropped, in points; positive = dropping hurts).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from msakit.data import load_dataset
from msakit.robustness.protocols import PRIMARY_METRIC, shared_modalities
from msakit.training.checkpoint import load_checkpoint
from msakit.training.trainer import evaluate


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a `msakit train` output folder holding seed*/best")
    parser.add_argument("--data", required=True, help="the dataset spec the run was trained on")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    args = parser.parse_args()
    checkpoints = sorted(args.run.glob("seed*/best"))
    if not checkpoints:
        raise SystemExit(f"{args.run}: no seed*/best checkpoint")
    dataset = load_dataset(args.data)
    split = dataset.split(args.split)
    metric_set = dataset.info.metric_set
    metric = PRIMARY_METRIC[metric_set]
    scores: dict[str, list[float]] = {}
    for path in checkpoints:
        model, _ = load_checkpoint(path)
        conditions: dict[str, tuple[str, ...]] = {"all": ()}
        conditions |= {f"without {m}": (m,) for m in shared_modalities(model, dataset)}
        for label, dropped in conditions.items():
            transform = (lambda b, d=dropped: b.drop_modalities(d)) if dropped else None
            value = 100 * evaluate(model, split, metric_set, transform=transform)[metric]
            scores.setdefault(label, []).append(value)
    print(f"{args.run} on {dataset.info.name} {args.split}, {metric}, {len(checkpoints)} seed(s)")
    print(f"| condition | {metric} | drop (points) |")
    print("|---|---|---|")
    for label, values in scores.items():
        drop = [c - v for c, v in zip(scores["all"], values, strict=True)]
        print(f"| {label} | {mean_std(values)} | {'–' if label == 'all' else mean_std(drop)} |")


if __name__ == "__main__":
    main()
