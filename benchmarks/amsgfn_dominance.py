"""How often AMSGFN picks each modality as dominant, and how accurate it is per choice.

For a prepared dataset and either a checkpoint or a fresh training run, prints per
dominant modality: the share of test samples, Non0 Acc-2 and MAE (regression) or
accuracy (classification), and, where the data says which modality is informative
(`synthetic:dominant`, target "informative"), how often the choice matches it.

    python benchmarks/amsgfn_dominance.py --data synthetic:dominant --epochs 20 --seed 1
    python benchmarks/amsgfn_dominance.py --data data/mosi --checkpoint runs/x/seed1/best

Importable: `dominance_report(model, split)` and `train_fresh(...)` are used by the tests.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from msakit.batch import MODALITIES
from msakit.config import TrainConfig
from msakit.data import MSADataset, SplitData, load_dataset
from msakit.models.base import MSAModel
from msakit.training.checkpoint import load_checkpoint
from msakit.training.trainer import Trainer


@dataclass
class DominanceReport:
    n: int
    counts: dict[str, int]  # modality -> samples where it was dominant
    accuracy: dict[str, float]  # modality -> Non0 Acc-2 (regression) or Acc (classification), in %
    mae: dict[str, float] = field(default_factory=dict)  # regression only
    match_rate: float | None = None  # share of samples whose dominant == the informative modality
    match_rate_strong: float | None = None  # the same over samples with |label| >= 1 (a clear signal)
    overall_accuracy: float = float("nan")


@torch.no_grad()
def dominance_report(model: MSAModel, split: SplitData, *, batch_size: int = 128) -> DominanceReport:
    model.eval()
    dominant, preds, labels, informative = [], [], [], []
    for batch in split.loader(batch_size, shuffle=False):
        out = model(batch)
        dominant.append(out.explanations["dominant"].cpu())
        preds.append(out.prediction.float().cpu())
        labels.append(batch.labels.cpu())
        if "informative" in batch.targets:
            informative.append(batch.targets["informative"].cpu())
    dom, pred, y = torch.cat(dominant), torch.cat(preds), torch.cat(labels)
    if pred.dim() == 2:  # classification logits
        correct = pred.argmax(-1) == y.long()
        counted = torch.ones_like(correct)
    else:
        correct = (pred > 0) == (y > 0)
        counted = y != 0  # Non0 Acc-2 ignores neutral labels
    report = DominanceReport(n=int(dom.numel()), counts={}, accuracy={})
    report.overall_accuracy = 100.0 * float(correct[counted].float().mean()) if counted.any() else float("nan")
    for i, m in enumerate(MODALITIES):
        sel = dom == i
        report.counts[m] = int(sel.sum())
        keep = sel & counted
        report.accuracy[m] = 100.0 * float(correct[keep].float().mean()) if keep.any() else float("nan")
        if pred.dim() == 1:
            report.mae[m] = float((pred[sel] - y[sel]).abs().mean()) if sel.any() else float("nan")
    if informative:
        target = torch.cat(informative)
        valid = target >= 0
        if valid.any():
            report.match_rate = float((dom[valid] == target[valid]).float().mean())
        strong = valid & (y.float().abs() >= 1)
        if strong.any():
            report.match_rate_strong = float((dom[strong] == target[strong]).float().mean())
    return report


def train_fresh(
    dataset: MSADataset,
    *,
    epochs: int = 20,
    seed: int = 1,
    patience: int = 6,
    overrides: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
) -> MSAModel:
    """Train AMSGFN for one seed (validation-only selection) and return its best checkpoint."""
    cfg = TrainConfig(epochs=epochs, seeds=(seed,), patience=patience, progress=False, tensorboard=False)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer("amsgfn", dataset, model_overrides=overrides, train_config=cfg, out_dir=out_dir or tmp)
        result = trainer.fit()
        model, _ = load_checkpoint(result.seeds[0].checkpoint)
    return model


def format_report(report: DominanceReport, *, regression: bool) -> str:
    acc_name = "Non0 Acc-2" if regression else "Acc"
    lines = [f"{'dominant':<8} {'samples':>8} {'share %':>8} {acc_name:>11}" + (f" {'MAE':>7}" if regression else "")]
    for m in MODALITIES:
        share = 100.0 * report.counts[m] / max(report.n, 1)
        row = f"{m:<8} {report.counts[m]:>8} {share:>8.1f} {report.accuracy[m]:>11.1f}"
        lines.append(row + (f" {report.mae[m]:>7.3f}" if regression else ""))
    lines.append(f"{'all':<8} {report.n:>8} {100.0:>8.1f} {report.overall_accuracy:>11.1f}")
    if report.match_rate is not None:
        lines.append(
            f"dominant == informative modality on {100.0 * report.match_rate:.1f} % of samples (chance 33.3 %)"
        )
    if report.match_rate_strong is not None:
        lines.append(f"  ... and on {100.0 * report.match_rate_strong:.1f} % of the samples with |label| >= 1")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset spec: synthetic[:preset] or a prepared folder")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint folder (seed<N>/best); else train afresh")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="where a fresh run writes its checkpoint (default: a temp dir)")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data)
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
    else:
        model = train_fresh(dataset, epochs=args.epochs, seed=args.seed, out_dir=args.out)
    report = dominance_report(model, dataset.split(args.split))
    print(f"AMSGFN on {dataset.info.name}, {args.split} split ({report.n} samples)")
    print(format_report(report, regression=not model.is_classifier))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
