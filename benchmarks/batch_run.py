"""The 20-clip corpus (benchmarks/make_clips.py) through `msakit analyze DIR --meta` end to end, checked.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/batch_run.py --json docs/results/batch_run.json \\
        --plot docs/pipeline_batch.png [--kill-test]

1. makes the clips (once) in --clips;
2. runs `msakit analyze CLIPS/clips --meta CLIPS/meta.csv --out OUT` as a user would, timing its
   CPU (user + sys of the child) and wall time;
3. checks: exit code 0, every clip accounted for, no crash (no "internal error" reason), and each
   bad case recorded in errors.csv with the expected stage and reason;
4. reruns it with --resume: nothing may be analysed again;
5. with --kill-test: a fresh batch of three clips is killed with SIGKILL once its first file is
   finished, then resumed: the finished file is kept, the rest are analysed, no half-written file.

Writes the summary (counts, CPU, RTF, per-file outcomes) to --json and copies OUT/sentiment.png
to --plot.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# file -> (outcome, stage, words the reason must hold): the bad cases of the issue, and the Spanish cuts
EXPECTED: dict[str, tuple[str, str, str]] = {
    "10_truncated.mp4": ("failed", "decode", "not a readable audio/video file"),
    "16_no_audio.mp4": ("failed", "asr", "no audio track"),
    "17_silent.mp4": ("failed", "asr", "silent"),
    "18_unknown_codec.mkv": ("failed", "decode", "codec this FFmpeg build cannot decode"),
    "14_no_face_graphic.mp4": ("partial", "faces", "no face found"),
    "15_no_face_street.mov": ("partial", "faces", "no face found"),
    "19_german.mp4": ("partial", "language", "language 'de'"),
    "01_moud_u1.mp4": ("partial", "language", "language 'es'"),
}


def run(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """(exit code, CPU seconds of the child, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, cpu, wall


def analyze_cmd(clips: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "msakit", "analyze", str(clips), "--out", str(out), "--no-progress", *extra]


def read_errors(out: Path) -> list[dict[str, str]]:
    with (out / "errors.csv").open() as fh:
        return list(csv.DictReader(fh))


def kill_test(clips: Path, work: Path) -> dict[str, Any]:
    """SIGKILL a 3-clip batch once its first file is finished, then --resume it."""
    out = work / "killed"
    shutil.rmtree(out, ignore_errors=True)
    pattern = str(clips / "0[5-7]_*")
    proc = subprocess.Popen(analyze_cmd(Path(pattern), out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and not list(out.glob("files/*/record.json")):
        time.sleep(0.2)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sorted(p.parent.name for p in out.glob("files/*/record.json"))
    rc, _, _ = run(analyze_cmd(Path(pattern), out, "--resume"), work / "killed_resume.log")
    summary = json.loads((out / "summary.json").read_text())
    stale = [p.name for p in (out / "files").iterdir() if p.name.startswith(".")]
    return {
        "killed_after_first_file": killed,
        "finished_before_kill": kept,
        "resume_rc": rc,
        "resumed": summary["resumed"],
        "analysed_after_resume": summary["analysed_this_run"],
        "analysed_total": summary["analysed"],
        "stale_temporary_folders": stale,
        "ok": killed and rc == 0 and summary["resumed"] == len(kept) and summary["analysed"] == 3 and not stale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=ROOT / "runs" / "clips20", help="make_clips.py output")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "batch20", help="the batch's --out")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--plot", type=Path, help="copy the aggregate plot here")
    parser.add_argument("--kill-test", action="store_true", help="also SIGKILL a small batch and resume it")
    args = parser.parse_args()

    if not (args.clips / "meta.csv").is_file():
        import make_clips

        make_clips.make(ROOT.parent / "shared" / "data", args.clips)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    rc, cpu, wall = run(
        analyze_cmd(args.clips / "clips", args.out, "--meta", str(args.clips / "meta.csv")),
        args.out.with_suffix(".log"),
    )
    load1 = os.getloadavg()[0]
    if rc != 0:
        sys.exit(f"the batch exited {rc}; see {args.out.with_suffix('.log')}")
    summary = json.loads((args.out / "summary.json").read_text())
    errors = read_errors(args.out)
    crashes = [e for e in errors if "internal error" in e["reason"]]
    checks = {}
    for name, (outcome, stage, words) in EXPECTED.items():
        hit = [e for e in errors if e["file"] == name and e["outcome"] == outcome and e["stage"] == stage]
        checks[name] = bool(hit) and words in hit[0]["reason"]
    rc2, cpu2, wall2 = run(
        analyze_cmd(args.clips / "clips", args.out, "--meta", str(args.clips / "meta.csv"), "--resume"),
        args.out.with_name(args.out.name + "_resume.log"),
    )
    again = json.loads((args.out / "summary.json").read_text())
    result: dict[str, Any] = {
        "command": " ".join(analyze_cmd(args.clips / "clips", args.out, "--meta", str(args.clips / "meta.csv"))),
        "exit_code": rc,
        "loadavg_before_after": [round(load0, 2), round(load1, 2)],
        "files": summary["files"],
        "analysed": summary["analysed"],
        "failed": summary["failed"],
        "failed_by_stage": summary["failed_by_stage"],
        "partial_by_stage": summary["partial_by_stage"],
        "crashes": len(crashes),
        "utterances": summary["utterances"],
        "aspects": summary["aspects"],
        "media_seconds_analysed": summary["media_seconds"],
        "process_cpu_seconds": round(cpu, 1),
        "process_wall_seconds": round(wall, 1),
        "per_file_cpu_seconds": summary["cpu_seconds"],
        "per_file_cpu_rtf": summary["cpu_rtf"],
        "expected_cases_recorded": checks,
        "resume": {
            "exit_code": rc2,
            "analysed_again": again["analysed_this_run"],
            "skipped": again["resumed"],
            "cpu_seconds": round(cpu2, 1),
            "wall_seconds": round(wall2, 1),
        },
        "errors": errors,
    }
    if args.kill_test:
        result["kill_test"] = kill_test(args.clips / "clips", args.out.parent)
    ok = rc == 0 and not crashes and all(checks.values()) and again["analysed_this_run"] == 0
    ok = ok and summary["files"] == 20 and result.get("kill_test", {"ok": True})["ok"]
    result["ok"] = ok
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.plot:
        shutil.copyfile(args.out / "sentiment.png", args.plot)
    if not ok:
        sys.exit("some checks failed (see above)")


if __name__ == "__main__":
    main()
