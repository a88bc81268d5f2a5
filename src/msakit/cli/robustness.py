"""`msakit robustness` and `msakit robustness-train`: measure and train for missing/noisy modalities."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from msakit.cli.common import FORMATTER, add_training_options, overrides_from, print_result
from msakit.io import atomic_write_json
from msakit.service import write_robustness_report as write_report
from msakit.service import write_rows_csv as write_csv_atomic


def register(subparsers: argparse._SubParsersAction) -> None:
    from msakit.robustness.protocols import DEFAULT_RATES, DEFAULT_SNRS, PROTOCOL_ALIASES, PROTOCOL_CHOICES

    p = subparsers.add_parser(
        "robustness",
        help="evaluate a checkpoint under missing and noisy modalities (curves, AUILC, MEI)",
        description=(
            "Evaluate CHECKPOINT on perturbed copies of a split: whole modalities removed (modality), step-level "
            "missing at shared rates (rate) or one modality at a time (imbalanced), Gaussian noise / temporal "
            "shuffle / raw-text noise (noise), and the continuous reliability spectrum (spectrum). Writes "
            "OUT/robustness.json, OUT/robustness.csv and PNG curves. With --compare A B ..., evaluates each "
            "checkpoint and overlays their curves. See docs/robustness.md for the exact definitions."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("checkpoint", type=Path, nargs="?", help="checkpoint folder, e.g. runs/x/seed1/best")
    p.add_argument("--compare", type=Path, nargs="+", metavar="CHECKPOINT", help="several checkpoints to overlay")
    p.add_argument("--data", required=True, help="dataset spec; must match the checkpoint's features")
    p.add_argument(
        "--protocol", default="all", choices=(*PROTOCOL_CHOICES, *PROTOCOL_ALIASES), help="which protocol(s) to run"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of every perturbation (same seed, same result)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split to perturb")
    p.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=list(DEFAULT_RATES),
        help="missing rates / spectrum strengths, each in [0, 1]",
    )
    p.add_argument("--snrs", type=float, nargs="+", default=list(DEFAULT_SNRS), help="noise SNRs in dB")
    p.add_argument(
        "--modalities",
        nargs="+",
        default=[],
        help="perturb only these modalities (default: every modality of both model and data)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=128,
        help="evaluation batch size (results do not depend on it "
        "for modality removal; random perturbations are drawn per batch)",
    )
    p.set_defaults(func=run_robustness)

    t = subparsers.add_parser(
        "robustness-train",
        help="train with per-sample random missing rates and log per-modality gradient norms (MLI)",
        description=(
            "Like `msakit train`, plus: --missing-rate-max R drops each sample's steps at a random rate "
            "r ~ U(0, R) (per modality unless --shared-rate), so one checkpoint can be evaluated at every rate; "
            "per-modality gradient norms are logged to OUT/seed<N>/mli.json, which `msakit robustness` reads "
            "to report the Modality Learning Index. Modality dropout is `-t modality_dropout=P`."
        ),
        formatter_class=FORMATTER,
    )
    t.add_argument("--model", required=True, help="registered model name")
    t.add_argument("--data", required=True, help="dataset spec")
    t.add_argument("--out", type=Path, required=True, help="output folder")
    t.add_argument(
        "--missing-rate-max",
        type=float,
        default=0.0,
        help="maximum of the per-sample random missing rate, in [0, 1]; 0 disables it",
    )
    t.add_argument("--shared-rate", action="store_true", help="one random rate per sample for all its modalities")
    t.add_argument(
        "--gradient-source",
        default="input",
        choices=("input", "params"),
        help="MLI gradient norms: of input x gradient per modality, or of parameters named per modality",
    )
    t.add_argument("--no-mli", action="store_true", help="do not log gradient norms")
    add_training_options(t)
    t.set_defaults(func=run_robustness_train)


def _settings(args: argparse.Namespace) -> Any:
    from msakit.robustness.protocols import RobustnessSettings

    return RobustnessSettings(
        rates=tuple(args.rates),
        snrs=tuple(args.snrs),
        modalities=tuple(args.modalities),
        seed=args.seed,
        split=args.split,
        batch_size=args.batch_size,
    )


def _evaluate_one(checkpoint: Path, dataset: Any, args: argparse.Namespace, settings: Any) -> Any:
    from msakit.service import load_model, run_robustness

    return run_robustness(load_model(checkpoint), dataset, args.protocol, settings)


def run_robustness(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.robustness.perturbations import RobustnessError
    from msakit.training.sealed import check_split_open

    if (args.checkpoint is None) == (args.compare is None):
        raise RobustnessError("give either one CHECKPOINT or --compare A B ... (not both, not neither)")
    settings = _settings(args)  # rejects bad rates before anything is loaded
    for checkpoint in [args.checkpoint] if args.checkpoint is not None else args.compare:
        check_split_open(checkpoint, args.split)
    dataset = load_dataset(args.data)
    if args.checkpoint is not None:
        report = _evaluate_one(args.checkpoint, dataset, args, settings)
        written = write_report(report, args.out)
        _print_summary(report)
        print(f"wrote {', '.join(str(p) for p in written)}")
        return 0
    return _run_compare(args, dataset, settings)


def _run_compare(args: argparse.Namespace, dataset: Any, settings: Any) -> int:
    from msakit.robustness.plots import plot_compare
    from msakit.robustness.protocols import compare_summaries

    reports = [_evaluate_one(c, dataset, args, settings) for c in args.compare]
    labels = [r.model for r in reports]
    labels = [f"{lab}-{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    rows: list[dict[str, Any]] = []
    for label, report in zip(labels, reports, strict=True):
        write_report(report, args.out / label)
        rows.extend({"label": label, **row} for row in report.csv_rows())
        _print_summary(report)
    payload = {
        "labels": labels,
        "checkpoints": [str(c) for c in args.compare],
        "relative_robustness_normalised": compare_summaries(reports, labels),
        "reports": {label: r.to_dict() for label, r in zip(labels, reports, strict=True)},
    }
    atomic_write_json(args.out / "compare.json", json.loads(json.dumps(payload, default=str)))
    write_csv_atomic(args.out / "compare.csv", rows)
    pngs = plot_compare(reports, labels, args.out)
    print(f"wrote {args.out / 'compare.json'}, {args.out / 'compare.csv'} and {len(pngs)} overlay plot(s)")
    return 0


def _print_summary(report: Any) -> None:
    key = report.primary_metric
    print(
        f"{report.model} on {report.dataset} [{report.split}], seed {report.seed}: clean {key} {report.clean[key]:.4g}"
    )
    for name, curve in report.summaries.get("curves", {}).items():
        m = curve["metrics"][key]
        print(f"  {name:<32} AUILC {m['auilc']:.4g}  drop@max {m['drop_at_max']:+.4g}")
    for m, d in report.summaries.get("drop_per_removed_modality", {}).items():
        print(f"  drop when {m} is removed: {d[key]:+.4g}")
    mei = report.summaries.get("mei")
    if mei:
        print(f"  MEI {mei['value']:.3f}")
    mli = report.summaries.get("mli")
    if mli:
        print(f"  MLI {mli['mli']:.3f} (shares {mli['share']})")
    for c in report.conditions:
        if c.status != "ok":
            print(f"  {c.protocol}/{c.curve} {c.params}: {c.status}")


def run_robustness_train(args: argparse.Namespace) -> int:
    from msakit.data import load_dataset
    from msakit.robustness.perturbations import RandomMissingRate, check_rate
    from msakit.robustness.training import fit_with_robustness

    rate = check_rate(args.missing_rate_max, "--missing-rate-max")
    model_overrides, train_config = overrides_from(args)
    dataset = load_dataset(args.data)
    transform = RandomMissingRate(max_rate=rate, per_modality=not args.shared_rate) if rate > 0 else None
    result = fit_with_robustness(
        args.model,
        dataset,
        out_dir=args.out,
        model_overrides=model_overrides,
        train_config=train_config,
        train_transform=transform,
        log_gradients=not args.no_mli,
        gradient_source=args.gradient_source,
    )
    print_result(result, args.out)
    return 0
