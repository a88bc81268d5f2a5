"""Is a model's gap to the linear probe bias or run-to-run variance?

For each run folder (RUN/seed*/best): the mean over its seeds of each seed's own metric (what
a results table reports) beside the metric of the seeds' mean prediction (one 5-run
ensemble), on validation and on test, with the probe's row on the same clips. When the
ensemble reaches the probe while the seeds' mean does not, the gap is variance between
training runs, and only what makes the runs agree closes it.

    python benchmarks/seed_variance.py --data data/mosi-e5 'TSD, preset tsd/mosi=runs/mamba-tsd/tsd-mosi-tuned' \\
        --json docs/results/tsd_mosi_variance.json
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN")
    p.add_argument("--data", required=True)
    p.add_argument("--probe-row", default="text", help="the probe row to compare with: a modality, or all")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    runs = []
    for item in args.runs:
        label, sep, run = item.rpartition("=")  # the last "=": a label may hold one
        if not sep or not label or not run:
            p.error(f"run {item!r}: expected LABEL=RUN")
        runs.append((label, Path(run)))
    data = load_dataset(args.data)
    labels = {s: np.asarray(data.split(s).labels, dtype=np.float64).reshape(-1) for s in SPLITS}
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


if __name__ == "__main__":
    raise SystemExit(main())
