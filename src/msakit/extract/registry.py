"""The extractor registry: `@register_extractor` on a class, `create_extractor`, `list_extractors`.

An extractor turns one clip (a media file, or a transcript) into a `Features` block:
a (L, D) float32 array with the time of each step, where D is the extractor's stable
`output_dim` (written into the dataset's meta.json, so a model trained on it can check
that analysis-time features match). Its knobs are a typed config dataclass, overridden
with `msakit.config.apply_overrides` like every other config in msakit.

Legend: L steps (frames, windows, tokens), D feature width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from msakit.config import apply_overrides, config_to_dict
from msakit.plugins import Registry


@dataclass
class ExtractorConfig:
    """Fields every extractor shares (none yet); subclasses add their own."""


@dataclass
class Features:
    """One extractor's output for one clip.

    values: (L, D) float32. times: (L,) seconds of each step's centre (None for
    utterance-level or token features). names: D column names. missing: why the
    modality could not be extracted (empty when present) - a missing block has L = 0
    and is never padded with zeros as if it were real.
    """

    values: np.ndarray
    times: np.ndarray | None = None
    names: tuple[str, ...] = ()
    missing: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def present(self) -> bool:
        return not self.missing and len(self.values) > 0


class Extractor:
    """Base class: subclasses set `modality`, `config_class`, and implement `output_dim` and `__call__`."""

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""  # text | audio | visual
    config_class: ClassVar[type[ExtractorConfig]] = ExtractorConfig
    licence: ClassVar[str] = ""  # licence of the model or tool inside, for docs/pipeline.md

    def __init__(self, config: ExtractorConfig) -> None:
        self.config = config

    @property
    def output_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, data: Any) -> Features:  # pragma: no cover - abstract
        """Features of one clip's `data` (text: a string; audio: (S,) samples; visual: FaceFrames)."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """What meta.json records for this extractor: name, width, config."""
        return {"extractor": self.name, "dim": self.output_dim, "config": config_to_dict(self.config)}

    def missing(self, reason: str) -> Features:
        """A block marked missing: no steps, the right width, and the reason."""
        return Features(values=np.zeros((0, self.output_dim), np.float32), missing=reason)


E = TypeVar("E", bound=type[Extractor])


def _load_builtin() -> None:
    from msakit.extract import audio, text, visual  # noqa: F401  (their decorators register them)


EXTRACTORS: Registry[Extractor] = Registry("extractor", discover=_load_builtin)


def register_extractor(name: str) -> Callable[[E], E]:
    return EXTRACTORS.register(name)  # type: ignore[return-value]


def list_extractors(modality: str | None = None) -> list[str]:
    return [n for n in EXTRACTORS.names() if modality is None or EXTRACTORS.get(n).modality == modality]


def get_extractor_class(name: str) -> type[Extractor]:
    return EXTRACTORS.get(name)


def create_extractor(name: str, overrides: Mapping[str, Any] | None = None) -> Extractor:
    cls = get_extractor_class(name)
    config = apply_overrides(cls.config_class(), overrides or {}, owner=f"extractor {name!r}")
    return cls(config)


def config_fields(name: str) -> dict[str, Any]:
    """The extractor's default config as a dict (for `--help`-style listings and docs)."""
    return {f.name: f.default for f in dataclasses.fields(get_extractor_class(name).config_class)}
