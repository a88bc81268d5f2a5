"""CPU time of `import msakit`, `msakit --help` and a `msakit predict` call, before/after pairs.

    git worktree add /tmp/before <commit>
    OMP_NUM_THREADS=1 python benchmarks/startup.py --before /tmp/before/src --pairs 3 \\
        --checkpoint runs/x/seed1/best --data data/mosi --json docs/bench/startup.json

Each command runs in its own process (`python -c` / `python -m msakit`), with the checkout under
test first on PYTHONPATH; its CPU time (user + system, `resource.RUSAGE_CHILDREN`) is what counts,
robust to other jobs on a shared machine. Sides alternate order pair by pair; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"


def cpu_seconds(cmd: list[str], src: Path) -> float:
    """User + system CPU seconds of `cmd`, run with `src` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"startup: {' '.join(cmd)} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def commands(checkpoint: str | None, data: str | None, out: Path) -> dict[str, list[str]]:
    py = sys.executable
    cmds = {"import msakit": [py, "-c", "import msakit"], "msakit --help": [py, "-m", "msakit", "--help"]}
    if checkpoint and data:
        cmds["msakit predict"] = [py, "-m", "msakit", "predict", checkpoint, "--data", data, "--out", str(out)]
    return cmds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="the src/ folder of the checkout to compare with")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--checkpoint", help="a checkpoint for the predict row")
    p.add_argument("--data", help="its dataset")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions.csv"
        for pair in range(args.pairs):
            sides = [("before", args.before), ("after", SRC)]
            for side, src in sides if pair % 2 == 0 else sides[::-1]:
                for name, cmd in commands(args.checkpoint, args.data, out).items():
                    out.unlink(missing_ok=True)
                    results.setdefault(name, {}).setdefault(side, []).append(cpu_seconds(cmd, src))
                    print(pair, side, name, f"{results[name][side][-1]:.2f}", file=sys.stderr)
    table: dict[str, Any] = {}
    for name, sides in results.items():
        b, a = statistics.median(sides["before"]), statistics.median(sides["after"])
        table[name] = {"before_cpu_s": round(b, 2), "after_cpu_s": round(a, 2), "after_over_before": round(a / b, 2)}
    payload = {"pairs": args.pairs, "load_avg_1min": os.getloadavg()[0], "median": table, "runs": results}
    text = json.dumps(payload, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
