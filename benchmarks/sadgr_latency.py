"""CPU inference latency of SADGR vs sequence length: AG-VR gate vs cross-attention vs no AG-VR.

The paper (§IV, after Table 3) claims SADGR's inference "scales linearly with the input
sequence length" because AG-VR avoids frame-wise cross-modal attention. AG-VR still
runs a single-head self-attention over the video frames (eq. 14), which is quadratic in
Lv; this script measures all three variants so the claim can be checked.

    OMP_NUM_THREADS=1 python benchmarks/sadgr_latency.py --lengths 50 200 800 3200

Every modality gets the same length L; widths are MOSI/YouTube-like (text 384, audio 74,
visual 36); batch 4; eval mode, no grad; median of `--repeats` timed calls after one
warm-up.
"""

from __future__ import annotations

import argparse
import json

import torch

from model_latency import median_ms  # sibling script: run from any folder as python benchmarks/...
from msakit import create_model
from msakit.batch import Batch

VARIANTS = {"gate (AG-VR)": "gate", "cross-attention": "attention", "no AG-VR": "none"}


def make_batch(length: int, batch_size: int, dims: dict[str, int]) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(
        features={m: torch.randn(batch_size, length, d, generator=g) for m, d in dims.items()},
        masks={m: torch.ones(batch_size, length, dtype=torch.bool) for m in dims},
        present=torch.ones(batch_size, 3, dtype=torch.bool),
        labels=torch.zeros(batch_size),
        ids=[str(i) for i in range(batch_size)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200, 800, 3200])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dims = {"text": 384, "audio": 74, "visual": 36}
    rows: dict[str, dict[int, float]] = {}
    params: dict[str, int] = {}
    for label, refine in VARIANTS.items():
        torch.manual_seed(0)
        model = create_model(
            "sadgr", text_dim=384, audio_dim=74, visual_dim=36, hidden_dim=args.hidden_dim, visual_refine=refine
        ).eval()
        params[label] = model.num_parameters()
        rows[label] = {n: median_ms(model, make_batch(n, args.batch_size, dims), 1, args.repeats) for n in args.lengths}
    header = "| variant | params | " + " | ".join(f"L={n} (ms)" for n in args.lengths) + " | ratio last/first |"
    print(header)
    print("|" + "---|" * (len(args.lengths) + 3))
    for label, times in rows.items():
        cells = " | ".join(f"{times[n]:.1f}" for n in args.lengths)
        ratio = times[args.lengths[-1]] / times[args.lengths[0]]
        print(f"| {label} | {params[label]:,} | {cells} | {ratio:.0f}× |")
    print(f"(length grows {args.lengths[-1] / args.lengths[0]:.0f}×; batch {args.batch_size}, 1 thread)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"params": params, "milliseconds": rows, "batch_size": args.batch_size}, fh, indent=2)


if __name__ == "__main__":
    main()
