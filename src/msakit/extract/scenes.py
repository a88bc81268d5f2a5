"""Scene classification of frames sampled at 1 frame/s, from measured cues.

No pretrained scene classifier (Places365 or similar) ships inside a registry package that
runs offline here, so a frame's scene is decided by explicit rules over cues that pretrained
detectors which do ship measure:

- faces: MediaPipe's BlazeFace detectors (short- and full-range, inside the `mediapipe`
  wheel): the number of faces and the height of the largest face box / frame height;
- on-screen text: the PP-OCRv4 text detector (`ch_PP-OCRv4_det_infer.onnx`, Apache-2.0,
  inside the `rapidocr-onnxruntime` wheel, run here with onnxruntime): the fraction of the
  frame covered by the boxes of detected text;
- colour: the fraction of sky-blue pixels in the top third and of vegetation-green pixels
  in the whole frame (HSV, OpenCV scale).

Taxonomy and rules, first match wins (people first: a reporter in a street is a talking head):

| label | rule |
|---|---|
| `text_graphic` | text boxes cover ≥ `text_area` of the frame (≥ `text_area_no_face` with no face): title cards |
| `crowd` | ≥ `crowd_faces` faces of height ≥ `min_face_height` |
| `close_up` | 1-2 faces and the largest is ≥ `close_up_face_height` of the frame height |
| `talking_head` | 1-2 faces, the largest ≥ `min_face_height` (studio, webcam, interview) |
| `outdoor` | sky fraction of the top third ≥ `outdoor_sky` or green fraction ≥ `outdoor_green` |
| `other` | none of the above |

`confidence` is a margin, not a calibrated probability: 0.5 when the deciding cue sits on
its threshold, towards 1 the further past it (for `other`, the further every cue is below
its threshold). Thresholds were fixed from the definitions above before the labelled frames
of `benchmarks/scene_eval.py` were made.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SCENE_LABELS = ("talking_head", "close_up", "crowd", "text_graphic", "outdoor", "other")
TEXT_MODEL = "models/ch_PP-OCRv4_det_infer.onnx"
TEXT_MISSING = (
    "the on-screen text detector is not installed (pip install --no-deps rapidocr-onnxruntime): "
    "scenes are classified without the text cue"
)


@dataclass
class SceneFrame:
    """The scene label of one sampled frame and the measured cues that decided it."""

    time: float  # s from the start of the clip
    label: str  # one of SCENE_LABELS
    confidence: float  # in [0.5, 1]: how far the deciding cue is past its threshold
    cues: dict[str, float] = field(default_factory=dict)


@dataclass
class SceneConfig:
    fps: float = 1.0  # frames classified per second
    min_face_confidence: float = 0.5  # BlazeFace detection score
    min_face_height: float = 0.06  # smaller faces (far in the background) are not counted
    close_up_face_height: float = 0.45  # largest face box / frame height at or above this: a close-up
    crowd_faces: int = 3
    text_area: float = 0.06  # fraction of the frame under text boxes: on-screen text / graphic
    text_area_no_face: float = 0.02  # the same with no face in view
    text_threshold: float = 0.3  # PP-OCR's DB probability threshold (its default)
    text_max_side: int = 640  # frames are resized to at most this side for the text detector
    outdoor_sky: float = 0.35  # sky-blue fraction of the top third
    outdoor_green: float = 0.25  # vegetation-green fraction of the frame
    text: bool = True  # use the text detector (False: the text cue is 0, e.g. to measure what it adds)


def text_model_path() -> Path | None:
    """The PP-OCRv4 detector inside the installed rapidocr-onnxruntime wheel (found, not imported:
    its package needs pyclipper/shapely that msakit does not use)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / TEXT_MODEL
    return path if path.is_file() else None


@cache
def _text_session(path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def sample_scene_frames(frames: Sequence[tuple[float, np.ndarray]], fps: float = 1.0) -> list[tuple[float, np.ndarray]]:
    """The first frame at or after each 1/fps grid point (frames decoded at a higher rate)."""
    out, next_t = [], 0.0
    for t, image in frames:
        if t + 1e-6 >= next_t:
            out.append((t, image))
            next_t = (np.floor(t * fps + 1e-6) + 1.0) / fps
    return out


class SceneClassifier:
    """`classify(frames)` -> one SceneFrame per (time, RGB frame); detectors are loaded once."""

    def __init__(self, config: SceneConfig | None = None) -> None:
        from msakit.extract.visual import _protobuf_compat

        self.config = config or SceneConfig()
        _protobuf_compat()
        import mediapipe as mp

        conf = self.config.min_face_confidence
        # short range (faces within ~2 m, large in the frame) and full range (small, far faces)
        self._near = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=conf)
        self._far = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=conf)
        path = text_model_path() if self.config.text else None
        self.text_session = _text_session(str(path)) if path is not None else None
        self.missing = TEXT_MISSING if self.config.text and path is None else ""

    def close(self) -> None:
        self._near.close()
        self._far.close()

    # -------------------------------------------------------------------- cues
    def faces(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes (x, y, w, h as fractions of the frame) from both detectors, duplicates merged."""
        rgb = np.ascontiguousarray(rgb)
        boxes: list[tuple[float, float, float, float]] = []
        for detector in (self._near, self._far):
            result = detector.process(rgb)
            for d in result.detections or []:
                b = d.location_data.relative_bounding_box
                box = (float(b.xmin), float(b.ymin), float(b.width), float(b.height))
                if not any(_iou(box, other) > 0.3 for other in boxes):
                    boxes.append(box)
        return boxes

    def text_area(self, rgb: np.ndarray) -> float:
        """Fraction of the frame covered by the bounding boxes of detected text regions."""
        if self.text_session is None:
            return 0.0
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, self.config.text_max_side / max(h, w))
        rh, rw = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
        bgr = cv2.resize(rgb[:, :, ::-1], (rw, rh))  # PaddleOCR models read BGR
        x = ((bgr.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]  # (1, 3, H, W)
        prob = self.text_session.run(None, {self.text_session.get_inputs()[0].name: x})[0][0, 0]  # (H, W)
        mask = (prob > self.config.text_threshold).astype(np.uint8)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        covered = np.zeros_like(mask)
        for x0, y0, bw, bh, area in stats[1:n]:
            if area >= 20 and bw >= 6:  # DB's min box side, at this scale
                covered[y0 : y0 + bh, x0 : x0 + bw] = 1
        return float(covered.mean())

    @staticmethod
    def colour(rgb: np.ndarray) -> tuple[float, float]:
        """(sky-blue fraction of the top third, vegetation-green fraction of the frame)."""
        import cv2

        hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
        hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        sky = (hue >= 90) & (hue <= 130) & (sat >= 50) & (val >= 120)
        green = (hue >= 35) & (hue <= 85) & (sat >= 60) & (val >= 50)
        return float(sky[: max(1, len(sky) // 3)].mean()), float(green.mean())

    def cues(self, rgb: np.ndarray) -> dict[str, float]:
        boxes = [b for b in self.faces(rgb) if b[3] >= self.config.min_face_height]
        sky, green = self.colour(rgb)
        return {
            "faces": float(len(boxes)),
            "largest_face": round(max((b[3] for b in boxes), default=0.0), 4),
            "text_area": round(self.text_area(rgb), 4),
            "sky": round(sky, 4),
            "green": round(green, 4),
        }

    # ------------------------------------------------------------------- rules
    def decide(self, cues: dict[str, float]) -> tuple[str, float]:
        """(label, confidence) from the cues by the rules of the module docstring."""
        c = self.config
        faces, face, text = int(cues["faces"]), cues["largest_face"], cues["text_area"]
        text_need = c.text_area if faces else c.text_area_no_face
        if text >= text_need:
            return "text_graphic", _margin(text / text_need)
        if faces >= c.crowd_faces:
            return "crowd", _margin(faces / c.crowd_faces)
        if faces >= 1 and face >= c.close_up_face_height:
            return "close_up", _margin(face / c.close_up_face_height)
        if faces >= 1:
            return "talking_head", _margin(min(face / c.min_face_height, c.close_up_face_height / max(face, 1e-6)))
        outdoor = max(cues["sky"] / c.outdoor_sky, cues["green"] / c.outdoor_green)
        if outdoor >= 1:
            return "outdoor", _margin(outdoor)
        nearest = max(outdoor, text / text_need)
        return "other", round(1.0 - 0.5 * nearest, 3)

    def classify(self, frames: Sequence[tuple[float, np.ndarray]]) -> list[SceneFrame]:
        out = []
        for t, rgb in frames:
            cues = self.cues(rgb)
            label, confidence = self.decide(cues)
            out.append(SceneFrame(time=round(float(t), 3), label=label, confidence=confidence, cues=cues))
        return out


def majority_scene(scenes: Sequence[SceneFrame], start: float, end: float) -> str:
    """The most frequent label of the frames in [start, end) (ties: the higher summed confidence); ""
    when no frame falls inside."""
    inside = [s for s in scenes if start <= s.time < end]
    if not inside:
        return ""
    counts = Counter(s.label for s in inside)
    weight: dict[str, float] = {}
    for s in inside:
        weight[s.label] = weight.get(s.label, 0.0) + s.confidence
    return max(counts, key=lambda k: (counts[k], weight[k]))


def _margin(ratio: float) -> float:
    """ratio >= 1 of a cue to its threshold -> confidence in [0.5, 1)."""
    return round(1.0 - 0.5 / max(ratio, 1.0), 3)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
