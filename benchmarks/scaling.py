"""Per-epoch training cost against dataset size and sequence length, for every registered model.

    OMP_NUM_THREADS=1 python benchmarks/scaling.py --json docs/bench/scaling.json
    python benchmarks/scaling.py --table docs/bench/scaling.json     # the markdown tables
    # one process per model (runs/serve-scaling/scaling/run.sh), then one file and the doc's section
    python benchmarks/scaling.py --merge runs/.../*.json --json docs/bench/scaling_s5.json --note "..."
    python benchmarks/scaling.py --doc docs/benchmarks.md            # from docs/bench/scaling_s5.json

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


def merge(files: list[Path], notes: list[str]) -> dict[str, Any]:
    """One result from several runs of the same protocol (e.g. one process per model): a later file's row
    replaces an earlier one's; each row keeps the load average its run ended at."""
    runs = [json.loads(f.read_text()) for f in files]
    keys = ("batch_size", "steps", "max_step_seconds", "sizes", "lengths")
    for f, run in zip(files, runs, strict=True):
        if any(run[k] != runs[0][k] for k in keys):
            raise SystemExit(f"{f}: another protocol ({', '.join(f'{k}={run[k]}' for k in keys)})")
    rows: dict[str, Any] = {}
    loads: dict[str, float] = {}
    sources: dict[str, str] = {}
    for f, run in zip(files, runs, strict=True):
        for name, row in run["seconds_cpu_per_step"].items():
            rows[name], loads[name], sources[name] = row, run["load_avg_1min"], str(f.parent)
    order = [m for m in all_models() if m in rows] + [m for m in rows if m not in all_models()]
    return {
        **{k: runs[0][k] for k in keys},
        "load_avg_1min": max(loads.values()),
        "load_avg_1min_per_model": {m: loads[m] for m in order},
        "run_folder_per_model": {m: sources[m] for m in order},
        "seconds_cpu_per_step": {m: rows[m] for m in order},
        "notes": notes,
    }


BEGIN = "<!-- scaling:begin (benchmarks/scaling.py --doc) -->"
END = "<!-- scaling:end -->"
RESULT = Path(__file__).resolve().parents[1] / "docs" / "bench" / "scaling_s5.json"


def section(result: dict[str, Any]) -> list[str]:
    rows = result["seconds_cpu_per_step"]
    missing = [m for m in all_models() if m not in rows]
    errors = [(m, n, v) for m, row in rows.items() for n, v in row.items() if isinstance(v, str)]
    failed = {m for m, _, _ in errors}
    stopped = [m for m, row in rows.items() if m not in failed and len(row) < len(result["lengths"])]
    loads = list(result.get("load_avg_1min_per_model", {}).values()) or [result["load_avg_1min"]]
    lines = [
        "## Scaling: CPU seconds per epoch against training-set size and sequence length (issue 22, fifth stop)",
        "",
        f"Every registered model ({len(rows)} of {len(all_models())}), measured this stop on this stop's code, one "
        f"process per model: {result['steps']} training steps (batch {result['batch_size']}, every modality L "
        "steps, fully valid, synthetic data) per model and length through the engine's step loop "
        "(`training.engine.fit_steps`: forward, loss, backward, clipping, fused AdamW), after a warm-up step, "
        "CPU time (`time.process_time`, one thread). **Extrapolated**: an epoch of N samples as ceil(N / batch) of "
        "those steps (no validation or checkpoints); MOSEI's training split is about 16 k samples. '—': not "
        f"measured at that length because a step at the previous length exceeded {result['max_step_seconds']:g} s; "
        "'err': the step failed (below). Load average "
        f"{min(loads):.1f}-{max(loads):.1f} on 2 cores at the models' ends (CPU time, not wall time, is the "
        "comparable figure).",
        "",
        "    OMP_NUM_THREADS=1 nice -n 10 prlimit --as=BYTES python benchmarks/scaling.py --models MODEL --steps "
        f"{result['steps']} \\",
        f"        --max-step-seconds {result['max_step_seconds']:g} --json runs/serve-scaling/scaling/MODEL.json",
        "    python benchmarks/scaling.py --merge runs/serve-scaling/scaling/*.json \\",
        "        runs/serve-scaling/scaling10/*.json --json docs/bench/scaling_s5.json --note ...",
        "    python benchmarks/scaling.py --doc docs/benchmarks.md",
        "",
        table(result),
        "",
    ]
    if errors:
        folders = result.get("run_folder_per_model", {})
        by_reason: dict[str, list[str]] = {}
        for m, n, v in errors:
            where = f"; run in {folders[m]}" if m in folders else ""
            by_reason.setdefault(v.split(": you tried")[0], []).append(f"{m} (L={n}{where})")
        for reason, where in by_reason.items():
            lines.append(f"- 'err' at {', '.join(where)}: `{reason}`")
    if stopped:
        lines.append(
            f"- Stopped before L={result['lengths'][-1]} by the step limit: {', '.join(stopped)} (the cell before "
            "the first '—' is the step that exceeded it)."
        )
    if missing:
        lines.append(f"- Not measured: {', '.join(missing)}.")
    lines += [f"- {note}" for note in result.get("notes", [])]
    return lines


def write_doc(doc: Path, result_path: Path = RESULT) -> None:
    import benchdoc

    benchdoc.replace_block(doc, BEGIN, END, section(json.loads(result_path.read_text())))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=[])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--max-step-seconds", type=float, default=10.0)
    p.add_argument("--json", type=Path)
    p.add_argument("--table", type=Path, metavar="JSON", help="print the markdown table of a results JSON")
    p.add_argument("--merge", type=Path, nargs="+", metavar="JSON", help="merge results into --json (later rows win)")
    p.add_argument("--note", action="append", default=[], help="a note to keep in the merged result")
    p.add_argument("--doc", type=Path, help="write the scaling section (from docs/bench/scaling_s5.json) and stop")
    args = p.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    if args.doc:
        write_doc(args.doc)
        return
    if args.merge:
        merged = merge(args.merge, args.note)
        if args.json:
            args.json.write_text(json.dumps(merged, indent=2) + "\n")
        print(table(merged))
        return
    result = measure(args.models, args.batch_size, args.steps, args.max_step_seconds, args.json)
    print(table(result))


if __name__ == "__main__":
    main()
