"""`msakit models` and `msakit datasets`: what the registry and the readers offer."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from msakit.cli.common import FORMATTER


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list registered models",
        description="List every registered model; with --details, each config field with its type and default.",
        formatter_class=FORMATTER,
    )
    p.add_argument("--details", action="store_true", help="show each model's config fields")
    p.add_argument("name", nargs="?", help="show only this model")
    p.set_defaults(func=run_models)

    p = subparsers.add_parser(
        "datasets",
        help="list dataset sources: synthetic presets and preparable real datasets",
        description="List the dataset specs `--data` accepts and the real datasets `msakit data prepare` builds.",
        formatter_class=FORMATTER,
    )
    p.set_defaults(func=run_datasets)


def run_models(args: argparse.Namespace) -> int:
    from msakit.registry import get_model_class, list_models

    names = [args.name] if args.name else list_models()
    for name in names:
        cls = get_model_class(name)
        doc = (cls.__module__ and (typing.cast(str, __import__(cls.__module__, fromlist=["x"]).__doc__) or "")).strip()
        print(f"{name:<16} {doc.splitlines()[0] if doc else ''}")
        if args.details or args.name:
            hints = typing.get_type_hints(cls.config_class)
            defaults = cls.config_class()
            for f in dataclasses.fields(cls.config_class):
                default = getattr(defaults, f.name)
                print(f"    {f.name:<22} {getattr(hints[f.name], '__name__', str(hints[f.name])):<10} {default!r}")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from msakit.data.prepare import PREPARERS
    from msakit.data.synthetic import PRESETS

    print("synthetic benchmark (no files needed):  --data synthetic[:PRESET]")
    for name, cfg in PRESETS.items():
        print(f"    synthetic:{name:<12} sizes {cfg.sizes}, dims {cfg.dims}")
    print("\nreal datasets, built by `msakit data prepare NAME --source DIR --out OUT` then `--data OUT`:")
    for name, fn in PREPARERS.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        print(f"    {name:<12} {doc[0] if doc else ''}")
    print("\nalso readable directly: MMSA pickles (aligned_50.pkl, unaligned_*.pkl) and MulT *_data_noalign.pkl")
    return 0
