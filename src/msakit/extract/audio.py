"""Audio extractors: openSMILE eGeMAPS (frame descriptors and functionals), Praat pitch and intensity.

Input is the clip's mono 16 kHz signal (`msakit.extract.media.load_audio`).

- `egemaps_lld`: the 25 eGeMAPSv02 low-level descriptors every 10 ms (Eyben et al. 2016,
  "The Geneva Minimalistic Acoustic Parameter Set"), computed by openSMILE 3.
- `egemaps_functionals`: the 88 eGeMAPSv02 functionals over the whole clip (one step).
- `prosody`: Praat's pitch (autocorrelation, 75-600 Hz) and intensity every 10 ms through
  parselmouth: F0 in semitones re 100 Hz (0 where unvoiced), a voicing flag, intensity in dB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from msakit.extract.media import AUDIO_RATE
from msakit.extract.registry import Extractor, ExtractorConfig, Features, register_extractor

MIN_SECONDS = 0.1  # shorter signals give no openSMILE frame


def _smile(level: str) -> Any:
    import opensmile

    feature_level = opensmile.FeatureLevel.LowLevelDescriptors if level == "lld" else opensmile.FeatureLevel.Functionals
    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=feature_level)


@dataclass
class EGeMAPSConfig(ExtractorConfig):
    pass


class _EGeMAPS(Extractor):
    modality = "audio"
    config_class = EGeMAPSConfig
    licence = "openSMILE: audEERING Research License (non-commercial use only; wrapper MIT)"
    level = "lld"
    dims: ClassVar[dict[str, int]] = {"lld": 25, "functionals": 88}

    def __init__(self, config: ExtractorConfig) -> None:
        super().__init__(config)
        self._smile: Any = None

    @property
    def output_dim(self) -> int:
        return self.dims[self.level]

    def __call__(self, samples: np.ndarray) -> Features:
        if len(samples) < MIN_SECONDS * AUDIO_RATE:
            return self.missing(f"audio is shorter than {MIN_SECONDS} s")
        if self._smile is None:
            self._smile = _smile(self.level)
        frame = self._smile.process_signal(samples, AUDIO_RATE)
        values = frame.to_numpy(np.float32)  # (L, D)
        starts = frame.index.get_level_values("start").total_seconds().to_numpy()
        ends = frame.index.get_level_values("end").total_seconds().to_numpy()
        times = None if self.level == "functionals" else (starts + ends) / 2
        return Features(values=np.nan_to_num(values), times=times, names=tuple(frame.columns))


@register_extractor("egemaps_lld")
class EGeMAPSLLD(_EGeMAPS):
    level = "lld"


@register_extractor("egemaps_functionals")
class EGeMAPSFunctionals(_EGeMAPS):
    level = "functionals"


@dataclass
class ProsodyConfig(ExtractorConfig):
    time_step: float = 0.01  # seconds between analysis frames
    pitch_floor: float = 75.0  # Hz
    pitch_ceiling: float = 600.0  # Hz


@register_extractor("prosody")
class Prosody(Extractor):
    """Praat pitch and intensity: (L, 3) = [F0 semitones re 100 Hz, voiced, intensity dB]."""

    modality = "audio"
    config_class = ProsodyConfig
    config: ProsodyConfig
    licence = "Praat / parselmouth: GPL-3.0"

    @property
    def output_dim(self) -> int:
        return 3

    def __call__(self, samples: np.ndarray) -> Features:
        import parselmouth

        cfg = self.config
        if len(samples) < 3 / cfg.pitch_floor * AUDIO_RATE:  # Praat needs three periods of the floor
            return self.missing(f"audio is shorter than {3 / cfg.pitch_floor:.2f} s")
        sound = parselmouth.Sound(samples.astype(np.float64), sampling_frequency=AUDIO_RATE)
        pitch = sound.to_pitch(time_step=cfg.time_step, pitch_floor=cfg.pitch_floor, pitch_ceiling=cfg.pitch_ceiling)
        times = pitch.xs()  # (L,)
        f0 = pitch.selected_array["frequency"]  # (L,) Hz, 0 where unvoiced
        voiced = f0 > 0
        semitones = np.where(voiced, 12.0 * np.log2(np.where(voiced, f0, 100.0) / 100.0), 0.0)
        intensity = sound.to_intensity(time_step=cfg.time_step, minimum_pitch=cfg.pitch_floor)
        db = np.array([intensity.get_value(t) for t in times], dtype=np.float64)  # NaN outside its frames
        db = np.nan_to_num(db, nan=0.0)
        values = np.stack([semitones, voiced.astype(np.float64), db], axis=1).astype(np.float32)  # (L, 3)
        return Features(values=values, times=np.asarray(times), names=("f0_semitones", "voiced", "intensity_db"))
