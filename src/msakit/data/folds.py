"""K-fold cross-validation over a dataset's non-test splits, for decisions on small datasets.

A fixed validation split decides badly when it is small: MMMO's holds 40 clips, 37 of them
non-zero, so one clip moves Non0 Acc-2 by 2.7 points and a search tuned on it overfits it.
`cross_validation_folds` pools the training and validation splits and cuts the pool into K
folds; fold k is a dataset whose validation split is the k-th part and whose training split
is the rest. The test split is never in the pool and never in a fold: a decision made over
the folds has not seen it, exactly as one made on the validation split.

The folds are stratified by label: samples are ordered by label (ties by a seeded shuffle)
and dealt to the folds in turn, so each fold covers the label range as the pool does (for
regression labels the usual "sorted stratification"; for class indices the same as
stratifying by class).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from msakit.data.core import ModalityArrays, MSADataset, SplitData
from msakit.errors import ConfigError

POOL = ("train", "valid")


def take(split: SplitData, indices: Sequence[int] | np.ndarray) -> SplitData:
    """The rows `indices` of `split`, in that order (arrays copied into memory)."""
    idx = np.asarray(indices, dtype=np.int64)
    modalities = {
        name: ModalityArrays(
            values=np.asarray(arr.values[np.sort(idx)])[np.argsort(np.argsort(idx))],
            lengths=np.asarray(arr.lengths)[idx],
            present=np.asarray(arr.present)[idx],
        )
        for name, arr in split.modalities.items()
    }
    return SplitData(
        labels=np.asarray(split.labels)[idx],
        ids=[split.ids[i] for i in idx],
        modalities=modalities,
        raw_text=[split.raw_text[i] for i in idx] if split.raw_text is not None else None,
        targets={k: np.asarray(v)[idx] for k, v in split.targets.items()},
    )


def concat(splits: Sequence[SplitData]) -> SplitData:
    """The splits' rows one after the other; sequences padded with zeros to the longest split's steps."""
    if not splits:
        raise ValueError("concat needs at least one split")
    names = set(splits[0].modalities)
    if any(set(s.modalities) != names for s in splits) or any(set(s.targets) != set(splits[0].targets) for s in splits):
        raise ConfigError("cannot pool splits that hold different modalities or targets")
    modalities = {}
    for name in splits[0].modalities:
        parts = [np.asarray(s.modalities[name].values) for s in splits]
        steps = max(p.shape[1] for p in parts)
        padded = [np.pad(p, ((0, 0), (0, steps - p.shape[1]), (0, 0))) for p in parts]
        modalities[name] = ModalityArrays(
            values=np.concatenate(padded).astype(parts[0].dtype, copy=False),
            lengths=np.concatenate([s.modalities[name].lengths for s in splits]),
            present=np.concatenate([s.modalities[name].present for s in splits]),
        )
    texts = [s.raw_text for s in splits]
    return SplitData(
        labels=np.concatenate([s.labels for s in splits]),
        ids=[i for s in splits for i in s.ids],
        modalities=modalities,
        raw_text=[t for part in texts for t in part] if all(t is not None for t in texts) else None,  # type: ignore[union-attr]
        targets={k: np.concatenate([s.targets[k] for s in splits]) for k in splits[0].targets},
    )


def fold_assignment(labels: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """(N,) fold index of each sample: ordered by label (ties shuffled by `seed`), dealt round-robin."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    order = shuffled[np.argsort(np.asarray(labels)[shuffled], kind="stable")]
    folds = np.empty(len(labels), dtype=np.int64)
    folds[order] = np.arange(len(labels)) % k
    return folds


def cross_validation_folds(dataset: MSADataset, k: int, *, seed: int = 0) -> list[MSADataset]:
    """K datasets over the pooled train + valid splits; fold i validates on part i, trains on the rest.

    No fold holds a test split. ConfigError (naming `cv`) for K < 2 or a pool too small for K
    parts of at least two samples.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"cv: the number of folds must be an integer >= 2, got {k!r}")
    missing = [name for name in POOL if name not in dataset.splits]
    if missing:
        raise ConfigError(f"cv: dataset {dataset.info.name!r} has no {missing[0]!r} split to pool")
    pool = concat([dataset.splits[name] for name in POOL])
    if len(pool) < 2 * k:
        raise ConfigError(f"cv: {k} folds need at least {2 * k} pooled train + valid samples, the pool has {len(pool)}")
    folds = fold_assignment(pool.labels, k, seed=seed)
    out = []
    for i in range(k):
        splits = {"train": take(pool, np.flatnonzero(folds != i)), "valid": take(pool, np.flatnonzero(folds == i))}
        out.append(dataclasses.replace(dataset, splits=splits))
    return out


__all__ = ["POOL", "concat", "cross_validation_folds", "fold_assignment", "take"]
