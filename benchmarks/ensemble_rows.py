"""The single-model row beside the deep-ensemble row, from one `-t ensemble=K` run.

Member 0 of each seed of an ensemble run is exactly the plain run of that seed (same seed,
byte-identical best weights: tests/test_ensemble.py), so one ensemble run holds both rows:
`seedS/member0/best` is the single model, `seedS/best` the K-member ensemble. This script
evaluates both, per seed, and prints the 5-seed mean ± sample std of each, with the paired
per-seed difference (ensemble − single):

    python benchmarks/ensemble_rows.py runs/ensemble/tssp-mmmo-k3 --data data/mmmo           # validation only
    python benchmarks/ensemble_rows.py runs/ensemble/tssp-mmmo-k3 --data data/mmmo --test \\
        --json docs/results/ensemble_tssp_msa_mmmo.json --command "msakit train ..."

Validation first: without `--test` only the validation split is read, so the choice
between the ensemble and the single model (5-seed validation MAE, or the run's selection
metric) is written down before any test number is seen. With `--test`, both splits.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from msakit.data import load_dataset
from msakit.io import atomic_write_json
from msakit.training import evaluate, load_checkpoint
from msakit.training.sealed import refuse_sealed

KEYS = ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Mult_acc_7", "MAE", "Corr", "Acc", "F1")


def seed_dirs(run: Path) -> list[Path]:
    dirs = sorted(run.glob("seed*/"), key=lambda p: int(p.name.removeprefix("seed")))
    dirs = [d for d in dirs if (d / "best").is_dir() and (d / "member0" / "best").is_dir()]
    if not dirs:
        raise SystemExit(f"ensemble_rows: error: {run}: no seed*/best with a member0/best (not an ensemble run)")
    return dirs


def rows(run: Path, data: Any, splits: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per seed: {seed, size, single: {split: metrics}, ensemble: {split: metrics}}."""
    out = []
    for d in seed_dirs(run):
        entry: dict[str, Any] = {"seed": int(d.name.removeprefix("seed"))}
        for kind, path in (("single", d / "member0" / "best"), ("ensemble", d / "best")):
            model, meta = load_checkpoint(path)
            if kind == "ensemble":
                entry["size"] = int(meta["model_config"]["size"])
            # the trainer's evaluation batch (4 x the training batch): some models' outputs depend on the batch
            # they are in (tssp_msa on MOSI-e5: seed 1's valid MAE 0.7699 at 256, 0.7716 at 128), and at the
            # trainer's batch the recorded valid / test of the plain run are reproduced exactly
            size = 4 * int((meta.get("train_config") or {}).get("batch_size", 32))
            entry[kind] = {s: evaluate(model, data.split(s), data.info.metric_set, batch_size=size) for s in splits}
        out.append(entry)
    return out


def summary(per_seed: list[dict[str, Any]], splits: tuple[str, ...]) -> dict[str, Any]:
    """kind -> split -> metric -> {mean, std}; plus "paired" split -> metric -> {mean, std} of ensemble − single."""
    out: dict[str, Any] = {}
    for kind in ("single", "ensemble"):
        out[kind] = {s: _mean_std([r[kind][s] for r in per_seed]) for s in splits}
    out["paired"] = {
        s: _mean_std([{k: r["ensemble"][s][k] - r["single"][s][k] for k in r["single"][s]} for r in per_seed])
        for s in splits
    }
    return out


def _mean_std(dicts: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for k in dicts[0]:
        v = np.array([d[k] for d in dicts], dtype=float)
        out[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def print_table(per_seed: list[dict[str, Any]], summ: dict[str, Any], splits: tuple[str, ...]) -> None:
    keys = [k for k in KEYS if k in per_seed[0]["single"][splits[0]]]
    size = per_seed[0]["size"]
    print(f"{len(per_seed)} seeds, {size}-member ensemble vs member 0 (= the plain run of each seed)")
    for s in splits:
        print(f"\n{s}:  " + "  ".join(f"{k:>17}" for k in keys))
        for kind, label in (("single", "single"), ("ensemble", f"ensemble K={size}"), ("paired", "ens - single")):
            cells = []
            for k in keys:
                m, sd = summ[kind][s][k]["mean"], summ[kind][s][k]["std"]
                raw = k in ("MAE", "Corr")  # as recorded; the accuracies in points
                cells.append(f"{m:8.3f} ± {sd:6.3f}" if raw else f"{100 * m:8.2f} ± {100 * sd:6.2f}")
            print(f"  {label:<14}" + "  ".join(f"{c:>17}" for c in cells))
        per = (
            ", ".join(f"{r['seed']}: {r['single'][s]['MAE']:.4f} -> {r['ensemble'][s]['MAE']:.4f}" for r in per_seed)
            if "MAE" in keys
            else ""
        )
        if per:
            print(f"  per-seed MAE (single -> ensemble): {per}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a `msakit train ... -t ensemble=K` run folder")
    p.add_argument("--data", required=True, help="the dataset the run was trained on")
    p.add_argument("--test", action="store_true", help="also evaluate the test split (after the validation choice)")
    p.add_argument("--json", type=Path, help="write per-seed metrics and the summary here")
    p.add_argument("--command", default="", help="the training command, recorded in --json")
    given = sys.argv[1:] if argv is None else argv
    args = p.parse_args(given)
    if args.test:  # validation alone may be read from a sealed run: that is the choice it is sealed for
        refuse_sealed([args.run], "ensemble_rows")
    data = load_dataset(args.data)
    splits = ("valid", "test") if args.test else ("valid",)
    per_seed = rows(args.run, data, splits)
    summ = summary(per_seed, splits)
    print_table(per_seed, summ, splits)
    if args.json:
        atomic_write_json(
            args.json,
            {
                "run": str(args.run),
                "data": args.data,
                "size": per_seed[0]["size"],
                "command": args.command,
                "measured_by": shlex.join(["python", "benchmarks/ensemble_rows.py", *given]),
                "seeds": per_seed,
                "summary": summ,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
