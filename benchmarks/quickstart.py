"""Time the quick-start job and real-data preparation (targets: < 2 min and < 1 min).

    python benchmarks/quickstart.py [--source ../shared/data] [--out docs/benchmarks.md]

Runs `msakit run` and `msakit data prepare mosi` as a user would (fresh processes,
the MiniLM encoder already on disk, the text cache cold), and appends the wall times
and the machine's load to the output file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    msakit = [sys.executable, "-m", "msakit"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        rows.append(
            ("msakit run (5 seeds, synthetic)", timed([*msakit, "run", "--no-progress", "--out", f"{tmp}/run"]), load)
        )
        if (args.source / "mosi" / "labels.csv").exists():
            load = os.getloadavg()[0]
            cmd = [
                *msakit,
                "data",
                "prepare",
                "mosi",
                "--source",
                str(args.source),
                "--out",
                f"{tmp}/mosi",
                "--cache-dir",
                f"{tmp}/cache",
                "--no-progress",
            ]
            rows.append(("msakit data prepare mosi (cold cache)", timed(cmd), load))
    lines = [
        f"\n### {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores (`python benchmarks/quickstart.py`)\n",
        "| job | wall time (s) | 1-min load average at start |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {seconds:.1f} | {load:.1f} |" for name, seconds, load in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
