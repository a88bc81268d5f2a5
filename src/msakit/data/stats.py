"""Statistics of a training split, the only way dataset facts reach a model.

`dataset_stats(split)` summarises the training split once; the trainer hands the result
to the model (`MSAModel.start_fit`, which fits the model's input normaliser and then
calls `on_fit_start(stats)`). Models never receive a loader: what they need from the
data (label memories, feature standardisation, cluster counts) is in here.

Feature statistics are robust, because real features are not well behaved: MFN's
COVAREP audio holds sentinel values of ±255 beside values near 0, FACET columns are
often constant, and padded steps and absent samples are zeros that are not data.
Per feature, over the valid steps of present samples only:

- centre = median;
- scale = IQR / 1.349 (the standard deviation for a normal distribution); where the
  IQR is 0 (a feature that is mostly one value, e.g. a sparse indicator) the standard
  deviation of the values clipped to their 1st-99th percentiles, and where that is 0
  too (a constant or all-zero feature) 1, so nothing is ever divided by 0;
- NaN values are ignored; a feature that is NaN at every valid step is an error that
  names the file and the column (there is no statistic to take from it).

At most `max_rows` steps are read (a seeded random subset beyond that), so MOSEI-sized
token states cost seconds, not memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from msakit.data.core import SplitData
from msakit.errors import DataError

IQR_TO_STD = 1.349  # IQR of a standard normal distribution
_EPS = 1e-8


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature centre and scale of one modality over the valid steps of present samples.

    center, scale: (D,) float32; scale is never 0 (constant features get scale 1).
    count: the number of valid steps the statistics were computed from.
    """

    center: np.ndarray
    scale: np.ndarray
    count: int

    @classmethod
    def identity(cls, dim: int, count: int = 0) -> FeatureStats:
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32), count)


@dataclass(frozen=True)
class DatasetStats:
    """What a model may know about its training split."""

    ids: tuple[str, ...]
    labels: np.ndarray  # (N,) the training labels, in `ids` order
    features: dict[str, FeatureStats] = field(default_factory=dict)

    def normalized(self) -> DatasetStats:
        """These statistics as seen after input normalisation: centre 0, scale 1 per feature."""
        feats = {m: FeatureStats.identity(len(f.center), f.count) for m, f in self.features.items()}
        return replace(self, features=feats)


def _valid_rows(
    values: np.ndarray, lengths: np.ndarray, present: np.ndarray, chunk: int, max_rows: int, seed: int
) -> np.ndarray:
    """(n, D) float64: the valid steps of present samples, a seeded subset if more than `max_rows`."""
    lengths = np.where(np.asarray(present, bool), np.asarray(lengths), 0)
    total = int(lengths.sum())
    keep_rate = min(1.0, max_rows / max(total, 1))
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, values.shape[0], chunk):
        n_steps = lengths[start : start + chunk]
        if not n_steps.any():
            continue
        block = np.asarray(values[start : start + chunk], dtype=np.float64)  # (b, L, D)
        steps = np.arange(block.shape[1])[None, :] < n_steps[:, None]
        rows = block[steps]  # (valid steps, D)
        if keep_rate < 1.0:
            rows = rows[rng.random(len(rows)) < keep_rate]
        parts.append(rows)
    return np.concatenate(parts) if parts else np.zeros((0, values.shape[2]))


def feature_stats(
    values: np.ndarray,
    lengths: np.ndarray,
    present: np.ndarray,
    *,
    chunk: int = 1024,
    max_rows: int = 200_000,
    seed: int = 0,
    source: str = "",
    modality: str = "",
) -> FeatureStats:
    """Robust per-feature centre and scale (module docstring) over valid steps of present samples."""
    dim = values.shape[2]
    rows = _valid_rows(values, lengths, present, chunk, max_rows, seed)
    if len(rows) == 0:  # the modality is absent from every sample: nothing to normalise
        return FeatureStats.identity(dim)
    finite = np.isfinite(rows)
    dead = ~finite.any(axis=0)
    if dead.any():
        j = int(np.flatnonzero(dead)[0])
        raise DataError(
            f"{modality or 'feature'} column {j} is NaN or Inf at every valid step of the training split "
            f"({int(dead.sum())} such column(s)); drop or fill it",
            path=f"{source}/{modality}.npy" if source and modality else (source or None),
            field=f"{modality}[:, :, {j}]" if modality else f"column {j}",
        )
    rows = np.where(finite, rows, np.nan)
    q01, q25, q50, q75, q99 = np.nanpercentile(rows, [1, 25, 50, 75, 99], axis=0)
    scale = (q75 - q25) / IQR_TO_STD
    narrow = scale <= _EPS
    if narrow.any():
        clipped = np.clip(rows[:, narrow], q01[narrow], q99[narrow])
        fallback = np.nanstd(clipped, axis=0)
        scale[narrow] = np.where(fallback > _EPS, fallback, 1.0)
    return FeatureStats(center=q50.astype(np.float32), scale=scale.astype(np.float32), count=len(rows))


def dataset_stats(split: SplitData, *, source: str = "") -> DatasetStats:
    """Statistics of a (training) split for `MSAModel.start_fit`; `source` names the data in errors."""
    feats = {
        m: feature_stats(a.values, a.lengths, a.present, source=source, modality=m) for m, a in split.modalities.items()
    }
    return DatasetStats(ids=tuple(split.ids), labels=np.asarray(split.labels), features=feats)
