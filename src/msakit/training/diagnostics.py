"""Warnings for training runs that finished but learned nothing useful.

A run can print a full metric table and still be degenerate. After the last seed the
trainer calls `diagnose_run`; every warning is printed and recorded in
``results.json`` under ``"warnings"``. Three checks:

- **near-constant prediction** (per seed, on the validation and the test split, with
  the selected checkpoint): regression predictions whose spread is under
  `CONSTANT_STD_RATIO` of the labels' spread, or that all have one sign while at least
  `MINORITY_SIGN` of the non-zero labels have the other; classification predictions of
  one class for at least `CONSTANT_CLASS_SHARE` of the samples when no class is that
  common in the labels;
- **a modality no training sample has**: present for some validation or test samples
  but absent from every training sample (MMMO and YouTube released GloVe text for
  valid/test only), so no model can have learned it;
- **best epoch ≤ 2 in every seed** (when more epochs ran): training stopped improving
  the validation score almost at once, in every seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from msakit.data.core import MSADataset
    from msakit.training.trainer import RunResult

CONSTANT_STD_RATIO = 0.05
MINORITY_SIGN = 0.1
CONSTANT_CLASS_SHARE = 0.95
EARLY_EPOCH = 2


def constant_prediction(pred: np.ndarray, labels: np.ndarray, *, classification: bool) -> str | None:
    """Why `pred` is (near-)constant against `labels`, or None. pred: (N,) or (N, C) logits."""
    n = len(labels)
    if n < 2:
        return None
    if classification:
        chosen = pred.argmax(-1) if pred.ndim == 2 else pred.astype(np.int64)
        values, counts = np.unique(chosen, return_counts=True)
        share = counts.max() / n
        label_share = np.unique(labels, return_counts=True)[1].max() / n
        if share >= CONSTANT_CLASS_SHARE and label_share < CONSTANT_CLASS_SHARE:
            return f"predicts class {int(values[counts.argmax()])} for {share:.0%} of the samples"
        return None
    pred, labels = pred.astype(np.float64).reshape(n), labels.astype(np.float64)
    spread, label_spread = float(pred.std()), float(labels.std())
    if label_spread > 0 and spread < CONSTANT_STD_RATIO * label_spread:
        return f"prediction std {spread:.3g} is under {CONSTANT_STD_RATIO:g} x the label std {label_spread:.3g}"
    nonzero = labels[labels != 0]
    minority = min((nonzero > 0).mean(), (nonzero < 0).mean()) if len(nonzero) else 0.0
    if minority >= MINORITY_SIGN and ((pred > 0).all() or (pred < 0).all()):
        sign = "positive" if pred[0] > 0 else "negative"
        return (
            f"predicts a {sign} score for all {n} samples ({minority:.0%} of the non-zero labels have the other sign)"
        )
    return None


def untrainable_modalities(dataset: MSADataset) -> list[str]:
    """A warning per modality present at valid/test but absent from every training sample."""
    out = []
    train = dataset.split("train")
    for m in dataset.info.modalities:
        if m not in train.modalities or train.modalities[m].present.any():
            continue
        seen = {s: int(d.modalities[m].present.sum()) for s, d in dataset if s != "train" and m in d.modalities}
        seen = {s: k for s, k in seen.items() if k}
        if seen:
            where = ", ".join(f"{k} {s}" for s, k in seen.items())
            out.append(
                f"modality {m!r} is present for {where} samples but absent from every training sample: "
                "no model can have learned it"
            )
    return out


def early_best_epochs(result: RunResult) -> str | None:
    seeds = result.seeds
    if seeds and all(s.best_epoch <= EARLY_EPOCH < s.epochs_run for s in seeds):
        epochs = ", ".join(f"seed {s.seed}: {s.best_epoch}/{s.epochs_run}" for s in seeds)
        return (
            f"the best validation epoch is <= {EARLY_EPOCH} in every seed ({epochs}): training stopped improving "
            "almost at once (check the learning rate, the features' scale, or whether the data carries signal)"
        )
    return None


@torch.no_grad()
def seed_predictions(checkpoint: str, dataset: MSADataset, split: str, device: torch.device | str) -> np.ndarray:
    """Predictions of a saved checkpoint on one split, in split order."""
    from msakit.training.checkpoint import load_checkpoint
    from msakit.training.trainer import predict_split

    model, _ = load_checkpoint(checkpoint, map_location=device)
    outputs = predict_split(model, dataset.split(split), device=device)
    return torch.cat([out.prediction.float().cpu() for out, _ in outputs]).numpy()


def diagnose_run(
    result: RunResult,
    dataset: MSADataset,
    *,
    device: torch.device | str = "cpu",
    splits: tuple[str, ...] = ("valid", "test"),
) -> list[str]:
    """Every warning for a finished run (module docstring), most specific first; the near-constant check
    reads only `splits` (a sealed run: validation alone)."""
    warnings = untrainable_modalities(dataset)
    classification = dataset.info.num_classes > 1
    for seed in result.seeds:
        for split in splits:
            if split not in dataset.splits:
                continue
            pred = seed_predictions(seed.checkpoint, dataset, split, device)
            why = constant_prediction(pred, dataset.split(split).labels, classification=classification)
            if why:
                warnings.append(f"seed {seed.seed}: near-constant prediction on {split}: {why}")
    early = early_best_epochs(result)
    if early:
        warnings.append(early)
    return warnings


__all__ = ["constant_prediction", "diagnose_run", "early_best_epochs", "untrainable_modalities"]
