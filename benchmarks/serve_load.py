"""Load test of `msakit serve` /v1/predict on 127.0.0.1 only: concurrent asyncio clients, bounded.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/serve_load.py --clients 32 --seconds 60
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/serve_load.py --clients 32 --seconds 20 --queue 4   # overload

Starts `msakit serve` on a free loopback port (the packaged default_text checkpoint unless
--checkpoint), then `--clients` clients each post one-sample requests (a `--steps` x D text
sequence) back to back until `--seconds` have passed or `--max-requests` were sent. It
reports throughput (answered requests per second, 429s included), p50/p99 latency of the
200s, counts per status, errors (timeouts, refused connections, any 5xx), and the server's
resident memory at start, end and peak (sampled from /proc every 0.2 s). A full queue must
give 429s, never errors. The machine's 1-minute load average is printed beside the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(args: argparse.Namespace, base: str, pid: int) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=args.client_timeout) as probe:
        dim = (await probe.get("/v1/models")).json()["models"][0]["dims"]["text"]
    body = json.dumps({"sample": {"text": np.random.default_rng(0).normal(size=(args.steps, dim)).tolist()}})
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    sent = 0
    memory = [rss_mb(pid)]
    stop_at = time.perf_counter() + args.seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.perf_counter() < stop_at and sent < args.max_requests:
            sent += 1
            start = time.perf_counter()
            try:
                r = await http.post("/v1/predict", content=body, headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                continue
            statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
            if r.status_code == 200:
                latencies.append(time.perf_counter() - start)
            elif r.status_code == 429:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")) / 10)  # a polite client backs off
            else:
                errors.append(f"HTTP {r.status_code}")

    async def sample_memory() -> None:
        while time.perf_counter() < stop_at:
            memory.append(rss_mb(pid))
            await asyncio.sleep(0.2)

    limits = httpx.Limits(max_connections=args.clients)
    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=args.client_timeout, limits=limits) as http:
        await asyncio.gather(sample_memory(), *(client(http) for _ in range(args.clients)))
    elapsed = time.perf_counter() - began
    memory.append(rss_mb(pid))
    answered = sum(statuses.values())
    ms = sorted(x * 1000 for x in latencies)
    return {
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "requests": sent,
        "throughput_rps": round(answered / elapsed, 1),
        "ok_rps": round(len(ms) / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1) if ms else None,
        "statuses": statuses,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "rss_mb": {"start": round(memory[0], 1), "end": round(memory[-1], 1), "peak": round(max(memory), 1)},
        "load_avg_1m": os.getloadavg()[0],
        "server": {"concurrency": args.concurrency, "queue": args.queue, "steps": args.steps},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the packaged default_text)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--max-requests", type=int, default=200_000)
    p.add_argument("--steps", type=int, default=50, help="text steps per sample")
    p.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
    p.add_argument("--queue", type=int, default=32, help="the server's --queue")
    p.add_argument("--client-timeout", type=float, default=30.0)
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = p.parse_args()
    if args.checkpoint is None:
        from msakit.analyze import resolve_checkpoint

        args.checkpoint = str(resolve_checkpoint("default_text"))
    port = free_port()
    cmd = [sys.executable, "-m", "msakit", "serve", "--checkpoint", args.checkpoint, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--concurrency", str(args.concurrency), "--queue", str(args.queue)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"msakit serve exited with {server.returncode}")
            time.sleep(0.1)
        result = asyncio.run(run(args, base, server.pid))
    finally:
        server.terminate()
        server.wait(10)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from msakit.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
