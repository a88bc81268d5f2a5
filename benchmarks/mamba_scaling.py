"""Length scaling: the Mamba layer against cross-modal attention, forward + backward.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/mamba_scaling.py --out docs/models/mamba_scaling.json
    python benchmarks/mamba_scaling.py --device cuda --out mamba_scaling_gpu.json   # on a GPU machine

For each sequence length L (64 ... 4096) and each layer — `MambaLayer` (msakit.layers.mamba:
selective scan via mambapy's parallel scan on CPU, mamba_ssm's kernel on CUDA when
installed) and `CrossModalAttention` (msakit.layers.attention: a length-L query over a
length-L key, the fusion step it replaces) — one forward and backward pass of a
(batch, L, width) input. Each measurement runs in a fresh subprocess so that the peak
memory is its own:

- time: CPU time of the process (`time.process_time`, one thread) on CPU, wall time with
  synchronisation on CUDA; the median of `--repeats` after one warm-up pass;
- peak memory: on CPU the rise of the process's peak resident set size over its size
  just before the first pass (ru_maxrss), on CUDA `torch.cuda.max_memory_allocated`.

Prints a markdown table and the ratio time(4096) / time(512) per layer (linear growth is
8, quadratic 64) and writes the numbers to `--out` (JSON, written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096)


def measure(layer_name: str, length: int, *, batch: int, width: int, repeats: int, device: str) -> dict[str, float]:
    import torch

    from msakit.layers.attention import CrossModalAttention
    from msakit.layers.mamba import MambaLayer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    if layer_name == "mamba":
        layer: torch.nn.Module = MambaLayer(width, state_size=16, expand=2)
    else:
        layer = CrossModalAttention(width, heads=4, dropout=0.0)
    layer = layer.to(device)
    x = torch.randn(batch, length, width, device=device, requires_grad=True)
    key = torch.randn(batch, length, width, device=device)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    cuda = device.startswith("cuda")

    def step() -> None:
        out = layer(x, mask) if layer_name == "mamba" else layer(x, key, mask)
        out.square().mean().backward()
        if cuda:
            torch.cuda.synchronize()

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter() if cuda else time.process_time()
        step()
        times.append((time.perf_counter() if cuda else time.process_time()) - start)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if cuda
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    )
    return {"seconds": statistics.median(times), "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="")
    parser.add_argument("--one", nargs=2, metavar=("LAYER", "LENGTH"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    common = {"batch": args.batch, "width": args.width, "repeats": args.repeats, "device": args.device}
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), **common)))
        return
    rows: dict[str, dict[int, dict[str, float]]] = {"mamba": {}, "attention": {}}
    for length in args.lengths:
        for name in rows:
            cmd = [sys.executable, __file__, "--one", name, str(length), "--batch", str(args.batch),
                   "--width", str(args.width), "--repeats", str(args.repeats), "--device", args.device]  # fmt: skip
            out = subprocess.run(
                cmd, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
            )
            rows[name][length] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"L={length} {name}: {rows[name][length]}", file=sys.stderr, flush=True)
    print(f"batch {args.batch}, width {args.width}, device {args.device}, load average {os.getloadavg()[0]:.1f}\n")
    print("| L | Mamba time (s) | attention time (s) | Mamba peak (MiB) | attention peak (MiB) |")
    print("|---|---|---|---|---|")
    for length in args.lengths:
        m, a = rows["mamba"][length], rows["attention"][length]
        print(f"| {length} | {m['seconds']:.4f} | {a['seconds']:.4f} | {m['peak_mib']:.0f} | {a['peak_mib']:.0f} |")
    ratios = {}
    if 512 in args.lengths and 4096 in args.lengths:
        ratios = {n: r[4096]["seconds"] / r[512]["seconds"] for n, r in rows.items()}
        print("\ntime(4096) / time(512): " + ", ".join(f"{n} {v:.1f}" for n, v in ratios.items()))
    if args.out:
        from msakit.io import atomic_write_json

        atomic_write_json(args.out, {"config": common, "rows": rows, "ratio_4096_512": ratios,
                                     "load_average": os.getloadavg()[0]})  # fmt: skip


if __name__ == "__main__":
    main()
