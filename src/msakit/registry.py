"""One model registry: `@register_model` on a model class, `create_model`, `list_models`.

The CLI, the REST API, the docs and the tests all enumerate this registry; there is no
second list of model names anywhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from msakit.config import ModelConfig, apply_overrides
from msakit.errors import ConfigError
from msakit.models.base import MSAModel

_MODELS: dict[str, type[MSAModel]] = {}
M = TypeVar("M", bound=type[MSAModel])


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make `cls` creatable as `create_model(name)`."""

    def wrap(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice ({_MODELS[name].__module__}, {cls.__module__})")
        cls.model_name = name
        _MODELS[name] = cls
        return cls

    return wrap


def _load_builtin_models() -> None:
    """Import every module of `msakit.models` once; their decorators register them."""
    import msakit.models

    for info in pkgutil.iter_modules(msakit.models.__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"msakit.models.{info.name}")


def list_models() -> list[str]:
    _load_builtin_models()
    return sorted(_MODELS)


def get_model_class(name: str) -> type[MSAModel]:
    _load_builtin_models()
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODELS))}") from None


def build_config(name: str, overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """The model's config with `overrides` validated against its dataclass."""
    cls = get_model_class(name)
    return apply_overrides(cls.config_class(), overrides or {}, owner=f"model {name!r}")


def create_model(name: str, config: ModelConfig | None = None, **overrides: Any) -> MSAModel:
    """Build a registered model from its default config, `config`, and/or field overrides."""
    cls = get_model_class(name)
    if config is None:
        config = build_config(name, overrides)
    elif overrides:
        config = apply_overrides(config, overrides, owner=f"model {name!r}")
    if not isinstance(config, cls.config_class):
        raise ConfigError(f"model {name!r} needs a {cls.config_class.__name__}, got {type(config).__name__}")
    return cls(config)
