"""Speed-up of `msakit train --nproc N` over one process, at the same global batch.

    OMP_NUM_THREADS=1 python benchmarks/ddp_speedup.py --nproc 1 2 --model late_fusion --epochs 4

For each N: `python -m msakit train --nproc N` (N = 1: a plain run) on a seeded synthetic
dataset, one thread per process, `--repeats` times. Reported: the trainer's own seconds
per epoch (wall time of the training loop + validation, from results.json, i.e. without
process start-up), the command's whole wall time, the speed-up of both against N = 1,
and the test MAE (the same for every N when distribution changes nothing but speed).
The machine's load average is printed beside the numbers: on a shared machine other
processes inflate every time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(nproc: int, args: argparse.Namespace) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "msakit", "train", "--model", args.model, "--data", args.data]
        cmd += ["--seeds", "1", "--epochs", str(args.epochs), "--out", tmp, "--no-progress"]
        cmd += ["-t", "tensorboard=false", "-t", f"batch_size={args.batch_size}", "-t", f"patience={args.epochs}"]
        cmd += [a for opt in args.model_opt for a in ("-m", opt)]
        if nproc > 1:
            cmd += ["--nproc", str(nproc)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_CPP_LOG_LEVEL": "ERROR"}
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        seed = json.loads((Path(tmp) / "results.json").read_text())["seeds"][0]
        return seed["seconds_per_epoch"], wall, seed["test"]["MAE"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default="late_fusion")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "-m", "--model-opt", action="append", default=["dropout=0", "unimodal_weight=0"], help="model overrides"
    )
    args = parser.parse_args()
    rows = {}
    for n in args.nproc:
        runs = [run(n, args) for _ in range(args.repeats)]
        rows[n] = (min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2])
        print(f"nproc {n}: {rows[n]}", file=sys.stderr)
    base = rows[args.nproc[0]]
    print(f"{args.model} on {args.data}, global batch {args.batch_size}, {args.epochs} epochs, min of {args.repeats}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| processes | s/epoch (trainer) | speed-up | whole command (s) | speed-up | test MAE |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, (epoch, wall, mae) in rows.items():
        print(f"| {n} | {epoch:.3f} | {base[0] / epoch:.2f}x | {wall:.1f} | {base[1] / wall:.2f}x | {mae:.6f} |")


if __name__ == "__main__":
    main()
