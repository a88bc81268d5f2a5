"""Typed errors. Each names the file and/or field at fault; the CLI maps them to exit codes.

Exit codes (`msakit.cli.main`): 2 for bad input (`MsakitError` and its subclasses other than
`EnvironmentFailure`, and argparse usage errors), 1 for an environment failure (a full
disk, a read-only or unwritable output, a missing permission), 3 for an unexpected error
(a bug: one line, the traceback with ``--debug``), 130 when interrupted.
"""

from __future__ import annotations

import errno
import os
import re


def _where(path: object, field: str | None) -> str:
    return ", ".join(p for p in (f"file {path}" if path else "", f"field {field!r}" if field else "") if p)


class MsakitError(Exception):
    """Base class for every error msakit raises on bad input or configuration."""

    exit_code = 2


class ConfigError(MsakitError, ValueError):
    """An unknown or mistyped configuration field, or an impossible combination.

    `path` and `field` name what is at fault, when known (e.g. a preset file).
    """

    def __init__(self, message: str, *, path: object = None, field: str | None = None) -> None:
        where = _where(path, None)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.field = field


class DataError(MsakitError, ValueError):
    """A data file that is malformed, inconsistent or unsafe.

    `path` and `field` name what is at fault, when known.
    """

    def __init__(self, message: str, *, path: object = None, field: str | None = None) -> None:
        where = _where(path, field)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.field = field


class UnsafePickleError(DataError):
    """A pickle asked to build an object outside the restricted allow-list."""


class CheckpointError(DataError):
    """A checkpoint (weights, config.json, optimizer state) that cannot be used."""


class OutputError(MsakitError):
    """An output path that cannot be used as asked (e.g. ``--out`` names an existing file)."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(f"{_where(path, None)}: {message}" if path else message)
        self.path = path


class EnvironmentFailure(MsakitError, OSError):
    """The machine, not the input, failed: disk full, read-only file system, no permission.

    Exit code 1. Built from an `OSError` with `from_os_error`, naming the file.
    """

    exit_code = 1

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(f"{_where(path, None)}: {message}" if path else message)
        self.path = path

    @classmethod
    def from_os_error(cls, exc: OSError, path: object = None) -> EnvironmentFailure:
        target = path or exc.filename
        reason = {
            errno.ENOSPC: "no space left on the device",
            errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system",
            errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted",
            errno.EFBIG: "file too large for this file system or limit",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        return cls(f"cannot write: {reason}", path=target)


ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO, errno.EMFILE}
)


_WRITE_FAILURES = (  # how libraries that write from C/Rust (safetensors, torch.save) report a failed write
    re.compile(r"os error (\d+)"),
    re.compile(r"(No space left on device|File too large|Read-only file system|Disk quota exceeded)"),
    re.compile(r"(PytorchStreamWriter failed writing|unexpected pos \d+ vs \d+|file write failed)"),
)


def write_failure(exc: BaseException) -> str | None:
    """The reason, when `exc` (not an OSError) is a library's report of a failed file write."""
    text = str(exc)
    for pattern in _WRITE_FAILURES:
        found = pattern.search(text)
        if found:
            code = int(found.group(1)) if found.group(1).isdigit() else None
            return os.strerror(code) if code is not None else found.group(1)
    return None


class TrainingError(MsakitError, RuntimeError):
    """Training cannot go on (e.g. the loss diverged); the last good checkpoint is intact."""
