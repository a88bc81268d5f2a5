"""MFN-style HDF5 datasets (``<modality>_{train,valid,test}.h5`` + ``y_<split>.h5``) in msakit's format.

The Memory Fusion Network release (Zadeh et al. 2018) ships YouTube and ICT-MMMO as one
HDF5 file per modality and split, each with a single array (key ``d1``): audio
``audio_<split>.h5`` (N, L, 74) COVAREP, video ``video_<split>.h5`` (N, L, 36) FACET,
text ``text_<split>_emb.h5`` (N, L, 300) GloVe where it exists, and labels
``y_<split>.h5``, either (N,) / (N, 1) regression scores or (N, C) one-hot classes.
`read_mfn_h5` reads any such folder from an `H5Layout` that says how to read the labels;
``msakit data prepare youtube|mmmo`` are two fixed layouts and ``msakit data prepare h5``
takes the layout from options, so a new set of this kind needs no code.

Per sample, a modality whose every step is all zeros is stored as absent (MFN pads
missing clips with zeros); lengths run to the last non-zero step. Ids are
``<split>_<row>``. A modality whose files exist for only some splits (the GloVe text of
YouTube and MMMO exists for valid/test only) is read only when ``include_text`` asks for
it, and is then absent from every sample of the other splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from msakit.data.core import METRIC_SETS, SPLITS, DatasetInfo
from msakit.errors import ConfigError, DataError

# msakit modality -> file pattern in MFN's layout
SOURCES = {"audio": "audio_{}.h5", "visual": "video_{}.h5", "text": "text_{}_emb.h5"}
LABEL_KINDS = ("regression", "onehot")


@dataclass(frozen=True)
class H5Layout:
    """How to read one MFN-style dataset.

    labels: "regression" ((N,) or (N, 1) scores, stored as ``score + label_shift``) or
        "onehot" ((N, C) rows with a single 1, stored as the class index).
    label_range: the |label| bound after the shift (regression; recorded in meta.json).
    extractors: modality -> the feature description written to meta.json.
    """

    name: str
    title: str
    labels: str = "regression"
    metric_set: str = "mosi"
    label_shift: float = 0.0
    label_range: float = 3.0
    class_names: tuple[str, ...] = ()
    extractors: tuple[tuple[str, str], ...] = (
        ("audio", "covarep-74d (MFN)"),
        ("visual", "facet-36d (MFN)"),
        ("text", "glove-300d (MFN)"),
    )

    def __post_init__(self) -> None:
        if self.labels not in LABEL_KINDS:
            raise ConfigError(f"h5 labels must be one of {LABEL_KINDS}, got {self.labels!r}")
        if self.metric_set not in METRIC_SETS:
            raise ConfigError(f"h5 metric_set must be one of {METRIC_SETS}, got {self.metric_set!r}")
        if (self.labels == "onehot") != (self.metric_set == "classification"):
            raise ConfigError(
                f"h5 labels {self.labels!r} need metric_set 'classification' exactly when one-hot, "
                f"got {self.metric_set!r}"
            )
        if self.label_range <= 0:
            raise ConfigError(f"h5 label_range must be positive, got {self.label_range}")


class H5Data(NamedTuple):
    info: DatasetInfo
    labels: pd.DataFrame  # id, split, label
    modalities: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]
    modality_meta: dict[str, dict[str, Any]]


def read_h5_array(path: Path, ndim: Sequence[int]) -> np.ndarray:
    """The file's single array (MFN uses key "d1"; "data" is accepted too) as float64."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            keys = list(h5.keys())
            key = next((k for k in ("data", "d1") if k in h5), keys[0] if len(keys) == 1 else None)
            if key is None or not isinstance(h5[key], h5py.Dataset):
                raise DataError(f"expected one dataset (key 'data' or 'd1'), found keys {keys}", path=path)
            raw = np.asarray(h5[key][()])
            if raw.dtype.kind not in "fiu" or raw.dtype.fields is not None:  # complex, bool, strings, records
                raise DataError(f"array has dtype {raw.dtype}; expected real numbers", path=path, field=key)
            values = raw.astype(np.float64)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read HDF5: {exc}", path=path) from exc
    except RecursionError as exc:
        raise DataError(f"cannot read HDF5: {exc}", path=path) from exc
    if values.ndim not in ndim:
        raise DataError(f"array has shape {values.shape}, expected {' or '.join(map(str, ndim))} dims", path=path)
    return values


def check_finite(values: np.ndarray, ids: Sequence[str], path: Path, field_name: str) -> None:
    bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} rows have NaN or Inf values (first: id {ids[int(np.flatnonzero(bad)[0])]!r})",
            path=path,
            field=field_name,
        )


def step_lengths(values: np.ndarray) -> np.ndarray:
    """(N, L, D) -> (N,) steps up to and including the last step that is not all zeros."""
    nonzero = (values != 0).any(axis=2)  # (N, L)
    last = values.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 0).astype(np.int64)


def _labels(layout: H5Layout, path: Path, ids: list[str]) -> tuple[np.ndarray, int]:
    """(N,) labels and the number of classes (1 for regression)."""
    y = read_h5_array(path, ndim=(1, 2))
    if layout.labels == "onehot":
        width = len(layout.class_names) or (y.shape[1] if y.ndim == 2 else 0)
        if y.ndim != 2 or y.shape[1] != width or width < 2:
            want = f"(N, {width})" if width >= 2 else "(N, C >= 2)"
            raise DataError(f"labels have shape {y.shape}, expected {want} one-hot", path=path, field="label")
        bad = (~np.isin(y, (0.0, 1.0))).any(axis=1) | (y.sum(axis=1) != 1)
        if bad.any():
            raise DataError(
                f"label row of id {ids[int(np.flatnonzero(bad)[0])]!r} is not one-hot", path=path, field="label"
            )
        return y.argmax(1).astype(np.int64), width
    if y.ndim == 2 and y.shape[1] != 1:
        raise DataError(f"labels have shape {y.shape}, expected (N,) or (N, 1) scores", path=path, field="label")
    y = y.reshape(len(y)) + layout.label_shift
    check_finite(y, ids, path, "label")
    return y, 1


def read_mfn_h5(
    folder: Path,
    layout: H5Layout,
    *,
    include_text: bool = False,
    fix_nonfinite: bool = False,
    drop_empty: bool = False,
) -> H5Data:
    """Read ``folder`` laid out as MFN's HDF5 release; see the module docstring."""
    present_files = {m: [s for s in SPLITS if (folder / p.format(s)).is_file()] for m, p in SOURCES.items()}
    wanted = [m for m in SOURCES if m != "text" or include_text]
    for m in wanted:  # audio and video must exist for every split; text wherever it was released
        need = SPLITS if m != "text" else (present_files["text"] or SPLITS)
        for s in need:
            if not (folder / SOURCES[m].format(s)).is_file():
                raise DataError("source file is missing", path=folder / SOURCES[m].format(s))
    for s in SPLITS:
        if not (folder / f"y_{s}.h5").is_file():
            raise DataError("source file is missing", path=folder / f"y_{s}.h5")
    ids_by_split: dict[str, list[str]] = {}
    label_parts: list[np.ndarray] = []
    widths: set[int] = set()
    arrays: dict[str, list[tuple[str, np.ndarray]]] = {m: [] for m in wanted}
    fixed: dict[str, dict[str, int]] = {m: {} for m in wanted}  # modality -> file -> values set to 0
    for split in SPLITS:
        y_path = folder / f"y_{split}.h5"
        n = len(read_h5_array(y_path, ndim=(1, 2)))
        ids = [f"{split}_{k}" for k in range(n)]
        y, width = _labels(layout, y_path, ids)
        label_parts.append(y)
        widths.add(width)
        if len(widths) > 1:
            raise DataError(f"labels have {width} classes here, other splits {sorted(widths - {width})}", path=y_path)
        ids_by_split[split] = ids
        for m in wanted:
            path = folder / SOURCES[m].format(split)
            if not path.is_file():  # text of a split that has none: absent for these samples
                continue
            values = read_h5_array(path, ndim=(3,))
            if len(values) != n:
                raise DataError(f"{len(values)} rows but {y_path.name} has {n}", path=path, field=m)
            nonfinite = ~np.isfinite(values)
            if nonfinite.any():
                if not fix_nonfinite:
                    check_finite(values, ids, path, m)
                fixed[m][path.name] = int(nonfinite.sum())
                values = np.where(nonfinite, 0.0, values)
            arrays[m].append((split, values))
    labels = pd.DataFrame(
        {
            "id": [i for s in SPLITS for i in ids_by_split[s]],
            "split": [s for s in SPLITS for _ in ids_by_split[s]],
            "label": np.concatenate(label_parts),
        }
    )
    extractors = dict(layout.extractors)
    modalities: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    modality_meta: dict[str, dict[str, Any]] = {}
    for m, parts in arrays.items():
        shapes = {v.shape[1:] for _, v in parts}
        if len(shapes) != 1:
            raise DataError(f"{m} arrays differ in (steps, dim) across splits: {sorted(shapes)}", path=folder, field=m)
        values = np.concatenate([v for _, v in parts]).astype(np.float32)
        ids = [i for s, _ in parts for i in ids_by_split[s]]
        lengths = step_lengths(values)
        keep = lengths > 0  # an all-zero sequence carries nothing: store it as absent
        modalities[m] = (values[keep], lengths[keep], [i for i, k in zip(ids, keep, strict=True) if k])
        modality_meta[m] = {"extractor": extractors.get(m, m), "absent_rows": int((~keep).sum())}
        if fixed[m]:
            modality_meta[m]["nonfinite_set_to_zero"] = fixed[m]
        splits = [s for s, _ in parts]
        if splits != list(SPLITS):
            modality_meta[m]["splits"] = splits
    if drop_empty:
        has_any = set().union(*(set(ids) for _, _, ids in modalities.values()))
        labels = labels[labels["id"].isin(has_any)].reset_index(drop=True)
        for split in SPLITS:
            if not (labels["split"] == split).any():
                raise DataError(f"drop_empty leaves no {split} samples", path=folder, field="split")
    classification = layout.labels == "onehot"
    if not classification:
        labels["label"] = labels["label"].astype(np.float64)
        bound = float(np.abs(labels["label"]).max())
        if bound > layout.label_range + 1e-9:
            raise DataError(
                f"labels reach {bound:g} after the shift of {layout.label_shift:g}, beyond label_range "
                f"{layout.label_range:g}",
                path=folder / "y_train.h5",
                field="label",
            )
    info = DatasetInfo(
        name=layout.name,
        metric_set=layout.metric_set,
        num_classes=widths.pop(),
        label_range=layout.label_range,
        dims={m: v.shape[2] for m, (v, _, _) in modalities.items()},
        class_names=layout.class_names,
        description=f"{layout.title} prepared by msakit from {folder}"
        + (f" (labels shifted by {layout.label_shift:g})" if layout.label_shift else ""),
    )
    return H5Data(info, labels, modalities, modality_meta)


__all__ = [
    "LABEL_KINDS",
    "SOURCES",
    "H5Data",
    "H5Layout",
    "check_finite",
    "read_h5_array",
    "read_mfn_h5",
    "step_lengths",
]
