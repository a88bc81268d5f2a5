"""`msakit extract`: an MMSA-FET style folder of clips -> an msakit dataset folder.

Input layout (MMSA-FET's):

    DATASET_DIR/label.csv            video_id, clip_id, text, label, mode (train / valid / test)
    DATASET_DIR/Raw/<video_id>/<clip_id>.mp4

Output: msakit's dataset folder (`msakit.data.write_folder`), ids ``<video_id>_<clip_id>``:
text = MiniLM tokens of label.csv's text, audio and visual = the `Pipeline`'s sequences.
Each modality's meta.json entry records its extractors, their configs and its width.

Clips are processed by a pool of worker processes; each finished clip is cached as
``WORK/clips/<id>.npz``, so an interrupted run resumes where it stopped. A clip whose file
is unusable (missing, corrupt, not a video, over the size limit...) goes to
``OUT/errors.csv`` and the run goes on: the clip keeps its text, and its audio and visual
are absent. Modalities missing for a usable clip (no audio track, silence, no face) are
listed in ``OUT/missing.csv``; they are absent in the dataset, never zero-filled.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from msakit.data import DatasetInfo, write_folder
from msakit.data.core import SPLITS
from msakit.errors import DataError
from msakit.extract.pipeline import Pipeline, PipelineConfig
from msakit.io import atomic_open

REQUIRED = ("video_id", "clip_id", "text", "label", "mode")
MODES = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "test": "test"}
_CACHE_VERSION = 1


@dataclass
class Clip:
    id: str
    path: Path
    text: str
    label: float
    split: str


@dataclass
class ExtractReport:
    out: Path
    clips: int
    extracted: int  # newly extracted in this run
    cached: int  # reused from the work dir
    errors: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)


def read_label_csv(root: Path) -> list[Clip]:
    """The clips of `root/label.csv`; DataError naming the file and field on bad rows."""
    path = root / "label.csv"
    if not path.is_file():
        raise DataError("MMSA-FET layout needs label.csv (video_id, clip_id, text, label, mode)", path=path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read CSV: {exc}", path=path) from exc
    for column in REQUIRED:
        if column not in frame.columns:
            raise DataError(f"required column missing (columns: {list(frame.columns)})", path=path, field=column)
    clips, seen = [], set()
    for n, row in enumerate(frame.itertuples(index=False), start=2):
        video, clip = str(row.video_id).strip(), str(row.clip_id).strip()
        if not _plain_name(video) or not _plain_name(clip):
            raise DataError(
                f"line {n}: video_id/clip_id {video!r}/{clip!r} must be plain names (no '/', '\\', '..', "
                "control characters): a clip must lie inside Raw/",
                path=path,
                field="video_id" if not _plain_name(video) else "clip_id",
            )
        try:
            label = float(row.label)
        except ValueError:
            raise DataError(f"line {n}: label {row.label!r} is not a number", path=path, field="label") from None
        if not np.isfinite(label):
            raise DataError(f"line {n}: label is NaN or Inf", path=path, field="label")
        mode = MODES.get(str(row.mode).strip().lower())
        if mode is None:
            raise DataError(f"line {n}: mode {row.mode!r} is not one of {sorted(MODES)}", path=path, field="mode")
        clip_id = f"{video}_{clip}"
        if clip_id in seen:
            raise DataError(f"line {n}: duplicate clip {clip_id!r}", path=path, field="clip_id")
        seen.add(clip_id)
        clips.append(Clip(clip_id, root / "Raw" / video / f"{clip}.mp4", str(row.text), label, mode))
    if not clips:
        raise DataError("label.csv has no rows", path=path)
    return clips


def _plain_name(name: str) -> bool:
    """A single path component that stays inside its folder."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\") and name.isprintable()


# ------------------------------------------------------------------------- workers

_PIPELINE: Pipeline | None = None


def _init_worker(config: PipelineConfig, threads: int) -> None:
    global _PIPELINE
    import torch

    torch.set_num_threads(threads)
    _PIPELINE = Pipeline(config)


def _extract_clip(clip: Clip, cache: Path) -> dict[str, Any]:
    """Audio + visual of one clip into `cache` (atomically); returns a status dict, never raises."""
    assert _PIPELINE is not None
    try:
        media = _PIPELINE.load(clip.path, need_video=bool(_PIPELINE.config.visual))
        arrays: dict[str, np.ndarray] = {}
        missing: dict[str, str] = {}
        for m, block in (
            ("audio", _PIPELINE.audio(media.samples, media.audio_missing)),
            ("visual", _PIPELINE.visual(media.faces, media.visual_missing)),
        ):
            if not getattr(_PIPELINE.config, m):
                continue
            if block.present:
                arrays[m] = block.values.astype(np.float32)
            else:
                missing[m] = block.missing
        _save_npz(cache, arrays, {"version": _CACHE_VERSION, "missing": missing})
        return {"id": clip.id, "ok": True, "missing": missing}
    except Exception as exc:
        kind = type(exc).__name__
        return {"id": clip.id, "ok": False, "error": f"{kind}: {exc}" if kind != "DataError" else str(exc)}


def _save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    payload: dict[str, Any] = {"__meta__": np.array(json.dumps(meta)), **arrays}
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **payload)


def _load_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, RecursionError):
        return None  # damaged cache entry: extract again
    if not isinstance(meta, dict) or meta.get("version") != _CACHE_VERSION:
        return None
    if not isinstance(meta.get("missing", {}), dict) or any(
        k not in ("audio", "visual") or a.ndim != 2 or a.dtype != np.float32 or not np.isfinite(a).all()
        for k, a in arrays.items()
    ):
        return None  # not what `_save_npz` wrote: extract again
    return arrays, meta


def _run(
    clips: list[Clip], work: Path, config: PipelineConfig, workers: int, progress: bool
) -> Iterator[dict[str, Any]]:
    cache = {c.id: work / "clips" / f"{c.id}.npz" for c in clips}
    if workers <= 1:
        _init_worker(config, threads=max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        for clip in tqdm(clips, desc="extract", unit="clip", disable=not progress):
            yield _extract_clip(clip, cache[clip.id])
        return
    import multiprocessing

    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(config, 1),
    ) as pool:  # fmt: skip
        futures = [pool.submit(_extract_clip, clip, cache[clip.id]) for clip in clips]
        for future in tqdm(
            as_completed(futures), total=len(futures), desc="extract", unit="clip", disable=not progress
        ):
            yield future.result()


# ------------------------------------------------------------------------- main


def extract_dataset(
    root: str | Path,
    out: str | Path,
    *,
    config: PipelineConfig | None = None,
    workers: int = 1,
    work_dir: str | Path | None = None,
    metric_set: str = "mosi",
    label_range: float = 3.0,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExtractReport:
    root, out = Path(root), Path(out)
    config = config or PipelineConfig()
    if out.exists() and not overwrite:
        raise DataError("output exists; pass --overwrite to replace it", path=out)
    clips = read_label_csv(root)
    missing_splits = [s for s in SPLITS if not any(c.split == s for c in clips)]
    if missing_splits:
        raise DataError(f"no clips for split(s) {missing_splits}", path=root / "label.csv", field="mode")
    work = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".work")
    pipeline = Pipeline(config)  # validates the config before any worker starts
    for stale in (work / "clips").glob(".*.npz.*") if (work / "clips").is_dir() else ():
        stale.unlink(missing_ok=True)  # temporary file of a cache write interrupted by a kill
    done: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}
    for c in clips:
        cached = _load_npz(work / "clips" / f"{c.id}.npz")
        if cached is not None:
            done[c.id] = cached
    todo = [c for c in clips if c.id not in done]
    errors: list[dict[str, str]] = []
    for status in _run(todo, work, config, workers, progress):
        if status["ok"]:
            loaded = _load_npz(work / "clips" / f"{status['id']}.npz")
            if loaded is not None:
                done[status["id"]] = loaded
        else:
            errors.append({"id": status["id"], "error": status["error"]})
    by_id = {c.id: c for c in clips}
    for e in errors:
        e["file"] = str(by_id[e["id"]].path)

    modalities: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    missing_rows: list[dict[str, str]] = []
    text_ids = [c.id for c in clips if c.text.strip()]
    missing_rows += [
        {"id": c.id, "modality": "text", "reason": "empty transcript"} for c in clips if not c.text.strip()
    ]
    if text_ids:
        blocks = pipeline.text([by_id[i].text for i in text_ids])
        modalities["text"] = _stack([b.values for b in blocks], text_ids, pipeline.dims()["text"])
    for m in ("audio", "visual"):
        if not getattr(config, m):
            continue
        ids = [i for i in (c.id for c in clips) if i in done and m in done[i][0]]
        missing_rows += [
            {"id": i, "modality": m, "reason": done[i][1]["missing"].get(m, "not extracted")}
            for i in (c.id for c in clips)
            if i in done and m not in done[i][0]
        ]
        if ids:
            modalities[m] = _stack([done[i][0][m] for i in ids], ids, pipeline.dims()[m])
    if not modalities:
        raise DataError("no modality could be extracted from any clip (see the errors above)", path=root)
    labels = pd.DataFrame(
        {"id": [c.id for c in clips], "split": [c.split for c in clips], "label": [c.label for c in clips],
         "text": [c.text for c in clips]}
    )  # fmt: skip
    info = DatasetInfo(
        name=name or root.name,
        metric_set=metric_set,
        label_range=label_range,
        dims={m: v[0].shape[2] for m, v in modalities.items()},
        description=f"extracted by `msakit extract` from {root}",
    )
    meta = {m: {**pipeline.metadata(m), "dim": pipeline.dims()[m]} for m in modalities}
    reports = {
        "errors.csv": _csv_text(["id", "file", "error"], errors),
        "missing.csv": _csv_text(["id", "modality", "reason"], missing_rows),
    }  # inside the folder's atomic write: a run killed at any point leaves all of OUT or none
    write_folder(out, info, labels, modalities, modality_meta=meta, overwrite=overwrite, extra_files=reports)
    return ExtractReport(out, len(clips), len(todo) - len(errors), len(clips) - len(todo), errors, missing_rows)


def _stack(blocks: list[np.ndarray], ids: list[str], dim: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Pad (L_i, D) blocks into (N, max L, D) with lengths."""
    longest = max(1, max(len(b) for b in blocks))
    values = np.zeros((len(blocks), longest, dim), np.float32)
    lengths = np.zeros(len(blocks), np.int64)
    for k, b in enumerate(blocks):
        values[k, : len(b)] = b
        lengths[k] = len(b)
    return values, lengths, ids


def _csv_text(header: list[str], rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
