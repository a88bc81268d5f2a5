"""`msakit ablate` and `msakit sweep`: paper tables from the one trainer."""

from __future__ import annotations

import argparse
from pathlib import Path

from msakit.cli.common import FORMATTER, add_training_options, overrides_from
from msakit.experiments import ExperimentTable
from msakit.io import atomic_write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ablate",
        help="train every ablation row a model declares and print the table",
        description=(
            "Run the ablation rows declared by MODEL (its paper's ablation table) on DATA, each over the same "
            "seeds with validation-only selection, and print test mean ± std per row. Writes OUT/ablation.json "
            "and OUT/ablation.md."
        ),
        formatter_class=FORMATTER,
    )
    _common(p)
    p.add_argument("--rows", nargs="+", help="run only these rows (default: all)")
    p.set_defaults(func=run_ablate)

    p = subparsers.add_parser(
        "sweep",
        help="train a model for several values of one config field",
        description="Train MODEL on DATA once per VALUE of FIELD (e.g. --field p --values 0.1 0.3 0.5).",
        formatter_class=FORMATTER,
    )
    _common(p)
    p.add_argument("--field", required=True, help="model config field to vary")
    p.add_argument("--values", nargs="+", required=True, help="values (parsed as YAML: numbers, true/false)")
    p.set_defaults(func=run_sweep_cmd)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--data", required=True, help="dataset spec")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_training_options(p)


def _finish(table: ExperimentTable, out: Path, name: str) -> int:
    md = table.markdown()
    print(f"\n{table.model} on {table.dataset}: test mean ± std over seeds\n\n{md}")
    atomic_write_json(out / f"{name}.json", table.to_dict())
    (out / f"{name}.md").write_text(md + "\n")
    return 0


def run_ablate(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.errors import ConfigError
    from msakit.experiments import ablations_of, run_rows

    model_overrides, train_config = overrides_from(args)
    rows = ablations_of(args.model)
    if args.rows:
        unknown = [r for r in args.rows if r not in rows]
        if unknown:
            raise ConfigError(f"model {args.model!r} has no ablation row(s) {unknown}; rows: {list(rows)}")
        rows = {r: rows[r] for r in args.rows}
    dataset = load_dataset(args.data)
    table = run_rows(
        args.model, dataset, rows, base_overrides=model_overrides, train_config=train_config, out_dir=args.out
    )
    return _finish(table, args.out, "ablation")


def run_sweep_cmd(args: argparse.Namespace) -> int:
    import yaml

    from msakit.data import load_dataset
    from msakit.experiments import run_sweep

    model_overrides, train_config = overrides_from(args)
    values = [yaml.safe_load(v) for v in args.values]
    dataset = load_dataset(args.data)
    table = run_sweep(
        args.model,
        dataset,
        args.field,
        values,
        base_overrides=model_overrides,
        train_config=train_config,
        out_dir=args.out,
    )
    return _finish(table, args.out, f"sweep_{args.field}")
