"""Checks at the boundary of every dataset reader: one `DataError` naming the file and field.

The readers (`folder.py`, `pickles.py`, `h5.py`) and `core.validate_split` call these so
that a malformed input is refused where it is read, before it can crash training later
or be accepted silently: meta.json field types, array dtypes (features must be floating
point; lengths whole numbers), id files (UTF-8, no duplicates), class labels (whole
numbers in ``[0, num_classes)``) and splits that have no features at all.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from msakit.errors import DataError

if TYPE_CHECKING:
    from msakit.data.core import DatasetInfo, SplitData

#: splits that must hold at least one sample with features (selection runs on `valid`)
NEED_FEATURES = ("train", "valid")


def read_json(path: Path, what: str = "metadata") -> Any:
    """A JSON file's value; DataError for an unreadable, non-UTF-8, malformed or absurdly nested file."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read {what}: {exc.strerror or exc}", path=path) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from exc
    except RecursionError:
        raise DataError(f"{what} is nested too deeply to be JSON msakit wrote", path=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} is not valid JSON: {exc}", path=path) from exc


def check_meta(meta: dict[str, Any], path: Path) -> None:
    """Field types of a dataset folder's meta.json (required keys are checked by the reader)."""

    def bad(field: str, expected: str) -> DataError:
        return DataError(f"must be {expected}, got {meta[field]!r}", path=path, field=field)

    if not isinstance(meta.get("metric_set"), str):
        raise bad("metric_set", "a string")
    for key in ("name", "description"):
        if key in meta and not isinstance(meta[key], str):
            raise bad(key, "a string")
    if "num_classes" in meta and (not _is_int(meta["num_classes"]) or meta["num_classes"] < 1):
        raise bad("num_classes", "a whole number >= 1 (1 = regression)")
    if "label_range" in meta and (not _is_real(meta["label_range"]) or not meta["label_range"] > 0):
        raise bad("label_range", "a finite number > 0")
    if "class_names" in meta:
        names = meta["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad("class_names", "a list of strings")
        classes = meta.get("num_classes", 1)
        if names and classes > 1 and len(names) != classes:
            raise DataError(f"{len(names)} class names for {classes} classes", path=path, field="class_names")
    modalities = meta["modalities"]
    if not isinstance(modalities, dict):
        raise bad("modalities", 'an object {"<modality>": {"dim": D, ...}}')
    for m, entry in modalities.items():
        if not isinstance(entry, dict):
            raise DataError(f'must be an object {{"dim": D, ...}}, got {entry!r}', path=path, field=f"modalities.{m}")
        if "dim" in entry and (not _is_int(entry["dim"]) or entry["dim"] < 1):
            raise DataError(f"must be a whole number >= 1, got {entry['dim']!r}", path=path, field=f"{m}.dim")


def load_array(path: Path, field: str, *, lengths: bool = False) -> np.ndarray:
    """`np.load(path, mmap_mode="r")` of a feature (or lengths) array, with its dtype checked."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, OverflowError, EOFError, zipfile.BadZipFile, SyntaxError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise DataError(f"cannot read array: {reason}", path=path, field=field) from exc
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise DataError("is an .npz archive, expected one .npy array", path=path, field=field)
    return check_lengths(array, path, field) if lengths else check_features(array, path, field)


def check_features(array: np.ndarray, path: object, field: str) -> np.ndarray:
    """Features must be real floating point: ints, bools, complex, strings, records are refused."""
    if array.dtype.kind != "f" or array.dtype.fields is not None:
        raise DataError(
            f"features have dtype {array.dtype}; expected float16/32/64 (convert explicitly if {array.dtype} "
            "values are really features)",
            path=path,
            field=field,
        )
    return array


def check_lengths(array: np.ndarray, path: object, field: str) -> np.ndarray:
    """Lengths must be whole, finite numbers (an integer dtype, or floats holding whole numbers)."""
    kind = array.dtype.kind
    if array.dtype.fields is not None or kind not in "iuf":
        raise DataError(f"lengths have dtype {array.dtype}; expected integers", path=path, field=field)
    if kind == "f":
        values = np.asarray(array)
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            first = np.flatnonzero(bad.reshape(-1))[0]
            raise DataError(
                f"lengths must be whole numbers; row {first} holds {values.reshape(-1)[first]}", path=path, field=field
            )
    return array


def read_ids(path: Path) -> list[str]:
    """One id per line, UTF-8, no duplicates, no blank ids."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path=path, field="id") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text (line {line}: {exc.reason})", path=path, field="id") from exc
    ids = text.splitlines()
    seen: dict[str, int] = {}
    for n, i in enumerate(ids, start=1):
        if not i.strip():
            raise DataError(f"line {n} is blank (one id per line)", path=path, field="id")
        if i in seen:
            raise DataError(f"id {i!r} is on lines {seen[i]} and {n} (one row per id)", path=path, field="id")
        seen[i] = n
    return ids


def check_class_labels(labels: Any, num_classes: int, path: object, ids: Sequence[str]) -> None:
    """Class labels must be whole numbers in [0, num_classes); no-op for regression."""
    if num_classes <= 1:
        return
    values = np.asarray(labels, dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values >= num_classes)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"class label {values[k]:g} at id {ids[k]!r} is not a class index in 0..{num_classes - 1}",
            path=path,
            field="label",
        )


def check_split(split: SplitData, info: DatasetInfo, fail: Any, split_name: str) -> None:
    """Dtype, length, label and has-features checks of one split (`fail(message, field)` builds the error)."""
    n = len(split.ids)
    for m, arr in split.modalities.items():
        kind = np.dtype(arr.values.dtype).kind
        if kind != "f":
            raise fail(f"{m} features have dtype {arr.values.dtype}; expected floating point", m)
        lengths = np.asarray(arr.lengths)
        if lengths.dtype.kind not in "iuf" or (
            lengths.dtype.kind == "f" and not (np.isfinite(lengths) & (lengths == np.round(lengths))).all()
        ):
            raise fail(f"{m} lengths must be whole numbers (dtype {lengths.dtype}, NaN or fractions)", f"{m}_lengths")
    if info.num_classes > 1 and n:
        try:
            check_class_labels(split.labels, info.num_classes, None, split.ids)
        except DataError as exc:
            raise fail(str(exc), "label") from None
    if split_name in NEED_FEATURES and n and split.modalities:
        has_any = np.zeros(n, dtype=bool)
        for arr in split.modalities.values():
            has_any |= np.asarray(arr.present, dtype=bool) & (np.asarray(arr.lengths) > 0)
        if not has_any.any():
            raise fail(f"none of its {n} samples has features in any modality", "modalities")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
