"""The `msakit` command line.

Each command lives in a module of this package exposing `register(subparsers)`; the
module's functions do the work. Modules are discovered, so adding a command is adding
a file here. A run of one command imports only the module that registers it (found by
reading the modules' `subparsers.add_parser("name", ...)` calls, not by importing them),
so `msakit predict` does not pay for what `msakit tune` or `msakit data prepare` import;
`msakit --help` registers every module.

`main` is the one error boundary: bad input (`MsakitError`, a missing or misnamed path)
prints one line naming the file and field and exits 2; an environment failure (disk
full, read-only or unwritable output, no permission) prints one line and exits 1; any
other exception is a bug: one line pointing to ``--debug`` (which shows the traceback),
exit 3. An output (``--out``, ``--json``, ``--work-dir``) that a failed command created is
removed; one that existed before keeps its old content (empty folders the run added are
pruned). A diverged training run (`TrainingError`) and an interrupted one keep their
checkpoints, for inspection and ``--resume``. Every file is written atomically, so nothing
is left half written.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import importlib
import os
import pkgutil
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from msakit.errors import ENVIRONMENT_ERRNOS, MsakitError, TrainingError, write_failure

EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 3, 130
# argparse attributes that name an output of the command (pruned when it fails)
OUTPUT_ARGS = ("out", "json", "work_dir")
# (command, attribute) outputs that are files; every other OUTPUT_ARGS value is a folder
FILE_OUTPUTS = {("eval", "json"), ("predict", "out"), ("data export", "out"), ("probe", "json"), ("export", "out")}

# listed first in `msakit --help`; every other command module follows by name
FIRST = ("run", "train", "evaluate", "info", "data")


def command_modules() -> list[str]:
    found = {i.name for i in pkgutil.iter_modules(__path__) if not i.name.startswith("_") and i.name != "common"}
    return [m for m in FIRST if m in found] + sorted(found - set(FIRST))


def commands_of(module: str) -> list[str]:
    """The command names `msakit.cli.<module>` registers, read from its source without importing it."""
    path = Path(__file__).with_name(f"{module}.py")
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_parser"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "subparsers"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append(str(node.args[0].value))
    return names


def _modules_for(argv: Sequence[str] | None) -> list[str]:
    """The command modules to register: the one owning argv's command, else (help, a typo) all of them."""
    modules = command_modules()
    args = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args if not a.startswith("-")), None)
    if command is None or "-h" in args[: args.index(command)] or "--help" in args[: args.index(command)]:
        return modules
    owners = [m for m in modules if command in commands_of(m)]
    return owners or modules


def build_parser(argv: Sequence[str] | None = None, *, every_command: bool = True) -> argparse.ArgumentParser:
    """The parser; with `every_command=False` only the module owning argv's command is imported."""
    from msakit import __version__

    parser = argparse.ArgumentParser(
        prog="msakit",
        description="Robust multimodal sentiment analysis: train, evaluate, explain.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"msakit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also: MSAKIT_DEBUG=1)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules() if every_command else _modules_for(argv):
        importlib.import_module(f"msakit.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv, every_command=False)
    args = parser.parse_args(argv)
    debug = bool(args.debug or os.environ.get("MSAKIT_DEBUG"))
    outputs = _new_outputs(args)
    name = args.command if not hasattr(args, "data_command") else f"{args.command} {args.data_command}"
    try:
        _check_outputs(args, name)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"msakit {name}: interrupted", file=sys.stderr)
        _prune(outputs)  # keep what an interrupted run finished, for --resume
        return EXIT_INTERRUPTED
    except Exception as exc:
        if isinstance(exc, TrainingError):
            _prune(outputs)  # the message points at the last good checkpoint: keep it
        else:
            _remove(outputs)
        if debug:
            raise
        code, message = classify(exc)
        if code == EXIT_BUG:
            message += f" (an msakit bug; rerun as `msakit --debug {name} ...` for the traceback)"
        print(f"msakit {name}: error: {message}", file=sys.stderr)
        return code


def classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that reached the CLI."""
    if isinstance(exc, MsakitError):
        return exc.exit_code, _one_line(str(exc))
    if isinstance(exc, OSError):
        where = f"file {exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc)
        if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)):
            return EXIT_BAD_INPUT, _one_line(f"{where}{reason}")
        if exc.errno in ENVIRONMENT_ERRNOS or exc.errno == errno.ENOTEMPTY:
            return EXIT_ENVIRONMENT, _one_line(f"{where}{reason}")
        return EXIT_ENVIRONMENT, _one_line(f"{where}{type(exc).__name__}: {reason}")
    if isinstance(exc, MemoryError):
        return EXIT_ENVIRONMENT, "out of memory"
    failed_write = write_failure(exc)
    if failed_write is not None:  # safetensors / torch.save report a failed write as their own error
        return EXIT_ENVIRONMENT, _one_line(f"cannot write ({failed_write}): {type(exc).__name__}: {exc}")
    return EXIT_BUG, _one_line(f"internal error: {type(exc).__name__}: {exc}")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 600 else line[:597] + "..."


def _check_outputs(args: argparse.Namespace, name: str) -> None:
    """Refuse, before any work, an output file that exists or an output folder that is a file."""
    from msakit.io import check_out_dir, check_out_file

    for attr in OUTPUT_ARGS:
        value = getattr(args, attr, None)
        if not isinstance(value, (str, Path)):
            continue
        if (name, attr) in FILE_OUTPUTS:
            check_out_file(value, overwrite=bool(getattr(args, "overwrite", False)))
        else:
            check_out_dir(value)


def _new_outputs(args: argparse.Namespace) -> list[Path]:
    """The output paths of this command that do not exist yet (so a failure may remove them)."""
    paths = [getattr(args, a, None) for a in OUTPUT_ARGS]
    return [Path(p) for p in paths if isinstance(p, (str, Path)) and not os.path.lexists(p)]


def _remove(paths: list[Path]) -> None:
    """Remove the outputs a failed command created (they did not exist before it started)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            with contextlib.suppress(OSError):
                path.unlink()


def _prune(paths: list[Path]) -> None:
    """Remove the empty folders a failed command left under outputs it created."""
    for path in paths:
        if not path.is_dir() or path.is_symlink():
            continue
        for folder in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        with contextlib.suppress(OSError):
            path.rmdir()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
