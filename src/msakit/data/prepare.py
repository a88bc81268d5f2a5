"""Turn published dataset layouts into msakit dataset folders (``msakit data prepare``).

``prepare(name, source, out)`` reads ``source/<name>/`` (or ``source`` itself when it is
already that folder), builds every modality in memory, checks it, and writes ``out``
atomically with `write_folder`: if anything fails, ``out`` is not created. One preparer
function per dataset, registered in ``PREPARERS``:

  mosi     labels.csv (``text`` column: the raw transcript) + audio_utterance_73d.npz.
           text: MiniLM token states (max_len x 384); audio: one 73-d openSMILE step
           per utterance. Regression in [-3, 3], metric set "mosi".
  mosei    labels.csv (``text``). Text only; regression in [-3, 3], metric set "mosi".
  sims     labels.csv. Text only; regression in [-1, 1], metric set "sims".
           option text_source: "text_en" (default; the English machine translation) or
           "text" (the original Chinese). The default e5 encoder is multilingual and
           reads both about equally well (docs/results.md, CH-SIMS); MiniLM is
           English-only, so with --text-encoder minilm most Chinese characters
           become [UNK].
  meld     train/dev/test_sent_emo.csv -> train/valid/test. Text only; 3 sentiment
           classes 0 negative, 1 neutral, 2 positive, metric set "classification".
           Ids are "<meld split>_dia<Dialogue_ID>_utt<Utterance_ID>" (MELD restarts
           dialogue ids in each split); labels.csv also keeps ``dialogue``, ``turn`` (the
           Utterance_ID) and ``speaker``, read back as a DialogueSplit (msakit.data.dialogue).
           Files are read as UTF-8, falling back to
           cp1252 for files that are not valid UTF-8 (recorded in meta.json).
  youtube  MFN's audio/video/y_<split>.h5 (+ text_<valid,test>_emb.h5), read by
           `msakit.data.h5.read_mfn_h5`. Audio 74-d COVAREP and visual 36-d FACET over
           20 steps; 3 classes (argmax of the one-hot), metric set "classification". A
           sample whose modality is all zeros is stored as absent for it.
           options: include_text=False (GloVe text exists for valid/test only, so a
           model cannot learn it from train; when True it is written for those rows
           and train samples lack it), fix_nonfinite=False (NaN/Inf features are an
           error unless True, which sets them to 0 and records the count),
           drop_empty=False (True drops samples with no modality at all).
  mmmo     ICT-MMMO in the same layout: labels 1-5 (half steps) shifted by -3 to a
           0-centred [-2, 2] (label_range 2), metric set "mosi" (Acc-7 then spans the
           five values -2..2 only); options as youtube.
  h5       any folder in that layout. options: dataset_name, labels ("regression" or
           "onehot"), label_shift, label_range, metric_set (default "mosi" for
           regression, "classification" for one-hot), class_names, and youtube's.

Common options: max_len (text token steps, default 50), overwrite, progress, cache_dir
(a folder for cached MiniLM features, keyed by model, max_len and texts; None: no cache)
and text_encoder (a registered encoder's name - minilm, e5, mpnet, see
`msakit.text_encoder` - or anything with ``encode_tokens``; default e5, chosen on MOSI's
validation split: see DEFAULT_TEXT_ENCODER).
CLI: ``msakit data prepare NAME --option key=value`` passes a dataset option.
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msakit.data.core import SPLITS, DatasetInfo
from msakit.data.folder import write_folder
from msakit.data.h5 import H5Data, H5Layout, check_finite, read_mfn_h5
from msakit.errors import ConfigError, DataError
from msakit.text_encoder import (
    DEFAULT_TEXT_ENCODER,
    MODEL_NAME,
    TextEncoder,
    create_text_encoder,
    encode_tokens_cached,
)

SENTIMENT_CLASSES = ("negative", "neutral", "positive")

ModalityData = tuple[np.ndarray, np.ndarray, list[str]]  # (N_m, L, D) values, (N_m,) lengths, ids


@dataclass
class Prepared:
    """Everything `write_folder` needs; built in memory so nothing is written on failure."""

    info: DatasetInfo
    labels: pd.DataFrame  # id, split, label[, text]
    modalities: dict[str, ModalityData]
    modality_meta: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class TextFeaturizer:
    """Transcripts -> text features (MiniLM token states by default), through the cache when one is given."""

    max_len: int = 50
    progress: bool = True
    cache_dir: Path | None = None
    encoder: TextEncoder | None = None  # None: DEFAULT_TEXT_ENCODER, loaded only when needed
    batch_size: int = 64

    def __call__(self, texts: Sequence[str], ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        texts, ids = list(texts), list(ids)
        if self.encoder is None:
            self.encoder = create_text_encoder(DEFAULT_TEXT_ENCODER)
        if self.cache_dir is not None:
            return encode_tokens_cached(
                texts,
                self.cache_dir,
                self.max_len,
                ids=ids,
                batch_size=self.batch_size,
                progress=self.progress,
                encoder=self.encoder,
            )
        return self.encoder.encode_tokens(texts, self.max_len, self.batch_size, self.progress, ids=ids)

    def modality(self, texts: Sequence[str], ids: Sequence[str], column: str) -> tuple[ModalityData, dict[str, Any]]:
        """The text modality and its meta.json entry."""
        values, lengths = self(texts, ids)
        name = self.encoder.name if self.encoder is not None else MODEL_NAME
        extractor = getattr(self.encoder, "extractor", None)
        if extractor is None:  # an unregistered encoder (e.g. a test stub) is named by its model
            extractor = "minilm-l6-v2-tokens" if name == MODEL_NAME else f"{name}-tokens"
        meta: dict[str, Any] = {"extractor": extractor, "model": name}
        if getattr(self.encoder, "key", None):
            meta["encoder"] = self.encoder.key  # type: ignore[union-attr]  # the registry name (msakit.text_encoder)
        if getattr(self.encoder, "sequence", True):
            meta["max_len"] = self.max_len
            meta["rows_at_max_len"] = int((lengths >= self.max_len).sum())  # these may have been truncated
        meta["source_column"] = column
        return (values, lengths, list(ids)), meta


# --------------------------------------------------------------------------- helpers


def _require(folder: Path, *names: str) -> list[Path]:
    """The paths of `names` in `folder`; DataError naming the first that is missing."""
    paths = [folder / n for n in names]
    for p in paths:
        if not p.is_file():
            raise DataError("source file is missing", path=p)
    return paths


def _read_csv(path: Path, columns: Sequence[str], text: str | None = None) -> pd.DataFrame:
    """All columns as strings (no NA guessing: the transcript "NA" stays "NA")."""
    try:
        frame = pd.read_csv(path if text is None else io.StringIO(text), dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read CSV: {exc}", path=path) from exc
    for column in columns:
        if column not in frame.columns:
            raise DataError(f"required column missing (columns: {list(frame.columns)})", path=path, field=column)
    return frame


def _check_ids(ids: Sequence[str], path: Path) -> None:
    seen: set[str] = set()
    for i in ids:
        if not i or "\n" in i:
            raise DataError(f"invalid id {i!r}", path=path, field="id")
        if i in seen:
            raise DataError(f"duplicate id {i!r}", path=path, field="id")
        seen.add(i)


def _regression_labels(frame: pd.DataFrame, path: Path, column: str = "label") -> np.ndarray:
    """(N,) float64; DataError naming the first id whose label is missing, non-numeric, NaN or Inf."""
    labels = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(labels)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"label {frame[column].iloc[k]!r} of id {frame['id'].iloc[k]!r} is missing, non-numeric, NaN or Inf",
            path=path,
            field=column,
        )
    return labels


def _check_splits(splits: pd.Series, ids: pd.Series, path: Path) -> None:
    bad = ~splits.isin(SPLITS)
    if bad.any():
        raise DataError(
            f"split {splits[bad].iloc[0]!r} of id {ids[bad].iloc[0]!r} is not one of {SPLITS}", path=path, field="split"
        )
    missing = [s for s in SPLITS if not (splits == s).any()]
    if missing:
        raise DataError(f"no rows for split(s) {missing}", path=path, field="split")


def _check_transcripts(texts: Sequence[str], ids: Sequence[str], path: Path, column: str) -> None:
    """DataError naming the file, the id and the column of the first empty transcript."""
    for i, t in zip(ids, texts, strict=True):
        if not t.strip():
            raise DataError(f"empty transcript for id {i!r}", path=path, field=column)


def _labelled_text(path: Path, text_column: str) -> pd.DataFrame:
    """A labels.csv with id, split, label and a transcript column, checked; label parsed to float."""
    frame = _read_csv(path, ["id", "split", "label", text_column])
    _check_ids(frame["id"].tolist(), path)
    _check_splits(frame["split"], frame["id"], path)
    labels = _regression_labels(frame, path)
    _check_transcripts(frame[text_column].tolist(), frame["id"].tolist(), path, text_column)
    return pd.DataFrame({"id": frame["id"], "split": frame["split"], "label": labels, "text": frame[text_column]})


def _text_only(name: str, title: str, folder: Path, text: TextFeaturizer, *, text_column: str, **info: Any) -> Prepared:
    (path,) = _require(folder, "labels.csv")
    labels = _labelled_text(path, text_column)
    modality, meta = text.modality(labels["text"], labels["id"], text_column)
    info = {"description": f"{title} prepared by msakit from {folder} (text: {text_column})", **info}
    return Prepared(
        info=DatasetInfo(name=name, dims={"text": modality[0].shape[2]}, **info),
        labels=labels,
        modalities={"text": modality},
        modality_meta={"text": meta},
    )


# --------------------------------------------------------------------------- preparers


def prepare_mosi(folder: Path, text: TextFeaturizer) -> Prepared:
    """CMU-MOSI: MiniLM text tokens + utterance-level 73-d openSMILE audio (one step)."""
    labels_path, audio_path = _require(folder, "labels.csv", "audio_utterance_73d.npz")
    labels = _labelled_text(labels_path, "text")
    ids = labels["id"].tolist()
    try:
        with np.load(audio_path, allow_pickle=False) as npz:
            audio_ids, features = [str(i) for i in npz["ids"]], np.asarray(npz["features"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read arrays 'ids' and 'features': {exc}", path=audio_path) from exc
    if features.ndim != 2 or features.shape[0] != len(audio_ids):
        raise DataError(
            f"features have shape {features.shape} for {len(audio_ids)} ids", path=audio_path, field="features"
        )
    if audio_ids != ids:
        pos = next(
            (k for k, (a, b) in enumerate(zip(audio_ids, ids, strict=False)) if a != b), min(len(ids), len(audio_ids))
        )
        got = audio_ids[pos] if pos < len(audio_ids) else "<end of ids>"
        want = ids[pos] if pos < len(ids) else "<end of labels.csv>"
        raise DataError(
            f"ids do not match labels.csv ({len(audio_ids)} vs {len(ids)} rows); first mismatch at row {pos}: "
            f"{got!r} where labels.csv has {want!r}",
            path=audio_path,
            field="ids",
        )
    check_finite(features[:, None, :], ids, audio_path, "features")
    text_modality, text_meta = text.modality(labels["text"], ids, "text")
    audio = (features[:, None, :], np.ones(len(ids), dtype=np.int64), ids)  # (N, 1, 73): one step per utterance
    return Prepared(
        info=DatasetInfo(
            name="mosi",
            metric_set="mosi",
            label_range=3.0,
            dims={"text": text_modality[0].shape[2], "audio": features.shape[1]},
            description=f"CMU-MOSI prepared by msakit from {folder}",
        ),
        labels=labels,
        modalities={"text": text_modality, "audio": audio},
        modality_meta={
            "text": text_meta,
            "audio": {"extractor": "acl2017-opensmile-utterance-73d", "source_file": audio_path.name},
        },
    )


def prepare_mosei(folder: Path, text: TextFeaturizer) -> Prepared:
    """CMU-MOSEI: text only, through the featurizer's encoder (ids as in the ``id`` column)."""
    return _text_only("mosei", "CMU-MOSEI", folder, text, text_column="text", metric_set="mosi", label_range=3.0)


def prepare_sims(folder: Path, text: TextFeaturizer, *, text_source: str = "text_en") -> Prepared:
    """CH-SIMS: text features of ``text_en`` (default) or of the original Chinese ``text``."""
    if text_source not in ("text_en", "text"):
        raise ConfigError(f"sims text_source must be 'text_en' or 'text', got {text_source!r}")
    return _text_only("sims", "CH-SIMS", folder, text, text_column=text_source, metric_set="sims", label_range=1.0)


MELD_FILES = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}


def _decode(path: Path) -> tuple[str, str]:
    """File text and the encoding used: UTF-8 (BOM tolerated), else cp1252 (undefined bytes -> U+FFFD)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "cp1252"


def prepare_meld(folder: Path, text: TextFeaturizer) -> Prepared:
    """MELD: MiniLM text tokens of each utterance; 3-class sentiment."""
    paths = _require(folder, *MELD_FILES.values())
    classes = {c: k for k, c in enumerate(SENTIMENT_CLASSES)}
    parts, encodings = [], {}
    for split, path in zip(MELD_FILES, paths, strict=True):
        content, encodings[path.name] = _decode(path)
        frame = _read_csv(path, ["Utterance", "Sentiment", "Dialogue_ID", "Utterance_ID"], text=content)
        for column in ("Dialogue_ID", "Utterance_ID"):
            bad = ~frame[column].str.strip().str.fullmatch(r"\d+")
            if bad.any():
                raise DataError(f"non-integer value {frame[column][bad].iloc[0]!r}", path=path, field=column)
        prefix = path.name.removesuffix("_sent_emo.csv")  # MELD's own split name: train / dev / test
        ids = (prefix + "_dia" + frame["Dialogue_ID"].str.strip() + "_utt" + frame["Utterance_ID"].str.strip()).tolist()
        sentiment = frame["Sentiment"].str.strip().str.lower()
        unknown = ~sentiment.isin(list(classes))
        if unknown.any():
            k = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataError(
                f"sentiment {frame['Sentiment'].iloc[k]!r} of id {ids[k]!r} is not one of {SENTIMENT_CLASSES}",
                path=path,
                field="Sentiment",
            )
        _check_ids(ids, path)
        _check_transcripts(frame["Utterance"].tolist(), ids, path, "Utterance")
        parts.append(
            pd.DataFrame(
                {
                    "id": ids,
                    "split": split,
                    "label": sentiment.map(classes).to_numpy(np.int64),
                    "text": frame["Utterance"].to_numpy(),
                    # dialogue structure for msakit.data.dialogue (turns must increase within a dialogue)
                    "dialogue": (prefix + "_dia" + frame["Dialogue_ID"].str.strip()).to_numpy(),
                    "turn": frame["Utterance_ID"].str.strip().astype(np.int64).to_numpy(),
                    "speaker": frame["Speaker"].str.strip().to_numpy() if "Speaker" in frame else "",
                }
            )
        )
    labels = pd.concat(parts, ignore_index=True)
    _check_ids(labels["id"].tolist(), folder)
    modality, meta = text.modality(labels["text"], labels["id"], "Utterance")
    meta["source_encoding"] = encodings
    return Prepared(
        info=DatasetInfo(
            name="meld",
            metric_set="classification",
            num_classes=3,
            dims={"text": modality[0].shape[2]},
            class_names=SENTIMENT_CLASSES,
            description=f"MELD (3-class sentiment) prepared by msakit from {folder}",
        ),
        labels=labels,
        modalities={"text": modality},
        modality_meta={"text": meta},
    )


def _from_h5(data: H5Data) -> Prepared:
    return Prepared(info=data.info, labels=data.labels, modalities=data.modalities, modality_meta=data.modality_meta)


YOUTUBE = H5Layout(
    name="youtube",
    title="YouTube opinion dataset (MFN features)",
    labels="onehot",
    metric_set="classification",
    class_names=SENTIMENT_CLASSES,
    extractors=(
        ("audio", "covarep-74d (MFN youtube)"),
        ("visual", "facet-36d (MFN youtube)"),
        ("text", "glove-300d (MFN youtube)"),
    ),
)
MMMO = H5Layout(
    name="mmmo",
    title="ICT-MMMO movie reviews (MFN features; sentiment 1-5 shifted to [-2, 2])",
    labels="regression",
    metric_set="mosi",
    label_shift=-3.0,
    label_range=2.0,
    extractors=(
        ("audio", "covarep-74d (MFN mmmo, raw scale)"),
        ("visual", "facet-36d (MFN mmmo)"),
        ("text", "glove-300d (MFN mmmo)"),
    ),
)


def prepare_youtube(
    folder: Path,
    text: TextFeaturizer,
    *,
    include_text: bool = False,
    fix_nonfinite: bool = False,
    drop_empty: bool = False,
) -> Prepared:
    """YouTube (MFN features): COVAREP audio and FACET visual over 20 steps; optional GloVe text (valid/test)."""
    return _from_h5(
        read_mfn_h5(folder, YOUTUBE, include_text=include_text, fix_nonfinite=fix_nonfinite, drop_empty=drop_empty)
    )


def prepare_mmmo(
    folder: Path,
    text: TextFeaturizer,
    *,
    include_text: bool = False,
    fix_nonfinite: bool = False,
    drop_empty: bool = False,
) -> Prepared:
    """ICT-MMMO (MFN features): labels 1-5 shifted by -3 to [-2, 2], MOSI metrics; audio + visual."""
    return _from_h5(
        read_mfn_h5(folder, MMMO, include_text=include_text, fix_nonfinite=fix_nonfinite, drop_empty=drop_empty)
    )


def prepare_h5(
    folder: Path,
    text: TextFeaturizer,
    *,
    dataset_name: str = "h5",
    labels: str = "regression",
    label_shift: float = 0.0,
    label_range: float = 3.0,
    metric_set: str = "",
    class_names: tuple[str, ...] = (),
    include_text: bool = False,
    fix_nonfinite: bool = False,
    drop_empty: bool = False,
) -> Prepared:
    """Any MFN-style ``*_{train,valid,test}.h5`` folder; the options say how to read its labels."""
    layout = H5Layout(
        name=dataset_name,
        title=f"{dataset_name} (MFN-style HDF5)",
        labels=labels,
        metric_set=metric_set or ("classification" if labels == "onehot" else "mosi"),
        label_shift=float(label_shift),
        label_range=float(label_range),
        class_names=tuple(str(c) for c in class_names),
    )
    return _from_h5(
        read_mfn_h5(folder, layout, include_text=include_text, fix_nonfinite=fix_nonfinite, drop_empty=drop_empty)
    )


Preparer = Callable[..., Prepared]

PREPARERS: dict[str, Preparer] = {
    "mosi": prepare_mosi,
    "mosei": prepare_mosei,
    "sims": prepare_sims,
    "meld": prepare_meld,
    "youtube": prepare_youtube,
    "mmmo": prepare_mmmo,
    "h5": prepare_h5,
}


def preparer_options(name: str) -> dict[str, Any]:
    """The dataset-specific options of `name` and their defaults (for the CLI's --help)."""
    params = inspect.signature(_preparer(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _preparer(name: str) -> Preparer:
    try:
        return PREPARERS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {sorted(PREPARERS)}") from None


def prepare(
    name: str,
    source: str | Path,
    out: str | Path,
    *,
    max_len: int = 50,
    overwrite: bool = False,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    text_encoder: TextEncoder | str | None = None,
    **options: Any,
) -> Path:
    """Prepare dataset `name` from `source` (the shared data root or the dataset's own folder) into `out`.

    text_encoder: an encoder, or the name of a registered one (`msakit.text_encoder.TEXT_ENCODERS`);
    None is `DEFAULT_TEXT_ENCODER` (e5, chosen on validation; see `msakit.text_encoder`).
    """
    preparer = _preparer(name)
    unknown = sorted(set(options) - set(preparer_options(name)))
    if unknown:
        raise ConfigError(f"dataset {name!r} has no option(s) {unknown}; its options: {preparer_options(name)}")
    source = Path(source)
    folder = source / name if (source / name).is_dir() else source
    if not folder.is_dir():
        raise DataError("source folder not found", path=source)
    out = Path(out)
    if out.exists() and not overwrite:  # fail before minutes of encoding, not after
        raise DataError("output exists; pass overwrite=True (CLI: --overwrite) to replace it", path=out)
    if isinstance(text_encoder, str):
        text_encoder = create_text_encoder(text_encoder)
    text = TextFeaturizer(
        max_len=max_len,
        progress=progress,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        encoder=text_encoder,
    )
    prepared = preparer(folder, text, **options)
    return write_folder(
        out,
        prepared.info,
        prepared.labels,
        prepared.modalities,
        modality_meta=prepared.modality_meta,
        overwrite=overwrite,
    )


__all__ = ["PREPARERS", "SENTIMENT_CLASSES", "Prepared", "TextFeaturizer", "prepare", "preparer_options"]
