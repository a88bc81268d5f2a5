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

    # the CPU-time table of docs/benchmarks.md ("Model latency")
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/model_latency.py --data data/mosi \
        --models text_only late_fusion qa_moe prlf ebmc tecafn tssp_msa --json docs/bench/latency_s5.json
    python benchmarks/model_latency.py --doc docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

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


BEGIN = "<!-- latency:begin (benchmarks/model_latency.py --doc) -->"
END = "<!-- latency:end -->"
RESULT = Path(__file__).resolve().parents[1] / "docs" / "bench" / "latency_s5.json"
WALL_CLOCK_DOCS = ("docs/models/qa_moe.md", "docs/models/prlf.md", "docs/models/ebmc.md", "docs/models/tecafn.md",
                   "docs/models/tssp_msa.md")  # fmt: skip


def section(result: dict) -> list[str]:
    sizes = result["batch_sizes"]
    lines = [
        "## Model latency: CPU time per forward call (fifth stop)",
        "",
        f"`OMP_NUM_THREADS=1 nice -n 10 python benchmarks/model_latency.py --data {result['data']} --models "
        f"{' '.join(result['models'])} --json docs/bench/latency_s5.json`, then `python benchmarks/model_latency.py "
        "--doc docs/benchmarks.md`: eval mode, no grad, one thread, default configuration, the first 1 / 32 test "
        f"samples, median of {result['repeats']} calls after {result['warmup']} warm-ups, CPU time of the process "
        f"(`time.process_time`); load average {result['load_avg_1min']:.1f} on 2 cores.",
        "",
        "| model | parameters | " + " | ".join(f"batch {b} (CPU ms)" for b in sizes) + " |",
        "|---|---:|" + "---:|" * len(sizes),
    ]
    for name, row in result["rows"].items():
        cells = " | ".join(f"{row['ms'][str(b)]:.2f}" for b in sizes)
        lines.append(f"| {name} | {row['parameters']:,} | {cells} |")
    lines += [
        "",
        "The latency figures in " + ", ".join(WALL_CLOCK_DOCS) + " were measured before the fifth stop with wall "
        "time (`--clock wall` reproduces that), on the models of that time; this table is CPU time of this stop's "
        "code and does not replace them there.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dataset spec (prepared folder or synthetic[:preset])")
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--doc", type=Path, help="write the latency section (from docs/bench/latency_s5.json) and stop")
    parser.add_argument("-m", "--model-opt", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="CPU time (default) or wall time")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.doc:
        import benchdoc

        result = json.loads(RESULT.read_text())
        benchdoc.replace_block(args.doc, BEGIN, END, section(result), after="<!-- serve-speed:end -->\n")
        return
    if not args.data or not args.models:
        parser.error("--data and --models are required unless --doc")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(1)
    dataset = load_dataset(args.data)
    test = dataset.split("test")
    overrides = dict(parse_override(o) for o in args.model_opt)
    unit = "CPU ms" if args.clock == "cpu" else "ms"
    print(f"{dataset.info.name}, 1 thread, {args.clock} time, load average {os.getloadavg()[0]:.1f}")
    print("| model | parameters | " + " | ".join(f"batch {b} ({unit})" for b in args.batch_sizes) + " |")
    print("|---|---|" + "---|" * len(args.batch_sizes))
    rows = {}
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, **{**dataset.info.model_overrides(), **overrides}).eval()
        ms = {b: median_ms(model, test.batch(range(b)), args.warmup, args.repeats, clock) for b in args.batch_sizes}
        rows[name] = {"parameters": model.num_parameters(), "ms": {str(b): round(v, 3) for b, v in ms.items()}}
        print(f"| {name} | {model.num_parameters():,} | " + " | ".join(f"{v:.2f}" for v in ms.values()) + " |")
    if args.json:
        result = {
            "data": args.data,
            "models": args.models,
            "model_opts": args.model_opt,
            "clock": args.clock,
            "batch_sizes": args.batch_sizes,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "load_avg_1min": os.getloadavg()[0],
            "rows": rows,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
