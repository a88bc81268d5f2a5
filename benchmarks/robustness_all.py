"""Train one lean seed of every registered model per dataset, run every robustness protocol.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/robustness_all.py --out runs/robustness_all

Datasets, in this order (the most informative pairs first): real MMMO (audio + visual, the
one real set whose non-text modalities carry sentiment), real MOSI with the default features
(`mosi-e5`: e5 sentence-vector text + 73-d audio) and the synthetic benchmark; `youtube`
(audio + visual, 3 classes, 60 test samples: tiny) and `mosi` (MiniLM token states) on
request. Each (dataset, model) is trained with
`fit_with_robustness` (so the per-modality gradient log for the MLI is written), seed 1,
at most --epochs epochs with patience --patience, then evaluated with
`run_protocols(..., "all")`. Finished pairs are skipped on a rerun, so the script can be
re-run as models land. `--augment M ...` also trains M with a per-sample random missing
rate r ~ U(0, 0.9) ("<model>+rmr"), right after the plain model. Writes
OUT/<dataset>/<model>/robustness.{json,csv}, PNGs, run.json (git commit and locally modified
source files when the pair started, budget, timings), OUT/summary.md and one line per run of
the script in OUT/invocations.jsonl (command, start time, commit); OUT/plan.json lists the pairs of
the latest invocation (`--dry-run` writes it and stops).
`python benchmarks/docgen.py collect-robustness OUT` turns the run into docs/results/robustness.json,
from which `python benchmarks/docgen.py` regenerates the tables and findings of docs/robustness.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from msakit.cli.robustness import write_report
from msakit.config import TrainConfig, parse_override
from msakit.data import load_dataset
from msakit.registry import list_models
from msakit.robustness import RandomMissingRate, fit_with_robustness, run_protocols
from msakit.robustness.training import read_mli
from msakit.training import load_checkpoint

DATASETS = ("mmmo", "mosi-e5", "synthetic")  # the default run, in this order
CHOICES = (*DATASETS, "mosi", "youtube")  # all but synthetic are read from --data-root
FIRST = ("text_only", "late_fusion", "tssp_msa", "amsgfn", "tecafn", "sadgr")


def git_state() -> dict[str, Any]:
    """The commit a pair was trained from, and the tracked source files modified on top of it."""

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True, check=True).stdout.rstrip("\n")
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no", "src").splitlines()]
    return {"git_commit": git("rev-parse", "HEAD") or None, "modified_sources": dirty}


def model_sets(specs: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """`DATASET/MODEL:KEY=VALUE` (--set) -> {(dataset, model): {key: value}}."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in specs:
        target, sep, override = spec.partition(":")
        dataset, slash, model = target.partition("/")
        if not (sep and slash and dataset and model):
            raise SystemExit(f"--set {spec!r} must look like DATASET/MODEL:KEY=VALUE")
        key, value = parse_override(override)
        out.setdefault((dataset, model), {})[key] = value
    return out


def run_one(
    name: str, model: str, spec: str, out: Path, args: argparse.Namespace, augment: bool, overrides: dict[str, Any]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dataset": spec,
        "model": model,
        "model_overrides": overrides,
        "augment": "random missing rate U(0, 0.9)" if augment else None,
        "epochs": args.epochs,
        "patience": args.patience,
        "seed": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **git_state(),
    }
    dataset = load_dataset(spec)
    cfg = TrainConfig(epochs=args.epochs, patience=args.patience, seeds=(1,), progress=False, tensorboard=False)
    start = time.perf_counter()
    fit_with_robustness(
        model,
        dataset,
        out_dir=out / "train",
        model_overrides=overrides or None,
        train_config=cfg,
        train_transform=RandomMissingRate(max_rate=0.9) if augment else None,
    )
    trained = time.perf_counter() - start
    ckpt = out / "train" / "seed1" / "best"
    net, _ = load_checkpoint(ckpt)
    start = time.perf_counter()
    report = run_protocols(net, dataset, "all", checkpoint=ckpt, mli=read_mli(ckpt))
    evaluated = time.perf_counter() - start
    write_report(report, out)
    meta |= {"train_seconds": trained, "robustness_seconds": evaluated}
    (out / "run.json").write_text(json.dumps(meta, indent=1))
    return report.to_dict()


def pts(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def summary_tables(out: Path) -> str:
    lines = []
    names = sorted(p.name for p in out.iterdir() if p.is_dir()) if out.is_dir() else []
    for name in names:
        rows = []
        for path in sorted((out / name).glob("*/robustness.json")):
            r = json.loads(path.read_text())
            key, s = r["primary_metric"], r["summaries"]
            drops = s.get("drop_per_removed_modality", {})
            curves = s.get("curves", {})

            def auc(curve: str, r: dict[str, Any] = r, key: str = key, curves: dict[str, Any] = curves) -> str:
                c = curves.get(curve)
                return pts(c["metrics"][key]["auilc"]) if c else "n/a"

            mixed = next((c for c in r["conditions"] if c["curve"] == "per_sample_uniform"), None)
            mli = (s.get("mli") or {}).get("mli")
            mei = (s.get("mei") or {}).get("value")
            rows.append(
                f"| {path.parent.name} | {pts(r['clean'][key])} | "
                + " / ".join(f"{m} {pts(d[key])}" for m, d in drops.items())
                + f" | {auc('modality_shared/shared')} | {auc('step_shared/shared')} | "
                f"{auc('noise/gaussian_all')} | {auc('spectrum/fixed')} | "
                f"{pts(mixed['metrics'][key]) if mixed else 'n/a'} | "
                f"{'n/a' if mei is None else f'{mei:.2f}'} | {'n/a' if mli is None else f'{mli:.2f}'} |"
            )
        if rows:
            key = "Acc" if name == "youtube" else "Non0_acc_2"
            lines += [
                f"\n### {name} ({key} ×100, test split, seed 1, perturbation seed 0)\n",
                "| model | clean | drop when removed (points) | AUILC modality_shared | AUILC step_shared | "
                "AUILC noise | AUILC spectrum | spectrum U(0,1) | MEI | MLI |",
                "|---|---|---|---|---|---|---|---|---|---|",
                *rows,
            ]
    lines += [
        "\n### TSSP-MSA claim: < 2 points lost when one modality is missing\n",
        "| dataset | model | worst single-modality removal | drop (primary metric, points) | drop (F1, points) "
        "| < 2 points? |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        for path in sorted((out / name).glob("*/robustness.json")):
            r = json.loads(path.read_text())
            key = r["primary_metric"]
            f1 = "Non0_F1_score" if key == "Non0_acc_2" else "F1_score"
            drops = r["summaries"].get("drop_per_removed_modality", {})
            if not drops:
                continue
            worst = max(drops, key=lambda m: drops[m][key])
            ok = "yes" if 100 * drops[worst][key] < 2 else "no"
            lines.append(
                f"| {name} | {path.parent.name} | {worst} | {pts(drops[worst][key])} | {pts(drops[worst][f1])} | {ok} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/robustness_all"))
    parser.add_argument("--models", nargs="+", help="default: every registered model")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(CHOICES))
    parser.add_argument("--data-root", default="data", help="folder with the prepared datasets (`msakit data prepare`)")
    parser.add_argument("--augment", nargs="*", default=["late_fusion"], help="also train these with random rates")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="DATASET/MODEL:KEY=VALUE",
        help="a model config override for one pair, e.g. mmmo/tecafn:centre=audio (repeatable; in run.json)",
    )
    parser.add_argument("--dry-run", action="store_true", help="write OUT/plan.json, print the pairs and stop")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=5)
    args = parser.parse_args()
    sets = model_sets(args.set)
    models = args.models or sorted(list_models(), key=lambda m: (FIRST.index(m) if m in FIRST else len(FIRST), m))
    # each augmented model right after its plain one (or first, when it is not among --models)
    per_dataset = [(m, True) for m in args.augment if m not in models]
    for m in models:
        per_dataset += [(m, False)] + ([(m, True)] if m in args.augment else [])
    jobs = [(d, m, a) for d in args.datasets for m, a in per_dataset]
    args.out.mkdir(parents=True, exist_ok=True)
    # the pairs this invocation means to run, in order: what `docgen.py collect-robustness` reports as unfinished
    plan = [f"{d}/{m}+rmr" if a else f"{d}/{m}" for d, m, a in jobs]
    (args.out / "plan.json").write_text(json.dumps(plan, indent=1))
    if args.dry_run:
        print("\n".join(plan))
        return
    invocation = {
        "command": shlex.join(["python", "benchmarks/robustness_all.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **git_state(),
    }
    with (args.out / "invocations.jsonl").open("a") as f:  # every run of the script that wrote into OUT
        f.write(json.dumps(invocation) + "\n")
    for dataset, model, augment in jobs:
        label = f"{model}+rmr" if augment else model
        out = args.out / dataset / label
        if (out / "robustness.json").is_file():
            continue
        start = time.perf_counter()
        try:
            spec = "synthetic" if dataset == "synthetic" else f"{args.data_root}/{dataset}"
            run_one(dataset, model, spec, out, args, augment, sets.get((dataset, model), {}))
            print(f"{dataset}/{label}: done in {time.perf_counter() - start:.0f} s", flush=True)
        except Exception as exc:  # a model under development must not stop the others
            out.mkdir(parents=True, exist_ok=True)
            (out / "error.txt").write_text(traceback.format_exc())
            print(f"{dataset}/{label}: FAILED ({type(exc).__name__}: {exc})", flush=True)
        (args.out / "summary.md").write_text(summary_tables(args.out))


if __name__ == "__main__":
    main()
