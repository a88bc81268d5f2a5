"""Statistics of a training split, the only way dataset facts reach a model.

`dataset_stats(split)` summarises the training split once; the trainer hands the result
to `MSAModel.on_fit_start(stats)`. Models never receive a loader: what they need from
the data (label memories, feature standardisation, cluster counts) is in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from msakit.data.core import SplitData


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature centre and scale of one modality over the valid steps of present samples.

    center, scale: (D,) float32; scale is never 0 (constant features get scale 1).
    count: the number of valid steps the statistics were computed from.
    """

    center: np.ndarray
    scale: np.ndarray
    count: int


@dataclass(frozen=True)
class DatasetStats:
    """What a model may know about its training split."""

    ids: tuple[str, ...]
    labels: np.ndarray  # (N,) the training labels, in `ids` order
    features: dict[str, FeatureStats] = field(default_factory=dict)


def feature_stats(values: np.ndarray, lengths: np.ndarray, present: np.ndarray, chunk: int = 1024) -> FeatureStats:
    """Mean and standard deviation over valid steps, read `chunk` samples at a time."""
    dim = values.shape[2]
    total = np.zeros(dim, dtype=np.float64)
    squares = np.zeros(dim, dtype=np.float64)
    count = 0
    for start in range(0, values.shape[0], chunk):
        block = np.asarray(values[start : start + chunk], dtype=np.float64)  # (b, L, D)
        steps = np.arange(block.shape[1])[None, :] < lengths[start : start + chunk, None]
        steps &= present[start : start + chunk, None].astype(bool)
        rows = block[steps]  # (valid steps, D)
        total += rows.sum(0)
        squares += (rows**2).sum(0)
        count += rows.shape[0]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
    scale = np.where(std > 1e-8, std, 1.0)
    return FeatureStats(center=mean.astype(np.float32), scale=scale.astype(np.float32), count=count)


def dataset_stats(split: SplitData) -> DatasetStats:
    """Statistics of a (training) split for `MSAModel.on_fit_start`."""
    feats = {m: feature_stats(a.values, a.lengths, a.present) for m, a in split.modalities.items()}
    return DatasetStats(ids=tuple(split.ids), labels=np.asarray(split.labels), features=feats)
