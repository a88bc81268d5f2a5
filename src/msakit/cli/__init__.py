"""The `msakit` command line.

Each command lives in a module of this package exposing `register(subparsers)`; the
module's functions do the work. Modules are discovered, so adding a command is adding
a file here. Errors from bad input (`MsakitError`) print one clear
line and exit with code 2; nothing is half written because every writer is atomic.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from msakit.errors import MsakitError

# listed first in `msakit --help`; every other command module follows by name
FIRST = ("run", "train", "evaluate", "info", "data")


def command_modules() -> list[str]:
    found = {i.name for i in pkgutil.iter_modules(__path__) if not i.name.startswith("_") and i.name != "common"}
    return [m for m in FIRST if m in found] + sorted(found - set(FIRST))


def build_parser() -> argparse.ArgumentParser:
    from msakit import __version__

    parser = argparse.ArgumentParser(
        prog="msakit",
        description="Robust multimodal sentiment analysis: train, evaluate, explain.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"msakit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(f"msakit.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MsakitError as exc:
        print(f"msakit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"msakit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
