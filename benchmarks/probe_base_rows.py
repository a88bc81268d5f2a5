"""A preset against the same preset with the probe base (`-m probe_base=true`), validation first.

The probe base (msakit.layers.probe_base) adds the validation-chosen linear probe, fitted on the
training split and frozen, to a model's prediction, so that the network learns the probe's
residual. Whether a preset ships it is a validation decision; this script prints it for pairs of
runs of one preset, without and with the base:

    python benchmarks/probe_base_rows.py "qa_moe/mmmo=runs/probebase/qa_moe-mmmo-base,runs/probebase/qa_moe-mmmo-pb"

BASE may be a run folder or a documented `ensemble_rows.py` JSON (its seeds' ensemble rows).
Per pair: each side's 5-seed validation MAE and Corr (mean ± sample std), the paired difference,
and the rule's verdict (runs/probebase/RULE.md: ship iff the mean validation MAE is lower by at
least `--margin` and the mean validation Corr is not lower by more than `--corr-guard`). Only
seeds[*].valid is read unless `--test` is given; with it, each candidate's test rows too (the
candidates must have been opened with `msakit test`; a sealed one is refused in one line).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from msakit.io import atomic_write_json
from msakit.training.sealed import read_results, refuse_sealed

KEYS = ("MAE", "Corr", "Non0_acc_2")


def per_seed(run: str, split: str) -> dict[int, dict[str, float]]:
    """{seed: metrics of `split`} of a run folder, or of a documented ensemble_rows.py JSON."""
    if run.endswith(".json"):
        doc = json.loads(Path(run).read_text(encoding="utf-8"))
        return {int(s["seed"]): s["ensemble"][split] for s in doc["seeds"]}
    return {int(s["seed"]): s[split] for s in read_results(Path(run))["seeds"]}


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def compare(base: str, cand: str, *, margin: float, corr_guard: float, test: bool) -> dict[str, Any]:
    b, c = per_seed(base, "valid"), per_seed(cand, "valid")
    seeds = sorted(set(b) & set(c))
    if not seeds:
        raise SystemExit(f"probe_base_rows: error: {base} and {cand} share no seed")
    row: dict[str, Any] = {"base": base, "candidate": cand, "seeds": seeds, "valid": {}}
    for key in KEYS:
        row["valid"][key] = {
            "base": mean_std([b[s][key] for s in seeds]),
            "candidate": mean_std([c[s][key] for s in seeds]),
            "diff": mean_std([c[s][key] - b[s][key] for s in seeds]),
        }
    d_mae, d_corr = row["valid"]["MAE"]["diff"]["mean"], row["valid"]["Corr"]["diff"]["mean"]
    row["ships"] = bool(d_mae <= -margin and d_corr >= -corr_guard)
    if test:
        t = per_seed(cand, "test")
        row["test"] = {key: mean_std([t[s][key] for s in seeds]) for key in KEYS}
    return row


def test_cell(t: dict[str, dict[str, float]]) -> str:
    """'Non0 Acc-2 / MAE / Corr' of a 5-seed row, each as mean ± std."""
    return (
        f"{100 * t['Non0_acc_2']['mean']:.1f} ± {100 * t['Non0_acc_2']['std']:.1f} /"
        f" {t['MAE']['mean']:.3f} ± {t['MAE']['std']:.3f} / {t['Corr']['mean']:.3f} ± {t['Corr']['std']:.3f}"
    )


def markdown(rows: dict[str, dict[str, Any]], command: str, margin: float, corr_guard: float) -> str:
    test = all("test" in r for r in rows.values())
    pair = "preset → + probe base (paired Δ)"
    head = f"| preset | valid MAE: {pair} | valid Corr: {pair} | ships |"
    sep = "|---|---|---|---|"
    if test:
        head += " + probe base, test Non0 Acc-2 / MAE / Corr |"
        sep += "---|"
    lines = [
        "```bash",
        "# each candidate: msakit train --model M --data D --preset P -m probe_base=true --seal-test --seeds 1 2 3 4 5",
        "# (the preset's own ensemble size), then, after its decision, msakit test RUN",
        command,
        "```",
        "",
        head,
        sep,
    ]
    for label, r in rows.items():
        v = r["valid"]
        cells = []
        for k in ("MAE", "Corr"):
            base, cand, diff = v[k]["base"]["mean"], v[k]["candidate"]["mean"], v[k]["diff"]
            cells.append(f"{base:.4f} → {cand:.4f} ({diff['mean']:+.4f} ± {diff['std']:.4f})")
        line = f"| {label} | {cells[0]} | {cells[1]} | {'yes' if r['ships'] else 'no'} |"
        if test:
            line += f" {test_cell(r['test'])} |"
        lines.append(line)
    shipped = [k for k, r in rows.items() if r["ships"]]
    lines += [
        "",
        f"The rule (mean validation MAE lower by ≥ {margin:g}, mean validation Corr not lower by more than "
        f"{corr_guard:g}; 5 seeds, paired by seed): "
        + (f"shipped for {', '.join(shipped)}." if shipped else "no preset ships the probe base."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pairs", nargs="+", metavar="LABEL=BASE,CANDIDATE")
    p.add_argument("--margin", type=float, default=0.001)
    p.add_argument("--corr-guard", type=float, default=0.005)
    p.add_argument("--test", action="store_true", help="also the candidates' test rows (opened runs only)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    parsed = []
    for spec in args.pairs:
        label, _, runs = spec.rpartition("=")
        base, sep, cand = runs.partition(",")
        if not (label and sep and base and cand):
            print(f"probe_base_rows: error: {spec!r}: expected LABEL=BASE,CANDIDATE", file=sys.stderr)
            return 2
        parsed.append((label, base, cand))
    if args.test:
        refuse_sealed([c for _, _, c in parsed], "probe_base_rows")
    rows = {
        label: compare(base, cand, margin=args.margin, corr_guard=args.corr_guard, test=args.test)
        for label, base, cand in parsed
    }
    command = "python benchmarks/probe_base_rows.py " + ("--test " if args.test else "")
    command += " ".join(shlex.quote(s) for s in args.pairs)
    md = markdown(rows, command, args.margin, args.corr_guard)
    print(md)
    if args.json:
        atomic_write_json(args.json, {"command": command, "rows": rows, "markdown": md})
    return 0


if __name__ == "__main__":
    sys.exit(main())
