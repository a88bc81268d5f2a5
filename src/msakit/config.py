"""Typed configuration: dataclasses with defaults in code, validated overrides.

Every model has a config dataclass deriving from `ModelConfig`; the trainer has
`TrainConfig`. Overrides (from the CLI, a YAML preset or Python) go through
`apply_overrides`, which rejects unknown fields and wrong types *before* any training
starts, naming the field and the owner (model or trainer).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from msakit.errors import ConfigError

C = TypeVar("C")


@dataclass
class ModelConfig:
    """Fields every model shares. Data-dependent fields are filled from the dataset."""

    text_dim: int = 384  # width of the text features (MiniLM: 384)
    audio_dim: int = 73  # width of the audio features
    visual_dim: int = 35  # width of the visual features
    modalities: tuple[str, ...] = ("text", "audio", "visual")  # the dataset's modalities
    num_classes: int = 1  # 1 = regression, otherwise classification logits
    label_range: float = 3.0  # |label| bound for regression (MOSI 3, SIMS 1)
    hidden_dim: int = 64
    dropout: float = 0.1
    task_loss: str = "l1"  # "l1" | "mse" for regression; classification always uses CE

    def dim(self, modality: str) -> int:
        return int(getattr(self, f"{modality}_dim"))


@dataclass
class TrainConfig:
    """The trainer's knobs. Selection and early stopping use the validation split only."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    patience: int = 8  # epochs without validation improvement before stopping
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    select_metric: str = ""  # empty: the dataset's metric set default (MAE / Acc)
    modality_dropout: float = 0.0  # per-sample prob. of dropping each modality in training
    num_workers: int = 0
    # torch CPU threads while training; 0 keeps torch's default (one per core). The models here are
    # small: on a shared 2-core machine two threads ran 30x slower per epoch than one (oversubscription).
    num_threads: int = 1
    log_every: int = 0  # batches between progress-bar refreshes; 0 = per epoch
    progress: bool = True
    tensorboard: bool = True


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(args) == len(value) and all(_type_ok(v, a) for v, a in zip(value, args, strict=True))
    if origin in (dict, Mapping):
        return isinstance(value, dict)
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, typing.get_args(hint)[0]) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _coerce(value: Any, hint: Any) -> Any:
    """Lists from JSON/YAML become tuples where the field is a tuple; ints become floats."""
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def apply_overrides(config: C, overrides: Mapping[str, Any], owner: str) -> C:
    """A copy of dataclass `config` with `overrides`; ConfigError on unknown or mistyped fields."""
    hints = typing.get_type_hints(type(config))
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(f"{owner}: unknown config field {key!r}; known fields: {', '.join(sorted(names))}")
        value = _coerce(value, hints[key])
        if not _type_ok(value, hints[key]):
            raise ConfigError(
                f"{owner}: field {key!r} expects {_hint_name(hints[key])}, got {type(value).__name__} {value!r}"
            )
        changes[key] = value
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is parsed as YAML (numbers, lists, bools)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # YAML 1.1 reads "3e-4" (no dot) as a string
            value = float(value)
    return key.strip(), value


def load_yaml_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """A preset file: top-level sections `model:` and `train:` with field overrides."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read preset: {exc}") from exc
    if not isinstance(data, dict) or set(data) - {"model", "train"}:
        raise ConfigError(f"{path}: a preset has only the sections 'model' and 'train'")
    return {k: dict(v or {}) for k, v in data.items()}


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


__all__ = [
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "config_to_dict",
    "load_yaml_overrides",
    "parse_override",
]
