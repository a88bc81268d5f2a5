"""Measured evidence about a deletion: attacks that try to recover the removed information.

- `feature_probe_r2`: a ridge probe trained to predict the removed modality's pooled
  features (mean over valid steps) from the model's fused embedding; R² (variance-weighted
  over the features) on held-out
  samples that have the modality. High on the original model (it reads the modality);
  on a model that forgot it, no higher than what the retained modalities explain.
- `membership_auc`: a loss-threshold membership attack (Yeom et al. 2018): the ROC AUC
  of −loss for separating the forget samples (with the modality present) from held-out
  samples. 0.5 = the attack cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from msakit.batch import Batch, masked_mean
from msakit.data.core import SplitData
from msakit.models.base import MSAModel


@torch.no_grad()
def embeddings(
    model: MSAModel,
    split: SplitData,
    indices: Sequence[int],
    *,
    transform: Callable[[Batch], Batch] | None = None,
    key: str = "fused",
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """(features[key], prediction) of `model` for `indices`, in order: (n, p) float64, (n,) float64."""
    model.eval()
    feats, preds = [], []
    for start in range(0, len(indices), batch_size):
        batch = split.batch(indices[start : start + batch_size])
        if transform is not None:
            batch = transform(batch)
        out = model(batch)
        feats.append(out.features[key].double().numpy())
        preds.append(out.prediction.double().numpy())
    if not feats:
        return np.zeros((0, 0)), np.zeros(0)
    return np.concatenate(feats), np.concatenate(preds)


def pooled_modality(split: SplitData, indices: Sequence[int], modality: str) -> np.ndarray:
    """(n, D) mean over valid steps of `modality` for `indices`."""
    batch = split.batch(list(indices))
    return masked_mean(batch.features[modality], batch.masks[modality]).double().numpy()


def ridge_r2(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, l2: float = 1.0
) -> float:
    """R² of a ridge probe with standardised inputs, outputs weighted by their variance.

    Variance weighting, not a uniform mean over outputs: a feature that is (nearly)
    constant on the scored split has an unbounded per-output R² and would swamp the mean.
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), Ridge(alpha=l2)).fit(x_train, y_train)
    return float(r2_score(y_test, probe.predict(x_test), multioutput="variance_weighted"))


def feature_probe_r2(
    model: MSAModel,
    train: SplitData,
    test: SplitData,
    modality: str,
    *,
    transform_train: Callable[[Batch], Batch] | None = None,
) -> float:
    """R² of predicting `modality`'s pooled features from the model's fused embedding (fit on train, scored on test)."""
    x_tr, _ = embeddings(model, train, range(len(train)), transform=transform_train)
    x_te, _ = embeddings(model, test, range(len(test)))
    return probe_r2(x_tr, x_te, train, test, modality)


def probe_r2(x_train: np.ndarray, x_test: np.ndarray, train: SplitData, test: SplitData, modality: str) -> float:
    """`feature_probe_r2` from embeddings already computed for every sample of `train` and `test`,
    in order: the probe reads the rows of the samples that have `modality`."""
    tr = [i for i in range(len(train)) if train.modalities[modality].present[i]]
    te = [i for i in range(len(test)) if test.modalities[modality].present[i]]
    return ridge_r2(x_train[tr], pooled_modality(train, tr, modality), x_test[te], pooled_modality(test, te, modality))


def resident(split: SplitData) -> SplitData:
    """`split` with every modality's values read into memory once (a prepared folder maps them
    from disk, and a deletion reads each split several times)."""
    arrays = {m: replace(a, values=np.ascontiguousarray(np.asarray(a.values))) for m, a in split.modalities.items()}
    return replace(split, modalities=arrays)


def membership_auc(
    model: MSAModel, members: tuple[SplitData, Sequence[int]], others: tuple[SplitData, Sequence[int]]
) -> float:
    """ROC AUC of −|error| separating `members` from `others` (regression)."""
    from sklearn.metrics import roc_auc_score

    scores, labels = [], []
    for flag, (split, idx) in ((1, members), (0, others)):
        _, pred = embeddings(model, split, idx)
        scores.append(-np.abs(pred - split.labels[list(idx)]))
        labels.append(np.full(len(idx), flag))
    return float(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))


__all__ = ["embeddings", "feature_probe_r2", "membership_auc", "pooled_modality", "probe_r2", "resident", "ridge_r2"]
