"""GPU training step: time, peak memory, and the fraction of the device's matmul throughput it achieves.

    python benchmarks/gpu_bench.py --models mult tfn late_fusion --json gpu.json
    python -m pytest -m gpu tests/test_speed.py      # the same, tiny, as a test

Needs a CUDA device; without one it prints one line saying so and exits 0 (the test skips).
For each model (synthetic batch `--batch-size`, every modality `--length` steps, fp32 and
bf16 autocast): the median over `--steps` of one training step through the engine's step
loop (`fit_steps`: forward, loss, backward, clipping, fused AdamW), timed with CUDA events
after warm-up; `torch.cuda.max_memory_allocated` over those steps; the step's FLOPs counted
by `torch.utils.flop_counter.FlopCounterMode`; and the device's own matmul throughput,
measured here on an 8192² matmul in the same precision (no vendor peak table). The fraction
is (step FLOPs / step time) / matmul throughput: how much of what the device can do in
matmuls one step uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def matmul_flops_per_second(dtype: Any, n: int = 8192, reps: int = 10) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(2):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1000)


def bench(name: str, batch_size: int, length: int, steps: int, precision: str) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from msakit import create_model
    from msakit.data import SyntheticConfig, make_synthetic
    from msakit.training.engine import adamw, fit_steps, supervised_loss

    data = make_synthetic(SyntheticConfig(sizes=(batch_size, 4, 4), lengths=(length,) * 3, seed=0))
    model = create_model(name, **data.info.model_overrides()).cuda().train()
    optimizer = adamw(model.param_groups(1e-3, 0.0), device="cuda")
    batch = data.split("train").batch(list(range(batch_size))).to("cuda")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def loss(b: Any) -> Any:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return supervised_loss(model, model(b), b)

    fit_steps(name, [batch] * 3, loss, optimizer)  # warm-up
    with FlopCounterMode(display=False) as counter:
        fit_steps(name, [batch], loss, optimizer)
    flops = counter.get_total_flops()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fit_steps(name, [batch], loss, optimizer)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    step = statistics.median(times)
    peak = matmul_flops_per_second(dtype)
    return {
        "step_ms": round(step * 1000, 3),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "step_gflop": round(flops / 1e9, 3),
        "matmul_tflops": round(peak / 1e12, 1),
        "fraction_of_matmul_throughput": round(flops / step / peak, 5),
    }


def run(models: list[str], batch_size: int, length: int, steps: int) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device: the GPU benchmark measures nothing on this machine"}
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "batch_size": batch_size, "length": length}
    for name in models:
        out[name] = {p: bench(name, batch_size, length, steps, p) for p in ("fp32", "bf16")}
        print(name, json.dumps(out[name]), file=sys.stderr)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["late_fusion", "tfn", "mult", "tecafn"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--length", type=int, default=50)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    result = run(args.models, args.batch_size, args.length, args.steps)
    if "skipped" in result:
        print(result["skipped"])
        return
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
