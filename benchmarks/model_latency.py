"""Parameter count and CPU inference latency of registered models on real test batches.

    OMP_NUM_THREADS=1 python benchmarks/model_latency.py --data data/mosi --models text_only tecafn tssp_msa
    OMP_NUM_THREADS=1 python benchmarks/model_latency.py --data data/mosi --models tssp_msa \
        -m pretrained_text=pt/smlm_mosi        # includes re-encoding transcripts with the S-MLM MiniLM

For each model: eval mode, no grad, one thread; the first `batch` test samples of the
dataset; `--warmup` untimed calls, then the median of `--repeats` timed calls, in CPU time
of this process (`time.process_time`, the default since the fifth stop: other processes on
a shared machine inflate wall time, not CPU time) or wall time with `--clock wall` (what the
figures written before the fifth stop used). The machine's 1-minute load average is printed
beside the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from msakit import create_model
from msakit.config import parse_override
from msakit.data import load_dataset


def median_ms(
    model: torch.nn.Module, batch: object, warmup: int, repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median ms per `model(batch)` call after `warmup` untimed calls, timed by `clock` (wall by default)."""
    with torch.no_grad():
        for _ in range(warmup):
            model(batch)
        times = []
        for _ in range(repeats):
            start = clock()
            model(batch)
            times.append(clock() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset spec (prepared folder or synthetic[:preset])")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("-m", "--model-opt", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="CPU time (default) or wall time")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(1)
    dataset = load_dataset(args.data)
    test = dataset.split("test")
    overrides = dict(parse_override(o) for o in args.model_opt)
    unit = "CPU ms" if args.clock == "cpu" else "ms"
    print(f"{dataset.info.name}, 1 thread, {args.clock} time, load average {os.getloadavg()[0]:.1f}")
    print("| model | parameters | " + " | ".join(f"batch {b} ({unit})" for b in args.batch_sizes) + " |")
    print("|---|---|" + "---|" * len(args.batch_sizes))
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, **{**dataset.info.model_overrides(), **overrides}).eval()
        cells = [
            f"{median_ms(model, test.batch(range(b)), args.warmup, args.repeats, clock):.2f}" for b in args.batch_sizes
        ]
        print(f"| {name} | {model.num_parameters():,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
