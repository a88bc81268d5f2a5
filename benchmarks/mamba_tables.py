"""Result tables of the TSD / AlignMamba-2 / CAGMamba docs: `collect_runs.py` plus what those docs need.

    python benchmarks/mamba_tables.py --name cagmamba_meld --metric-set classification --primary F1 \\
        --probe runs/probe-meld-e5.json --context-probe runs/ctxprobe-meld.json \\
        --run "CAGMamba, 8 turns=runs/cag-meld" --run "text_only=runs/to-meld" --command "..."

The rows come from `benchmarks/collect_runs.py` (probe rows, then one 5-seed row per run
folder, the reading against the probe chosen on validation). On top of it: `--primary`
reads the table on another column (MELD's target is the weighted F1, the collector reads
Acc), `--reference` reads it against another row, and `--context-probe` adds the rows of
`benchmarks/dialogue_context_probe.py --json` (the linear probe with K preceding turns).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect_runs import COLUMNS, RESULTS, collect


def context_probe_rows(path: Path, metric_set: str, width: int) -> list[list[str]]:
    data = json.loads(path.read_text())
    columns, select = COLUMNS[metric_set], data["select_key"]
    scale, digits = (1, 3) if select == "MAE" else (100, 1)
    rows = []
    for r in data["rows"]:
        k = r["window"]
        label = "probe: text, no context" if k == 0 else f"probe: text + mean of {k} preceding turns"
        cells = [f"{r['test'][key] * sc:.{dg}f}" for key, _, sc, dg in columns]
        rows.append([label, "–", *cells, f"{r['valid'][select] * scale:.{digits}f}"][:width])
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--probe", action="append", required=True, metavar="[LABEL=]FILE")
    p.add_argument("--run", action="append", default=[], metavar="LABEL=DIR")
    p.add_argument("--command", required=True)
    p.add_argument("--metric-set", default="mosi", choices=sorted(COLUMNS))
    p.add_argument("--primary", help="the column the reading compares on (default: the collector's)")
    p.add_argument("--reference", help="the row the reading compares against (default: the chosen probe)")
    p.add_argument("--context-probe", type=Path, help="benchmarks/dialogue_context_probe.py --json output")
    args = p.parse_args()
    probes = [(label or "probe", Path(file)) for label, _, file in (s.rpartition("=") for s in args.probe)]
    runs = [(label, Path(folder)) for label, _, folder in (s.rpartition("=") for s in args.run)]
    data = collect(probes, runs, args.command, args.metric_set, chosen_only=True)
    if args.context_probe:
        n_probe = sum(1 for r in data["rows"] if r[1] == "–")
        extra = context_probe_rows(args.context_probe, args.metric_set, len(data["header"]))
        data["rows"][n_probe:n_probe] = extra
    if args.primary:
        data["primary"] = args.primary
    if args.reference:
        data["reference"] = args.reference
    data["provenance"] = "benchmarks/mamba_tables.py (benchmarks/collect_runs.py) from the run folders in `runs`"
    (RESULTS / f"{args.name}.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {RESULTS / f'{args.name}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
