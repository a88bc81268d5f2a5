"""Is a model's gap to the linear probe bias or run-to-run variance?

For each run folder (RUN/seed*/best): the mean over its seeds of each seed's own metric (what
a results table reports) beside the metric of the seeds' mean prediction (one 5-run
ensemble), on validation and on test, with the probe's row on the same clips. When the
ensemble reaches the probe while the seeds' mean does not, the gap is variance between
training runs, and only what makes the runs agree closes it.

    python benchmarks/seed_variance.py --data data/mosi-e5 'TSD, preset tsd/mosi=runs/mamba-tsd/tsd-mosi-tuned' \\
        --json docs/results/tsd_mosi_variance.json

With `--sizes K,K,...` each RUN is a deep-ensemble run (`msakit train ... -t ensemble=N`,
RUN/seedS/member{j}/best) and the table has one row per size K <= N: the 5-seed mean ± std
of the ensemble of each seed's first K members (K = 1 is member 0, the plain run), on
validation only unless `--test` (so the size is chosen before any test number is read). The
reading names the size each run's rule picks: the lowest mean validation MAE, where a larger
K must beat a smaller one by more than `--margin` (it costs K× the training).

    python benchmarks/seed_variance.py --data data/mosi-e5 --sizes 1,3,5 'TSD=runs/tsdcag/s8-tsd-mosi-k5'
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from msakit.data import load_dataset
from msakit.io import atomic_write_json
from msakit.training import load_checkpoint
from msakit.training.sealed import refuse_sealed
from msakit.training.trainer import predict_split
from probe_gap import METRICS, model_test_predictions, probe_test_predictions

SPLITS = ("valid", "test")
SHOWN = (("Corr", "Corr", 3), ("MAE", "MAE", 3), ("Non0_acc_2", "Non0 Acc-2", 1))


def summarise(predictions: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float]]:
    """Per metric: the seeds' mean and sample std of their own metric, and the mean prediction's metric."""
    out = {}
    for name, (fn, _) in METRICS.items():
        per_seed = fn(predictions, y)
        out[name] = {
            "seeds_mean": float(per_seed.mean()),
            "seeds_std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
            "ensemble": float(fn(predictions.mean(0), y)),
        }
    return out


def _cell(name: str, value: float, digits: int) -> str:
    return f"{100 * value:.{digits}f}" if name == "Non0_acc_2" else f"{value:.{digits}f}"


def markdown(command: str, probe: dict[str, dict[str, float]], rows: dict[str, Any]) -> str:
    header = ["run", "seeds"]
    for split in SPLITS:
        for _, label, _ in SHOWN:
            header += [f"{split} {label}: seeds' mean", f"{split} {label}: mean prediction"]
    lines = [f"```bash\n{command}\n```", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells = ["linear probe", "–"]
    for split in SPLITS:
        for key, _, digits in SHOWN:
            cells += [_cell(key, probe[split][key], digits), "–"]
    lines.append("| " + " | ".join(cells) + " |")
    for label, row in rows.items():
        cells = [label, str(row["seeds"])]
        for split in SPLITS:
            for key, _, digits in SHOWN:
                m = row[split][key]
                seeds = _cell(key, m["seeds_mean"], digits) + " ± " + _cell(key, m["seeds_std"], digits)
                cells += [seeds, _cell(key, m["ensemble"], digits)]
        lines.append("| " + " | ".join(cells) + " |")
    reach = [
        label
        for label, row in rows.items()
        if row["test"]["Corr"]["ensemble"] >= probe["test"]["Corr"] > row["test"]["Corr"]["seeds_mean"]
    ]
    lines += [
        "",
        "Reading (computed from the table):",
        "",
        "- Test Corr of the mean prediction at or above the probe while the seeds' mean is below it (the gap is "
        f"run-to-run variance): {', '.join(reach) if reach else 'none'}.",
    ]
    return "\n".join(lines)


def member_predictions(data: Any, run: Path, split: str, size: int) -> np.ndarray:
    """(seeds, size, clips): the first `size` members of each seed of an ensemble run on `split`."""
    seeds = sorted(run.glob("seed*/member0/best"), key=lambda p: int(p.parents[1].name.removeprefix("seed")))
    if not seeds:
        raise SystemExit(f"seed_variance: error: {run}: no seed*/member0/best (not a -t ensemble=K run)")
    out = []
    for first in seeds:
        members = []
        for j in range(size):
            path = first.parents[1] / f"member{j}" / "best"
            if not path.is_dir():
                raise SystemExit(f"seed_variance: error: {path}: missing (the run has fewer than {size} members)")
            model, _ = load_checkpoint(path)
            outputs = predict_split(model, data.split(split), batch_size=256)
            members.append(np.concatenate([o.prediction.float().reshape(-1).numpy() for o, _ in outputs]))
        out.append(members)
    return np.asarray(out, dtype=np.float64)


def size_rows(predictions: np.ndarray, y: np.ndarray, sizes: list[int]) -> dict[int, dict[str, dict[str, float]]]:
    """K -> metric -> {mean, std} over the seeds of the ensemble of each seed's first K members."""
    out = {}
    for k in sizes:
        ensemble = predictions[:, :k].mean(1)  # (seeds, clips)
        out[k] = {}
        for name, (fn, _) in METRICS.items():
            per_seed = fn(ensemble, y)
            std = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0
            out[k][name] = {"mean": float(per_seed.mean()), "std": std}
    return out


def chosen_size(valid_mae: dict[int, float], margin: float) -> int:
    """The size the rule picks: lowest mean validation MAE, a larger K only when lower by more than `margin`."""
    best = min(valid_mae)
    for k in sorted(valid_mae):
        if valid_mae[k] < valid_mae[best] - margin:
            best = k
    return best


def sizes_markdown(command: str, rows: dict[str, Any], splits: tuple[str, ...], margin: float) -> str:
    header = ["run", "members K", "seeds"] + [f"{s} {label}" for s in splits for _, label, _ in SHOWN]
    lines = [f"```bash\n{command}\n```", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    reading = []
    for label, row in rows.items():
        for k, by_split in row["sizes"].items():
            cells = [label, str(k), str(row["seeds"])]
            for s in splits:
                for key, _, digits in SHOWN:
                    m = by_split[s][key]
                    cells.append(_cell(key, m["mean"], digits) + " ± " + _cell(key, m["std"], digits))
            lines.append("| " + " | ".join(cells) + " |")
        maes = ", ".join(f"K = {k} {v['valid']['MAE']['mean']:.4f}" for k, v in row["sizes"].items())
        reading.append(f"{label}: validation MAE {maes}; the rule picks K = {row['chosen']}.")
    lines += ["", f"Reading (computed from the table; a larger K must be lower by more than {margin}):", ""]
    return "\n".join(lines + [f"- {r}" for r in reading])


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(k) for k in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes like 1,3,5") from None
    if sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: each size must be >= 1")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN")
    p.add_argument("--data", required=True)
    p.add_argument("--probe-row", default="text", help="the probe row to compare with: a modality, or all")
    p.add_argument("--json", type=Path)
    p.add_argument("--sizes", type=_sizes, help="ensemble sizes K, comma-separated: each RUN is a -t ensemble=N run")
    p.add_argument("--test", action="store_true", help="with --sizes: the test split too (after the choice)")
    p.add_argument("--margin", type=float, default=0.001, help="with --sizes: how much lower a larger K must be")
    args = p.parse_args(argv)
    runs = []
    for item in args.runs:
        label, sep, run = item.rpartition("=")  # the last "=": a label may hold one
        if not sep or not label or not run:
            p.error(f"run {item!r}: expected LABEL=RUN")
        runs.append((label, Path(run)))
    if args.test or not args.sizes:  # --sizes without --test reads validation only, which a sealed run allows
        refuse_sealed([run for _, run in runs], "seed_variance")
    data = load_dataset(args.data)
    labels = {s: np.asarray(data.split(s).labels, dtype=np.float64).reshape(-1) for s in SPLITS}
    if args.sizes:
        return _sizes_main(args, runs, data, labels)
    probe_pred, probe_info = probe_test_predictions(data, args.probe_row)
    probe = {
        "valid": {k: float(probe_info["valid"][k]) for k, _, _ in SHOWN},
        "test": {k: float(fn(probe_pred, labels["test"])) for k, (fn, _) in METRICS.items()},
    }
    rows: dict[str, Any] = {}
    for label, run in runs:
        preds = {s: model_test_predictions(data, run, split=s) for s in SPLITS}
        rows[label] = {"run": str(run), "seeds": len(preds["test"])}
        rows[label].update({s: summarise(preds[s], labels[s]) for s in SPLITS})
    command = "python benchmarks/seed_variance.py " + " ".join(
        [f"--data {shlex.quote(args.data)}"]
        + ([f"--probe-row {args.probe_row}"] if args.probe_row != "text" else [])
        + [shlex.quote(r) for r in args.runs]
    )
    text = markdown(command, probe, rows)
    print(text)
    if args.json is not None:
        atomic_write_json(
            args.json, {"command": command, "data": args.data, "probe": probe, "rows": rows, "markdown": text}
        )
    return 0


def _sizes_main(args: argparse.Namespace, runs: list[tuple[str, Path]], data: Any, labels: dict[str, Any]) -> int:
    splits = SPLITS if args.test else ("valid",)
    sizes = args.sizes
    rows: dict[str, Any] = {}
    for label, run in runs:
        preds = {s: member_predictions(data, run, s, max(sizes)) for s in splits}
        by_size = {s: size_rows(preds[s], labels[s], sizes) for s in splits}
        per_k = {k: {s: by_size[s][k] for s in splits} for k in sizes}
        chosen = chosen_size({k: per_k[k]["valid"]["MAE"]["mean"] for k in sizes}, args.margin)
        rows[label] = {"run": str(run), "seeds": len(preds["valid"]), "sizes": per_k, "chosen": chosen}
    command = "python benchmarks/seed_variance.py " + " ".join(
        [f"--data {shlex.quote(args.data)}", "--sizes " + ",".join(map(str, sizes))]
        + (["--test"] if args.test else [])
        + ([f"--margin {args.margin}"] if args.margin != 0.001 else [])
        + [shlex.quote(r) for r in args.runs]
    )
    text = sizes_markdown(command, rows, splits, args.margin)
    print(text)
    if args.json is not None:
        atomic_write_json(args.json, {"command": command, "data": args.data, "rows": rows, "markdown": text})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
