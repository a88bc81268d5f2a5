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


def wait_ready(base: str, server: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"msakit serve exited with {server.returncode}")
        time.sleep(0.1)
    raise SystemExit(f"msakit serve did not get ready in {seconds:g} s")


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a load client far cheaper in CPU
    than httpx (it shares the 2 cores with the server), enough for `POST` + a sized answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: {content_type}\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        data = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace, base: str, pid: int) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=args.client_timeout) as probe:
        dim = (await probe.get("/v1/models")).json()["models"][0]["dims"]["text"]
    rng = np.random.default_rng(0)
    body = json.dumps({"sample": {"text": rng.normal(size=(args.steps, dim)).tolist()}}).encode()
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    sent = 0
    stop_at = time.perf_counter() + args.warmup

    async def client() -> None:
        nonlocal sent
        conn = Connection(host, int(port))
        while time.perf_counter() < stop_at and sent < args.max_requests:
            sent += 1
            start = time.perf_counter()
            try:
                status, headers, _ = await asyncio.wait_for(conn.post("/v1/predict", body), args.client_timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as exc:
                errors.append(type(exc).__name__)
                await conn.close()
                continue
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 200:
                latencies.append(time.perf_counter() - start)
            elif status == 429:
                await asyncio.sleep(float(headers.get("retry-after", "1")) / 10)  # a polite client backs off
            else:
                errors.append(f"HTTP {status}")
        await conn.close()

    async def sample_memory() -> None:
        while time.perf_counter() < stop_at:
            memory.append(rss_mb(pid))
            await asyncio.sleep(0.2)

    cold = rss_mb(pid)
    if args.warmup > 0:  # the same clients, not counted: first-call allocations are not a leak
        await asyncio.gather(*(client() for _ in range(args.clients)))
        latencies.clear()
        statuses.clear()
        errors.clear()
        sent = 0
    memory = [rss_mb(pid)]
    stop_at = time.perf_counter() + args.seconds
    server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
    began = time.perf_counter()
    await asyncio.gather(sample_memory(), *(client() for _ in range(args.clients)))
    elapsed = time.perf_counter() - began
    server_cpu, client_cpu = cpu_seconds(pid) - server_cpu, time.process_time() - client_cpu
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
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(answered, 1), 2),
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(answered, 1), 2),
        "rss_mb": {
            "cold": round(cold, 1),
            "start": round(memory[0], 1),
            "end": round(memory[-1], 1),
            "peak": round(max(memory), 1),
        },
        "warmup_s": args.warmup,
        "load_avg_1m": os.getloadavg()[0],
        "server": {"concurrency": args.concurrency, "queue": args.queue, "steps": args.steps},
    }


RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def render(runs: dict[str, dict]) -> str:
    """The docs' table of the recorded runs and the sentences that read it (docs/serve.md via docgen)."""
    out = [
        "| run | requests | throughput (200s) | p50 | p99 | statuses | errors | server CPU / request "
        "| client CPU / request | server RSS cold / start / end / peak | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        mem = r["rss_mb"]
        out.append(
            f"| {name}: {r['clients']} client{'s' * (r['clients'] > 1)}, {r['seconds']:.0f} s, "
            f"{r['server'].get('steps', 50)} x 384 text, "
            f"`--concurrency {r['server']['concurrency']} "
            f"--queue {r['server']['queue']}` | {r['requests']} | {r['throughput_rps']} req/s ({r['ok_rps']}) "
            f"| {r['p50_ms']} ms | {r['p99_ms']} ms | {statuses} | {r['errors']} | {r['server_cpu_ms_per_request']} ms "
            f"| {r['client_cpu_ms_per_request']} ms | {mem['cold']} / {mem['start']} / {mem['end']} / {mem['peak']} MB "
            f"| {r['load_avg_1m']:.1f} |"
        )
    out += ["", "```bash", *(r["command"] for r in runs.values()), "```", ""]
    for name in [k for k in runs if k.startswith("clients32")]:
        r = runs[name]
        mem = r["rss_mb"]
        grow = 100 * (mem["end"] - mem["start"]) / mem["start"]
        met = "met" if r["p99_ms"] is not None and r["p99_ms"] < 250 else "not met"
        out.append(
            f"- {name}, 32 clients for {r['seconds']:.0f} s: p99 {r['p99_ms']} ms at {r['ok_rps']} req/s, so the reach "
            f"p99 < 250 ms is {met} on this machine (1-minute load average {r['load_avg_1m']:.1f} on 2 cores); "
            f"{r['errors']} errors; server memory {mem['start']} → {mem['end']} MB after warm-up ({grow:+.1f} %, "
            f"{'within' if abs(grow) <= 10 else 'beyond'} the 10 % bound; {mem['cold']} MB before the warm-up, "
            f"so {100 * (mem['end'] - mem['cold']) / mem['cold']:+.1f} % counted from a cold start)."
        )
        cpu = r["server_cpu_ms_per_request"] + r["client_cpu_ms_per_request"]
        out.append(
            f"- By Little's law, p99 < 250 ms with 32 clients needs more than 32 / 0.25 = 128 answers per second. "
            f"At the {cpu:.1f} ms of CPU per request measured here (server + client), that is "
            f"{128 * cpu / 1000:.2f} of one core"
            + (
                ", which the service did not get on this machine."
                if r["ok_rps"] < 128
                else f"; it answered {r['ok_rps']} per second, so the p99 is the queue's tail, not a lack of CPU."
                if met == "not met"
                else "."
            )
        )
    if "overload" in runs:
        r = runs["overload"]
        out.append(
            f"- Overload (`--queue {r['server']['queue']}`): {r['statuses'].get('429', 0)} deliberate 429s and "
            f"{r['errors']} errors (timeouts, refused connections, 5xx)."
        )
    return "\n".join(out) + "\n"


def record(name: str, result: dict) -> None:
    """Adds this run to docs/results/serve_load.json (with its command) and re-renders its markdown."""
    from msakit.io import atomic_write_text

    path = RESULTS / "serve_load.json"
    data = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    argv = [a for a in sys.argv[1:] if a not in ("--record", name)]
    result["command"] = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/serve_load.py " + " ".join(argv)
    data["runs"][name] = result
    data["runs"] = {k: data["runs"][k] for k in sorted(data["runs"], key=lambda k: (k != "one_client", k))}
    data["markdown"] = render(data["runs"])
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


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
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of the same load before measuring (not counted)")
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    p.add_argument("--record", metavar="NAME", help="record the run as NAME in docs/results/serve_load.json")
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
        wait_ready(base, server)
        result = asyncio.run(run(args, base, server.pid))
    finally:
        server.terminate()
        server.wait(10)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from msakit.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    if args.record:
        record(args.record, result)


if __name__ == "__main__":
    main()
