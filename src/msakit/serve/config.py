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


@dataclass(frozen=True)
class ServeConfig:
    """host/port: where to bind (loopback unless told otherwise; elsewhere a token is required).
    token: the API token clients send as ``Authorization: Bearer <token>`` (None: no auth, loopback only).
    max_upload_bytes: largest request body accepted (413 above).
    max_samples / max_steps: samples per /v1/predict request, steps per sample and modality (422 above).
    request_timeout_s: a prediction still running after this answers 504.
    max_concurrency: predictions run at once; max_queue: further ones that may wait. Beyond both: 429
        with ``Retry-After: retry_after_s``.
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

    def __post_init__(self) -> None:
        positive = ("max_upload_bytes", "max_samples", "max_steps", "request_timeout_s", "max_concurrency")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"serve: {name} must be positive, got {getattr(self, name)}")
        if self.max_queue < 0 or self.retry_after_s < 0:
            raise ConfigError("serve: max_queue and retry_after_s must not be negative")
        if not 0 < self.port < 65536:
            raise ConfigError(f"serve: port must be in 1..65535, got {self.port}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("serve: the API token is empty")
        if not is_loopback(self.host) and self.token is None:
            raise ConfigError(
                f"serve: binding to {self.host} (not loopback) requires an API token "
                "(--token or the MSAKIT_SERVE_TOKEN environment variable)"
            )
