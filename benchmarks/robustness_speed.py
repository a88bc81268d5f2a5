"""Time `msakit robustness CHECKPOINT --protocol all` on MOSI (target: < 5 minutes on 2 cores).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/robustness_speed.py \
        --checkpoint runs/lf/seed1/best --data data/mosi --threads 2

Without --checkpoint a late_fusion checkpoint is trained first (seed 1, 15 epochs; not
timed). The timed part is the whole CLI command: loading, every protocol (66
evaluations of the test split on MOSI), JSON, CSV and PNGs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from msakit.cli import main as cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--data", default="data/mosi")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for the timed run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="msakit-robustness-speed-"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        cli(
            [
                "train",
                "--model",
                "late_fusion",
                "--data",
                args.data,
                "--out",
                str(work / "train"),
                "--seeds",
                "1",
                "--epochs",
                "15",
                "-t",
                "tensorboard=false",
                "--no-progress",
            ]
        )
        checkpoint = work / "train" / "seed1" / "best"
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    code = cli(["robustness", str(checkpoint), "--data", args.data, "--protocol", "all", "--out", str(work / "rob")])
    seconds = time.perf_counter() - start
    print(
        f"msakit robustness --protocol all on {args.data}: exit {code}, {seconds:.1f} s wall "
        f"({torch.get_num_threads()} thread(s)); target < 300 s; output in {work / 'rob'}"
    )


if __name__ == "__main__":
    main()
