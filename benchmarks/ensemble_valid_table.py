"""Validation-only table of deep-ensemble runs: single model (member 0) against the K-member ensemble.

Each `LABEL=RUN` is a `msakit train ... -t ensemble=K` run folder. Member 0 of every seed is exactly
the single run of that seed, so RUN/results.json holds both rows' validation metrics: the
single model's in `members[0].valid`, the ensemble's in `valid`. Nothing is evaluated and no test
number is read: this is the table a preset's choice is made from.

    python benchmarks/ensemble_valid_table.py "ebmc, preset ebmc/mmmo=runs/reliability/s8/ens/mmmo/ebmc" ... \\
        --json docs/results/reliability_models_ensemble_valid.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from msakit.io import atomic_write_json


def _ms(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def row(label: str, run: Path) -> dict[str, object]:
    seeds = json.loads((run / "results.json").read_text())["seeds"]
    if not all(s.get("members") for s in seeds):
        raise SystemExit(
            f"ensemble_valid_table: error: {run}/results.json: a seed has no 'members' (not an ensemble run)"
        )
    single = {k: [s["members"][0]["valid"][k] for s in seeds] for k in ("MAE", "Corr")}
    ens = {k: [s["valid"][k] for s in seeds] for k in ("MAE", "Corr")}
    lower = sum(e < m for e, m in zip(ens["MAE"], single["MAE"], strict=True))
    return {
        "label": label,
        "run": str(run),
        "size": len(seeds[0]["members"]),
        "seeds": len(seeds),
        "single": single,
        "ensemble": ens,
        "ensemble_lower_mae_seeds": lower,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=RUN")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rows = [row(label, Path(run)) for label, run in (entry.rsplit("=", 1) for entry in args.runs)]
    lines = [
        "| run | seeds | valid MAE, single | valid MAE, ensemble | ensemble lower at "
        "| valid Corr, single | valid Corr, ensemble |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, e = r["single"], r["ensemble"]
        lines.append(
            f"| {r['label']} | {r['seeds']} | {_ms(s['MAE'])} | {_ms(e['MAE'])} (K = {r['size']}) | "
            f"{r['ensemble_lower_mae_seeds']} of {r['seeds']} seeds | {_ms(s['Corr'])} | {_ms(e['Corr'])} |"
        )
    command = "python benchmarks/ensemble_valid_table.py " + " ".join(shlex.quote(a) for a in args.runs)
    markdown = f"```bash\n{command}\n```\n\n" + "\n".join(lines) + "\n"
    print(markdown)
    if args.json:
        atomic_write_json(args.json, {"command": command, "rows": rows, "markdown": markdown})


if __name__ == "__main__":
    sys.exit(main())
