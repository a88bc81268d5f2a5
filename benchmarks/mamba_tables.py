"""Result tables of the TSD / AlignMamba-2 / CAGMamba docs: `collect_runs.py` plus what those docs need.

    python benchmarks/mamba_tables.py --name cagmamba_meld --metric-set classification --primary F1 \\
        --select F1_score --probe runs/probe-meld-e5.json --context-probe runs/ctxprobe-meld.json \\
        --run "CAGMamba, 8 turns=runs/cag-meld" --run "text_only=runs/to-meld" --command "..."
    python benchmarks/mamba_tables.py --name tsd_mmmo_ablation --probe runs/probe-mmmo.json \
        --ablation runs/ablate-tsd-mmmo --reference TSD --command "msakit ablate ..."

The rows come from `benchmarks/collect_runs.py`'s `probe_rows` / `run_row` (probe rows,
then one 5-seed row per run folder). On top of it: `--select` names the validation column
(MELD's runs select on the weighted F1, `F1_score`), `--primary` the column the reading
compares on, `--reference` the row it compares against (default: the probe chosen on
validation), and `--context-probe` adds the rows of `benchmarks/dialogue_context_probe.py
--json` (the linear probe with K preceding turns).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect_runs import COLUMNS, RESULTS, probe_rows, run_row


def context_probe_rows(path: Path, metric_set: str, select: str) -> list[list[str]]:
    """The windows K > 0 of dialogue_context_probe.py (K = 0 is `msakit probe`'s own row)."""
    data = json.loads(path.read_text())
    scale, digits = (1, 3) if select == "MAE" else (100, 1)
    rows = []
    for r in data["rows"]:
        if r["window"] > 0:
            cells = [f"{r['test'][key] * sc:.{dg}f}" for key, _, sc, dg in COLUMNS[metric_set]]
            label = f"linear probe: text + mean of {r['window']} preceding turns"
            rows.append([label, "–", *cells, f"{r['valid'][select] * scale:.{digits}f}"])
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--probe", action="append", required=True, metavar="[LABEL=]FILE")
    p.add_argument("--run", action="append", default=[], metavar="LABEL=DIR")
    p.add_argument(
        "--ablation",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="an `msakit ablate` folder: one row per NN/ folder, labelled (repeatable)",
    )
    p.add_argument("--command", required=True)
    p.add_argument("--metric-set", default="mosi", choices=sorted(COLUMNS))
    p.add_argument("--primary", help="the column the reading compares on (default: the collector's)")
    p.add_argument("--reference", help="the row the reading compares against (default: the chosen probe)")
    p.add_argument("--context-probe", type=Path, help="benchmarks/dialogue_context_probe.py --json output")
    p.add_argument("--select", help="the validation column (default: MAE / Acc, the trainer's selection key)")
    args = p.parse_args()
    columns = COLUMNS[args.metric_set]
    select = args.select or ("MAE" if args.metric_set == "mosi" else "Acc")
    rows = []
    for spec in args.probe:
        label, _, file = spec.rpartition("=")
        rows += probe_rows(Path(file), columns, select, prefix=label or "linear probe")
    if args.context_probe:
        rows += context_probe_rows(args.context_probe, args.metric_set, select)
    runs = [(label, Path(folder)) for label, _, folder in (s.rpartition("=") for s in args.run)]
    for folder in args.ablation:  # ablation.json lists the rows in the order of the NN/ folders
        labels = json.loads((folder / "ablation.json").read_text())["rows"]
        runs += [(label, folder / f"{i:02d}") for i, label in enumerate(labels)]
    rows += [run_row(label, run, columns, select) for label, run in runs]
    valid = "valid " + next(name for key, name, _, _ in columns if key == select)
    data = {
        "provenance": "benchmarks/mamba_tables.py (rows by benchmarks/collect_runs.py) from the run folders in `runs`",
        "command": args.command,
        "runs": {label: str(run) for label, run in runs},
        "header": ["row", "seeds", *(name for _, name, _, _ in columns), valid],
        "rows": rows,
        "reference": args.reference or next(r[0] for r in rows if r[0].endswith("(chosen on valid)")),
        "primary": args.primary or columns[1 if args.metric_set == "mosi" else 0][1],
        "valid": valid,
    }
    if args.metric_set == "mosi":
        data["secondary"] = "MAE"
    (RESULTS / f"{args.name}.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS / f'{args.name}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
