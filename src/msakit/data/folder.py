"""msakit's open dataset format: a folder any tool can write.

    DIR/
      meta.json           {"format": "msakit-dataset", "version": 1, "name", "metric_set",
                           "num_classes", "label_range", "class_names",
                           "modalities": {"text": {"dim": 384, ...extractor metadata}}}
      labels.csv          id, split, label[, text]  (split in train / valid / test)
      <modality>.npy      (N_m, L, D) float32 or float16, memory-mapped on read
      <modality>.lengths.npy  (N_m,) valid steps per row
      <modality>.ids.txt  N_m ids, one per line: row r of the arrays belongs to that id

Arrays are keyed by id, so a modality may cover a subset of the samples (the others
are absent for it) and rows need not follow labels.csv. Reading never loads the arrays
into memory: `np.load(mmap_mode="r")`, gathered per batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from msakit.batch import MODALITIES
from msakit.data import validate
from msakit.data.core import SPLITS, DatasetInfo, ModalityArrays, MSADataset, SplitData
from msakit.errors import DataError
from msakit.io import atomic_dir

if TYPE_CHECKING:  # pandas costs ~1 CPU-s to import: the functions that read CSV import it
    import pandas as pd

FORMAT = "msakit-dataset"


def is_dataset_folder(path: str | Path) -> bool:
    return (Path(path) / "meta.json").is_file()


def read_folder(path: str | Path) -> MSADataset:
    """Open a dataset folder; arrays stay memory-mapped."""
    root = Path(path)
    meta = _read_meta(root / "meta.json")
    labels = _read_labels(root / "labels.csv", regression=int(meta.get("num_classes", 1)) == 1)
    dims: dict[str, int] = {}
    rows_by_modality: dict[str, tuple[np.ndarray, np.ndarray, dict[str, int]]] = {}
    for m, mmeta in meta["modalities"].items():
        if m not in MODALITIES:
            raise DataError(f"unknown modality {m!r}; expected one of {MODALITIES}", path=root / "meta.json", field=m)
        values = validate.load_array(root / f"{m}.npy", m)
        lengths = validate.load_array(root / f"{m}.lengths.npy", f"{m}_lengths", lengths=True)
        id_file = root / f"{m}.ids.txt"
        row_ids = validate.read_ids(id_file)
        if values.ndim != 3 or len(row_ids) != values.shape[0] or lengths.shape != (values.shape[0],):
            raise DataError(
                f"{m}.npy has shape {values.shape}, {m}.lengths.npy {lengths.shape} and {m}.ids.txt "
                f"{len(row_ids)} ids; expected (N, L, D), (N,) and N",
                path=root / f"{m}.npy",
                field=m,
            )
        declared = int(mmeta.get("dim", values.shape[2]))
        if declared != values.shape[2]:
            raise DataError(
                f"features are {values.shape[2]}-d, meta.json says {declared}", path=root / f"{m}.npy", field=m
            )
        dims[m] = declared
        rows_by_modality[m] = (values, lengths, {i: r for r, i in enumerate(row_ids)})
    if not dims:
        raise DataError("no modality declared", path=root / "meta.json", field="modalities")
    known = set(labels["id"])
    for m, (_, _, index) in rows_by_modality.items():
        stray = [i for i in index if i not in known]
        if stray:
            raise DataError(
                f"{len(stray)} ids in {m}.ids.txt are not in labels.csv (first: {stray[0]!r})",
                path=root / f"{m}.ids.txt",
                field="id",
            )
    info = DatasetInfo(
        name=str(meta.get("name", root.name)),
        metric_set=str(meta["metric_set"]),
        num_classes=int(meta.get("num_classes", 1)),
        label_range=float(meta.get("label_range", 3.0)),
        dims=dims,
        class_names=tuple(meta.get("class_names", ())),
        description=str(meta.get("description", "")),
        features={m: f for m, f in ((m, feature_set_id(meta["modalities"][m])) for m in dims) if f},
    )
    validate.check_class_labels(labels["label"], info.num_classes, root / "labels.csv", labels["id"].tolist())
    splits: dict[str, SplitData] = {}
    for split in SPLITS:
        part = labels[labels["split"] == split]
        if part.empty:
            continue
        mods = {}
        for m, (values, lengths, index) in rows_by_modality.items():
            rows = np.array([index.get(i, -1) for i in part["id"]], dtype=np.int64)
            mods[m] = _rows_view(values, lengths, rows)
        splits[split] = SplitData(
            labels=part["label"].to_numpy(np.float32 if info.num_classes == 1 else np.int64),
            ids=part["id"].tolist(),
            modalities=mods,
            raw_text=part["text"].fillna("").astype(str).tolist() if "text" in part else None,
        )
        if "dialogue" in part:  # dialogue structure (msakit.data.dialogue): dialogue, turn[, speaker]
            splits[split] = _with_dialogue(splits[split], part, root / "labels.csv")
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DataError(f"split(s) {missing} have no rows", path=root / "labels.csv", field="split")
    return MSADataset(info, splits, source=str(root))


def _with_dialogue(split: SplitData, part: pd.DataFrame, path: Path) -> SplitData:
    import pandas as pd

    from msakit.data.dialogue import DialogueIndex, with_dialogue

    if "turn" not in part:
        raise DataError("a 'dialogue' column needs a 'turn' column", path=path, field="turn")
    turns = pd.to_numeric(part["turn"], errors="coerce")
    if turns.isna().any() or (turns % 1 != 0).any():
        first = part["id"][turns.isna() | (turns % 1 != 0)].iloc[0]
        raise DataError(f"turn is missing or not an integer (first at id {first!r})", path=path, field="turn")
    speakers = part["speaker"].astype(str).tolist() if "speaker" in part else None
    index = DialogueIndex.build(
        part["dialogue"].astype(str).tolist(), turns.to_numpy(np.int64), speakers, ids=split.ids, source=str(path)
    )
    return with_dialogue(split, index)


def feature_set_id(modality_meta: Mapping[str, Any]) -> str:
    """What a modality's features are, from its meta.json entry: extractor (+ model), width.

    E.g. "minilm-l6-v2-tokens (sentence-transformers/all-MiniLM-L6-v2), 384-d". Empty when
    the entry names no extractor (then only the width is checked against a checkpoint).
    """
    extractor = str(modality_meta.get("extractor", ""))
    if not extractor:
        return ""
    model = str(modality_meta.get("model", ""))
    dim = modality_meta.get("dim")
    return extractor + (f" ({model})" if model else "") + (f", {int(dim)}-d" if dim is not None else "")


def _rows_view(values: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> ModalityArrays:
    """The modality's rows for one split, lazily; row -1 means the sample lacks it."""
    present = rows >= 0
    safe_rows = np.where(present, rows, 0)
    return ModalityArrays(
        values=_Gather(values, safe_rows),  # type: ignore[arg-type]
        lengths=np.where(present, np.asarray(lengths)[safe_rows], 0),
        present=present,
    )


class _Gather:
    """Array-like over `values[rows]` that reads only the rows asked for."""

    def __init__(self, values: np.ndarray, rows: np.ndarray) -> None:
        self._values, self._rows = values, rows
        self.shape = (len(rows), *values.shape[1:])
        self.ndim = values.ndim
        self.dtype = values.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
        else:
            first, rest = key, ()
        rows = self._rows[first]
        if np.ndim(rows) == 0:
            return np.asarray(self._values[(int(rows), *rest)])
        order = np.argsort(rows, kind="stable")
        gathered = np.asarray(self._values[(rows[order], *rest)])
        out = np.empty_like(gathered)
        out[order] = gathered
        return out

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr.astype(dtype) if dtype is not None else arr


def _read_meta(path: Path) -> dict[str, Any]:
    meta = validate.read_json(path, "dataset metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"not an msakit dataset (format must be {FORMAT!r})", path=path, field="format")
    for key in ("metric_set", "modalities"):
        if key not in meta:
            raise DataError("required key missing", path=path, field=key)
    validate.check_meta(meta, path)
    return meta


def _read_labels(path: Path, *, regression: bool) -> pd.DataFrame:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"id": str, "split": str}, keep_default_na=False, na_values={"label": [""]})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"cannot read labels: {exc}", path=path) from exc
    for column in ("id", "split", "label"):
        if column not in frame:
            raise DataError("required column missing", path=path, field=column)
    if frame["id"].duplicated().any():
        raise DataError(f"duplicate id {frame['id'][frame['id'].duplicated()].iloc[0]!r}", path=path, field="id")
    bad_split = sorted(set(frame["split"]) - set(SPLITS))
    if bad_split:
        raise DataError(f"unknown split value(s) {bad_split}; expected {SPLITS}", path=path, field="split")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if labels.isna().any() or not np.isfinite(labels.to_numpy(float)).all():
        first = frame["id"][labels.isna() | ~np.isfinite(labels.fillna(0))].iloc[0]
        raise DataError(f"label is missing, non-numeric, NaN or Inf (first at id {first!r})", path=path, field="label")
    frame["label"] = labels
    return frame


def write_folder(
    out: str | Path,
    info: DatasetInfo,
    labels: pd.DataFrame,
    modalities: Mapping[str, tuple[np.ndarray, np.ndarray, list[str]]],
    *,
    modality_meta: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Write a dataset folder atomically (`msakit.io.atomic_dir`): into a temporary sibling, then rename.

    labels: columns id, split, label[, text]. modalities: name -> (values (N, L, D),
    lengths (N,), ids). Nothing is left half-written if anything fails.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError("output exists; pass overwrite=True (CLI: --overwrite) to replace it", path=out)
    with atomic_dir(out) as tmp:
        meta = {
            "format": FORMAT,
            "version": 1,
            **{k: v for k, v in asdict(info).items() if k not in ("dims", "features")},  # both live per modality
            "modalities": {},
        }
        for m, (values, lengths, ids) in modalities.items():
            np.save(tmp / f"{m}.npy", values)
            np.save(tmp / f"{m}.lengths.npy", np.asarray(lengths, dtype=np.int32))
            (tmp / f"{m}.ids.txt").write_text("\n".join(ids) + "\n")
            meta["modalities"][m] = {
                "dim": int(values.shape[2]),
                "max_len": int(values.shape[1]),
                **dict((modality_meta or {}).get(m, {})),
            }
        labels.to_csv(tmp / "labels.csv", index=False)
        for name, text in (extra_files or {}).items():  # e.g. extract's errors.csv: in place with the rest
            (tmp / name).write_text(text)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return out
