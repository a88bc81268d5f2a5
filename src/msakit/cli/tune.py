"""`msakit tune`: Optuna search of a model's and the trainer's tunable fields, on validation only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from msakit.cli.common import FORMATTER, add_training_options, raw_overrides_from
from msakit.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune",
        help="search hyper-parameters with Optuna on the validation split; write the best as a preset",
        description=(
            "Search the fields declared tunable in MODEL's config and the trainer's (see `msakit tune --model M "
            "--list`) with Optuna's TPE sampler, pruning weak trials by their per-epoch validation score "
            "(--pruner: median, hyperband or successive halving). Trials never see the test split. The study is "
            "kept in OUT/study.db (or --storage), so running the same command again resumes it and several "
            "processes (--jobs N here) may share it; the best "
            "configuration is written to OUT/best.yaml for `msakit train --preset OUT/best.yaml`."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("--model", required=True, help="registered model name (see `msakit models`)")
    p.add_argument("--data", help="dataset: 'synthetic[:preset]', a prepared folder, or an MMSA/MulT .pkl")
    p.add_argument("--trials", type=int, default=20, help="finished trials the study should hold, over all runs")
    p.add_argument("--out", type=Path, help="run folder (default: runs/tune-<model>-<dataset>)")
    p.add_argument("--storage", help="Optuna RDB URL shared by several processes (default: sqlite:///OUT/study.db)")
    p.add_argument("--study", help="study name (default: <model>-<dataset>)")
    p.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    p.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="SPEC",
        help="change the search space: key=low:high[:log], key=a,b,c (choices), key=none "
        "(do not search; a named range is searched even when --preset or -m/-t fixes the field), "
        "or a YAML file {model: {field: {low, high, log, step} | {choices: [...]}}, train: {...}}; repeatable",
    )
    p.add_argument("--sampler-seed", type=int, help="seed of the TPE sampler (reproducible suggestions)")
    p.add_argument(
        "--pruner",
        default="median",
        help="how weak trials are stopped: median (MedianPruner; median:W may stop a trial from epoch W on, "
        "default 2), hyperband, sha (successive halving), none",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="tuning processes on this machine sharing the study (each trains on one thread)",
    )
    p.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="score each trial by K-fold cross-validation over the pooled train + valid splits (K fits per seed; "
        "for small datasets whose validation split is too noisy to choose on); the test split stays out",
    )
    p.add_argument(
        "--objective",
        metavar="METRIC",
        help="the metric the study optimises (default: the trainer's selection metric, which still drives "
        "early stopping), e.g. Non0_acc_2 while early stopping on MAE",
    )
    p.add_argument("--list", action="store_true", help="print the search space and exit")
    add_training_options(p)
    p.set_defaults(func=run_tune, seeds_default=(1,))


def _space_overrides(specs: list[str]) -> dict[str, Any]:
    from msakit.tuning import load_space_file, parse_space_option

    out: dict[str, Any] = {}
    for spec in specs:
        if "=" not in spec and spec.endswith((".yaml", ".yml")):
            out.update(load_space_file(spec))
        else:
            key, value = parse_space_option(spec)
            out[key] = value
    return out


def run_tune(args: argparse.Namespace) -> int:
    from msakit.tuning import search_space, tune

    model_overrides, train_overrides = raw_overrides_from(args)
    seeds = tuple(train_overrides.pop("seeds", args.seeds_default))
    progress = bool(train_overrides.pop("progress", True))
    space_overrides = _space_overrides(args.space)
    if args.list:
        fixed = {"model": model_overrides, "train": train_overrides}
        for key, param in search_space(args.model, space_overrides, fixed=fixed).items():
            r = param.range
            where = f"one of {list(r.choices)}" if r.choices is not None else f"[{r.low}, {r.high}]"
            print(f"{key:32s} {param.kind.__name__:6s} {where}{' (log)' if r.log else ''}")
        return 0
    if not args.data:
        raise ConfigError("--data is required (except with --list)")
    if args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {args.trials}")
    from msakit.tuning import PRUNERS

    if args.pruner.partition(":")[0] not in PRUNERS:  # a bad median:W: tune() refuses it before writing
        raise ConfigError(f"--pruner {args.pruner!r} is not one of {', '.join(PRUNERS)}")
    from msakit.data import load_dataset

    dataset = load_dataset(args.data)
    label = dataset.info.name.replace(":", "-").replace("/", "-")
    out = args.out or Path("runs") / f"tune-{args.model}-{label}"
    result = tune(
        args.model,
        dataset,
        out_dir=out,
        trials=args.trials,
        data_label=label,
        storage=args.storage,
        study_name=args.study,
        timeout=args.timeout,
        seeds=seeds,
        model_overrides=model_overrides,
        train_overrides=train_overrides,
        space_overrides=space_overrides,
        sampler_seed=args.sampler_seed,
        progress=progress,
        pruner=args.pruner,
        jobs=args.jobs,
        data_spec=str(args.data),
        cv=args.cv,
        objective=args.objective,
    )
    print(
        f"\nstudy {result.study_name!r}: {result.n_complete} complete, {result.n_pruned} pruned, "
        f"{result.n_failed} failed trials ({result.seconds:.0f} s in this process)"
    )
    scored = f", {args.cv}-fold cross-validated" if args.cv else ""
    print(f"best mean validation {result.select_key} over seeds {list(seeds)}{scored}: {result.best_value:.4f}")
    for line in result.warnings:  # degenerate training, once per study (each trial's own: trials/N/results.json)
        print(f"msakit: warning: {line}", file=sys.stderr)
    for key, value in sorted(result.best_params.items()):
        print(f"  {key} = {value}")
    print(f"preset: {out / 'best.yaml'}  (msakit train --model {args.model} --data {args.data} --preset ...)")
    return 0
