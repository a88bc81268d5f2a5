"""Per-epoch training cost against dataset size and sequence length, for every registered model.

    OMP_NUM_THREADS=1 python benchmarks/scaling.py --json docs/bench/scaling.json
    python benchmarks/scaling.py --table docs/bench/scaling.json     # the markdown tables

What is measured, and what is extrapolated: for each model and sequence length L (every
modality L steps, synthetic data, batch `--batch-size`), the CPU time (`time.process_time`,
one thread) of `--steps` training steps through the engine's own step loop
(`msakit.training.engine.fit_steps`: forward, loss, backward, clipping, fused AdamW), after
one warm-up step. A training step's cost does not depend on how many samples the dataset
holds, so the per-epoch cost for N training samples is extrapolated as ceil(N / batch) times
the measured step (validation and checkpoints not included). That is stated next to the
table; only the step is measured. A model whose step exceeds `--max-step-seconds` at some
length is not run at longer ones (shown as "—"). Batches are fully valid (no padding).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

SIZES = (1_000, 4_000, 16_000)  # training samples; MOSEI's train split is about 16 k
LENGTHS = (50, 200, 1_000)


def step_seconds(name: str, length: int, batch_size: int, steps: int) -> float:
    import torch

    from msakit import create_model
    from msakit.data import SyntheticConfig, make_synthetic
    from msakit.data.stats import dataset_stats
    from msakit.training.engine import adamw, fit_steps, supervised_loss

    data = make_synthetic(SyntheticConfig(sizes=(batch_size * 2, 4, 4), lengths=(length, length, length), seed=0))
    train = data.split("train")
    model = create_model(name, **data.info.model_overrides())
    model.start_fit(dataset_stats(train))
    model.train()
    optimizer = adamw(model.param_groups(1e-3, 0.0), device="cpu")
    full = list(range(batch_size))
    batches = [train.batch(full) for _ in range(steps + 1)]
    for b in batches:  # every step fully valid: the length axis is the sequence length itself
        for m in b.masks:
            b.masks[m] = b.present_mask(m)[:, None] & torch.ones_like(b.masks[m])

    def loss(batch: Any) -> Any:
        return supervised_loss(model, model(batch), batch)

    fit_steps(name, batches[:1], loss, optimizer)  # warm-up
    start = time.process_time()
    fit_steps(name, batches[1:], loss, optimizer)
    return (time.process_time() - start) / steps


def measure(
    models: list[str], batch_size: int, steps: int, limit: float, json_path: Path | None = None
) -> dict[str, Any]:
    import torch

    from msakit import list_models

    torch.set_num_threads(1)
    out: dict[str, dict[str, Any]] = {}
    for name in models or list_models():
        row: dict[str, Any] = {}
        for length in LENGTHS:
            try:
                t = step_seconds(name, length, batch_size, steps)
            except Exception as exc:  # a table cell, not a crash
                row[str(length)] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
                break
            row[str(length)] = round(t, 4)
            print(f"{name:>14} L={length:<5} {t:.4f} s/step", file=sys.stderr, flush=True)
            if t > limit:
                break
        out[name] = row
        result = {
            "batch_size": batch_size,
            "steps": steps,
            "max_step_seconds": limit,
            "sizes": list(SIZES),
            "lengths": list(LENGTHS),
            "load_avg_1min": os.getloadavg()[0],
            "seconds_cpu_per_step": out,
        }
        if json_path is not None:  # after every model: a long run stopped early keeps what it measured
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(result, indent=2))
    return result


def all_models() -> list[str]:
    from msakit import list_models

    return list(list_models())


def table(result: dict[str, Any]) -> str:
    b = result["batch_size"]
    lengths, sizes = result["lengths"], result["sizes"]
    head = " | ".join(f"L={n}: {s // 1000}k" for n in lengths for s in sizes)
    lines = [f"| model | {head} |", "|---|" + "---:|" * (len(lengths) * len(sizes))]
    for name, row in result["seconds_cpu_per_step"].items():
        cells = []
        for n in lengths:
            v = row.get(str(n))
            for s in sizes:
                cells.append(f"{v * math.ceil(s / b):.0f}" if isinstance(v, float) else ("err" if v else "—"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=[])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--max-step-seconds", type=float, default=10.0)
    p.add_argument("--json", type=Path)
    p.add_argument("--table", type=Path, metavar="JSON", help="print the markdown table of a results JSON")
    args = p.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    result = measure(args.models, args.batch_size, args.steps, args.max_step_seconds, args.json)
    print(table(result))


if __name__ == "__main__":
    main()
