"""Result tables of the TSD / AlignMamba-2 / CAGMamba docs, written from run folders and probe JSON.

    python benchmarks/mamba_tables.py --name cagmamba_meld --reference "CAGMamba, 8 turns" \\
        --primary "weighted F1" --valid "valid weighted F1" --command "..." \\
        "CAGMamba, 8 turns=runs/models-mamba/cag-meld" "text_only=runs/models-mamba/to-meld" \\
        "linear probe: text=probe:runs/models-mamba/probe-meld.json"

Each ROW is `label=RUN` (a `msakit train` / `msakit ablate` run folder with results.json:
mean ± sample std over its seeds, test split, and the mean validation value of the
selection column) or `label=probe:FILE` (the JSON that `msakit probe --json FILE` writes:
the probe row chosen on validation, or `probe:FILE#NAME` for the row of modality NAME / all). The file
docs/results/NAME.json is the transcribed-table format of benchmarks/docgen.py, so the
doc's block `<!-- docgen:begin NAME -->` renders the table and the sentences that read it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGRESSION = [
    ("Non0 Acc-2", "Non0_acc_2", 100, 1),
    ("Non0 F1", "Non0_F1_score", 100, 1),
    ("Has0 Acc-2", "Has0_acc_2", 100, 1),
    ("Acc-7", "Mult_acc_7", 100, 1),
    ("MAE", "MAE", 1, 3),
    ("Corr", "Corr", 1, 3),
]
CLASSIFICATION = [("Acc", "Acc", 100, 1), ("weighted F1", "F1_score", 100, 1)]


def _cell(values: list[float], scale: float, digits: int) -> str:
    mean = scale * statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {scale * statistics.stdev(values):.{digits}f}"


def _run_row(path: Path, columns: list[tuple[str, str, float, int]], valid_key: str) -> tuple[list[str], str]:
    data = json.loads((path / "results.json").read_text())
    seeds = data["seeds"]
    cells = [_cell([s["test"][key] for s in seeds], scale, digits) for _, key, scale, digits in columns]
    scale, digits = next((sc, dg) for _, key, sc, dg in columns if key == valid_key)
    valid = _cell([s["valid"][valid_key] for s in seeds], scale, digits).split(" ±")[0]
    return [str(len(seeds)), *cells, valid], data["metric_set"]


def _probe_row(spec: str, columns: list[tuple[str, str, float, int]], valid_key: str) -> list[str]:
    file, _, name = spec.partition("#")
    data = json.loads(Path(file).read_text())
    rows, key = data["rows"], data["select_key"]
    if name:
        row = next((r for r in rows if r["name"] == name), None)
        if row is None:
            raise SystemExit(f"{file}: no probe row named {name!r}")
    else:  # the row chosen on validation, as ProbeResult.best()
        row = (min if key == "MAE" else max)(rows, key=lambda r: r["valid"][key])
    cells = [_cell([row["test"][key]], scale, digits) for _, key, scale, digits in columns]
    scale, digits = next((sc, dg) for _, key, sc, dg in columns if key == valid_key)
    return ["—", *cells, _cell([row["valid"][valid_key]], scale, digits)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="docs/results/NAME.json")
    parser.add_argument("--reference", required=True, help="the row the others are read against")
    parser.add_argument("--primary", required=True)
    parser.add_argument("--secondary", default="")
    parser.add_argument("--valid-key", default="", help="the selection metric (default: MAE / F1_score)")
    parser.add_argument("--command", required=True, help="the commands that reproduce the rows")
    parser.add_argument("--classification", action="store_true")
    parser.add_argument("rows", nargs="+", help="label=RUN or label=probe:FILE[#ROW]")
    args = parser.parse_args()
    columns = CLASSIFICATION if args.classification else REGRESSION
    valid_key = args.valid_key or ("F1_score" if args.classification else "MAE")
    valid_label = "valid " + next(label for label, key, _, _ in columns if key == valid_key)
    rows = []
    for item in args.rows:
        label, _, source = item.partition("=")
        if source.startswith("probe:"):
            rows.append([label, *_probe_row(source.removeprefix("probe:"), columns, valid_key)])
        else:
            cells, _ = _run_row(Path(source), columns, valid_key)
            rows.append([label, *cells])
    out: dict[str, Any] = {
        "provenance": "benchmarks/mamba_tables.py from run folders (test split, mean ± sample std over seeds)",
        "command": args.command,
        "header": ["row", "seeds", *(c[0] for c in columns), valid_label],
        "rows": rows,
        "reference": args.reference,
        "primary": args.primary,
        "valid": valid_label,
    }
    if args.secondary:
        out["secondary"] = args.secondary
    path = ROOT / "docs" / "results" / f"{args.name}.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
