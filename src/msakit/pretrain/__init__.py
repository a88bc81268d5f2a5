"""Self-supervised pretraining objectives, registered by name for `msakit pretrain`.

An objective is a class with a config dataclass and a `fit` method:

    @register_objective("s_mlm")
    class SentimentMLM(PretrainObjective):
        config_class = SMLMConfig
        def fit(self, dataset, out, *, progress=True) -> dict[str, Any]: ...

`fit` trains on the dataset's *training* split (labels unused), writes what it learned
to `out` (safetensors + JSON, atomically) and returns a summary of numbers. An
objective that needs a modality the dataset lacks raises `ConfigError` naming itself
and the missing field; it never fakes its input. Modules in this package are
discovered, so adding an objective is adding a file here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from msakit.config import apply_overrides
from msakit.data.core import MSADataset
from msakit.errors import ConfigError
from msakit.plugins import Registry, import_modules

ObjectiveT = TypeVar("ObjectiveT", bound="type[PretrainObjective]")


class PretrainObjective:
    """Base class: holds a validated config; subclasses implement `fit`."""

    config_class: ClassVar[type] = object
    name: ClassVar[str] = ""
    #: modalities (frame-level sequences) the objective needs
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any) -> None:
        self.config = config

    def check(self, dataset: MSADataset) -> None:
        """ConfigError naming the objective and the missing field, before any work."""
        for m in self.requires:
            if m not in dataset.info.dims:
                raise ConfigError(
                    f"pretraining objective {self.name!r} needs the {m!r} modality; dataset "
                    f"{dataset.info.name!r} has only {list(dataset.info.modalities)} (field {m!r} missing)"
                )

    def fit(self, dataset: MSADataset, out: Path, *, progress: bool = True) -> dict[str, Any]:
        raise NotImplementedError


def _discover() -> None:
    import_modules(__name__, __path__)


OBJECTIVES: Registry[PretrainObjective] = Registry("pretraining objective", discover=_discover)


def register_objective(name: str) -> Callable[[ObjectiveT], ObjectiveT]:
    return OBJECTIVES.register(name)  # type: ignore[return-value]


def list_objectives() -> list[str]:
    return OBJECTIVES.names()


def create_objective(name: str, **overrides: Any) -> PretrainObjective:
    cls = OBJECTIVES.get(name)
    return cls(apply_overrides(cls.config_class(), overrides, owner=f"objective {name!r}"))
