"""Time `msakit tune` of late_fusion on MOSI (target: 30 trials in under 15 minutes on 2 cores).

    python benchmarks/tune_speed.py [--data data/mosi] [--trials 30] [--out runs/tune_speed]
                                    [--epochs 15] [--patience 4] [--pruner median|hyperband|sha|none]
                                    [--jobs N] [--timeout S] [--json runs/tune_speed.json]

Runs the command a user would (a fresh process, one CPU thread, a fresh study) and
reports its wall time, its CPU time (user + system of the process and its children,
which includes the `--jobs` worker processes),
the trials that completed and were pruned, and the machine's 1-minute load average
before and after, because the 2 cores are usually shared. With --timeout the search
starts no new trial after S seconds (Optuna's timeout), so a loaded machine still gives
a measurement: how many trials finished in that time. The study's best.yaml is the
search's result; `docs/tuning.md` says which presets came from which run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/mosi")
    parser.add_argument("--model", default="late_fusion")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=15, help="maximum epochs per trial")
    parser.add_argument("--patience", type=int, default=4, help="early-stopping patience per trial")
    parser.add_argument("--out", type=Path, default=Path("runs/tune_speed"))
    parser.add_argument("--timeout", type=float, help="start no new trial after this many seconds")
    parser.add_argument("--pruner", default="median", help="msakit tune --pruner")
    parser.add_argument("--jobs", type=int, default=1, help="msakit tune --jobs (processes sharing the study)")
    parser.add_argument("--json", type=Path, help="also write the measurement here")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)  # a fresh study: a resumed one would time only the missing trials
    cmd = [sys.executable, "-m", "msakit", "tune", "--model", args.model, "--data", args.data]
    cmd += ["--trials", str(args.trials), "--out", str(args.out), "--epochs", str(args.epochs)]
    cmd += ["-t", f"patience={args.patience}", "--sampler-seed", "0", "--pruner", args.pruner, "--jobs", str(args.jobs)]
    if args.timeout:
        cmd += ["--timeout", str(args.timeout)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"tune failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = [line for line in proc.stdout.splitlines() if line.startswith(("study ", "best ", "  "))]
    result = {
        "command": " ".join(["OMP_NUM_THREADS=1", "msakit", *cmd[3:]]),
        "cores": os.cpu_count(),
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "load_before": round(load_before, 1),
        "load_after": round(os.getloadavg()[0], 1),
        "pruner": args.pruner,
        "jobs": args.jobs,
        "summary": summary,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
