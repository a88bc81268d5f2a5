"""In-memory (or memory-mapped) dataset splits that produce `Batch`es.

Every reader (msakit's folder format, MMSA pickles, MulT pickles, the synthetic
generator) ends in the same place: a `MSADataset` of named `SplitData`, each holding,
per modality, a (N, L, D) array, per-sample lengths and a per-sample presence flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from msakit.batch import MODALITIES, Batch
from msakit.errors import DataError

#: the split names the readers write; a dataset may carry others (validated when read)
SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: the splits training cannot do without (`test` is optional: without it no test score is reported)
REQUIRED_SPLITS: tuple[str, ...] = ("train", "valid")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
METRIC_SETS = ("mosi", "sims", "classification")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the evaluator must know about a dataset."""

    name: str
    metric_set: str  # "mosi" (labels in [-3, 3]), "sims" ([-1, 1]) or "classification"
    num_classes: int = 1  # 1 = regression
    label_range: float = 3.0
    dims: Mapping[str, int] = field(default_factory=dict)  # modality -> feature width
    class_names: tuple[str, ...] = ()
    description: str = ""
    # modality -> the feature set it holds (extractor / text encoder and width), recorded in every
    # checkpoint; applying a checkpoint to another feature set is an error (msakit.training.compat)
    features: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric_set not in METRIC_SETS:
            raise DataError(f"metric_set must be one of {METRIC_SETS}, got {self.metric_set!r}", field="metric_set")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.dims)

    def model_overrides(self) -> dict[str, object]:
        """The data-dependent model config fields (the config side owns the field names)."""
        from msakit.config import dataset_overrides

        return dataset_overrides(self)


@dataclass
class ModalityArrays:
    """One modality of one split: rows aligned with the split's sample order."""

    values: np.ndarray  # (N, L, D), possibly a read-only memmap
    lengths: np.ndarray  # (N,) valid steps per sample (0 when absent)
    present: np.ndarray  # (N,) bool


@dataclass
class SplitData:
    """One split: labels, ids, optional transcripts, and the modality arrays."""

    labels: np.ndarray  # (N,) float32 regression or int64 class index
    ids: list[str]
    modalities: dict[str, ModalityArrays]
    raw_text: list[str] | None = None
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices: Sequence[int]) -> Batch:
        """Gather samples into a padded Batch, trimmed to the longest valid sequence."""
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx)  # sorted reads are faster on memmaps
        sorted_idx, inverse = idx[order], np.argsort(order)
        features, masks, present = {}, {}, []
        for m in MODALITIES:
            if m not in self.modalities:
                present.append(torch.zeros(len(idx), dtype=torch.bool))
                continue
            arr = self.modalities[m]
            lengths = torch.from_numpy(arr.lengths[idx].astype(np.int64))
            width = max(int(lengths.max()) if len(lengths) else 1, 1)
            if isinstance(arr.values, np.memmap) or arr.values.dtype != np.float32:
                values = np.asarray(arr.values[sorted_idx, :width], dtype=np.float32)[inverse]
            else:  # in memory: one gather, in the batch's order (the sorted read and its inverse were two copies)
                values = arr.values[idx, :width]
            feats = torch.from_numpy(np.ascontiguousarray(values))  # a fresh array either way: ours to mask in place
            mask = torch.arange(width)[None, :] < lengths[:, None]
            has = torch.from_numpy(arr.present[idx].astype(bool))
            mask &= has[:, None]
            features[m] = feats.mul_(mask.unsqueeze(-1))
            masks[m] = mask
            present.append(has)
        labels = torch.from_numpy(self.labels[idx])
        return Batch(
            features=features,
            masks=masks,
            present=torch.stack(present, dim=1),
            labels=labels,
            ids=[self.ids[i] for i in idx],
            raw_text=[self.raw_text[i] for i in idx] if self.raw_text is not None else None,
            targets={k: torch.from_numpy(v[idx]) for k, v in self.targets.items()},
        )

    def loader(self, batch_size: int, *, shuffle: bool, seed: int = 0, num_workers: int = 0) -> DataLoader[Batch]:
        """Batches of this split in one process (a thin wrapper over `RandomBatches` + `collate`)."""
        batches = RandomBatches().batches(self, batch_size, shuffle=shuffle, seed=seed)
        return collate(self, batches, num_workers=num_workers)


class Sampler(Protocol):
    """Orders a split into *global* batches of sample indices.

    The plug point for batch order: `RandomBatches` (the default) shuffles, a
    dialogue-ordered sampler keeps a conversation's turns together. Sharding over
    processes is not the sampler's business: `DataModule` splits every global batch
    across ranks, so any sampler works unchanged under distributed training.
    """

    def batches(self, split: SplitData, batch_size: int, *, shuffle: bool, seed: int) -> list[list[int]]: ...


@dataclass(frozen=True)
class RandomBatches:
    """Consecutive batches of a seeded permutation (or of the split order when not shuffling)."""

    drop_last: bool = False

    def batches(self, split: SplitData, batch_size: int, *, shuffle: bool, seed: int) -> list[list[int]]:
        n = len(split)
        order = list(range(n))
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        stop = n - n % batch_size if self.drop_last else n
        return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


@dataclass(frozen=True)
class LengthBuckets:
    """Shuffled batches of similar length, so that a batch trimmed to its longest sample carries little padding.

    Each epoch: a seeded permutation, cut into pools of `pool` batches; each pool sorted by
    length (the modality with the most padded values, L·D, first; ties keep the permutation's
    order) and cut into batches; then the batches of all pools shuffled. On MOSI's text
    (mean 15 of 50 steps) random batches of 32 carry 38.9 padded steps per sample, pools
    of 16 batches 16.5 (docs/benchmarks.md, `profile_epoch.py --micro buckets`). Batch composition is
    no longer i.i.d., so this is a training choice (`-t sampler=bucket`), not a silent default.
    """

    pool: int = 16  # batches per sorted pool: larger pools pad less and mix less
    drop_last: bool = False

    def batches(self, split: SplitData, batch_size: int, *, shuffle: bool, seed: int) -> list[list[int]]:
        if not shuffle:
            return RandomBatches(self.drop_last).batches(split, batch_size, shuffle=False, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        n = len(split)
        order = torch.randperm(n, generator=gen).numpy()
        mods = sorted(split.modalities.values(), key=lambda a: a.values.shape[1] * a.values.shape[2])
        keys = [a.lengths[order] for a in mods]  # np.lexsort: the last key is the primary one
        stop = n - n % batch_size if self.drop_last else n
        size = batch_size * max(self.pool, 1)
        out: list[list[int]] = []
        for lo in range(0, stop, size):
            hi = min(lo + size, stop)
            pool = order[lo:hi][np.lexsort([k[lo:hi] for k in keys])] if keys else order[lo:hi]
            out += [pool[i : i + batch_size].tolist() for i in range(0, len(pool), batch_size)]
        perm = torch.randperm(len(out), generator=gen).tolist()
        return [out[i] for i in perm]


def collate(split: SplitData, batches: Sequence[Sequence[int]], *, num_workers: int = 0) -> DataLoader[Batch]:
    """A loader yielding `split.batch(indices)` for each index list, in order."""
    return DataLoader(
        range(len(split)),  # type: ignore[arg-type]
        batch_sampler=[list(b) for b in batches],
        collate_fn=split.batch,
        num_workers=num_workers,
    )


def shard(batch: Sequence[int], rank: int, world_size: int) -> tuple[list[int], float]:
    """This rank's part of a global batch and its loss weight.

    The weight `local * world / global` makes the ranks' averaged gradient equal to the
    gradient of the whole batch's mean loss even when the parts are uneven. A rank left
    without a sample (a last batch smaller than the world) reruns the first sample with
    weight 0, so every rank takes part in every gradient all-reduce.
    """
    n = len(batch)
    lo, hi = rank * n // world_size, (rank + 1) * n // world_size
    if hi == lo:
        return [batch[0]], 0.0
    return list(batch[lo:hi]), (hi - lo) * world_size / n


@dataclass
class DataModule:
    """Sampler and collation of a dataset's splits for training and evaluation, in one object.

    rank / world_size: this process's place in a distributed run (1 process: 0 / 1).
    Training batches are the sampler's global batches, each split across ranks by
    `shard`; evaluation gives every rank a contiguous, unpadded slice so that the
    gathered predictions hold each sample exactly once, in split order.
    """

    dataset: MSADataset
    batch_size: int = 32
    eval_batch_size: int = 128
    sampler: Sampler = field(default_factory=RandomBatches)
    num_workers: int = 0
    rank: int = 0
    world_size: int = 1
    train_split: str = "train"
    valid_split: str = "valid"

    def __post_init__(self) -> None:
        for name in (self.train_split, self.valid_split):
            self.dataset.split(name)  # DataError naming the split when it is missing
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise DataError(
                f"batch sizes must be >= 1, got {self.batch_size} / {self.eval_batch_size}", field="batch_size"
            )
        n = len(self.train)
        if self.world_size > n:
            raise DataError(
                f"world size {self.world_size} is larger than the training split ({n} samples); "
                "use at most that many processes",
                path=self.dataset.source or self.dataset.info.name,
                field=self.train_split,
            )

    @property
    def train(self) -> SplitData:
        return self.dataset.split(self.train_split)

    @property
    def valid(self) -> SplitData:
        return self.dataset.split(self.valid_split)

    def has_split(self, name: str) -> bool:
        return name in self.dataset.splits

    def train_batches(self, *, seed: int) -> tuple[DataLoader[Batch], list[float]]:
        """This rank's training batches for one epoch (seeded) and each one's loss weight."""
        global_batches = self.sampler.batches(self.train, self.batch_size, shuffle=True, seed=seed)
        parts = [shard(b, self.rank, self.world_size) for b in global_batches if b]
        return collate(self.train, [p for p, _ in parts], num_workers=self.num_workers), [w for _, w in parts]

    def eval_indices(self, split: SplitData) -> range:
        """This rank's contiguous slice of `split` for evaluation (no padding, maybe empty)."""
        n = len(split)
        return range(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def eval_batches(self, split: SplitData | str) -> DataLoader[Batch]:
        split = self.dataset.split(split) if isinstance(split, str) else split
        idx = list(self.eval_indices(split))
        batches = [idx[i : i + self.eval_batch_size] for i in range(0, len(idx), self.eval_batch_size)]
        return collate(split, batches, num_workers=0)


@dataclass
class MSADataset:
    """A dataset: its info and its splits (train / valid / test)."""

    info: DatasetInfo
    splits: dict[str, SplitData]
    source: str = ""  # where it was read from, used in error messages

    def __post_init__(self) -> None:
        for name, split in self.splits.items():
            if not isinstance(name, str) or not _SPLIT_NAME.match(name):
                raise DataError(
                    f"split name {name!r} is not a plain name (letters, digits, '_', '-', '.')",
                    path=self.source or self.info.name,
                    field="split",
                )
            validate_split(split, self.info, source=self.source or self.info.name, split_name=name)

    def split(self, name: str) -> SplitData:
        try:
            return self.splits[name]
        except KeyError:
            raise DataError(
                f"dataset {self.info.name!r} has no split {name!r} (it has {sorted(self.splits)})", field="split"
            ) from None

    def __iter__(self) -> Iterator[tuple[str, SplitData]]:
        return iter(self.splits.items())


def validate_split(split: SplitData, info: DatasetInfo, *, source: str, split_name: str) -> None:
    """Shape, dimension, id and finiteness checks; DataError names the file and field at fault."""

    def fail(message: str, field_name: str) -> DataError:
        return DataError(f"split {split_name!r}: {message}", path=source, field=field_name)

    from msakit.data.validate import check_split

    n = len(split.ids)
    if len(set(split.ids)) != n:
        raise fail("duplicate ids", "id")
    if split.labels.shape != (n,):
        raise fail(f"labels have shape {split.labels.shape}, expected ({n},)", "label")
    if split.labels.dtype.kind == "f" and not np.isfinite(split.labels).all():
        bad = split.ids[int(np.flatnonzero(~np.isfinite(split.labels))[0])]
        raise fail(f"label is NaN or Inf (first at id {bad!r})", "label")
    if split.raw_text is not None and len(split.raw_text) != n:
        raise fail(f"{len(split.raw_text)} transcripts for {n} samples", "text")
    for m, arr in split.modalities.items():
        if arr.values.ndim != 3 or arr.values.shape[0] != n:
            raise fail(f"{m} has shape {arr.values.shape}, expected ({n}, L, D)", m)
        if m in info.dims and arr.values.shape[2] != info.dims[m]:
            raise fail(f"{m} features are {arr.values.shape[2]}-d but the dataset declares {info.dims[m]}-d", m)
        if arr.lengths.shape != (n,) or arr.present.shape != (n,):
            raise fail(f"{m} lengths/presence must have shape ({n},)", f"{m}_lengths")
        if (arr.lengths < 0).any() or (arr.lengths > arr.values.shape[1]).any():
            raise fail(f"{m} lengths outside [0, {arr.values.shape[1]}]", f"{m}_lengths")
        first = _first_nonfinite(arr.values)
        if first is not None:
            raise fail(f"{m} has NaN or Inf values (first at id {split.ids[first]!r})", m)
    check_split(split, info, fail, split_name)  # dtypes, lengths, class labels, features present


def _first_nonfinite(values: np.ndarray, chunk: int = 4096) -> int | None:
    """Row index of the first sample with a NaN/Inf value, reading `chunk` rows at a time."""
    for start in range(0, values.shape[0], chunk):
        block = np.asarray(values[start : start + chunk])
        finite = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
        if not finite.all():
            return start + int(np.flatnonzero(~finite)[0])
    return None
