"""Concurrent `/v1/analyze` jobs against `msakit serve` on 127.0.0.1: all complete, none lost,
each gives what `msakit analyze` gives on the command line.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/serve_analyze.py --jobs 8 --job-workers 2 \\
        --out docs/results/serve_analyze.json

First runs `msakit analyze MEDIA` once as the reference (default: the MOUD video from
../shared/data, analysed with its packaged default_text checkpoint and Whisper ASR). Then starts
`msakit serve --job-workers W --job-queue Q`, submits `--jobs` uploads of the same file at once,
polls every job until it ends, downloads each timeline.json and compares it with the CLI's:
the same utterances (times, transcript) and the same scores (largest difference reported). It
reports how many jobs were accepted, done, failed or lost (accepted and never ended), the wall
time, each job's latency, the server's CPU seconds and its peak resident memory. Concurrency is
bounded by --job-workers (2 cores here: more workers only share them); the rest wait in the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import cpu_seconds, free_port, rss_mb, wait_ready

DATA = Path(os.environ.get("MSAKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def compare(served: dict, cli: dict) -> dict:
    a, b = served["utterances"], cli["utterances"]
    same_segments = [(u["start"], u["end"], u["text"]) for u in a] == [(u["start"], u["end"], u["text"]) for u in b]
    diffs = [abs(x["score"] - y["score"]) for x, y in zip(a, b, strict=False) if x["score"] is not None]
    return {"same_segments": same_segments, "n": len(a), "max_score_diff": max(diffs, default=0.0)}


async def run_jobs(args: argparse.Namespace, base: str, pid: int, media: bytes, cli: dict) -> dict:
    peak = [rss_mb(pid)]
    cpu0 = cpu_seconds(pid)

    async def one(http: httpx.AsyncClient, k: int) -> dict:
        began = time.perf_counter()
        r = await http.post("/v1/analyze", files={"media": (f"clip{k}{args.media.suffix}", media)})
        if r.status_code != 202:
            return {"job": k, "accepted": False, "status": r.status_code, "detail": r.json().get("detail")}
        job_id = r.json()["id"]
        while True:
            job = (await http.get(f"/v1/jobs/{job_id}")).json()
            peak.append(rss_mb(pid))
            if job["status"] in ("done", "failed") or time.perf_counter() - began > args.job_timeout:
                break
            await asyncio.sleep(1.0)
        out = {"job": k, "accepted": True, "status": job["status"], "seconds": round(time.perf_counter() - began, 1)}
        if job["status"] == "done":
            served = (await http.get(job["links"]["timeline.json"])).json()
            out.update(compare(served, cli))
        else:
            out["error"] = job.get("error")
        return out

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        jobs = await asyncio.gather(*(one(http, k) for k in range(args.jobs)))
    accepted = [j for j in jobs if j["accepted"]]
    done = [j for j in accepted if j["status"] == "done"]
    return {
        "media": str(args.media),
        "jobs": args.jobs,
        "job_workers": args.job_workers,
        "job_queue": args.job_queue,
        "accepted": len(accepted),
        "done": len(done),
        "failed": sum(j["status"] == "failed" for j in accepted),
        "lost": sum(j["status"] not in ("done", "failed") for j in accepted),
        "same_as_cli": sum(j.get("same_segments", False) for j in done),
        "max_score_diff": max((j["max_score_diff"] for j in done), default=None),
        "wall_s": round(time.perf_counter() - began, 1),
        "job_seconds": sorted(j.get("seconds", 0.0) for j in accepted),
        "server_cpu_s": round(cpu_seconds(pid) - cpu0, 1),
        "server_peak_rss_mb": round(max(peak), 1),
        "cli_wall_s": args.cli_wall_s,
        "load_avg_1m": os.getloadavg()[0],
        "per_job": jobs,
    }


def render(r: dict) -> str:
    """The docs' reading of one run (docs/serve.md via docgen)."""
    seconds = r["job_seconds"]
    same = r["same_as_cli"] == r["done"] == r["jobs"]
    verdict = "The reach (all complete, same results as the CLI, none lost) is " + ("met.\n" if same else "not met.\n")
    return (
        f"```bash\n{r['command']}\n```\n\n"
        f"| jobs | workers | accepted | done | failed | lost | same as the CLI | largest score difference "
        f"| wall time | job latency min / max | server CPU | server peak RSS | CLI run alone | load average |\n"
        f"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {r['jobs']} | {r['job_workers']} | {r['accepted']} | {r['done']} | {r['failed']} | {r['lost']} "
        f"| {r['same_as_cli']} | {r['max_score_diff']} | {r['wall_s']} s | {seconds[0]} / {seconds[-1]} s "
        f"| {r['server_cpu_s']} s | {r['server_peak_rss_mb']} MB | {r['cli_wall_s']} s | {r['load_avg_1m']:.1f} |\n\n"
        f"- {r['jobs']} concurrent jobs on {Path(r['media']).name}: {r['done']} done, {r['failed']} failed, "
        f"{r['lost']} lost; {r['same_as_cli']} gave the CLI's utterances (times and transcript), and the largest "
        f"score difference from the CLI is {r['max_score_diff']}. " + verdict
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--media", type=Path, default=DATA / "moud" / "101_movies.mp4")
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--job-workers", type=int, default=2)
    p.add_argument("--job-queue", type=int, default=8)
    p.add_argument("--job-timeout", type=float, default=3600.0, help="stop polling a job after this (it is 'lost')")
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    p.add_argument("--record", action="store_true", help="write docs/results/serve_analyze.json (with its markdown)")
    args = p.parse_args()
    if not args.media.is_file():
        raise SystemExit(f"no media file {args.media} (set MSAKIT_SHARED_DATA or --media)")
    with tempfile.TemporaryDirectory(prefix="msakit-bench-") as tmp:
        began = time.perf_counter()
        cmd = [sys.executable, "-m", "msakit", "analyze", str(args.media), "--out", f"{tmp}/cli"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args.cli_wall_s = round(time.perf_counter() - began, 1)
        cli = json.loads(Path(f"{tmp}/cli/timeline.json").read_text())
        port = free_port()
        cmd = [sys.executable, "-m", "msakit", "serve", "--checkpoint", "default_text=" + cli["checkpoint"]]
        cmd += ["--port", str(port), "--jobs-dir", f"{tmp}/jobs", "--job-workers", str(args.job_workers)]
        cmd += ["--job-queue", str(args.job_queue), "--max-upload-mb", "64", "--analyze-model", cli["checkpoint"]]
        server_log = open(f"{tmp}/server.log", "wb")  # noqa: SIM115 - closed below, after the server
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=server_log)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, server)
            result = asyncio.run(run_jobs(args, base, server.pid, args.media.read_bytes(), cli))
        finally:
            server.terminate()
            server.wait(30)
            server_log.close()
        if result["failed"] or result["lost"]:  # the failing jobs' tracebacks, from the server's log
            tail = Path(f"{tmp}/server.log").read_text(errors="replace").splitlines()
            result["server_log_errors"] = [line for line in tail if "Error" in line or "failed" in line][-20:]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from msakit.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    if args.record:
        from msakit.io import atomic_write_text

        argv = [a for a in sys.argv[1:] if a != "--record"]
        result["command"] = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/serve_analyze.py " + " ".join(argv)
        result["markdown"] = render(result)
        path = Path(__file__).resolve().parents[1] / "docs" / "results" / "serve_analyze.json"
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
