"""Training runs and a linear probe -> one docgen table result file (docs/results/NAME.json).

`msakit train` writes RUN/results.json (per-seed validation and test metrics) and
`msakit probe --json F` the probe's rows; this script puts the probe rows and each run's
5-seed row into the transcribed-table format that `benchmarks/docgen.py` renders (the
table and the sentences that read it, each row against the probe), so a doc quoting these
numbers cannot drift from the runs that produced them.

    python benchmarks/collect_runs.py --name mosi_e5_models --probe runs/probe-mosi-e5.json [--probe LABEL=F ...] \\
        --run "late_fusion=runs/lf" --run "late_fusion, preset=runs/lf-preset" \\
        --command "msakit probe --data data/mosi-e5; msakit train --model M --data data/mosi-e5 [--preset M/mosi]"
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# (key in the metric dicts, column label, scale, digits): the seed-model docs' table columns, as docgen renders them
from docgen import ABLATION_METRICS as COLUMNS
from docgen import RESULTS


def _cell(values: list[float], scale: float, digits: int) -> str:
    mean = statistics.mean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def run_row(label: str, run: Path, columns: list[tuple[str, str, float, int]], select: str) -> list[str]:
    """One row from RUN/results.json: test metrics and the selecting validation metric, mean ± std over seeds."""
    seeds = json.loads((run / "results.json").read_text())["seeds"]
    cells = [_cell([s["test"][k] for s in seeds], scale, digits) for k, _, scale, digits in columns]
    sel_scale, sel_digits = (1, 3) if select == "MAE" else (100, 1)
    return [label, str(len(seeds)), *cells, _cell([s["valid"][select] for s in seeds], sel_scale, sel_digits)]


def probe_rows(
    path: Path,
    columns: list[tuple[str, str, float, int]],
    select: str,
    *,
    prefix: str = "probe",
    chosen_only: bool = False,
) -> list[list[str]]:
    """`msakit probe --json` rows; the one chosen on validation (best `select`) is marked."""
    data = json.loads(path.read_text())
    rows = data["rows"]
    lower = select == "MAE"
    chosen = (min if lower else max)(rows, key=lambda r: r["valid"][select])
    sel_scale, sel_digits = (1, 3) if lower else (100, 1)
    out = []
    for r in rows:
        if chosen_only and r is not chosen:
            continue
        if chosen_only:  # one row per probe: name the features, not the choice
            label = f"{prefix}: probe, {r['name']}"
        else:
            label = f"{prefix}: {r['name']}" + (" (chosen on valid)" if r is chosen else "")
        cells = [_cell([r["test"][k]], scale, digits) for k, _, scale, digits in columns]
        out.append([label, "–", *cells, _cell([r["valid"][select]], sel_scale, sel_digits)])
    return out


def warning_notes(runs: list[tuple[str, Path]]) -> list[str]:
    """The degenerate-training warnings each run recorded in its results.json (msakit.training.diagnostics)."""
    found = {label: json.loads((run / "results.json").read_text()).get("warnings", []) for label, run in runs}
    hit = {label: w for label, w in found.items() if w}
    if not hit:
        where = "its run" if len(runs) == 1 else f"any of the {len(runs)} runs"
        return [f"Degenerate-training warnings (results.json): none in {where}."]
    return [f"Degenerate-training warnings (results.json), {label}: " + "; ".join(w) for label, w in hit.items()]


def pair_note(pairs: list[tuple[str, Path, Path]], select: str) -> str:
    """One sentence: for each (model, preset run, defaults run), is the preset's mean validation score better?"""
    better, worse = [], []
    for label, preset, defaults in pairs:
        means = [
            statistics.mean(s["valid"][select] for s in json.loads((r / "results.json").read_text())["seeds"])
            for r in (preset, defaults)
        ]
        gain = means[1] - means[0] if select == "MAE" else means[0] - means[1]
        digits, scale = (3, 1) if select == "MAE" else (1, 100)
        text = f"{label} {means[0] * scale:.{digits}f} vs {means[1] * scale:.{digits}f}"
        (better if gain > 0 else worse).append(text)
    return (
        f"Mean validation {select} over the seeds, preset run against the defaults run: better with the preset for "
        f"{len(better)} of {len(pairs)} ({'; '.join(better) or 'none'}); not better for {len(worse)} "
        f"({'; '.join(worse) or 'none'})."
    )


def collect(
    probes: list[tuple[str, Path]],
    runs: list[tuple[str, Path]],
    command: str,
    metric_set: str = "mosi",
    *,
    chosen_only: bool = False,
    also: tuple[str, ...] = (),
    pairs: list[tuple[str, Path, Path]] | None = None,
) -> dict[str, Any]:
    """Probe rows (every probe's, or only the row each chose on validation), then one row per run.
    The reference the reading compares against is the first probe's chosen row; `also` names
    further columns the reading compares (e.g. Corr), and the runs' degenerate-training
    warnings are listed under the reading."""
    columns = COLUMNS[metric_set]
    select = "MAE" if metric_set == "mosi" else "Acc"
    rows = []
    for prefix, probe in probes:
        rows += probe_rows(probe, columns, select, prefix=prefix, chosen_only=chosen_only)
    reference = rows[0][0] if chosen_only else next(r[0] for r in rows if r[0].endswith("(chosen on valid)"))
    rows += [run_row(label, run, columns, select) for label, run in runs]
    return {
        "provenance": "collected by benchmarks/collect_runs.py from the run folders named in `runs`",
        "command": command,
        "runs": {label: str(run) for label, run in runs},
        "header": ["row", "seeds", *(label for _, label, _, _ in columns), f"valid {select}"],
        "rows": rows,
        "reference": reference,
        "primary": columns[1][1] if metric_set == "mosi" else columns[0][1],
        "secondary": "MAE" if metric_set == "mosi" else None,
        "valid": f"valid {select}",
        **({"also": list(also)} if also else {}),
        "notes": warning_notes(runs) + ([pair_note(pairs, select)] if pairs else []),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="result file docs/results/NAME.json")
    p.add_argument(
        "--probe", action="append", required=True, metavar="[LABEL=]FILE", help="`msakit probe --json` output"
    )
    p.add_argument("--chosen-only", action="store_true", help="of each probe, only the row chosen on validation")
    p.add_argument("--run", action="append", default=[], metavar="LABEL=DIR", help="a `msakit train` run folder")
    p.add_argument("--command", required=True, help="the commands that reproduce the table")
    p.add_argument("--metric-set", default="mosi", choices=sorted(COLUMNS))
    p.add_argument("--also", action="append", default=[], help="another column the reading compares (e.g. Corr)")
    p.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="LABEL=PRESET_DIR,DEFAULTS_DIR",
        help="a note comparing two runs' mean validation score (preset against defaults); repeatable",
    )
    args = p.parse_args(argv)
    probes = []
    for spec in args.probe:
        label, _, file = spec.rpartition("=")
        if not Path(file).is_file():
            print(f"error: --probe {spec!r}: no such file", file=sys.stderr)
            return 2
        probes.append((label or "probe", Path(file)))
    runs = []
    for spec in args.run:
        label, sep, folder = spec.rpartition("=")
        if not sep or not label or not (Path(folder) / "results.json").is_file():
            print(f"error: --run {spec!r}: expected LABEL=DIR with DIR/results.json", file=sys.stderr)
            return 2
        runs.append((label, Path(folder)))
    from msakit.training.sealed import refuse_sealed

    refuse_sealed([folder for _, folder in runs], "collect_runs")  # a --run row shows test metrics
    pairs = []
    for spec in args.pair:
        label, sep, dirs = spec.partition("=")
        preset, _, defaults = dirs.partition(",")
        if not sep or not all((Path(d) / "results.json").is_file() for d in (preset, defaults) if d) or not defaults:
            print(f"error: --pair {spec!r}: expected LABEL=PRESET_DIR,DEFAULTS_DIR with results.json", file=sys.stderr)
            return 2
        pairs.append((label, Path(preset), Path(defaults)))
    from msakit.io import atomic_write_json

    data = collect(
        probes, runs, args.command, args.metric_set, chosen_only=args.chosen_only, also=tuple(args.also), pairs=pairs
    )
    atomic_write_json(RESULTS / f"{args.name}.json", data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
