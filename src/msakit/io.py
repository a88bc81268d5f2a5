"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every writer in msakit goes through `atomic_path` (for libraries that write by file
name, e.g. matplotlib) or `atomic_open` (a file handle): the data goes to a temporary
sibling that is renamed onto the target only when the block finishes without error.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from msakit.errors import EnvironmentFailure, MsakitError, OutputError


def umask_mode(mode: int = 0o666) -> int:
    """`mode` as the user's umask would make it (0o644 for files, 0o755 for folders, typically)."""
    return mode & ~_umask()


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask sets it, racing other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """A temporary sibling of `path` to write to; renamed onto `path` if the block succeeds.

    The file gets the mode the user's umask gives a new file (mkstemp's would be 0600).
    An `OSError` of the file system (full, read-only, no permission) becomes an
    `EnvironmentFailure` naming `path`; `path` naming a folder is an `OutputError`.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder; name a file to write", path=path)
    try:
        ensure_dir(path.parent)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _os_failure(exc, path) from exc
    tmp = Path(name)
    try:
        yield tmp
        try:
            tmp.chmod(umask_mode())
            os.replace(tmp, path)
        except OSError as exc:
            raise _os_failure(exc, path) from exc
    finally:
        tmp.unlink(missing_ok=True)  # only still there when the block failed


def ensure_dir(path: str | Path) -> Path:
    """`mkdir -p path`, with one clear error when a part of it is a file or cannot be made."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                raise OutputError(f"is a file, not a folder (it cannot hold {path.name!r})", path=part)
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_failure(exc, path) from exc
    return path


def check_out_file(path: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse an output file that exists (unless `overwrite`) or whose folder is a file."""
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder; name a file to write", path=path)
    if path.exists() and not overwrite:
        raise OutputError("exists; pass --overwrite to replace it", path=path)
    for part in path.parents:
        if part.exists():
            if not part.is_dir():
                raise OutputError(f"is a file, not a folder (it cannot hold {path.name!r})", path=part)
            break
    return path


def check_out_dir(path: str | Path) -> Path:
    """Refuse an output folder that is an existing file (or lies under one)."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                what = "--out" if part == path else f"a parent of {path}"
                raise OutputError(f"is a file, not a folder ({what} must be a folder)", path=part)
            break
    return path


def _os_failure(exc: OSError, path: Path) -> MsakitError:
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return OutputError(f"cannot write here: {exc.strerror}", path=exc.filename or path)
    return EnvironmentFailure.from_os_error(exc, path)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """`open(path, mode)` that only replaces `path` once the block has written everything."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        try:
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as exc:
            raise _os_failure(exc, Path(path)) from exc


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stale_dir_prefix(path: str | Path) -> str:
    """The name prefix of `atomic_dir`'s temporary siblings of `path` (for cleaning up)."""
    return f".{Path(path).name}.tmp-"


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary sibling folder to fill; it becomes `path` only once the block succeeds.

    Every file is fsynced, then the folder is renamed into place (an existing `path` is
    moved to `.NAME.old` first and removed after), so a reader, or a run killed at any
    moment, sees the old folder or the complete new one. A kill between the two renames
    leaves only `.NAME.old`, which `recover_dir` puts back.
    """
    path = Path(path)
    ensure_dir(path.parent)
    for stale in path.parent.glob(stale_dir_prefix(path) + "*"):  # left by a writer killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=stale_dir_prefix(path), dir=path.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_path(f)
        tmp.chmod(umask_mode(0o777))  # mkdtemp makes it 0700
        _fsync_path(tmp)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_path(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_dir(path: str | Path) -> Path | None:
    """`path` if it exists, else its `.NAME.old` left by an interrupted `atomic_dir` swap
    (renamed back); stale temporary siblings are removed. None when neither exists."""
    path = Path(path)
    if path.parent.is_dir():
        for stale in path.parent.glob(stale_dir_prefix(path) + "*"):
            shutil.rmtree(stale, ignore_errors=True)
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)
    return path if path.exists() else None
