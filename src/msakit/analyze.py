"""`analyze`: one video (or audio file) -> a per-utterance sentiment timeline and its explanation.

Steps: split the clip into utterances (a transcript file, else offline Whisper ASR whose
word timestamps give the utterances, else silero-vad + pocketsphinx flagged low quality;
the language is declared, detected and recorded, with a warning when the checkpoint's text
encoder does not read it); extract each utterance's features with the same registered
extractors `msakit extract` uses; run a checkpoint on the modalities it was trained on;
report per utterance its score, polarity, the model's per-modality weights and which
modalities were present (with the reason when one is missing).

The model's evidence and cues are kept apart: only modalities in the checkpoint's
`modalities` are fused (its weights are over those). Everything else that was measured -
the FER emotion distribution, pitch, intensity, smile width - is reported under `cues`
with `"fused": false`, never as evidence the prediction rests on.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msakit.batch import MODALITIES, Batch
from msakit.errors import DataError
from msakit.extract.absa import Aspect, AspectSentiment, unavailable_reason
from msakit.extract.pipeline import ClipMedia, Pipeline, PipelineConfig
from msakit.extract.registry import Features
from msakit.extract.scenes import SceneClassifier, SceneFrame, majority_scene, sample_scene_frames
from msakit.extract.speech import AsrInfo, Utterance, read_transcript, recognise
from msakit.extract.visual import FER_LABELS, FER_MISSING, fer_available
from msakit.io import atomic_path

DEFAULT_MODEL = "default_text"


def checkpoint_text_encoder(meta: dict[str, Any]) -> Any:
    """The registered text encoder a checkpoint was trained on, built; None for MiniLM tokens (the
    pipeline's own `minilm_tokens` extractor) or when the checkpoint does not say."""
    from msakit.text_encoder import create_text_encoder, encoder_for_extractor

    features = (meta.get("dataset") or {}).get("features") or {}
    key = encoder_for_extractor(str(features.get("text", "")))
    return None if key in (None, "minilm") else create_text_encoder(key)


# languages each text encoder was trained on (None: multilingual, ~100 languages)
ENCODER_LANGUAGES: dict[str, tuple[str, ...] | None] = {"minilm": ("en",), "mpnet": ("en",), "e5": None}


def checkpoint_languages(meta: dict[str, Any]) -> tuple[str, tuple[str, ...] | None]:
    """(encoder name, the languages it reads) of a checkpoint's text features; unknown encoders: English."""
    from msakit.text_encoder import TEXT_ENCODERS, encoder_for_extractor

    features = (meta.get("dataset") or {}).get("features") or {}
    key = encoder_for_extractor(str(features.get("text", ""))) or "minilm"  # the pipeline's own MiniLM tokens
    return TEXT_ENCODERS[key].name if key in TEXT_ENCODERS else key, ENCODER_LANGUAGES.get(key, ("en",))


def packaged_checkpoints() -> list[str]:
    root = resources.files("msakit") / "checkpoints"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file())


def resolve_checkpoint(name_or_path: str | Path | None) -> Path:
    """A checkpoint folder: a path, or the name of a checkpoint shipped in msakit/checkpoints."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    path = Path(name_or_path)
    if (path / "config.json").is_file():
        return path
    packaged = Path(str(resources.files("msakit") / "checkpoints" / str(name_or_path)))
    if (packaged / "config.json").is_file():
        return packaged
    raise DataError(
        f"not a checkpoint folder nor a packaged checkpoint (packaged: {', '.join(packaged_checkpoints()) or 'none'})",
        path=name_or_path,
    )


@dataclass
class UtteranceResult:
    start: float
    end: float
    text: str
    source: str  # transcript | asr
    quality: str  # given | asr (Whisper) | low (pocketsphinx)
    score: float | None  # regression: the predicted sentiment; None when no fused modality is present
    polarity: str  # positive | negative | neutral | unknown (or the class name for classifiers)
    weights: dict[str, float]  # the model's per-modality weights (fused modalities only)
    present: dict[str, bool]  # which modalities were present for this utterance
    missing: dict[str, str]  # modality -> why it is missing
    cues: dict[str, Any] = field(default_factory=dict)  # measured, labelled with whether they were fused
    aspects: list[Aspect] = field(default_factory=list)  # aspect terms of `text`, each with polarity and evidence
    scene: str = ""  # the majority scene label of the frames inside the utterance ("" when none)


@dataclass
class Analysis:
    media: str
    duration: float
    checkpoint: str
    model: str
    fused_modalities: list[str]
    cue_modalities: list[str]
    transcript_source: str
    notes: list[str]
    utterances: list[UtteranceResult]
    frames: dict[str, list[Any]] = field(default_factory=dict)  # per-frame cue tracks for the plot (None: unvoiced)
    asr: dict[str, Any] | None = None  # AsrInfo of the ASR that made the transcript (None: a transcript was given)
    language: str | None = None  # ISO 639-1 code of the speech (None: not known)
    language_source: str = "unknown"  # declared | detected | model | unknown
    warnings: list[str] = field(default_factory=list)  # e.g. a language the text encoder does not read
    scenes: list[SceneFrame] = field(default_factory=list)  # one per frame sampled at 1 frame/s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# (stage, fraction of the work begun) -> None; the stages, in order, with the fraction at which each starts
Progress = Callable[[str, float], None]
STAGES = {"decode": 0.0, "transcribe": 0.1, "features": 0.4, "scenes": 0.8, "aspects": 0.9}


def _no_progress(stage: str, fraction: float) -> None:
    return None


class Analyzer:
    """Loads a checkpoint and its extractors once; `analyze(path)` per clip."""

    def __init__(
        self,
        model: str | Path | None = None,
        pipeline_config: PipelineConfig | None = None,
        *,
        aspects: bool = True,
        scenes: bool = True,
    ) -> None:
        from msakit.training import load_checkpoint

        self.aspects, self.scenes = aspects, scenes
        self._absa: AspectSentiment | None = None
        self._scene_classifier: SceneClassifier | None = None

        self.checkpoint = resolve_checkpoint(model)
        self.model, self.meta = load_checkpoint(self.checkpoint)
        spec = self.meta.get("extract")
        if pipeline_config is None and isinstance(spec, dict) and "pipeline" in spec:
            options = {k: v for k, v in spec["pipeline"].items() if k in PipelineConfig.__dataclass_fields__}
            for key in ("audio", "visual"):
                if key in options:
                    options[key] = tuple(options[key])
            pipeline_config = PipelineConfig(**options)
        self.pipeline = Pipeline(pipeline_config)
        self.fused = [m for m in MODALITIES if m in self.model.config.modalities]
        # transcripts are encoded with the checkpoint's own text encoder when it is not the pipeline's MiniLM
        self.text_encoder = checkpoint_text_encoder(self.meta) if "text" in self.fused else None
        self.encoder_name, self.languages = checkpoint_languages(self.meta)
        dims = self.pipeline.dims()
        if self.text_encoder is not None:
            dims["text"] = self.text_encoder.dim
        for m in self.fused:
            if self.model.config.dim(m) != dims[m]:
                raise DataError(
                    f"the checkpoint reads {self.model.config.dim(m)}-d {m} features but msakit's {m} extractors "
                    f"({'+'.join(self.pipeline.config.extractors(m))}) give {dims[m]}-d: it was not trained on them",
                    path=self.checkpoint,
                )

    def _text(self, texts: list[str]) -> list[Features]:
        """Text blocks from the checkpoint's encoder (or the pipeline's); empty transcripts are missing."""
        if self.text_encoder is None:
            return self.pipeline.text(texts)
        out = [Features(values=np.zeros((0, self.text_encoder.dim), np.float32), missing="no words") for _ in texts]
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            values, lengths = self.text_encoder.encode_tokens([texts[i] for i in keep], progress=False)
            for i, v, n in zip(keep, values, lengths, strict=True):
                out[i] = Features(values=np.asarray(v[:n], np.float32))
        return out

    # ------------------------------------------------------------------ public
    def analyze(
        self,
        path: str | Path,
        transcript: str | Path | None = None,
        *,
        language: str | None = None,
        asr: str = "auto",
        progress: Progress | None = None,
    ) -> Analysis:
        """`language`: the declared ISO 639-1 code (else detected); `asr`: auto | whisper | pocketsphinx.

        `progress(stage, fraction)` is called as each stage starts (`STAGES`), and after each
        utterance's features; `fraction` is the share of the work's stages begun, not of time.
        """
        report = progress or _no_progress
        path = Path(path)
        report("decode", STAGES["decode"])
        clip = self.pipeline.load(path)
        notes: list[str] = []
        self._missing_parts: set[str] = set()
        report("transcribe", STAGES["transcribe"])
        utterances, asr_info = self._utterances(clip, transcript, notes, language, asr)
        report("features", STAGES["features"])
        language, language_source = self._language(clip, language, asr_info)
        warnings = self._language_warnings(language)
        if clip.faces is not None and not clip.visual_missing and not fer_available():
            notes.append(FER_MISSING)
        texts = self._text([u.text for u in utterances]) if "text" in self.fused else []
        results = []
        for k, u in enumerate(utterances):
            samples, faces = clip.window(u.start, u.end)
            blocks: dict[str, Features] = {}
            if "text" in self.fused:
                blocks["text"] = texts[k]
            if "audio" in self.fused:
                blocks["audio"] = self.pipeline.audio(samples, clip.audio_missing)
            if "visual" in self.fused:
                blocks["visual"] = self.pipeline.visual(faces, clip.visual_missing)
            results.append(self._predict(u, blocks, clip, samples, faces))
            report("features", STAGES["features"] + (STAGES["scenes"] - STAGES["features"]) * (k + 1) / len(utterances))
        report("scenes", STAGES["scenes"])
        scenes = self._scenes(clip, notes)
        report("aspects", STAGES["aspects"])
        for r, aspects in zip(results, self._aspects([u.text for u in utterances], language, notes), strict=True):
            r.aspects = aspects
            r.scene = majority_scene(scenes, r.start, r.end)
        frames = self._frame_tracks(clip)
        notes += sorted(self._missing_parts)
        if clip.audio_missing:
            notes.append(f"audio missing: {clip.audio_missing}")
        if clip.visual_missing:
            notes.append(f"visual missing: {clip.visual_missing}")
        cue_modalities = [m for m in ("audio", "visual") if m not in self.fused]
        if cue_modalities:
            notes.append(
                f"the model fuses only {', '.join(self.fused)}; {', '.join(cue_modalities)} are reported as cues, "
                "not as evidence for the score"
            )
        return Analysis(
            media=str(path),
            duration=clip.info.duration,
            checkpoint=str(self.checkpoint),
            model=str(self.meta["model"]),
            fused_modalities=self.fused,
            cue_modalities=cue_modalities,
            transcript_source=utterances[0].source if utterances else "none",
            notes=notes,
            utterances=results,
            frames=frames,
            asr=asdict(asr_info) if asr_info is not None else None,
            language=language,
            language_source=language_source,
            warnings=warnings,
            scenes=scenes,
        )

    # ------------------------------------------------------------------ steps
    def _aspects(self, texts: list[str], language: str | None, notes: list[str]) -> list[list[Aspect]]:
        """Aspect-based sentiment per utterance; a missing spaCy model or an unsupported language gives
        one note and no aspects, never an error."""
        if not self.aspects:
            return [[] for _ in texts]
        reason = unavailable_reason(language)
        if reason:
            notes.append(reason)
            return [[] for _ in texts]
        if self._absa is None:
            self._absa = AspectSentiment()
        return self._absa.batch(texts)

    def _scenes(self, clip: ClipMedia, notes: list[str]) -> list[SceneFrame]:
        """Scene labels of the frames at 1 frame/s (faces or not); none, with the reason, without video."""
        if not self.scenes:
            return []
        if clip.faces is None:
            notes.append(f"scenes: none ({clip.visual_missing or 'no video frames'})")
            return []
        try:
            if self._scene_classifier is None:
                self._scene_classifier = SceneClassifier()
        except ImportError as exc:  # mediapipe / OpenCV missing
            notes.append(f"scenes: none ({exc.name or exc} is not installed)")
            return []
        if self._scene_classifier.missing:
            notes.append(self._scene_classifier.missing)
        frames = sample_scene_frames([(f.time, f.image) for f in clip.faces], self._scene_classifier.config.fps)
        return self._scene_classifier.classify(frames)

    def _language(self, clip: ClipMedia, declared: str | None, info: AsrInfo | None) -> tuple[str | None, str]:
        """The speech's language: declared, else the ASR's, else detected from the audio by Whisper."""
        if declared:
            return declared, "declared"
        if info is not None:
            return info.language, info.language_source
        if clip.samples is not None and not clip.audio_missing and "text" in self.fused:
            from msakit.extract.asr import detect_language

            found = detect_language(clip.samples)
            if found is not None:
                return found[0], "detected"
        return None, "unknown"

    def _language_warnings(self, language: str | None) -> list[str]:
        if "text" not in self.fused or self.languages is None:
            return []
        if language is None:
            return [
                f"language unknown (no multilingual Whisper to detect it; pass --language): the text encoder "
                f"{self.encoder_name} reads only {', '.join(self.languages)}"
            ]
        if language not in self.languages:
            return [
                f"language {language!r} is not supported by this checkpoint's text encoder {self.encoder_name} "
                f"(reads only {', '.join(self.languages)}): the text scores are unreliable; use a checkpoint "
                "trained on a multilingual encoder (e5)"
            ]
        return []

    def _utterances(
        self, clip: ClipMedia, transcript: str | Path | None, notes: list[str], language: str | None, engine: str
    ) -> tuple[list[Utterance], AsrInfo | None]:
        if transcript is not None:
            utterances = read_transcript(transcript, duration=clip.info.duration)
            late = [u for u in utterances if u.start >= clip.info.duration + 0.5]
            if late:
                raise DataError(
                    f"{len(late)} utterance(s) start after the media ends ({clip.info.duration:.1f} s)", path=transcript
                )
            return utterances, None
        if clip.samples is None or clip.audio_missing:
            raise DataError(
                f"no --transcript given and no speech to transcribe ({clip.audio_missing}); pass --transcript FILE",
                path=clip.info.path,
            )
        utterances, info = recognise(clip.samples, engine=engine, language=language)
        if info.notice:
            notes.append(info.notice)
        if not utterances:
            raise DataError(
                f"no --transcript given and the ASR ({info.engine}) found no speech; pass --transcript FILE",
                path=clip.info.path,
            )
        if info.engine == "pocketsphinx":
            notes.append("transcript from offline ASR (pocketsphinx, US English): low quality, check the words")
        else:
            notes.append(f"transcript from offline ASR (Whisper {info.model}, language {info.language})")
        return utterances, info

    def _predict(
        self,
        u: Utterance,
        blocks: dict[str, Features],
        clip: ClipMedia,
        samples: np.ndarray | None,
        faces: list[Any] | None,
    ) -> UtteranceResult:
        present = {m: blocks[m].present for m in self.fused}
        missing = {m: blocks[m].missing for m in self.fused if not blocks[m].present}
        cues = self._cues(samples, faces, clip)
        for m in ("audio", "visual"):
            if m not in self.fused:
                present[m] = cues[m]["present"]
                if not cues[m]["present"]:
                    missing[m] = cues[m]["missing"]
        if "text" not in self.fused:
            present["text"] = bool(u.text.strip())
        score: float | None = None
        polarity = "unknown"
        weights = {m: 0.0 for m in self.fused}
        if any(blocks[m].present for m in self.fused):
            out = self.model.predict(_batch(blocks, self.fused))
            if self.model.is_classifier:
                probs = torch.softmax(out.prediction[0], -1)
                k = int(probs.argmax())
                names = (self.meta.get("dataset") or {}).get("class_names") or [str(i) for i in range(len(probs))]
                score, polarity = float(probs[k]), str(names[k])
            else:
                score = float(out.prediction[0])
                polarity = "positive" if score > 0 else "negative" if score < 0 else "neutral"
            if out.modality_weights is not None:
                weights = {m: float(out.modality_weights[0, MODALITIES.index(m)]) for m in self.fused}
        return UtteranceResult(
            start=round(u.start, 3), end=round(u.end, 3), text=u.text, source=u.source, quality=u.quality,
            score=score, polarity=polarity, weights=weights, present=present, missing=missing, cues=cues,
        )  # fmt: skip

    def _cues(self, samples: np.ndarray | None, faces: list[Any] | None, clip: ClipMedia) -> dict[str, Any]:
        """Descriptive measurements of the utterance; `fused` says whether the model read that modality."""
        audio: dict[str, Any] = {"fused": "audio" in self.fused, "present": False, "missing": clip.audio_missing}
        if samples is not None and not clip.audio_missing:
            prosody = self._cue("prosody", samples)
            if prosody.present:
                st, voiced, db = prosody.values[:, 0], prosody.values[:, 1] > 0, prosody.values[:, 2]
                audio.update(present=True, missing="", voiced_fraction=round(float(voiced.mean()), 3))
                audio["pitch_hz"] = round(float(100 * 2 ** (st[voiced].mean() / 12)), 1) if voiced.any() else None
                audio["intensity_db"] = round(float(db[db > 0].mean()), 1) if (db > 0).any() else None
            else:
                audio["missing"] = prosody.missing
        visual: dict[str, Any] = {"fused": "visual" in self.fused, "present": False, "missing": clip.visual_missing}
        if faces is not None and not clip.visual_missing:
            fer = self._cue("fer_emotions", faces)
            geo = self._cue("face_geometry", faces)
            if geo.present and not fer.present and fer.missing == FER_MISSING:
                visual.update(
                    present=True, missing="", frames=len(faces), frames_with_face=len(geo.values),
                    smile_width=round(float(geo.values[:, 1].mean()), 3),
                    mouth_open=round(float(geo.values[:, 0].mean()), 3),
                )  # fmt: skip  # geometry without FER: the emotion cue is absent (noted once)
            elif fer.present and geo.present:
                mean = fer.values.mean(0)
                visual.update(
                    present=True, missing="", frames=len(faces), frames_with_face=len(fer.values),
                    emotions={k: round(float(p), 3) for k, p in zip(FER_LABELS, mean, strict=True)},
                    top_emotion=FER_LABELS[int(mean.argmax())],
                    smile_width=round(float(geo.values[:, 1].mean()), 3),
                    mouth_open=round(float(geo.values[:, 0].mean()), 3),
                )  # fmt: skip
            else:
                visual["missing"] = fer.missing or geo.missing or "no face in this utterance's frames"
        return {"audio": audio, "visual": visual}

    def _cue(self, name: str, data: Any) -> Features:
        """A cue extractor's output; one whose library is not installed gives a missing block (and one
        note per analysis), never an ImportError."""
        try:
            return self.pipeline.extractor(name)(data)
        except ImportError as exc:
            reason = f"{exc.name or exc} is not installed: no {name} cue"
            self._missing_parts.add(reason)
            return Features(values=np.zeros((0, 1), np.float32), missing=reason)

    def _frame_tracks(self, clip: ClipMedia) -> dict[str, list[Any]]:
        """Whole-clip per-frame cue tracks (times and values) for the plot."""
        tracks: dict[str, list[Any]] = {}
        if clip.faces is not None and not clip.visual_missing:
            fer = self._cue("fer_emotions", clip.faces)
            if fer.present and fer.times is not None:
                tracks["face_time"] = [round(float(t), 3) for t in fer.times]
                for k, name in enumerate(FER_LABELS):
                    tracks[f"fer_{name}"] = [round(float(v), 4) for v in fer.values[:, k]]
        if clip.samples is not None and not clip.audio_missing:
            pro = self._cue("prosody", clip.samples)
            if pro.present and pro.times is not None:
                step = max(1, len(pro.values) // 1000)
                tracks["pitch_time"] = [round(float(t), 3) for t in pro.times[::step]]
                tracks["pitch_semitones"] = [
                    round(float(v), 2) if ok else None
                    for v, ok in zip(pro.values[::step, 0], pro.values[::step, 1] > 0, strict=True)
                ]
        return tracks


def _batch(blocks: dict[str, Features], fused: list[str]) -> Batch:
    """A one-sample Batch: absent modalities have a zero step, a False mask and present False."""
    features, masks, present = {}, {}, torch.zeros(1, len(MODALITIES), dtype=torch.bool)
    for m in fused:
        b = blocks[m]
        if b.present:
            features[m] = torch.from_numpy(np.ascontiguousarray(b.values, dtype=np.float32))[None]  # (1, L, D)
            masks[m] = torch.ones(1, len(b.values), dtype=torch.bool)
            present[0, MODALITIES.index(m)] = True
        else:
            features[m] = torch.zeros(1, 1, b.values.shape[1])
            masks[m] = torch.zeros(1, 1, dtype=torch.bool)
    return Batch(features=features, masks=masks, present=present, labels=torch.zeros(1), ids=["utterance"])


# ---------------------------------------------------------------------- outputs

CSV_FIELDS = [
    "start", "end", "text", "source", "quality", "score", "polarity",
    *(f"weight_{m}" for m in MODALITIES), *(f"present_{m}" for m in MODALITIES), *(f"missing_{m}" for m in MODALITIES),
    "cue_pitch_hz", "cue_intensity_db", "cue_voiced_fraction", "cue_top_emotion",
    *(f"cue_emotion_{k}" for k in FER_LABELS), "cue_smile_width", "cues_fused", "scene", "aspects",
]  # fmt: skip


def _aspects_cell(aspects: list[Aspect]) -> str:
    """`term=polarity(score)` per aspect, `; `-separated (the JSON has spans and evidence)."""
    return "; ".join(f"{a.term}={a.polarity}({a.score:+.2f})" for a in aspects)


def _csv_row(u: UtteranceResult, fused: list[str]) -> dict[str, Any]:
    a, v = u.cues.get("audio", {}), u.cues.get("visual", {})
    row: dict[str, Any] = {
        "start": u.start, "end": u.end, "text": u.text, "source": u.source, "quality": u.quality,
        "score": "" if u.score is None else round(u.score, 4), "polarity": u.polarity,
        "cue_pitch_hz": a.get("pitch_hz", ""), "cue_intensity_db": a.get("intensity_db", ""),
        "cue_voiced_fraction": a.get("voiced_fraction", ""), "cue_top_emotion": v.get("top_emotion", ""),
        "cue_smile_width": v.get("smile_width", ""),
        "cues_fused": "+".join(m for m in ("audio", "visual") if m in fused) or "none",
        "scene": u.scene, "aspects": _aspects_cell(u.aspects),
    }  # fmt: skip
    for m in MODALITIES:
        row[f"weight_{m}"] = round(u.weights[m], 4) if m in u.weights else ""
        row[f"present_{m}"] = int(u.present.get(m, False))
        row[f"missing_{m}"] = u.missing.get(m, "")
    for k in FER_LABELS:
        row[f"cue_emotion_{k}"] = v.get("emotions", {}).get(k, "")
    return row


def write_outputs(analysis: Analysis, out: str | Path) -> dict[str, Path]:
    """timeline.json, timeline.csv and timeline.png in `out` (each written atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "timeline.json", "csv": out / "timeline.csv", "png": out / "timeline.png"}

    def write_json(p: Path) -> None:
        p.write_text(json.dumps(_finite_or_none(analysis.to_dict()), indent=2, ensure_ascii=False, allow_nan=False))

    def write_csv(p: Path) -> None:
        with p.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, CSV_FIELDS)
            writer.writeheader()
            writer.writerows(_csv_row(u, analysis.fused_modalities) for u in analysis.utterances)

    # all three are written before any is renamed into place: a failure (a full disk while
    # drawing the PNG) leaves none of them, not a timeline without its plot
    with contextlib.ExitStack() as stack:
        for key, write in (("json", write_json), ("csv", write_csv), ("png", lambda p: plot(analysis, p))):
            write(stack.enter_context(atomic_path(paths[key], suffix=paths[key].suffix)))
    return paths


def _finite_or_none(value: Any) -> Any:
    """NaN / Inf (e.g. a cue with no voiced frame) become JSON null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def plot(analysis: Analysis, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1.3, 1]})
    ax = axes[0]
    for u in analysis.utterances:
        if u.score is None:
            ax.axvspan(u.start, u.end, color="0.9")
            continue
        colour = "tab:green" if u.polarity == "positive" else "tab:red" if u.polarity == "negative" else "0.5"
        ax.hlines(u.score, u.start, u.end, colors=colour, linewidth=4)
        ax.annotate(u.text[:30] + ("…" if len(u.text) > 30 else ""), ((u.start + u.end) / 2, u.score),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)  # fmt: skip
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_ylabel("score")
    ax.set_title(
        f"{Path(analysis.media).name}: model {analysis.model} fused {'+'.join(analysis.fused_modalities)}"
        + (f"; cues only (not fused): {'+'.join(analysis.cue_modalities)}" if analysis.cue_modalities else ""),
        fontsize=9,
    )
    f = analysis.frames
    if "face_time" in f:
        t = np.array(f["face_time"])
        stack = np.array([f[f"fer_{k}"] for k in FER_LABELS])
        axes[1].stackplot(t, stack, labels=FER_LABELS, alpha=0.8)
        axes[1].legend(fontsize=6, ncol=7, loc="upper center")
    axes[1].set_ylabel("FER (cue)")
    axes[1].set_ylim(0, 1)
    if "pitch_time" in f:
        pitch = [np.nan if v is None else v for v in f["pitch_semitones"]]
        axes[2].plot(f["pitch_time"], pitch, ".", markersize=1.5)
    axes[2].set_ylabel("F0 st (cue)")
    axes[2].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
