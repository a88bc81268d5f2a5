"""MMSA and MulT feature pickles, read with a restricted unpickler.

Both formats are a dict ``{"train": split, "valid": split, "test": split}``; a split is
a dict of arrays whose first axis is the sample (N).

MMSA (thuiar/MMSA: ``aligned_50.pkl``, ``unaligned_39.pkl``, ``unaligned_50.pkl`` for
MOSI, MOSEI, SIMS and SIMS v2)::

    text (N, Lt, Dt)   audio (N, La, Da)   vision (N, Lv, Dv)   regression_labels (N,)
    audio_lengths, vision_lengths (N,)     absent in aligned files: every step is valid
    text_bert (N, 3, Lt)                   BERT ids / attention mask / segments; only the
                                           mask is used, for the text lengths
    regression_labels_T / _A / _V (N,)     SIMS unimodal labels -> targets label_T/A/V
    id (N,) "videoid$_$clip", raw_text (N,), classification_labels (ignored)

Text lengths come from ``text_lengths`` (written by `write_mmsa_pickle`), else from the
``text_bert`` mask, else as for MulT below.

MulT / CMU-SDK (``mosi_data.pkl``, ``mosi_data_noalign.pkl``, as read by MulT, TeCaFN and
MMIM)::

    text (N, Lt, Dt)   audio (N, La, Da)   vision (N, Lv, Dv)   labels (N, 1, 1)
    id (N, 3) optional: video id, start, end -> "video_start_end"

MulT files carry no lengths: a sample's valid steps run up to its last step that is not
all zeros, so post-padding is masked and pre-padding stays visible, as MulT sees it.

Both tools silently zero the -inf that COVAREP audio features contain; msakit rejects
non-finite features unless ``fix_nonfinite=True``, which zeroes them with a warning.
"""

from __future__ import annotations

import pickle
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from msakit.data.core import SPLITS, DatasetInfo, ModalityArrays, MSADataset, SplitData
from msakit.errors import DataError, UnsafePickleError
from msakit.io import atomic_open

MODALITY_KEYS: dict[str, str] = {"text": "text", "audio": "audio", "vision": "visual"}  # pickle key -> modality
_UNIMODAL = ("T", "A", "V")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """What numpy (1.x or 2.x) pickles reference, resolved without importing anything."""
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 arrays
    scalar = np.float32(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
    }
    for builtins in ("builtins", "__builtin__"):  # protocol 2 spells these as globals
        allowed.update({(builtins, t.__name__): t for t in (set, frozenset, bytearray, complex)})
    for core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x module names
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


_ALLOWED = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], path: Path, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) == ("_codecs", "encode"):  # protocol <= 2 bytes: encode(text, "latin1")
            return self._latin1
        raise UnsafePickleError(
            f"refused to load global {module}.{name} (only numpy arrays are allowed)", path=self.path
        )

    def _latin1(self, text: str, encoding: str = "latin1") -> bytes:
        if encoding not in ("latin1", "latin-1"):
            raise UnsafePickleError(f"refused codec {encoding!r} in _codecs.encode", path=self.path)
        return text.encode("latin1")


def safe_load_pickle(path: str | Path) -> object:
    """Unpickle numpy arrays and plain containers; never run code from the file.

    Raises UnsafePickleError for any other global and DataError for a truncated or
    malformed file. Python 2 pickles are retried with ``encoding="latin1"``.
    """
    path = Path(path)
    for encoding in ("ASCII", "latin1"):
        try:
            with path.open("rb") as file:
                return _RestrictedUnpickler(file, path, encoding=encoding).load()
        except UnsafePickleError:
            raise
        except OSError as exc:
            raise DataError(f"cannot read: {exc}", path=path) from exc
        except UnicodeDecodeError:
            if encoding == "latin1":
                raise DataError("cannot decode the pickle's strings", path=path) from None
        except Exception as exc:  # a malformed stream fails in pickle, numpy or builtins alike
            raise DataError(f"not a valid pickle ({type(exc).__name__}: {exc})", path=path) from exc
    raise AssertionError("unreachable")


def read_pickle_dataset(path: str | Path, *, fix_nonfinite: bool = False) -> MSADataset:
    """Read an MMSA or MulT pickle (told apart by their label key) into an MSADataset."""
    path = Path(path)
    data = safe_load_pickle(path)
    found = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
    if not isinstance(data, Mapping) or not all(isinstance(data.get(s), Mapping) for s in SPLITS):
        raise DataError(f"expected a dict of split dicts with keys {list(SPLITS)}, found {found}", path=path)
    first = data["train"]
    kind = "mmsa" if "regression_labels" in first else "mult" if "labels" in first else None
    if kind is None:
        raise DataError(
            "split 'train' has neither 'regression_labels' (MMSA) nor 'labels' (MulT); "
            f"found {sorted(map(str, first))}",
            path=path,
            field="labels",
        )
    reader = _SplitReader(path, kind, fix_nonfinite)
    splits: dict[str, SplitData] = {}
    for name in SPLITS:  # a loop, not a comprehension, so the warnings' stacklevel is the same on every Python
        splits[name] = reader.read(name, data[name])
    labels = np.concatenate([s.labels for s in splits.values()])
    sims = labels.size > 0 and float(np.abs(labels).max()) <= 1.0
    info = DatasetInfo(
        name=f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem,
        metric_set="sims" if sims else "mosi",
        label_range=1.0 if sims else 3.0,
        dims={m: int(arr.values.shape[2]) for m, arr in splits["train"].modalities.items()},
        description=f"{'MMSA' if kind == 'mmsa' else 'MulT'} pickle {path.name}",
    )
    return MSADataset(info, splits, source=str(path))


class _SplitReader:
    """Turns one split dict into SplitData; every error names the file, split and field."""

    def __init__(self, path: Path, kind: str, fix_nonfinite: bool) -> None:
        self.path, self.kind, self.fix_nonfinite = path, kind, fix_nonfinite
        self.label_key = "regression_labels" if kind == "mmsa" else "labels"

    def error(self, split: str, field: str, message: str) -> DataError:
        return DataError(f"split {split!r}: {message}", path=self.path, field=field)

    def read(self, split: str, raw: Mapping[str, Any]) -> SplitData:
        missing = [k for k in (*MODALITY_KEYS, self.label_key) if k not in raw]
        if missing:
            raise self.error(split, missing[0], f"missing field(s) {missing} (found {sorted(map(str, raw))})")
        labels = self.per_sample(split, self.label_key, raw[self.label_key], None, np.float32)
        n = len(labels)
        modalities = {}
        for key, modality in MODALITY_KEYS.items():
            values = self.features(split, key, raw[key], n)
            lengths = self.lengths(split, key, raw, values)
            modalities[modality] = ModalityArrays(values=values, lengths=lengths, present=lengths > 0)
        ids = [f"{split}_{i:05d}" for i in range(n)]
        if raw.get("id") is not None:
            ids = self.strings(split, "id", raw["id"], n)
        raw_text = self.strings(split, "raw_text", raw["raw_text"], n) if raw.get("raw_text") is not None else None
        if raw_text is not None and not any(raw_text):
            raw_text = None  # write_mmsa_pickle's placeholder when there were no transcripts
        targets = {
            f"label_{m}": self.per_sample(split, f"regression_labels_{m}", raw[f"regression_labels_{m}"], n, np.float32)
            for m in _UNIMODAL
            if self.kind == "mmsa" and f"regression_labels_{m}" in raw
        }
        return SplitData(labels=labels, ids=ids, modalities=modalities, raw_text=raw_text, targets=targets)

    def per_sample(self, split: str, key: str, value: Any, n: int | None, dtype: type) -> np.ndarray:
        """A (N,) array; (N, 1, ...) is accepted, as MulT stores labels as (N, 1, 1)."""
        try:
            given = np.asarray(value)
            if given.dtype.kind not in "iufO" or given.dtype.fields is not None:
                raise TypeError(f"dtype {given.dtype}")
            arr: np.ndarray = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise self.error(split, key, f"not numeric: {exc}") from exc
        if dtype is np.int64 and not (np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2**62)).all():
            raise self.error(split, key, "must hold whole numbers (found NaN, Inf or fractions)")
        arr = arr.astype(dtype)
        if arr.ndim == 0 or arr.size != arr.shape[0] or (n is not None and arr.shape[0] != n):
            expected = f"({n},)" if n is not None else "(N,) or (N, 1, 1)"
            raise self.error(split, key, f"has shape {arr.shape}, expected {expected} (one value per sample)")
        return arr.reshape(-1)

    def features(self, split: str, key: str, value: Any, n: int) -> np.ndarray:
        try:
            given = np.asarray(value)
            if given.dtype.kind not in "fO" or given.dtype.fields is not None:
                raise TypeError(f"dtype {given.dtype}, expected floating point features")
            values = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise self.error(split, key, f"not a numeric array: {exc}") from exc
        if values.ndim != 3 or values.shape[0] != n:
            raise self.error(split, key, f"has shape {values.shape}, expected ({n}, L, D) for {n} labels")
        bad = ~np.isfinite(values)
        count = int(bad.sum())
        if count and not self.fix_nonfinite:
            raise self.error(split, key, f"{count} NaN/Inf values; pass fix_nonfinite=True to zero them")
        if count:
            values[bad] = 0.0
            warnings.warn(f"{self.path}: split {split!r}: zeroed {count} NaN/Inf values in {key!r}", stacklevel=4)
        return values

    def lengths(self, split: str, key: str, raw: Mapping[str, Any], values: np.ndarray) -> np.ndarray:
        n, steps = values.shape[:2]
        if self.kind == "mult":
            return _last_nonzero_step(values)
        lengths_key, text_bert = f"{key}_lengths", raw.get("text_bert")
        if raw.get(lengths_key) is not None:
            lengths = self.per_sample(split, lengths_key, raw[lengths_key], n, np.int64)
        elif key == "text" and text_bert is not None and np.shape(text_bert)[:2] == (n, 3) and np.ndim(text_bert) == 3:
            lengths = (np.asarray(text_bert)[:, 1] != 0).sum(axis=1)  # row 1 is the attention mask
        elif key == "text":
            return _last_nonzero_step(values)
        else:
            return np.full(n, steps, dtype=np.int64)  # aligned files: every step is valid
        if (lengths < 0).any():
            raise self.error(split, lengths_key, "negative lengths")
        if (lengths > steps).any():  # lengths counted before truncation to L steps
            warnings.warn(f"{self.path}: split {split!r}: {lengths_key} clipped to {steps} steps", stacklevel=4)
        return np.minimum(lengths, steps).astype(np.int64)

    def strings(self, split: str, key: str, value: Any, n: int) -> list[str]:
        """Ids or transcripts; an (N, k) id array (MulT: video, start, end) is joined with "_"."""
        arr = np.asarray(value, dtype=object)
        if arr.ndim not in (1, 2) or arr.shape[0] != n:
            raise self.error(split, key, f"has shape {arr.shape}, expected ({n},) or ({n}, k)")
        rows = arr.reshape(n, -1)
        return ["_".join(_text(x) for x in row) for row in rows]


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _last_nonzero_step(values: np.ndarray) -> np.ndarray:
    """(N, L, D) -> (N,): steps up to and including the last step that is not all zeros."""
    nonzero = (values != 0).any(axis=2)  # (N, L)
    last_from_end = nonzero[:, ::-1].argmax(axis=1)
    return np.where(nonzero.any(axis=1), values.shape[1] - last_from_end, 0).astype(np.int64)


def write_mmsa_pickle(dataset: MSADataset, out_path: str | Path, *, overwrite: bool = False) -> Path:
    """Export a regression dataset with text, audio and visual as an MMSA-style pickle.

    Written atomically (temporary sibling, then rename). There is no ``text_bert``: our
    text features are already encoded, so MMSA must run with ``use_bert=False``. MMSA
    reads ``raw_text`` unconditionally, so a dataset without transcripts gets empty
    strings (read back as no transcripts). ``text_lengths`` is an msakit extension
    that MMSA ignores.
    """
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise DataError("output exists; pass overwrite=True to replace it", path=out)
    if dataset.info.num_classes != 1:
        raise DataError("MMSA pickles hold regression labels; this dataset is a classification one", path=out)
    lacking = [m for m in MODALITY_KEYS.values() if m not in dataset.info.dims]
    if lacking:
        raise DataError(f"MMSA pickles need text, audio and visual; the dataset lacks {lacking}", path=out)
    payload = {name: _mmsa_split(split) for name, split in dataset}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as file:
        pickle.dump(payload, file, protocol=4)  # protocol 4: Python >= 3.4
    return out


def _mmsa_split(split: SplitData) -> dict[str, Any]:
    n = len(split)
    raw: dict[str, Any] = {
        "id": np.asarray(split.ids, dtype=object),
        "raw_text": np.asarray(split.raw_text if split.raw_text is not None else [""] * n, dtype=object),
        "regression_labels": np.asarray(split.labels, dtype=np.float32),
    }
    for key, modality in MODALITY_KEYS.items():
        arr = split.modalities[modality]
        raw[key] = np.asarray(arr.values, dtype=np.float32)
        raw[f"{key}_lengths"] = np.where(np.asarray(arr.present, dtype=bool), arr.lengths, 0).astype(np.int64)
    for m in _UNIMODAL:
        if f"label_{m}" in split.targets:
            raw[f"regression_labels_{m}"] = np.asarray(split.targets[f"label_{m}"], dtype=np.float32)
    return raw


__all__ = ["MODALITY_KEYS", "read_pickle_dataset", "safe_load_pickle", "write_mmsa_pickle"]
