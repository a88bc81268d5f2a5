"""Persisted `/v1/analyze` jobs: one private folder per job, its state in an atomically written
``job.json``, run by a bounded worker pool over `msakit.analyze` (the code path `msakit analyze` uses).

A job is ``queued`` -> ``running`` -> ``done`` or ``failed``. A service restarted mid-job finds
the job still ``queued`` or ``running`` on disk and reports it ``failed`` with the reason: it is
never lost silently. Uploaded files are stored under names the service chooses (the client's
file name is never a path) and removed when the job ends; only the timeline artefacts stay.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from msakit.errors import DataError, MsakitError
from msakit.io import atomic_write_json

log = logging.getLogger(__name__)
ARTIFACTS = ("timeline.json", "timeline.csv", "timeline.png")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
STATES = ("queued", "running", "done", "failed")
# leading bytes of the containers `msakit analyze` reads (what ffmpeg/PyAV decode), by suffix
MAGIC: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    (".mp4", lambda b: b[4:8] == b"ftyp"),
    (".mkv", lambda b: b[:4] == b"\x1a\x45\xdf\xa3"),
    (".wav", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE"),
    (".flac", lambda b: b[:4] == b"fLaC"),
    (".ogg", lambda b: b[:4] == b"OggS"),
    (".mp3", lambda b: b[:3] == b"ID3" or (len(b) > 1 and b[0] == 0xFF and b[1] & 0xE0 == 0xE0)),
    (".avi", lambda b: b[:4] == b"RIFF" and b[8:12] == b"AVI "),
)
TRANSCRIPT_SUFFIXES = (".srt", ".vtt", ".csv", ".txt")

# (media, transcript or None, output folder, progress(stage, fraction)) -> None; writes ARTIFACTS into the folder
AnalyzeFn = Callable[[Path, Path | None, Path, Callable[[str, float], None]], None]
PROGRESS_EVERY_S = 0.5  # a running job's job.json is rewritten at most this often for progress alone


def media_suffix(head: bytes) -> str | None:
    """The container suffix of an upload from its first bytes; None for anything else."""
    return next((suffix for suffix, test in MAGIC if test(head)), None)


def default_analyze(checkpoint: str | None) -> AnalyzeFn:
    """`msakit analyze` as a job: one `Analyzer` (checkpoint and extractors) per job worker thread,
    loaded on its first job (the extractors are not known to be thread-safe, so workers share none)."""
    local, first = threading.local(), threading.Lock()

    def run(media: Path, transcript: Path | None, out: Path, progress: Callable[[str, float], None]) -> None:
        from msakit.analyze import Analyzer, write_outputs

        if not hasattr(local, "analyzer"):
            # a worker's first job runs alone: the extractors import their libraries lazily, and two
            # threads importing the same modules at once can see them half initialised (ImportError)
            with first:
                progress("load model", 0.0)
                local.analyzer = Analyzer(checkpoint)
                write_outputs(local.analyzer.analyze(media, transcript, progress=progress), out)
            return
        write_outputs(local.analyzer.analyze(media, transcript, progress=progress), out)

    return run


class JobStore:
    def __init__(self, root: str | Path, analyze: AnalyzeFn, *, workers: int = 1, max_queue: int = 8) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.analyze, self.workers, self.max_queue = analyze, workers, max_queue
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="msakit-job")
        self.lock = threading.Lock()
        self.pending = 0  # queued or running in this process
        self.recover()

    def _path(self, job_id: str) -> Path:
        return self.root / job_id / "job.json"

    def _write(self, job: dict[str, Any]) -> None:
        job["updated"] = time.time()
        atomic_write_json(self._path(job["id"]), job)

    def get(self, job_id: str) -> dict[str, Any] | None:
        if not JOB_ID.match(job_id) or not self._path(job_id).is_file():
            return None
        try:
            job: dict[str, Any] = json.loads(self._path(job_id).read_text())
        except (OSError, ValueError):
            return None
        return job

    def artifact(self, job_id: str, name: str) -> Path | None:
        job = self.get(job_id)
        if job is None or job["status"] != "done" or name not in ARTIFACTS:
            return None
        path = self.root / job_id / "out" / name
        return path if path.is_file() else None

    def recover(self) -> None:
        """Jobs a previous process left queued or running are reported failed, with the reason."""
        for path in sorted(self.root.glob("*/job.json")):
            job = self.get(path.parent.name)
            if job is not None and job["status"] in ("queued", "running"):
                reason = f"the service restarted while the job was {job['status']}; submit it again"
                job.update(status="failed", error=reason)
                self._write(job)
                shutil.rmtree(path.parent / "input", ignore_errors=True)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for path in self.root.glob("*/job.json"):
            job = self.get(path.parent.name)
            if job is not None and job.get("status") in counts:
                counts[job["status"]] += 1
        return counts

    def queue_depth(self) -> int:
        return max(0, self.pending - self.workers)

    def submit(
        self,
        media: bytes,
        suffix: str,
        transcript: bytes | None,
        transcript_suffix: str,
        check: Callable[[Path], object] | None = None,
    ) -> dict[str, Any] | None:
        """The new job, or None when `max_queue` jobs already wait (the caller answers 429).

        `check(media_path)` (the service's media limits) and the transcript's parse run here and
        raise (`DataError`) before any job exists."""
        job_id = uuid.uuid4().hex
        folder = self.root / job_id / "input"
        folder.mkdir(parents=True, mode=0o700)
        try:
            (folder / f"media{suffix}").write_bytes(media)
            if check is not None:
                check(folder / f"media{suffix}")
            if transcript is not None:
                path = folder / f"transcript{transcript_suffix}"
                path.write_bytes(transcript)
                from msakit.extract.speech import read_transcript

                try:
                    read_transcript(path)
                except DataError as exc:
                    raise DataError(str(exc).replace(str(path), "transcript")) from None
            with self.lock:
                if self.pending >= self.workers + self.max_queue:
                    shutil.rmtree(folder.parent, ignore_errors=True)
                    return None
                self.pending += 1
        except BaseException:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise
        job = {"id": job_id, "status": "queued", "progress": 0.0, "error": None, "created": time.time()}
        job["artifacts"] = []
        self._write(job)
        self.executor.submit(self._run, job, folder / f"media{suffix}", transcript is not None, transcript_suffix)
        return job

    def _run(self, job: dict[str, Any], media: Path, has_transcript: bool, transcript_suffix: str) -> None:
        try:
            job.update(status="running", progress=0.0)
            self._write(job)
            transcript = media.parent / f"transcript{transcript_suffix}" if has_transcript else None
            last = [0.0]

            def progress(stage: str, fraction: float) -> None:
                job.update(stage=stage, progress=round(min(max(fraction, 0.0), 0.99), 3))
                if time.monotonic() - last[0] >= PROGRESS_EVERY_S:  # a poll sees it; not a write per utterance
                    last[0] = time.monotonic()
                    self._write(job)

            self.analyze(media, transcript, self.root / job["id"] / "out", progress)
            job.update(status="done", stage="done", progress=1.0, artifacts=list(ARTIFACTS))
        except MsakitError as exc:  # bad input: the message says what is wrong with the upload
            job.update(status="failed", error=" ".join(str(exc).replace(str(media.parent) + os.sep, "").split()))
        except Exception as exc:  # a bug or the machine: say so, keep the service running
            log.exception("job %s failed", job["id"])  # the traceback stays in the server's log
            job.update(status="failed", error=f"internal error: {type(exc).__name__}")
        finally:
            shutil.rmtree(media.parent, ignore_errors=True)
            self._write(job)
            with self.lock:
                self.pending -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
