"""From one media file (and its words) to per-modality feature sequences.

`Pipeline` owns the registered extractors named in a `PipelineConfig` and combines those
of one modality into one (L, D) sequence:

- audio: every frame-level extractor (10 ms frames) is averaged into windows of
  `audio_hop` seconds and the results are concatenated; an utterance-level extractor
  (one step) is repeated on every window;
- visual: frames are sampled at `fps`, the face mesh runs once per frame, and the visual
  extractors' per-frame outputs are concatenated (frames without a face are not steps);
- text: the transcript of the utterance.

Sequences longer than `max_steps` are average-pooled down to it. A modality that cannot
be extracted (no audio track, silence, no face, no transcript) comes back as a block
marked missing, with the reason; it is never zero-filled as if present.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msakit.config import config_to_dict
from msakit.errors import ConfigError, DataError
from msakit.extract import media
from msakit.extract.registry import Extractor, Features, create_extractor, get_extractor_class
from msakit.extract.visual import FaceFrame, track_faces


@dataclass
class PipelineConfig:
    text: str = "minilm_tokens"  # text extractor
    audio: tuple[str, ...] = ("egemaps_lld", "prosody")  # audio extractors, concatenated
    visual: tuple[str, ...] = ("face_geometry", "fer_emotions")  # visual extractors, concatenated
    fps: float = 5.0  # video frames sampled per second
    max_side: int = 640  # larger frames are downscaled before the face mesh (0: never)
    audio_hop: float = 0.1  # seconds per audio step (10 ms frames are averaged into it)
    max_steps: int = 200  # longer audio/visual sequences are average-pooled down to this
    max_mb: float = media.DEFAULT_MAX_MB  # refuse media files larger than this
    silence_dbfs: float = media.SILENCE_DBFS  # an audio track whose peak is below this is silence
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # extractor name -> config overrides

    def extractors(self, modality: str) -> tuple[str, ...]:
        return (self.text,) if modality == "text" else tuple(getattr(self, modality))


@dataclass
class ClipMedia:
    """A decoded clip: its probe, the mono signal and tracked faces, or why each is missing."""

    info: media.MediaInfo
    samples: np.ndarray | None
    audio_missing: str
    faces: list[FaceFrame] | None
    visual_missing: str
    audio_level_dbfs: float = float("-inf")

    def window(self, start: float, end: float) -> tuple[np.ndarray | None, list[FaceFrame] | None]:
        samples = (
            None if self.samples is None else self.samples[int(start * media.AUDIO_RATE) : int(end * media.AUDIO_RATE)]
        )
        faces = None if self.faces is None else [f for f in self.faces if start <= f.time < end]
        return samples, faces


class Pipeline:
    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self._extractors: dict[str, Extractor] = {}
        for m in ("text", "audio", "visual"):
            for name in self.config.extractors(m):
                if get_extractor_class(name).modality != m:
                    raise ConfigError(f"extractor {name!r} is not a {m} extractor")
        unknown = set(self.config.options) - {n for m in ("text", "audio", "visual") for n in self.config.extractors(m)}
        if unknown:
            raise ConfigError(f"options given for extractors not in the pipeline: {sorted(unknown)}")

    def extractor(self, name: str) -> Extractor:
        if name not in self._extractors:
            self._extractors[name] = create_extractor(name, self.config.options.get(name))
        return self._extractors[name]

    def dims(self) -> dict[str, int]:
        return {
            m: sum(self.extractor(n).output_dim for n in self.config.extractors(m)) for m in ("text", "audio", "visual")
        }

    def metadata(self, modality: str) -> dict[str, Any]:
        """The meta.json entry of `modality` (dims, extractors and their configs, sampling)."""
        meta: dict[str, Any] = {
            "extractor": "+".join(self.config.extractors(modality)),
            "extractors": [self.extractor(n).metadata() for n in self.config.extractors(modality)],
        }
        if modality == "audio":
            meta.update(audio_hop=self.config.audio_hop, max_steps=self.config.max_steps)
        if modality == "visual":
            meta.update(fps=self.config.fps, max_side=self.config.max_side, max_steps=self.config.max_steps)
        return meta

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild this pipeline: stored in checkpoints trained on its output."""
        return {"pipeline": config_to_dict(self.config), "dims": self.dims()}

    # ----------------------------------------------------------------- decoding
    def load(self, path: str | Path, *, need_video: bool = True) -> ClipMedia:
        """Probe and decode `path` (video frames and faces only when `need_video`); DataError when unusable."""
        info = media.probe(path, max_mb=self.config.max_mb)
        samples, audio_missing, level = None, "", float("-inf")
        if not info.has_audio:
            audio_missing = "the file has no audio track"
        else:
            samples = media.load_audio(info.path)
            level = media.peak_dbfs(samples)
            if level < self.config.silence_dbfs:
                audio_missing = f"the audio track is silent (peak {level:.0f} dBFS < {self.config.silence_dbfs:g})"
        faces, visual_missing = None, ""
        if not need_video:
            visual_missing = "visual features not requested"
        elif not info.has_video:
            visual_missing = "the file has no video track"
        else:
            frames = media.sample_frames(info.path, self.config.fps, max_side=self.config.max_side)
            try:
                faces = track_faces(list(frames))
            except ImportError as exc:  # an [extract] part removed by hand: no visual cues, not a crash
                visual_missing = f"{exc.name or exc} is not installed (pip install mediapipe==0.10.14): no faces"
            else:
                if not any(f.landmarks is not None for f in faces):
                    visual_missing = f"no face found in any of the {len(faces)} sampled frames"
        return ClipMedia(info, samples, audio_missing, faces, visual_missing, level)

    # ----------------------------------------------------------------- features
    def text(self, texts: Sequence[str]) -> list[Features]:
        """Text features per transcript; an empty transcript gives a block marked missing."""
        ext = self.extractor(self.config.text)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        out = [ext.missing("no words (empty transcript)") for _ in texts]
        if keep:
            for i, f in zip(keep, ext.batch([texts[i] for i in keep]), strict=True):  # type: ignore[attr-defined]
                out[i] = f
        return out

    def audio(self, samples: np.ndarray | None, missing: str = "") -> Features:
        names = self.config.audio
        dim = sum(self.extractor(n).output_dim for n in names)
        if missing or samples is None or not names:
            return _missing(dim, missing or "no audio")
        blocks = [self.extractor(n)(samples) for n in names]
        absent = [f"{n}: {b.missing}" for n, b in zip(names, blocks, strict=True) if not b.present]
        if absent:
            return _missing(dim, "; ".join(absent))
        duration = len(samples) / media.AUDIO_RATE
        steps = max(1, int(np.ceil(duration / self.config.audio_hop)))
        pooled = [_to_grid(b, steps, self.config.audio_hop) for b in blocks]
        values = np.concatenate(pooled, axis=1)  # (steps, Da)
        times = (np.arange(steps) + 0.5) * self.config.audio_hop
        return _cap(Features(values, times, sum((b.names for b in blocks), ())), self.config.max_steps)

    def visual(self, faces: list[FaceFrame] | None, missing: str = "") -> Features:
        names = self.config.visual
        dim = sum(self.extractor(n).output_dim for n in names)
        if missing or faces is None or not names:
            return _missing(dim, missing or "no video")
        blocks = [self.extractor(n)(faces) for n in names]
        absent = [b.missing for b in blocks if not b.present]
        if absent:
            return _missing(dim, absent[0])
        values = np.concatenate([b.values for b in blocks], axis=1)  # (frames with a face, Dv)
        info = {"frames": len(faces), "frames_with_face": len(values)}
        return _cap(
            Features(values, blocks[0].times, sum((b.names for b in blocks), ()), info=info), self.config.max_steps
        )


def _missing(dim: int, reason: str) -> Features:
    return Features(values=np.zeros((0, dim), np.float32), missing=reason)


def _to_grid(block: Features, steps: int, hop: float) -> np.ndarray:
    """(L, D) frames -> (steps, D) window means; windows without a frame take the nearest earlier one."""
    if block.times is None or len(block.values) == 1:
        return np.repeat(block.values[:1], steps, axis=0)
    bins = np.clip((block.times / hop).astype(int), 0, steps - 1)
    sums = np.zeros((steps, block.values.shape[1]))
    np.add.at(sums, bins, block.values)
    counts = np.bincount(bins, minlength=steps)
    out = sums / np.maximum(counts, 1)[:, None]
    filled = np.maximum.accumulate(np.where(counts > 0, np.arange(steps), 0))  # index of the last non-empty window
    first = int(np.argmax(counts > 0))
    filled = np.where(np.arange(steps) < first, first, filled)
    return out[filled].astype(np.float32)


def _cap(block: Features, max_steps: int) -> Features:
    """Average-pool a long sequence down to max_steps (contiguous, nearly equal chunks)."""
    if max_steps <= 0 or len(block.values) <= max_steps:
        return block
    chunks = np.array_split(np.arange(len(block.values)), max_steps)
    values = np.stack([block.values[c].mean(0) for c in chunks]).astype(np.float32)
    times = None if block.times is None else np.array([block.times[c].mean() for c in chunks])
    return Features(values, times, block.names, info={**block.info, "pooled_from": len(block.values)})


def check_usable(clip: ClipMedia) -> None:
    """DataError when neither audio nor faces could be had: nothing non-verbal to analyse at all."""
    if clip.samples is None and clip.faces is None:
        raise DataError(f"no usable stream: {clip.audio_missing}; {clip.visual_missing}", path=clip.info.path)
