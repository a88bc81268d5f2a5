"""Typed configuration: dataclasses with defaults in code, validated overrides.

Every model has a config dataclass deriving from `ModelConfig`; the trainer has
`TrainConfig`. Overrides (from the CLI, a YAML preset or Python) go through
`apply_overrides`, which rejects unknown fields and wrong types *before* any training
starts, naming the field and the owner (model or trainer).

A field's search range for `msakit tune` is declared beside it with `tunable(...)`;
`search_ranges` reads them back. Presets are `model:`/`train:` YAML files, shipped in
`msakit/presets/<model>/<dataset>.yaml` and named `<model>/<dataset>` (`resolve_preset`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from msakit.errors import ConfigError

C = TypeVar("C")
T = TypeVar("T")

TUNE_KEY = "msakit.tune"  # the dataclass-field metadata key that `tunable` fills


@dataclass(frozen=True)
class SearchRange:
    """Where `msakit tune` may move one field: a numeric interval or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False  # sample on a log scale (learning rates, weight decays)
    step: float | None = None  # grid step of a numeric range (ints default to 1)
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ConfigError(f"search range: give either choices or low/high, got {self}")
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise ConfigError(f"search range: needs low < high (or choices), got low={self.low} high={self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ConfigError(f"search range: a log scale needs low > 0 and no step, got {self}")


def tunable(
    default: T,
    *,
    low: float | None = None,
    high: float | None = None,
    log: bool = False,
    choices: Sequence[Any] | None = None,
    step: float | None = None,
) -> T:
    """A dataclass field with default `default` whose search range for `msakit tune` sits beside it.

    `hidden_dim: int = tunable(64, choices=(32, 64, 128))`, `lr: float = tunable(1e-3, low=1e-4,
    high=1e-2, log=True)`. A subclass that redefines the field without `tunable` keeps the range
    its base declared (`search_ranges` walks the MRO).
    """
    spec = SearchRange(low, high, log, step, tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, metadata={TUNE_KEY: spec})


def search_ranges(config_class: type) -> dict[str, SearchRange]:
    """field name -> SearchRange for every tunable field of a config dataclass (bases included)."""
    names = [f.name for f in dataclasses.fields(config_class)]
    ranges: dict[str, SearchRange] = {}
    for name in names:
        for klass in config_class.__mro__:
            own = klass.__dict__.get("__dataclass_fields__", {}).get(name)
            if own is not None and TUNE_KEY in own.metadata:
                ranges[name] = own.metadata[TUNE_KEY]
                break
    return ranges


@dataclass
class ModelConfig:
    """Fields every model shares. Data-dependent fields are filled from the dataset."""

    text_dim: int = 384  # width of the text features (MiniLM: 384)
    audio_dim: int = 73  # width of the audio features
    visual_dim: int = 35  # width of the visual features
    modalities: tuple[str, ...] = ("text", "audio", "visual")  # the dataset's modalities
    num_classes: int = 1  # 1 = regression, otherwise classification logits
    label_range: float = 3.0  # |label| bound for regression (MOSI 3, SIMS 1)
    hidden_dim: int = tunable(64, choices=(32, 64, 128, 256))  # multiples of 4 attention heads
    dropout: float = tunable(0.1, low=0.0, high=0.5)
    task_loss: str = "l1"  # "l1" | "mse" for regression; classification always uses CE
    # regression: task loss + ccc_weight · (1 − CCC(pred, y)) over each batch (Lin's concordance, the
    # AVEC loss for continuous affect; msakit.models.base.concordance_loss); 0 = off, classification untouched
    ccc_weight: float = 0.0
    # regression: + sign_weight · log(1 + exp(−sign(y)·pred)) over the batch's non-zero labels (the sign
    # that Non0 Acc-2 scores; msakit.models.base.sign_loss); 0 = off, classification untouched
    sign_weight: float = 0.0
    # normalise each input feature with robust training-split statistics (msakit.layers.normalize)
    feature_norm: bool = True
    # add the linear-probe floor, fitted on the training split and frozen, to the prediction, so that
    # the network learns the probe's residual (msakit.layers.probe_base); off: the model unchanged
    probe_base: bool = False

    def dim(self, modality: str) -> int:
        return int(getattr(self, f"{modality}_dim"))


def dataset_overrides(info: Any) -> dict[str, object]:
    """The data-dependent `ModelConfig` fields of a dataset (`msakit.data.DatasetInfo`).

    The config side owns these field names; the data package only states dims,
    modalities, classes and label range.
    """
    out: dict[str, object] = {f"{m}_dim": int(d) for m, d in info.dims.items()}
    out.update(modalities=tuple(info.modalities), num_classes=info.num_classes, label_range=info.label_range)
    return out


@dataclass
class TrainConfig:
    """The trainer's knobs. Selection and early stopping use the validation split only."""

    epochs: int = 30
    batch_size: int = tunable(32, choices=(16, 32, 64))
    lr: float = tunable(1e-3, low=1e-4, high=1e-2, log=True)
    weight_decay: float = tunable(0.0, choices=(0.0, 1e-5, 1e-4, 1e-3))
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    patience: int = 8  # epochs without validation improvement before stopping
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    select_metric: str = ""  # empty: the dataset's metric set default (MAE / Acc)
    modality_dropout: float = tunable(0.0, low=0.0, high=0.3)  # per-sample prob. of dropping each modality
    num_workers: int = 0
    # torch CPU threads while training; 0 keeps torch's default (one per core). The models here are
    # small: on a shared 2-core machine two threads ran 30x slower per epoch than one (oversubscription).
    num_threads: int = 1
    log_every: int = 0  # batches between progress-bar refreshes; 0 = per epoch
    progress: bool = True
    tensorboard: bool = True
    # "fp32" | "bf16": the training forward pass under torch.autocast (CUDA, or a CPU with native bf16:
    # avx512_bf16 or AMX; refused on other CPUs, where emulated bf16 is slower); the task loss (l1, mse,
    # cross-entropy: autocast's fp32 list), weights, the optimizer and checkpoints stay fp32, and validation,
    # test, eval and predict run in fp32
    precision: str = "fp32"
    compile: bool = False  # torch.compile the model before training (CUDA or CPU)
    dist_timeout: float = 300.0  # seconds a collective waits for the other ranks before failing
    # batch order: "random" (seeded shuffle) | "bucket" (shuffled batches of similar length, less padding;
    # msakit.data.core.LengthBuckets) | "dialogue" (whole dialogues, turns in order)
    sampler: str = "random"
    # the LSTM encoders' CPU/CUDA path: "packed" (pack_padded_sequence) | "auto" (the bidirectional
    # encoder: each direction as one fused unpacked LSTM over per-sample reversed steps when a batch is at
    # least 1/3 valid steps) | "segments" (the unidirectional encoder in a few length segments) | "valid"
    # (the unidirectional encoder over valid steps only, custom backward); the same outputs to float
    # rounding; msakit.layers.encoders.lstm_path says which path each encoder takes
    lstm: str = "packed"
    # process-level allocator: "default" | "keep" (glibc mallopt: freed tensors stay in the heap instead of
    # being returned to the OS, fewer page faults per step; msakit.allocator; no-op, one line, on other libcs)
    malloc: str = "default"
    # exponential moving average of the weights after every optimizer step (torch.optim.swa_utils.
    # AveragedModel); validation, the best checkpoint and all that reads it use the averaged weights. 0 = off
    ema_decay: float = tunable(0.0, choices=(0.0, 0.99, 0.995, 0.999))
    # checkpoint averaging: keep the k best validated checkpoints of each seed (CPU copies) and, at the end,
    # their uniform parameter average as `best` when validation scores it at least as well as the best single
    # one (msakit.training.engine.TopKAverage). 0 or 1 = off. Not tunable by default: it is a variance
    # reduction, not a model choice, and declaring it would change every default `msakit tune` space
    average_top_k: int = 0
    # deep ensemble: each seed trains K independent members (member 0 is exactly the plain run of that seed,
    # member j >= 1 seed 1_000_000·j + seed) and `best` is one `ensemble` checkpoint of their mean prediction
    # (msakit.models.ensemble; msakit.training.trainer). 0 or 1 = off; K× the training. Not tunable (as above)
    ensemble: int = 0
    # write seed<N>/last (weights, optimizer and RNG state: what --resume reads) after every epoch. false =
    # only best/ when validation improves, as MMSA's trainers do (about 2 % of a size-matched LF-DNN epoch);
    # such a fit cannot be resumed: --resume is refused, and a fresh fit removes an earlier run's last/
    save_last: bool = True


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
        if value != getattr(config, key):  # a field's own default is valid by definition (e.g. 0 = "auto")
            _check_value(key, value, owner)
        changes[key] = value
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


_POSITIVE_INTS = ("epochs", "batch_size", "eval_batch_size", "patience", "num_heads", "heads")


def _check_value(key: str, value: Any, owner: str) -> None:
    """Values no config can mean: NaN/Inf numbers, sizes < 1, dropout outside [0, 1), no seeds."""
    problem = ""
    if isinstance(value, float) and not math.isfinite(value):
        problem = "a finite number"
    elif isinstance(value, int) and not isinstance(value, bool) and (key in _POSITIVE_INTS or key.endswith("_dim")):
        problem = "at least 1" if value < 1 else ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not problem:
        if key == "lr" and value <= 0:
            problem = "> 0"
        elif (key == "dropout" or key.endswith("_dropout") or key == "ema_decay") and not 0 <= value < 1:
            problem = "in [0, 1)"
        elif key in ("ccc_weight", "sign_weight", "average_top_k", "ensemble") and value < 0:
            problem = ">= 0"
    if key == "seeds" and isinstance(value, tuple) and not value:
        problem = "at least one seed"
    if problem:
        raise ConfigError(f"{owner}: field {key!r} must be {problem}, got {value!r}")


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is parsed as YAML (numbers, lists, bools)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has no field name before '='")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({' '.join(str(exc).split())})") from None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # YAML 1.1 reads "3e-4" (no dot) as a string
            value = float(value)
    return key.strip(), value


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def list_presets() -> list[str]:
    """Names (`<model>/<dataset>`) of the presets shipped inside the package."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in PRESETS_DIR.glob("*/*.yaml"))


def resolve_preset(name_or_path: str | Path) -> Path:
    """An existing YAML file as given, else the shipped preset `<model>/<dataset>`; ConfigError otherwise."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(name_or_path).removesuffix(".yaml")
    shipped = PRESETS_DIR / f"{name}.yaml"
    if name.count("/") == 1 and shipped.is_file():
        return shipped
    raise ConfigError(
        f"preset {str(name_or_path)!r}: no such file and no shipped preset of that name; "
        f"shipped: {', '.join(list_presets()) or 'none'}"
    )


def load_yaml_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """A preset (a file, or a shipped `<model>/<dataset>`): sections `model:` and `train:` of overrides."""
    path = resolve_preset(path)
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML preset (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    except (OSError, yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{path}: cannot read preset: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or set(data) - {"model", "train"}:
        raise ConfigError(f"{path}: a preset has only the sections 'model' and 'train'")
    for section, fields in data.items():
        if fields is not None and not isinstance(fields, dict):
            raise ConfigError(f"{path}: section {section!r} must map field names to values")
    return {k: dict(v or {}) for k, v in data.items()}


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


__all__ = [
    "ModelConfig",
    "SearchRange",
    "TrainConfig",
    "apply_overrides",
    "config_to_dict",
    "dataset_overrides",
    "list_presets",
    "load_yaml_overrides",
    "parse_override",
    "resolve_preset",
    "search_ranges",
    "tunable",
]
