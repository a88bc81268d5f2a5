"""Offline feature extraction: registered extractors, the per-clip pipeline, MMSA-FET folders.

Extractors (`list_extractors()`): text `minilm_tokens`, `minilm_sentence`; audio
`egemaps_lld`, `egemaps_functionals`, `prosody`; visual `face_geometry`, `fer_emotions`.
Heavy dependencies (opensmile, parselmouth, mediapipe, ai-edge-litert, av, silero-vad,
pocketsphinx) are imported only when an extractor runs: ``pip install "msakit[extract]"``.
"""

from msakit.extract.registry import (
    Extractor,
    ExtractorConfig,
    Features,
    create_extractor,
    get_extractor_class,
    list_extractors,
    register_extractor,
)

__all__ = [
    "Extractor",
    "ExtractorConfig",
    "Features",
    "create_extractor",
    "get_extractor_class",
    "list_extractors",
    "register_extractor",
]
