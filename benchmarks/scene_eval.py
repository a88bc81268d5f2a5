"""Agreement of `msakit.extract.scenes` with a labelled frame set made from the real videos here.

The two real videos in ../shared/data (MOSI `Oz06ZWiO20M_6.mp4`, a webcam talking head, and
MOUD `101_movies.mp4`, a speaker before a studio sky backdrop), sampled at 1 frame/s, give
every frame of the set; each frame's label comes from how it was made (and the contact
sheet `--sheet` was looked at to check it):

- `talking_head`: every sampled frame as is;
- `close_up`: every second frame cropped around the face (MediaPipe Face *Mesh* landmarks,
  a different model from the BlazeFace detectors the classifier counts faces with) so that
  the face is 60 % of the crop's height, resized back to the frame size;
- `crowd`: mosaics of 4 (2×2) or 9 (3×3) different frames, i.e. several people in view;
- `text_graphic`: title cards - 2-4 lines of text (OpenCV Hershey fonts, random sizes) on a
  plain colour or on a heavily blurred and darkened frame;
- `other`: frames with nobody in view - the background strips beside the speaker (MOSI's
  bookshelf, MOUD's sky backdrop), resized to the frame size.

Every made frame is JPEG re-encoded (quality 75) as a video frame would be. `outdoor` has no
real footage here, so it is not in the set (its rule is tested on a synthetic frame in
tests/test_scenes.py). Made with numpy seed 0; nothing is written but the result JSON.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/scene_eval.py --out docs/results/scene_eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from msakit.extract.media import sample_frames
from msakit.extract.scenes import SCENE_LABELS, SceneClassifier, SceneConfig
from msakit.extract.visual import track_faces
from msakit.io import atomic_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VIDEOS = ("mosi/media/Oz06ZWiO20M_6.mp4", "moud/101_movies.mp4")
COMMAND = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/scene_eval.py --out docs/results/scene_eval.json"
LINES = (
    "BREAKING NEWS", "Box office weekend", "Top 10 movies of 2024", "Reviews are in",
    "Coming soon", "Interview at 9 pm", "Best picture nominees", "Subscribe for more",
)  # fmt: skip


def _jpeg(rgb: np.ndarray, quality: int = 75) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def _close_up(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    x0, y0 = landmarks[:, :2].min(0)
    x1, y1 = landmarks[:, :2].max(0)
    side = (y1 - y0) / 0.6  # the face is 60 % of the crop's height
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ch, cw = min(side, h), min(side * w / h, w)
    top = int(np.clip(cy - ch / 2, 0, h - ch))
    left = int(np.clip(cx - cw / 2, 0, w - cw))
    return cv2.resize(rgb[top : top + int(ch), left : left + int(cw)], (w, h))


def _mosaic(frames: list[np.ndarray], n: int, size: tuple[int, int]) -> np.ndarray:
    import cv2

    w, h = size
    tiles = [cv2.resize(f, (w // n, h // n)) for f in frames[: n * n]]
    rows = [np.hstack(tiles[i * n : (i + 1) * n]) for i in range(n)]
    return cv2.resize(np.vstack(rows), (w, h))


def _card(rng: np.random.Generator, size: tuple[int, int], background: np.ndarray | None) -> np.ndarray:
    import cv2

    w, h = size
    if background is None:
        card = np.zeros((h, w, 3), np.uint8) + rng.integers(0, 120, 3).astype(np.uint8)
    else:
        card = (cv2.GaussianBlur(cv2.resize(background, (w, h)), (0, 0), 12) * 0.4).astype(np.uint8)
    lines = rng.choice(len(LINES), size=int(rng.integers(2, 5)), replace=False)
    scale = float(rng.uniform(0.7, 1.1)) * w / 352
    for k, i in enumerate(lines):
        y = int(h * (0.25 + 0.2 * k))
        cv2.putText(card, LINES[i], (int(w * 0.05), y), cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255), 2)
    return card


def labelled_frames(data: Path = DATA) -> list[tuple[str, str, np.ndarray]]:
    """(label, how it was made, RGB frame) for the whole set."""
    import cv2

    rng = np.random.default_rng(0)
    out: list[tuple[str, str, np.ndarray]] = []
    per_video: list[list[np.ndarray]] = []
    for rel in VIDEOS:
        frames = [f for _, f in sample_frames(data / rel, 1.0)]
        per_video.append(frames)
        name = Path(rel).name
        out += [("talking_head", f"{name} frame {k}", f) for k, f in enumerate(frames)]
        meshed = track_faces([(float(k), f) for k, f in enumerate(frames)])
        for k, face in enumerate(meshed):
            if k % 2 == 0 and face.landmarks is not None:
                out.append(("close_up", f"{name} frame {k} face crop", _jpeg(_close_up(face.image, face.landmarks))))
        h, w = frames[0].shape[:2]
        for k in range(0, len(frames), max(1, len(frames) // 8)):
            strip = frames[k][:, int(w * 0.72) :] if "moud" in rel else frames[k][:, int(w * 0.8) :]
            out.append(("other", f"{name} frame {k} background strip", _jpeg(cv2.resize(strip, (w, h)))))
    pool = [f for frames in per_video for f in frames]
    size = (352, 288)
    for k in range(10):
        n = 2 if k < 5 else 3
        picks = rng.choice(len(pool), size=n * n, replace=False)
        out.append(("crowd", f"{n}x{n} mosaic", _jpeg(_mosaic([pool[i] for i in picks], n, size))))
    for k in range(10):
        background = None if k < 5 else pool[int(rng.integers(len(pool)))]
        kind = "plain" if background is None else "blurred-frame"
        out.append(("text_graphic", f"title card on {kind} background", _jpeg(_card(rng, size, background))))
    return out


def confusion(gold: list[str], pred: list[str], labels: list[str]) -> dict[str, dict[str, int]]:
    return {
        g: {p: sum(1 for a, b in zip(gold, pred, strict=True) if a == g and b == p) for p in labels} for g in labels
    }


def evaluate(classifier: SceneClassifier, frames: list[tuple[str, str, np.ndarray]]) -> dict[str, Any]:
    gold = [label for label, _, _ in frames]
    t0 = time.process_time()
    scenes = classifier.classify([(float(k), f) for k, (_, _, f) in enumerate(frames)])
    cpu = time.process_time() - t0
    pred = [s.label for s in scenes]
    present = [label for label in SCENE_LABELS if label in gold or label in pred]
    recall = {
        label: sum(1 for g, p in zip(gold, pred, strict=True) if g == p == label) / gold.count(label)
        for label in SCENE_LABELS
        if label in gold
    }
    return {
        "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold),
        "recall": recall,
        "confusion": confusion(gold, pred, present),
        "cpu_ms_per_frame": 1000 * cpu / len(frames),
        "errors": [
            {"made": made, "gold": g, "pred": p, "cues": s.cues}
            for (g, made, _), p, s in zip(frames, pred, scenes, strict=True)
            if g != p
        ],
    }


def render(result: dict[str, Any]) -> str:
    full, plain = result["methods"]["msakit scenes"], result["methods"]["without the text detector"]
    labels = list(full["confusion"])
    lines = [
        "```bash",
        result["command"],
        "```",
        "",
        f"{result['frames']} labelled frames ({result['by_label']}).",
        "",
        "| gold \\ predicted | " + " | ".join(labels) + " | recall |",
        "|---" * (len(labels) + 2) + "|",
    ]
    for g in labels:
        if g not in full["recall"]:
            continue
        cells = [str(full["confusion"][g][p]) for p in labels]
        lines.append(f"| {g} | " + " | ".join(cells) + f" | {100 * full['recall'][g]:.1f} |")
    worst = min(full["recall"], key=lambda k: full["recall"][k])
    lines += [
        "",
        "Reading (computed from the table):",
        "",
        f"- accuracy {100 * full['accuracy']:.1f} % ({sum(full['confusion'][g][g] for g in full['recall'])} of "
        f"{result['frames']}); the lowest recall is {worst} ({100 * full['recall'][worst]:.1f} %).",
        f"- with the text detector off (`SceneConfig(text=False)`): accuracy {100 * plain['accuracy']:.1f} %; "
        f"{plain['confusion']['text_graphic']['text_graphic']} of the "
        f"{sum(full['confusion']['text_graphic'].values())} title cards are still found.",
        f"- CPU time {full['cpu_ms_per_frame']:.0f} ms per frame (two face detectors and the text detector, "
        "one thread).",
    ]
    return "\n".join(lines) + "\n"


def rerender(path: Path) -> None:
    """Rewrite the markdown of a result file from its numbers (after a change of wording only)."""
    result = json.loads(path.read_text())
    result["markdown"] = render(result)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")


def sheet(frames: list[tuple[str, str, np.ndarray]], path: Path) -> None:
    """A contact sheet of the labelled frames (to look at them)."""
    import cv2

    tiles = []
    for label, _, f in frames:
        tile = cv2.resize(f, (176, 144))[:, :, ::-1].copy()
        cv2.putText(tile, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
        tiles.append(tile)
    while len(tiles) % 10:
        tiles.append(np.zeros_like(tiles[0]))
    cv2.imwrite(str(path), np.vstack([np.hstack(tiles[i : i + 10]) for i in range(0, len(tiles), 10)]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, help="result JSON (docs/results/scene_eval.json)")
    ap.add_argument("--sheet", type=Path, help="also write a contact sheet PNG of the labelled frames")
    args = ap.parse_args(argv)
    frames = labelled_frames(args.data)
    if args.sheet:
        sheet(frames, args.sheet)
    full = SceneClassifier()
    if full.missing:
        raise SystemExit(full.missing)
    full.classify([(0.0, frames[0][2])])  # warm up
    result: dict[str, Any] = {
        "command": COMMAND,
        "frames": len(frames),
        "by_label": ", ".join(f"{n} {k}" for k, n in Counter(label for label, _, _ in frames).items()),
        "methods": {
            "msakit scenes": evaluate(full, frames),
            "without the text detector": evaluate(SceneClassifier(SceneConfig(text=False)), frames),
        },
    }
    result["markdown"] = render(result)
    print(result["markdown"])
    if args.out:
        with atomic_path(args.out, suffix=".json") as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
