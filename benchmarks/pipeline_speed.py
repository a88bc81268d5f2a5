"""Time per extractor and the end-to-end real-time factor of `msakit analyze` on the MOUD clip.

    OMP_NUM_THREADS=2 python benchmarks/pipeline_speed.py [--video V --transcript T] [--repeats 2] [--json out.json]
    OMP_NUM_THREADS=2 python benchmarks/pipeline_speed.py --full-only --json docs/results/pipeline_rtf.json

Models are loaded and warmed up first (one full analysis), so the numbers are the
steady-state cost per clip. RTF = seconds of compute / seconds of media; <= 1.0 means
faster than real time. The machine's load average is printed next to the numbers: on a
shared machine, other processes' load slows every stage.

The full pipeline (`full_pipeline`: Whisper ASR, ABSA and scenes on, no transcript) is
timed in process CPU seconds (all threads; what a loaded machine cannot inflate much) and
wall seconds, with each stage of that same run in CPU seconds: the CPU RTF bounds the wall
RTF of an idle machine with as many cores as threads were used.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


# stages of one `Analyzer.analyze` call, timed by wrapping these (object, attribute) pairs
FULL_STAGES = {
    "decode_and_face_mesh": ("pipeline", "load"),
    "asr_whisper": ("analyze_module", "recognise"),
    "language": ("Analyzer", "_language"),
    "text_features": ("Analyzer", "_text"),
    "model_and_cues": ("Analyzer", "_predict"),
    "aspects": ("Analyzer", "_aspects"),
    "scenes": ("Analyzer", "_scenes"),
    "frame_tracks": ("Analyzer", "_frame_tracks"),
}


def full_pipeline(video: Path, repeats: int) -> dict[str, Any]:
    """CPU and wall seconds of `analyze` with ASR, ABSA and scenes on, and the CPU seconds per stage."""
    from msakit import analyze as analyze_module
    from msakit.analyze import Analyzer, write_outputs
    from msakit.extract.pipeline import Pipeline

    analyzer = Analyzer(aspects=True, scenes=True)
    t0 = time.perf_counter()
    analyzer.analyze(video)  # loads Whisper, spaCy, the scene models; warms caches
    warm = time.perf_counter() - t0
    owners = {"pipeline": Pipeline, "analyze_module": analyze_module, "Analyzer": Analyzer}
    spent: dict[str, float] = {}
    originals = {}
    for stage, (owner, attr) in FULL_STAGES.items():
        target = owners[owner]
        original = getattr(target, attr)
        originals[stage] = (target, attr, original)

        def timed(*args: Any, _f: Callable[..., Any] = original, _s: str = stage, **kwargs: Any) -> Any:
            c0 = time.process_time()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_s] = spent.get(_s, 0.0) + time.process_time() - c0

        setattr(target, attr, timed)
    runs = []
    try:
        for _ in range(repeats):
            spent.clear()
            c0, w0 = time.process_time(), time.perf_counter()
            analysis = analyzer.analyze(video)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            with tempfile.TemporaryDirectory() as tmp:
                c1 = time.process_time()
                write_outputs(analysis, tmp)
                write_cpu = time.process_time() - c1
            runs.append((cpu, wall, dict(spent), write_cpu, analysis))
    finally:
        for target, attr, original in originals.values():
            setattr(target, attr, original)
    cpu, wall, stages, write_cpu, analysis = min(runs, key=lambda r: r[0])
    duration = analysis.duration
    return {
        "warmup_s": round(warm, 2),
        "utterances": len(analysis.utterances),
        "aspects": sum(len(u.aspects) for u in analysis.utterances),
        "scene_frames": len(analysis.scenes),
        "language": analysis.language,
        "asr": analysis.asr,
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
        "cpu_rtf": round(cpu / duration, 3),
        "wall_rtf": round(wall / duration, 3),
        "stage_cpu_seconds": {k: round(v, 3) for k, v in stages.items()},
        "other_cpu_seconds": round(cpu - sum(stages.values()), 3),
        "write_outputs_cpu_seconds": round(write_cpu, 3),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=SHARED / "moud" / "101_movies.mp4", help="media file to time")
    parser.add_argument("--transcript", type=Path, default=SHARED / "moud" / "101_movies.csv", help="its transcript")
    parser.add_argument("--repeats", type=int, default=2, help="runs per stage; the fastest is reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--full-only", action="store_true", help="time only the full pipeline (ASR, ABSA, scenes)")
    args = parser.parse_args()

    import torch

    threads = int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads()
    torch.set_num_threads(threads)
    if args.full_only:
        from msakit.extract import media as _media

        load0 = os.getloadavg()
        full = full_pipeline(args.video, args.repeats)
        out = {
            "media": str(args.video),
            "media_seconds": round(_media.probe(args.video).duration, 2),
            "threads": threads,
            "cpu_count": os.cpu_count(),
            "loadavg_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
            "full_pipeline": full,
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        return
    from msakit.analyze import Analyzer
    from msakit.extract import media
    from msakit.extract.pipeline import Pipeline
    from msakit.extract.speech import read_transcript, speech_segments, transcribe
    from msakit.extract.visual import track_faces

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    analyzer = Analyzer()
    analyzer.analyze(args.video, args.transcript)  # loads MiniLM, the face mesh, openSMILE, LiteRT; warms caches
    pipeline = Pipeline()
    pipeline.text(["warm up"])
    load_s = time.perf_counter() - t0

    info = media.probe(args.video)
    utterances = read_transcript(args.transcript)
    stages: dict[str, float] = {}
    stages["decode_audio"], samples = best_of(args.repeats, lambda: media.load_audio(args.video))
    stages["decode_video_5fps"], frames = best_of(
        args.repeats, lambda: list(media.sample_frames(args.video, 5.0, max_side=640))
    )
    stages["face_mesh"], faces = best_of(args.repeats, lambda: track_faces(frames))
    for name in ("face_geometry", "fer_emotions"):
        stages[name], _ = best_of(args.repeats, lambda n=name: pipeline.extractor(n)(faces))
    for name in ("egemaps_lld", "egemaps_functionals", "prosody"):
        stages[name], _ = best_of(args.repeats, lambda n=name: pipeline.extractor(n)(samples))
    texts = [u.text for u in utterances]
    stages["minilm_tokens"], _ = best_of(args.repeats, lambda: pipeline.text(texts))
    stages["vad_silero"], segments = best_of(args.repeats, lambda: speech_segments(samples))
    stages["asr_pocketsphinx"], _ = best_of(1, lambda: transcribe(samples, segments))
    e2e, _ = best_of(args.repeats, lambda: analyzer.analyze(args.video, args.transcript))
    e2e_asr, _ = best_of(1, lambda: analyzer.analyze(args.video))  # no transcript: VAD + ASR
    full = full_pipeline(args.video, args.repeats)
    load1 = os.getloadavg()
    result = {
        "media": str(args.video),
        "media_seconds": round(info.duration, 2),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "loadavg_before_after": [round(load0[0], 2), round(load1[0], 2)],
        "model_load_and_warmup_s": round(load_s, 2),
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "stage_rtf": {k: round(v / info.duration, 4) for k, v in stages.items()},
        "analyze_end_to_end_s": round(e2e, 2),
        "analyze_rtf": round(e2e / info.duration, 3),
        "analyze_with_asr_s": round(e2e_asr, 2),
        "analyze_with_asr_rtf": round(e2e_asr / info.duration, 3),
        "full_pipeline": full,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
