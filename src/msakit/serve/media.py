"""Media limits for `/v1/analyze`, checked with PyAV before a job is accepted.

An upload's leading bytes pick its container (`jobs.media_suffix`); this module then opens it
with PyAV (the library `msakit analyze` decodes with) and refuses, with the field named, a
container or codec outside `ServeConfig.media_containers` / `media_codecs` (415), media longer
than `ServeConfig.max_media_seconds` or of unknown length (422), and a file PyAV cannot open or
that holds no audio or video stream, such as a truncated mp4 (422).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from msakit.errors import DataError
from msakit.serve.config import ServeConfig


class MediaRefused(DataError):
    """An upload outside the service's media limits; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, field="media")
        self.status = status


@dataclass(frozen=True)
class MediaInfo:
    container: str  # PyAV's format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float
    codecs: tuple[str, ...]  # of the audio and video streams, in stream order


def probe(path: str | Path) -> MediaInfo:
    """Container, duration and audio/video codecs of `path`; `MediaRefused` (422) when PyAV cannot read it."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            streams = [*container.streams.video, *container.streams.audio]
            codecs = tuple(s.codec_context.name for s in streams)
            duration = container.duration / 1_000_000 if container.duration else None
            if duration is None:  # some containers only time their streams
                timed = [float(s.duration * s.time_base) for s in streams if s.duration and s.time_base]
                duration = max(timed) if timed else None
            name = container.format.name
    except (av.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__  # never str(exc): it names the private path
        raise MediaRefused(422, f"not a readable audio/video file ({reason})") from None
    if not codecs:
        raise MediaRefused(422, "the file holds no audio or video stream")
    if duration is None:
        raise MediaRefused(422, "the file does not say how long it lasts")
    return MediaInfo(container=name, duration_s=duration, codecs=codecs)


def check(path: str | Path, config: ServeConfig) -> MediaInfo:
    """`probe(path)`, then `config`'s container, codec and duration limits."""
    info = probe(path)
    if not set(info.container.split(",")) & set(config.media_containers):
        accepted = ", ".join(config.media_containers)
        raise MediaRefused(415, f"container {info.container!r} is not accepted (media_containers: {accepted})")
    refused = [c for c in info.codecs if c not in config.media_codecs]
    if refused:
        raise MediaRefused(
            415, f"codec {refused[0]!r} is not accepted (media_codecs: {', '.join(config.media_codecs)})"
        )
    if info.duration_s > config.max_media_seconds:
        raise MediaRefused(
            422, f"lasts {info.duration_s:.1f} s, over the limit of {config.max_media_seconds:g} s (max_media_seconds)"
        )
    return info
