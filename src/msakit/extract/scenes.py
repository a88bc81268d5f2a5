"""Scene classification of frames sampled at 1 frame/s."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SceneFrame:
    """The scene label of one sampled frame and the measured cues that decided it."""

    time: float  # s from the start of the clip
    label: str  # one of SCENE_LABELS
    confidence: float  # in [0, 1]
    cues: dict[str, float] = field(default_factory=dict)
