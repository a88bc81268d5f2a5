"""A name -> class registry with lazy discovery, shared by models, objectives and extractors."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from msakit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes registered by name with `@registry.register(name)`.

    kind: what the entries are, for messages ("model", "extractor").
    name_attr: class attribute the registered name is written to.
    discover: called once before the first lookup; imports the modules whose
        decorators fill the registry.
    """

    def __init__(self, kind: str, *, name_attr: str = "name", discover: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._name_attr = name_attr
        self._discover = discover
        self._discovered = discover is None
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def wrap(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(
                    f"{self.kind} {name!r} is registered twice ({self._classes[name].__module__}, {cls.__module__})"
                )
            setattr(cls, self._name_attr, name)
            self._classes[name] = cls
            return cls

        return wrap

    def _ensure_discovered(self) -> None:
        if not self._discovered and self._discover is not None:
            self._discovered = True
            self._discover()

    def names(self) -> list[str]:
        self._ensure_discovered()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        self._ensure_discovered()
        try:
            return self._classes[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._classes))}") from None


def import_modules(package: str, path: Iterable[str], *, skip: Iterable[str] = ()) -> None:
    """Import every module of `package` (at `path`) not starting with "_" and not in `skip`."""
    excluded = set(skip)
    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_") and info.name not in excluded:
            importlib.import_module(f"{package}.{info.name}")
