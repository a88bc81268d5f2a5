"""`msakit analyze DIR_OR_GLOB --out OUT`: a whole folder of videos, one table, aggregate plots.

Every media file under a folder (or matching a glob) goes through the same `Analyzer` that
`msakit analyze FILE` uses, loaded once. A file that fails is recorded with the pipeline
stage it failed in and the reason, and the batch goes on; a file that is analysed without
one of its parts (no face, audio missing beside a given transcript, a language the text
encoder does not read, low-quality ASR, an optional part not installed) is recorded too,
as `partial`. The batch resumes: every finished file is one folder that appears only once
it is complete (`msakit.io.atomic_dir`), so a run killed at any moment (kill -9 included)
loses at most the file it was working on, and a rerun with ``--resume`` skips the rest.

Layout of OUT::

    batch.json            the settings of the batch (a --resume must use the same ones)
    files/<rel>/          one analysed file: timeline.json/.csv/.png (as `msakit analyze FILE`)
                          and record.json (its input signature, timings and issues)
    failed/<rel>.json     one failed file: stage and reason (skipped by --resume unless
                          --retry-errors)
    table.csv             one row per utterance x aspect (an utterance without aspects has
                          one row), with its scene and the --meta columns joined on the file
    table.parquet         the same, when pyarrow is installed
    errors.csv            file, stage, reason, outcome (failed | partial)
    summary.json          counts, media seconds, CPU seconds, real-time factor
    sentiment.png         mean sentiment per group (--meta `outlet`) over time (`date`),
                          aspect polarity per group, sentiment per scene, top aspects

The aggregate files are rebuilt from the per-file folders at the end of every run, so
they always describe every file finished so far. ``--meta CSV`` has a `file` column
(the path relative to the folder, or the bare file name when it is unique) and any other
columns (outlet, date, ...), joined into the table; two columns are read, not joined:
`transcript` (a transcript file for that media, relative to the CSV's folder) and
`language` (the declared ISO 639-1 code).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msakit.errors import ConfigError, DataError, EnvironmentFailure, MsakitError, OutputError
from msakit.io import atomic_dir, atomic_path, atomic_write_json, atomic_write_text, recover_dir

MEDIA_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp", ".ogv",
     ".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus"}
)  # fmt: skip
META_READ = ("transcript", "language")  # --meta columns that steer the analysis instead of being joined
ERROR_FIELDS = ["file", "stage", "reason", "outcome"]
ASPECT_FIELDS = ["aspect_term", "aspect_polarity", "aspect_score", "aspect_start", "aspect_end", "aspect_evidence"]
ASPECT_NUMBERS = ("aspect_score", "aspect_start", "aspect_end")  # None (not "") when an utterance has no aspect
TABLE_FIELDS = [
    "file", "language", "media_seconds", "utterance", "start", "end", "text", "quality", "score", "polarity",
    "sentiment", "scene", *ASPECT_FIELDS,
]  # fmt: skip
GLOB_CHARS = frozenset("*?[")

# (file under src/msakit, function or "*") -> the pipeline stage an exception raised there belongs to;
# the innermost msakit frame of the traceback that is listed decides (see `stage_of`)
STAGES: dict[tuple[str, str], str] = {
    ("extract/media.py", "*"): "decode",
    ("extract/pipeline.py", "load"): "decode",
    ("extract/visual.py", "*"): "faces",
    ("extract/speech.py", "*"): "asr",
    ("extract/asr.py", "*"): "asr",
    ("extract/absa.py", "*"): "aspects",
    ("extract/scenes.py", "*"): "scenes",
    ("extract/audio.py", "*"): "audio",
    ("extract/text.py", "*"): "text",
    ("text_encoder.py", "*"): "text",
    ("analyze.py", "_utterances"): "asr",
    ("analyze.py", "_language"): "language",
    ("analyze.py", "_text"): "text",
    ("analyze.py", "_predict"): "model",
    ("analyze.py", "_cues"): "cues",
    ("analyze.py", "_frame_tracks"): "cues",
    ("analyze.py", "write_outputs"): "write",
    ("analyze.py", "plot"): "write",
    ("models/", "*"): "model",
    ("layers/", "*"): "model",
}


# ------------------------------------------------------------------------ inputs


def is_batch_input(spec: str | Path) -> bool:
    """True for a folder, or a glob pattern that is not itself an existing file."""
    path = Path(spec)
    return path.is_dir() or (not path.exists() and bool(GLOB_CHARS & set(str(spec))))


def collect_inputs(spec: str | Path, *, exclude: Path | None = None) -> tuple[Path, list[Path]]:
    """(root, media files sorted by their path under root) of a folder (recursive) or a glob.

    Hidden files and folders, files without a media suffix and anything under `exclude`
    (the batch's own --out) are left out.
    """
    spec = str(spec)
    if Path(spec).is_dir():
        root = Path(spec)
        found = [p for p in root.rglob("*") if p.is_file()]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
        if not found:
            raise DataError("no file matches this pattern", path=spec)
        root = Path(os.path.commonpath([str(p.parent.resolve()) for p in found]))
        found = [p.resolve() for p in found]
    skip = exclude.resolve() if exclude is not None else None

    def keep(p: Path) -> bool:
        rel = p.resolve().relative_to(root.resolve())
        if any(part.startswith(".") for part in rel.parts) or p.suffix.lower() not in MEDIA_SUFFIXES:
            return False
        return skip is None or not p.resolve().is_relative_to(skip)

    files = sorted((p for p in found if keep(p)), key=lambda p: p.resolve().relative_to(root.resolve()).as_posix())
    if not files:
        raise DataError(f"no media files ({', '.join(sorted(MEDIA_SUFFIXES))}) found", path=spec)
    return root, files


def rel_name(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def read_meta(path: str | Path, names: list[str]) -> dict[str, dict[str, str]]:
    """--meta rows keyed by the batch's relative file names; DataError naming the file and field.

    A row's `file` is matched to a relative name or, when unique in the batch, a bare file
    name. Every row must name a file of the batch (a typo would silently drop its outlet).
    `transcript` paths are resolved against the CSV's folder and must exist; `date` must
    parse as a date.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise DataError(f"not a readable CSV: {' '.join(str(exc).split())}", path=path) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if "file" not in frame.columns:
        raise DataError(
            f"has no 'file' column (columns: {', '.join(frame.columns) or 'none'})", path=path, field="file"
        )
    clash = [c for c in frame.columns if c in TABLE_FIELDS and c != "file" and c not in META_READ]
    if clash:
        raise DataError(f"column {clash[0]!r} is one of the table's own columns; rename it", path=path, field=clash[0])
    by_base: dict[str, list[str]] = {}
    for name in names:
        by_base.setdefault(name.rsplit("/", 1)[-1], []).append(name)
    rows: dict[str, dict[str, str]] = {}
    unknown: list[str] = []
    for k, record in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        value = str(record["file"]).strip()
        if not value:
            raise DataError(f"line {k}: empty file name", path=path, field="file")
        if value in names:
            name = value
        elif len(by_base.get(value, [])) == 1:
            name = by_base[value][0]
        elif value in by_base:
            raise DataError(
                f"line {k}: {value!r} is ambiguous ({', '.join(by_base[value])}); give the path under the folder",
                path=path, field="file",
            )  # fmt: skip
        else:
            unknown.append(value)
            continue
        if name in rows:
            raise DataError(f"line {k}: {name!r} is listed twice", path=path, field="file")
        row = {c: str(v).strip() for c, v in record.items() if c != "file"}
        if row.get("transcript"):
            transcript = (path.parent / row["transcript"]).resolve()
            if not transcript.is_file():
                raise DataError(
                    f"line {k}: transcript {row['transcript']!r}: no such file", path=path, field="transcript"
                )
            row["transcript"] = str(transcript)
        if row.get("date"):
            try:
                pd.Timestamp(row["date"])
            except ValueError:
                raise DataError(
                    f"line {k}: {row['date']!r} is not a date (YYYY-MM-DD)", path=path, field="date"
                ) from None
        rows[name] = row
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DataError(f"names {len(unknown)} file(s) that are not in the batch: {shown}", path=path, field="file")
    return rows


# --------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BatchSettings:
    """What every file of one batch is analysed with: a --resume must match it."""

    checkpoint: str
    asr: str = "auto"
    language: str | None = None
    fps: float = 5.0
    max_side: int = 640
    max_mb: float = 2048.0
    aspects: bool = True
    scenes: bool = True


@dataclass
class BatchReport:
    out: Path
    files: int
    analysed: int  # in this run
    resumed: int  # finished by an earlier run (skipped)
    failed: list[dict[str, str]] = field(default_factory=list)  # every failed file (this run and earlier)
    partial: list[dict[str, str]] = field(default_factory=list)  # issues of analysed files
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.files} files: {self.analysed + self.resumed} analysed ({self.resumed} by an earlier run), "
            f"{len(self.failed)} failed; {len(self.partial)} partial issue(s); errors in {self.outputs['errors']}"
        )


def _check_out(out: Path, settings: BatchSettings, resume: bool) -> None:
    """Refuse a non-empty OUT that is not this batch (or is one without --resume, or with other settings)."""
    marker = out / "batch.json"
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise OutputError("exists, is not empty and holds no batch; choose a new --out", path=out)
        if not resume:
            raise OutputError("holds a batch already; pass --resume to continue it, or choose a new --out", path=out)
        try:
            before = json.loads(marker.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"damaged ({exc}); choose a new --out", path=marker) from exc
        for key, value in _jsonable(asdict(settings)).items():
            if isinstance(before, dict) and before.get(key) != value:
                raise ConfigError(
                    f"this batch was run with {key}={before.get(key)!r}, not {value!r}; "
                    "resume with the same options or choose a new --out",
                    path=marker,
                    field=key,
                )
    atomic_write_json(marker, _jsonable(asdict(settings)))


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(value))


# ----------------------------------------------------------------- one file


def stage_of(exc: BaseException) -> str:
    """The pipeline stage an exception came from: the innermost msakit frame listed in `STAGES`."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        where = frame.filename.replace(os.sep, "/")
        if "/msakit/" not in where:
            continue
        inside = where.rsplit("/msakit/", 1)[1]
        for (module, function), stage in STAGES.items():
            matches = inside == module or (module.endswith("/") and inside.startswith(module))
            if matches and function in ("*", frame.name):
                return stage
    return "analyze"


def _signature(src: Path, meta: dict[str, str]) -> dict[str, Any]:
    """What makes a finished result stale when it changes: the file, its transcript, its language."""
    stat = src.stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "transcript": meta.get("transcript") or None,
        "language": meta.get("language") or None,
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def issues_of(analysis: dict[str, Any], info: Any) -> list[dict[str, str]]:
    """(stage, reason) of each part an analysed file went without: no face, no audio, a language the
    text encoder or ABSA does not read, low-quality ASR, no scenes, an optional part not installed."""
    from msakit.extract.absa import unavailable_reason
    from msakit.extract.scenes import TEXT_MISSING
    from msakit.extract.visual import FER_MISSING

    found: list[dict[str, str]] = []
    utterances = analysis.get("utterances") or []
    notes = analysis.get("notes") or []
    for modality, stage, expected in (("visual", "faces", info.has_video), ("audio", "audio", info.has_audio)):
        cues = [(u.get("cues") or {}).get(modality, {}) for u in utterances]
        if expected and cues and not any(c.get("present") for c in cues):
            reasons = Counter(str(c.get("missing") or "not found") for c in cues)
            found.append({"stage": stage, "reason": reasons.most_common(1)[0][0]})
    for warning in analysis.get("warnings") or []:
        found.append({"stage": "language" if warning.startswith("language") else "warning", "reason": warning})
    if any(u.get("quality") == "low" for u in utterances):
        found.append({"stage": "asr", "reason": "transcribed by the pocketsphinx fallback: low quality"})
    no_aspects = unavailable_reason(analysis.get("language"))
    for note in notes:
        if note == FER_MISSING:
            found.append({"stage": "faces", "reason": note})
        elif no_aspects and note == no_aspects:
            found.append({"stage": "aspects", "reason": note})
        elif note == TEXT_MISSING or (note.startswith("scenes:") and info.has_video):
            found.append({"stage": "scenes", "reason": note})
    return found


def _analyze_one(
    analyzer: Any, src: Path, name: str, out: Path, meta: dict[str, str], settings: BatchSettings
) -> dict[str, Any]:
    """Analyse one file into OUT/files/<name>/ (one atomic folder); returns its record."""
    from msakit.analyze import write_outputs
    from msakit.extract import media

    cpu0, wall0 = time.process_time(), time.perf_counter()
    signature = _signature(src, meta)
    info = media.probe(src, max_mb=settings.max_mb)
    analysis = analyzer.analyze(
        src, meta.get("transcript") or None, language=meta.get("language") or settings.language, asr=settings.asr
    )
    as_dict = analysis.to_dict()
    record: dict[str, Any] = {
        "file": name,
        "source": str(src),
        **signature,
        "media_seconds": round(float(info.duration), 3),
        "video_codec": info.video_codec,
        "audio_codec": info.audio_codec,
        "issues": issues_of(as_dict, info),
    }
    with atomic_dir(out / "files" / name) as tmp:
        write_outputs(analysis, tmp)
        record["cpu_seconds"] = round(time.process_time() - cpu0, 3)
        record["wall_seconds"] = round(time.perf_counter() - wall0, 3)
        (tmp / "record.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))
    return record


def _fatal_for_batch(exc: BaseException, out: Path) -> bool:
    """An output-side failure (a full disk, an unwritable OUT) stops the batch: every file would fail."""
    path = getattr(exc, "path", None)
    if not isinstance(exc, (EnvironmentFailure, OutputError)) or path is None:
        return False
    with contextlib.suppress(ValueError, OSError):
        return Path(str(path)).resolve().is_relative_to(out.resolve())
    return False


def _reason(exc: BaseException, src: Path) -> str:
    """The one-line message, without the "file SRC: " that errors.csv's file column already gives."""
    text = " ".join(str(exc).split()).removeprefix(f"file {src}: ")
    if isinstance(exc, MsakitError):  # a batch takes transcripts from --meta, not from --transcript
        return text.replace("pass --transcript FILE", "give it a transcript in --meta")
    return f"internal error (an msakit bug; `msakit --debug analyze FILE` shows where): {type(exc).__name__}: {text}"


# ------------------------------------------------------------------------ batch


@dataclass
class BatchPlan:
    """The checked inputs of a batch: what to analyse, what an earlier run finished already."""

    out: Path
    settings: BatchSettings
    names: list[str]  # every file of the batch, relative to its root
    todo: list[tuple[Path, str, dict[str, str]]]  # (file, name, its --meta row) still to analyse
    resumed: int
    meta_rows: dict[str, dict[str, str]]


def plan_batch(
    spec: str | Path,
    out: str | Path,
    *,
    settings: BatchSettings,
    meta: str | Path | None = None,
    resume: bool = False,
    retry_errors: bool = False,
) -> BatchPlan:
    """Find the files, check --meta and OUT, and skip what a previous run finished (before any model loads)."""
    out = Path(out)
    root, files = collect_inputs(spec, exclude=out)
    names = [rel_name(p, root) for p in files]
    meta_rows = read_meta(meta, names) if meta is not None else {}
    _check_out(out, settings, resume)
    todo, resumed = [], 0
    for src, name in zip(files, names, strict=True):
        row = meta_rows.get(name, {})
        done = recover_dir(out / "files" / name)
        record = _read_json(done / "record.json") if done is not None else None
        if isinstance(record, dict) and _same_input(record, _signature(src, row)):
            resumed += 1
            continue
        failure = _read_json(out / "failed" / f"{name}.json")
        if isinstance(failure, dict) and not retry_errors and _same_input(failure, _signature(src, row)):
            continue
        todo.append((src, name, row))
    return BatchPlan(out, settings, names, todo, resumed, meta_rows)


def run_batch(analyzer: Any, plan: BatchPlan, *, progress: bool = True) -> BatchReport:
    """Analyse `plan.todo` with `analyzer` (an `msakit.analyze.Analyzer`), then rebuild the aggregates."""
    from tqdm.auto import tqdm

    out, settings = plan.out, plan.settings
    analysed, failures_now = 0, 0
    bar = tqdm(plan.todo, desc="analyze", unit="file", disable=not progress)
    for src, name, row in bar:
        bar.set_postfix_str(f"{name[-30:]}; failed {failures_now}")
        marker = out / "failed" / f"{name}.json"
        try:
            _analyze_one(analyzer, src, name, out, row, settings)
        except Exception as exc:
            if _fatal_for_batch(exc, out):
                raise
            failures_now += 1
            failure = {**_signature(src, row), "file": name, "stage": stage_of(exc), "reason": _reason(exc, src)}
            atomic_write_json(marker, failure)
            continue
        marker.unlink(missing_ok=True)
        analysed += 1
    bar.close()
    report = BatchReport(out=out, files=len(plan.names), analysed=analysed, resumed=plan.resumed)
    write_aggregates(report, plan.names, plan.meta_rows, classifier=bool(analyzer.model.is_classifier))
    return report


def _same_input(record: dict[str, Any], signature: dict[str, Any]) -> bool:
    return all(record.get(k) == v for k, v in signature.items())


# ------------------------------------------------------------------- aggregates


def write_aggregates(
    report: BatchReport, names: list[str], meta_rows: dict[str, dict[str, str]], *, classifier: bool = False
) -> None:
    """errors.csv, table.csv (+ .parquet), summary.json and sentiment.png from the per-file folders."""
    out = report.out
    rows: list[dict[str, Any]] = []
    analysed = 0
    media_s = cpu_s = wall_s = 0.0
    for name in names:
        record = _read_json(out / "files" / name / "record.json")
        timeline = _read_json(out / "files" / name / "timeline.json")
        if isinstance(record, dict) and isinstance(timeline, dict):
            joined = {k: v for k, v in meta_rows.get(name, {}).items() if k not in META_READ}
            rows.extend(table_rows(name, timeline, record, joined, classifier))
            analysed += 1
            for issue in record.get("issues") or []:
                report.partial.append({"file": name, **issue, "outcome": "partial"})
            media_s += float(record.get("media_seconds") or 0)
            cpu_s += float(record.get("cpu_seconds") or 0)
            wall_s += float(record.get("wall_seconds") or 0)
            continue
        failure = _read_json(out / "failed" / f"{name}.json")
        if isinstance(failure, dict):
            report.failed.append(
                {k: str(failure.get(k, "")) for k in ("file", "stage", "reason")} | {"outcome": "failed"}
            )
    errors = report.failed + report.partial
    errors.sort(key=lambda e: (e["file"], e["outcome"], e["stage"]))
    meta_columns = sorted({k for r in meta_rows.values() for k in r if k not in META_READ})
    table = pd.DataFrame(rows, columns=["file", *meta_columns, *TABLE_FIELDS[1:]])
    table = table.astype({"aspect_score": "float64", "aspect_start": "Int64", "aspect_end": "Int64"})
    paths = {"errors": out / "errors.csv", "table": out / "table.csv", "summary": out / "summary.json"}
    with atomic_path(paths["errors"], suffix=".csv") as tmp:
        pd.DataFrame(errors, columns=ERROR_FIELDS).to_csv(tmp, index=False)
    with atomic_path(paths["table"], suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    if _has_pyarrow():
        paths["parquet"] = out / "table.parquet"
        with atomic_path(paths["parquet"], suffix=".parquet") as tmp:
            table.to_parquet(tmp, index=False)
    report.summary = {
        "files": report.files,
        "analysed": analysed,
        "analysed_this_run": report.analysed,
        "resumed": report.resumed,
        "failed": len(report.failed),
        "partial_issues": len(report.partial),
        "failed_by_stage": dict(Counter(e["stage"] for e in report.failed)),
        "partial_by_stage": dict(Counter(e["stage"] for e in report.partial)),
        "utterances": int(table.drop_duplicates(["file", "utterance"]).shape[0]) if len(table) else 0,
        "aspects": int(table["aspect_term"].astype(bool).sum()) if len(table) else 0,
        "media_seconds": round(media_s, 2),
        "cpu_seconds": round(cpu_s, 2),
        "wall_seconds": round(wall_s, 2),
        "cpu_rtf": round(cpu_s / media_s, 3) if media_s else None,
        "wall_rtf": round(wall_s / media_s, 3) if media_s else None,
    }
    atomic_write_text(paths["summary"], json.dumps(report.summary, indent=2))
    if len(table):
        paths["plot"] = out / "sentiment.png"
        with atomic_path(paths["plot"], suffix=".png") as tmp:
            plot_groups(table, tmp, title=f"{analysed} files, {report.summary['utterances']} utterances")
    report.outputs = paths


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def table_rows(
    name: str, timeline: dict[str, Any], record: dict[str, Any], meta: dict[str, str], classifier: bool
) -> Iterable[dict[str, Any]]:
    """One row per utterance x aspect of one file (an utterance without aspects: one row)."""
    for k, u in enumerate(timeline.get("utterances") or []):
        score = u.get("score")
        polarity = str(u.get("polarity", ""))
        if classifier:  # a class probability is not a sentiment: count the polarity instead
            sentiment = 1.0 if polarity == "positive" else -1.0 if polarity == "negative" else 0.0
        else:
            sentiment = float(score) if score is not None else np.nan
        base = {
            "file": name, **meta, "language": timeline.get("language") or "",
            "media_seconds": record.get("media_seconds"), "utterance": k, "start": u.get("start"),
            "end": u.get("end"), "text": u.get("text", ""), "quality": u.get("quality", ""),
            "score": np.nan if score is None else float(score), "polarity": polarity, "sentiment": sentiment,
            "scene": u.get("scene", ""),
        }  # fmt: skip
        aspects = u.get("aspects") or []
        if not aspects:
            yield {**base, **dict.fromkeys(ASPECT_FIELDS, "")} | dict.fromkeys(ASPECT_NUMBERS)
        for a in aspects:
            yield {
                **base, "aspect_term": a.get("term", ""), "aspect_polarity": a.get("polarity", ""),
                "aspect_score": float(a.get("score", np.nan)), "aspect_start": a.get("start"),
                "aspect_end": a.get("end"), "aspect_evidence": a.get("evidence", ""),
            }  # fmt: skip


# ------------------------------------------------------------------------ plots


def _time_bins(dates: pd.Series) -> tuple[pd.Series, str]:
    """Dates binned so a plot has at most a few dozen points: days, weeks or months."""
    span = (dates.max() - dates.min()).days
    freq, label = ("D", "day") if span <= 31 else ("W", "week") if span <= 120 else ("M", "month")
    return dates.dt.to_period(freq).dt.start_time, label


def plot_groups(table: pd.DataFrame, path: Path, *, title: str = "") -> None:
    """Four panels: mean utterance sentiment per group over time (or per group without dates), aspect
    polarity shares per group, mean sentiment per scene and group, and the most frequent aspects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    utt = table.drop_duplicates(["file", "utterance"]).copy()
    group_col = "outlet" if "outlet" in utt and utt["outlet"].astype(bool).any() else None
    utt["group"] = utt[group_col].replace("", "(none)") if group_col else "all files"
    groups = sorted(utt["group"].unique())
    colours = {g: plt.get_cmap("tab10")(k % 10) for k, g in enumerate(groups)}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))

    ax = axes[0, 0]
    has_dates = "date" in utt and utt["date"].astype(bool).any()
    if has_dates:
        dated = utt[utt["date"].astype(bool)].copy()
        dated["when"], unit = _time_bins(pd.to_datetime(dated["date"], format="mixed"))
        for g, part in dated.groupby("group"):
            agg = part.groupby("when")["sentiment"].agg(["mean", "count"]).reset_index()
            ax.plot(agg["when"], agg["mean"], "-o", color=colours[g], label=f"{g} ({len(part)} utt.)")
            for _, r in agg.iterrows():
                ax.annotate(str(int(r["count"])), (r["when"], r["mean"]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=7, color=colours[g])  # fmt: skip
        ax.set_xlabel(f"date (per {unit}; numbers: utterances)")
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        ax.legend(fontsize=8)
    else:
        agg = utt.groupby("group")["sentiment"].agg(["mean", "std", "count"]).reindex(groups)
        ax.bar(range(len(groups)), agg["mean"], yerr=agg["std"].fillna(0), color=[colours[g] for g in groups])
        ax.set_xticks(range(len(groups)), [f"{g}\n(n={int(n)})" for g, n in zip(groups, agg["count"], strict=True)])
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_ylabel("mean utterance sentiment")
    ax.set_title("sentiment per " + ("outlet over time" if has_dates else "group"), fontsize=10)

    ax = axes[0, 1]
    asp = table[table["aspect_term"].astype(bool)].copy()
    if len(asp):
        asp["group"] = asp[group_col].replace("", "(none)") if group_col else "all files"
        shares = pd.crosstab(asp["group"], asp["aspect_polarity"], normalize="index").reindex(groups).fillna(0)
        counts = asp["group"].value_counts().reindex(groups).fillna(0)
        left = np.zeros(len(groups))
        for pol, colour in (("positive", "tab:green"), ("neutral", "0.7"), ("negative", "tab:red")):
            if pol in shares:
                ax.barh(range(len(groups)), shares[pol], left=left, color=colour, label=pol)
                left += shares[pol].to_numpy()
        ax.set_yticks(range(len(groups)), [f"{g} (n={int(counts[g])})" for g in groups])
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no aspects found", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("share of aspect mentions")
    ax.set_title("aspect polarity per group", fontsize=10)

    ax = axes[1, 0]
    scened = utt[utt["scene"].astype(bool)]
    if len(scened):
        mean = scened.pivot_table(index="scene", columns="group", values="sentiment", aggfunc="mean")
        count = scened.pivot_table(index="scene", columns="group", values="sentiment", aggfunc="count")
        limit = max(1e-6, float(np.nanmax(np.abs(mean.to_numpy()))))
        image = ax.imshow(mean.to_numpy(), cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
        for (i, j), value in np.ndenumerate(mean.to_numpy()):
            if np.isfinite(value):
                ax.text(j, i, f"{value:+.2f}\nn={int(count.iloc[i, j])}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(mean.columns)), list(mean.columns), fontsize=8)
        ax.set_yticks(range(len(mean.index)), list(mean.index), fontsize=8)
        fig.colorbar(image, ax=ax, label="mean sentiment")
    else:
        ax.text(0.5, 0.5, "no scene labels", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("sentiment per scene (utterance's majority frame label)", fontsize=10)

    ax = axes[1, 1]
    if len(asp):
        terms = asp.assign(term=asp["aspect_term"].str.lower()).groupby("term")["aspect_score"].agg(["count", "mean"])
        top = terms.sort_values(["count", "mean"], ascending=[False, True]).head(12)[::-1]
        ax.barh(range(len(top)), top["count"], color=plt.get_cmap("RdYlGn")((top["mean"].to_numpy() + 1) / 2))
        ax.set_yticks(range(len(top)), list(top.index), fontsize=8)
        ax.set_xlabel("mentions (colour: mean aspect score, red -1 .. green +1)")
    else:
        ax.text(0.5, 0.5, "no aspects found", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("most frequent aspects", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
