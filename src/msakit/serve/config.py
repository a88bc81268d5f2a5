"""The service's limits and security settings, named in one place and enforced by the app."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from msakit.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# what the analyser's FFmpeg (PyAV) decodes and real opinion videos use; anything else is refused
VIDEO_CODECS = ("h264", "hevc", "mpeg4", "vp8", "vp9", "av1", "mjpeg", "theora")
AUDIO_CODECS = ("aac", "mp3", "opus", "vorbis", "flac", "pcm_s16le", "pcm_s24le", "pcm_f32le", "pcm_u8")


@dataclass(frozen=True)
class ServeConfig:
    """host/port: where to bind (loopback unless told otherwise; elsewhere a token is required).
    token: the API token clients send as ``Authorization: Bearer <token>`` (None: no auth, loopback only).
    max_upload_bytes: largest request body accepted (413 above).
    max_samples / max_steps: samples per /v1/predict request, steps per sample and modality (422 above).
    request_timeout_s: a prediction still running after this answers 504.
    max_concurrency: predictions run at once; max_queue: further ones that may wait. Beyond both: 429
        with ``Retry-After: retry_after_s``.
    max_media_seconds: longest /v1/analyze upload (422 above), read from the container by PyAV.
    media_containers / media_codecs: accepted PyAV/FFmpeg container and audio/video codec names (415 otherwise).
    job_workers: analyses run at once (each decodes, transcribes and predicts on the CPU); job_queue:
        further ones that may wait (429 above).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_bytes: int = 8 * 1024 * 1024
    max_samples: int = 256
    max_steps: int = 1024
    request_timeout_s: float = 30.0
    max_concurrency: int = 2
    max_queue: int = 32
    retry_after_s: int = 1
    max_media_seconds: float = 600.0
    media_containers: tuple[str, ...] = ("mp4", "mov", "matroska", "webm", "avi", "wav", "mp3", "flac", "ogg")
    media_codecs: tuple[str, ...] = VIDEO_CODECS + AUDIO_CODECS
    job_workers: int = 1
    job_queue: int = 8

    def __post_init__(self) -> None:
        positive = (
            "max_upload_bytes", "max_samples", "max_steps", "request_timeout_s", "max_concurrency",
            "max_media_seconds", "job_workers",
        )  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"serve: {name} must be positive, got {getattr(self, name)}")
        if self.max_queue < 0 or self.retry_after_s < 0 or self.job_queue < 0:
            raise ConfigError("serve: max_queue, job_queue and retry_after_s must not be negative")
        if not 0 < self.port < 65536:
            raise ConfigError(f"serve: port must be in 1..65535, got {self.port}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("serve: the API token is empty")
        if not is_loopback(self.host) and self.token is None:
            raise ConfigError(
                f"serve: binding to {self.host} (not loopback) requires an API token "
                "(--token or the MSAKIT_SERVE_TOKEN environment variable)"
            )
