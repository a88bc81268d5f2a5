"""Typed errors. Each names the file and/or field at fault; the CLI maps them to exit code 2."""

from __future__ import annotations


class MsakitError(Exception):
    """Base class for every error msakit raises on bad input or configuration."""


class ConfigError(MsakitError, ValueError):
    """An unknown or mistyped configuration field, or an impossible combination."""


class DataError(MsakitError, ValueError):
    """A data file that is malformed, inconsistent or unsafe.

    `path` and `field` name what is at fault, when known.
    """

    def __init__(self, message: str, *, path: object = None, field: str | None = None) -> None:
        where = ", ".join(p for p in (f"file {path}" if path else "", f"field {field!r}" if field else "") if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.field = field


class UnsafePickleError(DataError):
    """A pickle asked to build an object outside the restricted allow-list."""


class TrainingError(MsakitError, RuntimeError):
    """Training cannot go on (e.g. the loss diverged); the last good checkpoint is intact."""
