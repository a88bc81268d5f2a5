"""One model registry: `@register_model` on a model class, `create_model`, `list_models`.

The CLI, the REST API, the docs and the tests all enumerate this registry; there is no
second list of model names anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from msakit.config import ModelConfig, apply_overrides
from msakit.errors import ConfigError
from msakit.models.base import MSAModel
from msakit.plugins import Registry, import_modules

M = TypeVar("M", bound=type[MSAModel])


def _discover_models() -> None:
    """Import every module of `msakit.models`; their decorators register them."""
    import msakit.models

    import_modules("msakit.models", msakit.models.__path__, skip=("base",))


MODELS: Registry[MSAModel] = Registry("model", name_attr="model_name", discover=_discover_models)


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make `cls` creatable as `create_model(name)`."""
    return MODELS.register(name)  # type: ignore[return-value]


def list_models() -> list[str]:
    return MODELS.names()


def get_model_class(name: str) -> type[MSAModel]:
    return MODELS.get(name)


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
