"""Options and steps shared by several commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msakit.config import TrainConfig, load_yaml_overrides, parse_override

if TYPE_CHECKING:  # the trainer pulls in torch and sklearn: only the commands that train import it
    from msakit.training.trainer import RunResult

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def add_training_options(parser: argparse.ArgumentParser, *, default_epochs: int | None = None) -> None:
    group = parser.add_argument_group("training")
    group.add_argument(
        "--preset",
        help="a shipped preset <model>/<dataset> (e.g. tecafn/mosi) or a YAML file with 'model:' and 'train:' sections",
    )
    group.add_argument(
        "-m",
        "--model-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the model's config (repeatable; see `msakit models --details`)",
    )
    group.add_argument(
        "-t",
        "--train-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the trainer's config, e.g. lr=3e-4 (repeatable)",
    )
    group.add_argument("--seeds", type=int, nargs="+", help="seeds to run (default: 1 2 3 4 5)")
    group.add_argument("--epochs", type=int, default=default_epochs, help="maximum epochs per seed")
    group.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def overrides_from(args: argparse.Namespace) -> tuple[dict[str, Any], TrainConfig]:
    """(model overrides, validated TrainConfig) from presets, -m/-t options and shortcuts."""
    from msakit.training.trainer import train_config_from

    model, train = raw_overrides_from(args)
    return model, train_config_from(train)


def raw_overrides_from(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, trainer) field overrides as given: the preset, then -m/-t, then --seeds/--epochs/--device."""
    preset = load_yaml_overrides(args.preset) if args.preset else {}
    model = dict(preset.get("model", {}))
    train = dict(preset.get("train", {}))
    model.update(parse_override(o) for o in args.model_opt)
    train.update(parse_override(o) for o in args.train_opt)
    for key in ("seeds", "epochs", "device"):
        value = getattr(args, key, None)
        if value is not None:
            train[key] = tuple(value) if key == "seeds" else value
    if getattr(args, "no_progress", False):
        train["progress"] = False
    return model, train


def print_result(result: RunResult, out_dir: Path) -> None:
    from msakit.report import metric_table

    n = len(result.seeds)
    if result.sealed:  # `msakit train --seal-test`: validation only, and how to open the test split
        print(f"\n{result.model} on {result.dataset}: VALIDATION metrics, mean ± std over {n} seed(s)")
        print("(the test split is sealed: it was not evaluated)\n")
        print(metric_table([(result.model, result.summary("valid"))], result.metric_set, markdown=False))
        print(f"\nresults: {out_dir / 'results.json'}; after the choice, open the test split: msakit test {out_dir}")
    else:
        print(f"\n{result.model} on {result.dataset}: test metrics, mean ± std over {n} seed(s)")
        print("(model selection and early stopping on the validation split only)\n")
        print(metric_table([(result.model, result.summary())], result.metric_set, markdown=False))
        spe = sum(s.seconds_per_epoch for s in result.seeds) / n
        print(f"\n{spe:.2f} s per epoch; results: {out_dir / 'results.json'}")
    for message in result.warnings:  # degenerate training (msakit.training.diagnostics), also in results.json
        print(f"warning: {message}")
