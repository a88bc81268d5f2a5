"""Opening media with PyAV (FFmpeg's libraries): probe, decode audio, sample video frames.

Every failure becomes a `DataError` naming the file and what is wrong with it: missing,
over the size limit, not a media file, corrupt or truncated, an unsupported codec, no
audio / no video stream. Nothing here shells out to an ffmpeg binary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msakit.errors import DataError

AUDIO_RATE = 16000  # Hz; openSMILE, parselmouth, silero-vad and pocketsphinx all accept it
DEFAULT_MAX_MB = 2048.0
SILENCE_DBFS = -60.0  # a track whose peak is below this is treated as silence


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    duration: float  # seconds (container's, else longest stream's)
    has_audio: bool
    has_video: bool
    fps: float  # 0 without video
    width: int
    height: int
    audio_codec: str
    video_codec: str


def _open(path: Path) -> Any:
    import av

    try:
        return av.open(str(path))
    except av.error.InvalidDataError as exc:
        raise DataError(f"not a readable audio/video file, or its header is corrupt ({exc})", path=path) from exc
    except av.error.FFmpegError as exc:
        raise DataError(f"cannot open media: {exc}", path=path) from exc


def probe(path: str | Path, *, max_mb: float = DEFAULT_MAX_MB) -> MediaInfo:
    """MediaInfo of `path`; DataError when it is missing, too large, not media, or undecodable."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    size_mb = path.stat().st_size / 2**20
    if size_mb > max_mb:
        raise DataError(
            f"file is {size_mb:.1f} MB, over the limit of {max_mb:g} MB (raise it with --max-mb)", path=path
        )
    if size_mb == 0:
        raise DataError("file is empty", path=path)
    with _open(path) as container:
        audio = [s for s in container.streams.audio]
        video = [s for s in container.streams.video]
        if not audio and not video:
            raise DataError("has no audio or video stream", path=path)
        for s in (*audio, *video):
            if s.codec_context is None:
                raise DataError(f"{s.type} stream uses a codec this FFmpeg build cannot decode", path=path)
        durations = [float(s.duration * s.time_base) for s in (*audio, *video) if s.duration and s.time_base]
        duration = container.duration / 1e6 if container.duration else max(durations, default=0.0)
        v = video[0] if video else None
        return MediaInfo(
            path=path,
            duration=float(duration),
            has_audio=bool(audio),
            has_video=bool(v),
            fps=float(v.average_rate) if v is not None and v.average_rate else 0.0,
            width=int(v.codec_context.width) if v is not None else 0,
            height=int(v.codec_context.height) if v is not None else 0,
            audio_codec=audio[0].codec_context.name if audio else "",
            video_codec=v.codec_context.name if v is not None else "",
        )


def load_audio(path: str | Path, rate: int = AUDIO_RATE) -> np.ndarray:
    """(S,) float32 mono samples in [-1, 1] at `rate` Hz; DataError without an audio track."""
    import av

    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise DataError("has no audio track", path=path)
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as exc:
            if not chunks:
                raise DataError(f"audio track cannot be decoded (corrupt or truncated): {exc}", path=path) from exc
    if not chunks:
        raise DataError("audio track has no samples (truncated?)", path=path)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def sample_frames(path: str | Path, fps: float, *, max_side: int = 0) -> Iterator[tuple[float, np.ndarray]]:
    """(time in s, (H, W, 3) uint8 RGB) for one frame per 1/fps seconds.

    `max_side` > 0 downscales larger frames (keeps the aspect ratio) before they are
    returned. A stream that stops decoding midway (a truncated file) ends the iteration
    after the frames that could be read; one that yields no frame at all is an error.
    """
    import av

    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    with _open(path) as container:
        if not container.streams.video:
            raise DataError("has no video track", path=path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        next_t, n = 0.0, 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else n / max(float(stream.average_rate or 30), 1.0)
                if t + 1e-6 < next_t:
                    continue
                next_t = (np.floor(t * fps + 1e-6) + 1.0) / fps  # the next grid point after t
                if max_side and max(frame.width, frame.height) > max_side:
                    scale = max_side / max(frame.width, frame.height)
                    frame = frame.reformat(
                        width=int(frame.width * scale) // 2 * 2, height=int(frame.height * scale) // 2 * 2
                    )
                n += 1
                yield t, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            if n == 0:
                raise DataError(f"video track cannot be decoded (corrupt or truncated): {exc}", path=path) from exc
        if n == 0:
            raise DataError("video track has no decodable frame", path=path)
