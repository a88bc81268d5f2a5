"""In-memory (or memory-mapped) dataset splits that produce `Batch`es.

Every reader (msakit's folder format, MMSA pickles, MulT pickles, the synthetic
generator) ends in the same place: a `MSADataset` of named `SplitData`, each holding,
per modality, a (N, L, D) array, per-sample lengths and a per-sample presence flag.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from msakit.batch import MODALITIES, Batch
from msakit.errors import DataError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
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

    def __post_init__(self) -> None:
        if self.metric_set not in METRIC_SETS:
            raise DataError(f"metric_set must be one of {METRIC_SETS}, got {self.metric_set!r}", field="metric_set")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.dims)

    def model_overrides(self) -> dict[str, object]:
        """The data-dependent model config fields."""
        out: dict[str, object] = {f"{m}_dim": d for m, d in self.dims.items()}
        out.update(modalities=self.modalities, num_classes=self.num_classes, label_range=self.label_range)
        return out


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
            lengths = torch.from_numpy(arr.lengths[sorted_idx][inverse].astype(np.int64))
            width = max(int(lengths.max()) if len(lengths) else 1, 1)
            values = np.asarray(arr.values[sorted_idx, :width], dtype=np.float32)[inverse]
            feats = torch.from_numpy(np.ascontiguousarray(values))
            mask = torch.arange(width)[None, :] < lengths[:, None]
            has = torch.from_numpy(arr.present[sorted_idx][inverse].astype(bool))
            mask &= has[:, None]
            features[m] = feats * mask.unsqueeze(-1)
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
        """Batches of this split; shuffling is seeded so runs are reproducible."""
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            range(len(self)),  # type: ignore[arg-type]
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=self.batch,
            num_workers=num_workers,
        )


@dataclass
class MSADataset:
    """A dataset: its info and its splits (train / valid / test)."""

    info: DatasetInfo
    splits: dict[str, SplitData]
    source: str = ""  # where it was read from, used in error messages

    def __post_init__(self) -> None:
        for name, split in self.splits.items():
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


def _first_nonfinite(values: np.ndarray, chunk: int = 4096) -> int | None:
    """Row index of the first sample with a NaN/Inf value, reading `chunk` rows at a time."""
    for start in range(0, values.shape[0], chunk):
        block = np.asarray(values[start : start + chunk])
        finite = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
        if not finite.all():
            return start + int(np.flatnonzero(~finite)[0])
    return None
