"""Dialogue structure: which utterances form a conversation, in what order, by whom.

A dialogue dataset's split is a `DialogueSplit`: a `SplitData` that also holds a
`DialogueIndex` (per sample: dialogue id, turn index, speaker) and attaches to every
batch a `DialogueContext` with each sample's preceding turns (up to `window`, the
newest last, mean-pooled features per modality). The structure travels in the batch,
so models read `batch.context` and nothing else.

`DialogueBatches` is the dialogue-ordered sampler (the `Sampler` protocol of
`msakit.data.core`): whole dialogues in a seeded random order, each in turn order,
packed into batches; a dialogue longer than a batch continues in the next one.

In the folder format the columns `dialogue`, `turn` and `speaker` of labels.csv carry
the structure (`msakit data prepare meld` writes them); turns must increase within a
dialogue in file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from msakit.batch import MODALITIES, Batch, DialogueContext
from msakit.data.core import SplitData
from msakit.errors import ConfigError, DataError

#: preceding turns a batch carries unless the reader is told otherwise
DEFAULT_WINDOW = 8


def check_window(window: int, *, owner: str) -> None:
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        raise ConfigError(f"{owner}: context_window must be a positive number of turns, got {window!r}")


@dataclass(frozen=True)
class DialogueIndex:
    """Per-sample dialogue id, turn and speaker, and each sample's preceding turns.

    previous: (N, window) row indices of the preceding turns in the split, right-aligned
    (newest at window-1), -1 where there is none.
    """

    dialogue_ids: tuple[str, ...]
    turns: np.ndarray  # (N,) int64
    speakers: tuple[str, ...]
    window: int = DEFAULT_WINDOW
    previous: np.ndarray = field(init=False, repr=False)

    @classmethod
    def build(
        cls,
        dialogue_ids: Sequence[str],
        turns: Sequence[int] | np.ndarray,
        speakers: Sequence[str] | None = None,
        *,
        window: int = DEFAULT_WINDOW,
        ids: Sequence[str] | None = None,
        source: str = "dialogue",
    ) -> DialogueIndex:
        """Validate and index; DataError naming the field on out-of-order or repeated turns."""
        check_window(window, owner=source)
        n = len(dialogue_ids)
        turn_arr = np.asarray(turns)
        if turn_arr.shape != (n,) or (speakers is not None and len(speakers) != n):
            raise DataError(f"{n} dialogue ids but {turn_arr.shape} turns", path=source, field="turn")
        if turn_arr.dtype.kind not in "iu" or (turn_arr < 0).any():
            raise DataError("turn indices must be non-negative integers", path=source, field="turn")
        names = ids if ids is not None else [str(i) for i in range(n)]
        last: dict[str, tuple[int, int]] = {}  # dialogue -> (turn, row) of its latest row so far
        for row, (d, t) in enumerate(zip(dialogue_ids, turn_arr.tolist(), strict=True)):
            if d in last and t <= last[d][0]:
                raise DataError(
                    f"turn indices out of order in dialogue {d!r}: turn {t} (id {names[row]!r}) comes after "
                    f"turn {last[d][0]} (id {names[last[d][1]]!r}); turns must increase within a dialogue",
                    path=source,
                    field="turn",
                )
            last[d] = (t, row)
        index = cls(tuple(dialogue_ids), turn_arr.astype(np.int64), tuple(speakers or [""] * n), window)
        object.__setattr__(index, "previous", _previous_rows(index.dialogue_ids, window))
        return index

    def __len__(self) -> int:
        return len(self.dialogue_ids)

    def dialogues(self) -> dict[str, list[int]]:
        """Dialogue id -> its rows in turn order (first appearance order of dialogues)."""
        out: dict[str, list[int]] = {}
        for row, d in enumerate(self.dialogue_ids):
            out.setdefault(d, []).append(row)
        return out


def _previous_rows(dialogue_ids: Sequence[str], window: int) -> np.ndarray:
    prev = np.full((len(dialogue_ids), window), -1, dtype=np.int64)
    history: dict[str, list[int]] = {}
    for row, d in enumerate(dialogue_ids):
        before = history.setdefault(d, [])
        last = before[-window:]
        if last:
            prev[row, window - len(last) :] = last
        before.append(row)
    return prev


@dataclass
class DialogueSplit(SplitData):
    """A split whose batches carry `DialogueContext` (see the module docstring)."""

    dialogue: DialogueIndex | None = None
    _pooled: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.dialogue is None or len(self.dialogue) != len(self.ids):
            got = "none" if self.dialogue is None else len(self.dialogue)
            raise DataError(f"dialogue index has {got} rows for {len(self.ids)} samples", field="dialogue")

    def pooled(self, modality: str) -> np.ndarray:
        """(N, D) mean over each sample's valid steps (zeros where absent), computed once."""
        if modality not in self._pooled:
            arr = self.modalities[modality]
            n, d = arr.values.shape[0], arr.values.shape[2]
            out = np.zeros((n, d), dtype=np.float32)
            for start in range(0, n, 1024):
                block = np.asarray(arr.values[start : start + 1024], dtype=np.float32)
                lengths = arr.lengths[start : start + 1024] * arr.present[start : start + 1024]
                steps = np.arange(block.shape[1])[None, :] < lengths[:, None]
                out[start : start + len(block)] = (block * steps[..., None]).sum(1) / np.maximum(lengths, 1)[:, None]
            self._pooled[modality] = out
        return self._pooled[modality]

    def batch(self, indices: Sequence[int]) -> Batch:
        batch = super().batch(indices)
        batch.context = self.context(indices)
        return batch

    def context(self, indices: Sequence[int]) -> DialogueContext:
        assert self.dialogue is not None  # checked in __post_init__
        index, idx = self.dialogue, np.asarray(indices, dtype=np.int64)
        prev = index.previous[idx]  # (B, K)
        exists = prev >= 0
        safe = np.where(exists, prev, 0)
        features, present = {}, np.zeros((*prev.shape, len(MODALITIES)), dtype=bool)
        for m in MODALITIES:
            if m not in self.modalities:
                continue
            has = self.modalities[m].present[safe] & exists  # (B, K)
            present[:, :, MODALITIES.index(m)] = has
            features[m] = torch.from_numpy(self.pooled(m)[safe] * has[..., None])  # (B, K, D)
        speakers = np.asarray(index.speakers, dtype=object)
        same = (speakers[safe] == speakers[idx][:, None]) & exists
        return DialogueContext(
            dialogue_ids=[index.dialogue_ids[i] for i in idx],
            turns=torch.from_numpy(index.turns[idx]),
            speakers=[index.speakers[i] for i in idx],
            features=features,
            mask=torch.from_numpy(exists),
            present=torch.from_numpy(present),
            same_speaker=torch.from_numpy(same.astype(bool)),
        )


def with_dialogue(split: SplitData, index: DialogueIndex) -> DialogueSplit:
    """`split` as a DialogueSplit with `index` (same arrays, no copy)."""
    return DialogueSplit(
        labels=split.labels,
        ids=split.ids,
        modalities=split.modalities,
        raw_text=split.raw_text,
        targets=split.targets,
        dialogue=index,
    )


@dataclass(frozen=True)
class DialogueBatches:
    """Dialogue-ordered sampler: whole dialogues (seeded shuffle of their order), turns in order."""

    def batches(self, split: SplitData, batch_size: int, *, shuffle: bool, seed: int) -> list[list[int]]:
        if not isinstance(split, DialogueSplit) or split.dialogue is None:
            raise DataError(
                "the dialogue-ordered sampler needs a dialogue dataset (dialogue/turn columns)", field="dialogue"
            )
        groups = list(split.dialogue.dialogues().values())
        if shuffle:
            order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist()
            groups = [groups[i] for i in order]
        flat = [row for g in groups for row in g]
        return [flat[i : i + batch_size] for i in range(0, len(flat), batch_size)]


def carryover_labels(
    rng: np.random.Generator, n: int, turns_per_dialogue: int, carry: float
) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Synthetic dialogues: labels y_t = carry·y_{t-1} + √(1 − carry²)·ε, ε ~ N(0, 1.5²), clipped to [-3, 3].

    Returns labels (n,), dialogue ids, turns (n,) and speakers (two alternating speakers).
    """
    if not 0.0 <= carry < 1.0:
        raise ConfigError(f"synthetic dialogue: carryover must be in [0, 1), got {carry}")
    turns = np.arange(n) % turns_per_dialogue
    dialogue = np.arange(n) // turns_per_dialogue
    y = np.zeros(n)
    for i in range(n):
        fresh = rng.normal(0.0, 1.5)
        y[i] = fresh if turns[i] == 0 else carry * y[i - 1] + np.sqrt(1.0 - carry**2) * fresh
    labels = np.clip(y, -3, 3).round(1).astype(np.float32)
    return labels, [f"d{k:04d}" for k in dialogue], turns.astype(np.int64), [f"s{t % 2}" for t in turns]


__all__ = [
    "DEFAULT_WINDOW",
    "DialogueBatches",
    "DialogueIndex",
    "DialogueSplit",
    "carryover_labels",
    "check_window",
    "with_dialogue",
]
