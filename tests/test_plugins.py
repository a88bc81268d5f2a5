"""The shared registry behind models, pretraining objectives and extractors."""

from __future__ import annotations

import pytest

from msakit.errors import ConfigError
from msakit.plugins import Registry


def test_registry_discovers_once_names_and_rejects_duplicates() -> None:
    calls = []
    registry: Registry[object] = Registry("widget", name_attr="widget_name", discover=lambda: calls.append(1))

    @registry.register("b")
    class B: ...

    @registry.register("a")
    class A: ...

    assert registry.names() == ["a", "b"] and registry.get("a") is A
    assert A.widget_name == "a"  # type: ignore[attr-defined]
    assert calls == [1]  # discovery ran once, lazily
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.register("a")(B)
    with pytest.raises(ConfigError, match=r"unknown widget 'c'; registered: a, b"):
        registry.get("c")
