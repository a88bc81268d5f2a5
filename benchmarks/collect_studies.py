"""`msakit tune` studies -> one docgen result file (docs/results/NAME.json) with their table.

For each study folder (RUN/study.db, RUN/best.yaml) and its log (the `/usr/bin/time -f
"%e wall %U user %S sys"` line the run ended with), one row: the trials by state, the
best mean validation score and its trial, trial 0 (the defaults, enqueued first), wall and
CPU seconds, and the shipped preset. The markdown is stored in the file, so the block
renders it as it was collected (`docgen.py`, result files with "markdown").

    python benchmarks/collect_studies.py --name mmmo_tune_studies \\
        --study amsgfn/mmmo=runs/tune-mmmo/amsgfn,runs/tune-mmmo/amsgfn.log ... --command "msakit tune ..."
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docgen import RESULTS

TIME = re.compile(r"([\d.]+)[ _]wall[ _]([\d.]+)[ _]user[ _]([\d.]+)[ _]sys")


def study_row(preset: str, run: Path, log: Path | None) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run / 'study.db'}")
    states = [t.state.name for t in study.trials]
    timed = TIME.search(log.read_text()) if log and log.is_file() else None
    first = study.trials[0]
    return {
        "preset": preset,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "seeds": len(study.best_trial.user_attrs.get("valid_per_seed", [])),
        "best": study.best_value,
        "best_trial": study.best_trial.number,
        # trial 0 is the defaults only where the study enqueued them (msakit tune does since issue 13's s3)
        "ran_defaults": "fixed_params" in first.system_attrs,
        "defaults": first.value if first.state.name == "COMPLETE" and "fixed_params" in first.system_attrs else None,
        "wall_s": float(timed.group(1)) if timed else None,
        "cpu_s": float(timed.group(2)) + float(timed.group(3)) if timed else None,
    }


def markdown(rows: list[dict[str, Any]], command: str, select: str) -> str:
    out = ["```bash", command, "```", ""]
    out += [
        f"| preset | trials (complete + pruned + failed) | seeds | best valid {select} (trial) | defaults (trial 0) "
        "| wall / CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["defaults"] is not None:
            defaults = f"{r['defaults']:.4f}"
        else:
            defaults = "pruned" if r["ran_defaults"] else "– (trial 0 was not the defaults)"
        timed = f"{r['wall_s']:.0f} / {r['cpu_s']:.0f}" if r["wall_s"] is not None else "n/a"
        out.append(
            f"| `{r['preset']}` | {r['complete']} + {r['pruned']} + {r['failed']} | {r['seeds']} "
            f"| {r['best']:.4f} ({r['best_trial']}) | {defaults} | {timed} |"
        )
    ran = [r for r in rows if r["ran_defaults"]]
    better = [r["preset"] for r in ran if r["defaults"] is not None and r["best"] < r["defaults"]]
    same = [r["preset"] for r in ran if r["best_trial"] == 0]
    out += ["", "Reading (computed from the table):", ""]
    out.append(
        f"- Studies whose best trial beat the defaults on validation: {len(better)} of the {len(ran)} that ran the "
        f"defaults as trial 0" + (f" ({len(rows) - len(ran)} older studies did not)." if len(ran) < len(rows) else ".")
    )
    if same:
        out.append(f"- Studies where the defaults stayed best (the preset is the defaults): {', '.join(same)}.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--study", action="append", required=True, metavar="PRESET=RUN[,LOG]")
    p.add_argument("--command", required=True)
    p.add_argument("--select", default="MAE")
    args = p.parse_args(argv)
    rows = []
    for spec in args.study:
        preset, sep, where = spec.partition("=")
        run, _, log = where.partition(",")
        if not sep or not (Path(run) / "study.db").is_file():
            print(f"error: --study {spec!r}: expected PRESET=RUN[,LOG] with RUN/study.db", file=sys.stderr)
            return 2
        rows.append(study_row(preset, Path(run), Path(log) if log else None))
    from msakit.io import atomic_write_json

    data = {
        "provenance": "collected by benchmarks/collect_studies.py from the study folders named in `studies`",
        "command": args.command,
        "studies": rows,
        "markdown": markdown(rows, args.command, args.select),
    }
    atomic_write_json(RESULTS / f"{args.name}.json", data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
