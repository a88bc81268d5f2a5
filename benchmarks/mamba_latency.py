"""Parameters and CPU inference time of TSD / AlignMamba-2 / CAGMamba (and text_only as a yardstick).

    OMP_NUM_THREADS=1 python benchmarks/mamba_latency.py --data data/mosi-e5 \\
        --json docs/results/mamba_latency_mosi.json text_only tsd alignmamba2 "alignmamba2:ot_weight=0,mmd_weight=0"
    OMP_NUM_THREADS=1 python benchmarks/mamba_latency.py --data data/meld-e5 \\
        --json docs/results/mamba_latency_meld.json text_only "cagmamba:context_window=8" "cagmamba:use_context=false"

Each MODEL is `name` or `name:key=value,key=value` (model-config overrides). Eval mode, no
grad, one thread, the first `batch` samples of the test split, `--warmup` untimed calls,
then the median over `--repeats` calls of the *process CPU time* per call (not wall time:
the machine is shared, and CPU time is what the call itself costs). The load average is
recorded beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from msakit import create_model
from msakit.config import parse_override
from msakit.data import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_latency import median_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset(args.data)
    test = dataset.split("test")
    rows = []
    for spec in args.models:
        name, _, opts = spec.partition(":")
        overrides = dict(parse_override(o) for o in opts.split(",") if o)
        torch.manual_seed(0)
        model = create_model(name, **{**dataset.info.model_overrides(), **overrides}).eval()
        ms = {
            b: median_ms(model, test.batch(range(b)), args.warmup, args.repeats, time.process_time)
            for b in args.batch_sizes
        }
        rows.append({"model": spec, "parameters": model.num_parameters(), "cpu_ms": ms})
    load = os.getloadavg()[0]
    print(f"{dataset.info.name}, 1 thread, CPU ms per call (median of {args.repeats}), load average {load:.1f}")
    print("| model | parameters | " + " | ".join(f"batch {b} (CPU ms)" for b in args.batch_sizes) + " |")
    print("|---|---|" + "---|" * len(args.batch_sizes))
    for r in rows:
        cells = " | ".join(f"{r['cpu_ms'][b]:.2f}" for b in args.batch_sizes)
        print(f"| {r['model']} | {r['parameters']:,} | {cells} |")
    if args.json:
        payload = {"dataset": args.data, "load_average": round(load, 1), "repeats": args.repeats, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
