"""CPU time per `/v1/predict` step, in process (no HTTP): where a request's CPU goes.

    OMP_NUM_THREADS=1 python benchmarks/serve_cpu.py --record

One (50, 384) text sample as the load test sends it (about 400 kB of JSON), the packaged
default_text checkpoint: `json.loads` (the parser before) against `orjson.loads` (the service's
parser), the list -> array conversion, and `service.predict_features` for one sample and per
sample in batches of 4 and 16 (what micro-batching joins). `time.process_time` over --repeats
calls after one warm-up call; the machine is shared, so the ratios are more stable than the values.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson


def cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return 1000 * (time.process_time() - start) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--record", action="store_true", help="write docs/results/serve_cpu.json (with its markdown)")
    args = p.parse_args()
    from msakit import service
    from msakit.analyze import resolve_checkpoint

    model = service.load_model(resolve_checkpoint("default_text"))
    body = json.dumps({"sample": {"text": np.random.default_rng(0).normal(size=(50, 384)).tolist()}}).encode()
    sample = orjson.loads(body)["sample"]
    n = args.repeats
    rows = {
        "json.loads of the body": cpu_ms(lambda: json.loads(body), n),
        "orjson.loads of the body": cpu_ms(lambda: orjson.loads(body), n),
        "lists -> float32 array": cpu_ms(lambda: np.asarray(sample["text"], np.float32), n),
        "predict_features, 1 sample": cpu_ms(lambda: service.predict_features(model, [sample]), n),
    }
    for k in (4, 16):
        rows[f"predict_features, per sample in a batch of {k}"] = (
            cpu_ms(lambda k=k: service.predict_features(model, [sample] * k), max(1, n // k)) / k
        )
    result = {"body_bytes": len(body), "repeats": n, "cpu_ms": {k: round(v, 3) for k, v in rows.items()}}
    print(json.dumps(result, indent=2))
    if args.record:
        from msakit.io import atomic_write_text

        ms = result["cpu_ms"]
        lines = ["```bash", "OMP_NUM_THREADS=1 python benchmarks/serve_cpu.py " + " ".join(sys.argv[1:]), "```", ""]
        lines += ["| step | CPU time |", "|---|---|", *(f"| {k} | {v:.2f} ms |" for k, v in ms.items()), ""]
        ratio = ms["json.loads of the body"] / ms["orjson.loads of the body"]
        lines.append(
            f"- orjson parses the {len(body) // 1000} kB body {ratio:.1f}x faster than json.loads; micro-batching "
            f"16 waiting requests costs {ms['predict_features, per sample in a batch of 16']:.2f} ms per sample "
            f"against {ms['predict_features, 1 sample']:.2f} ms for one alone."
        )
        result["markdown"] = "\n".join(lines) + "\n"
        path = Path(__file__).resolve().parents[1] / "docs" / "results" / "serve_cpu.json"
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
