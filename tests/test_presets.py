"""Every shipped preset (`presets/<model>/<dataset>.yaml`) names a registered model and valid fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from msakit.config import load_yaml_overrides
from msakit.registry import build_config, list_models
from msakit.training.trainer import train_config_from

PRESETS = sorted((Path(__file__).resolve().parents[1] / "presets").glob("*/*.yaml"))


def test_presets_exist() -> None:
    assert PRESETS, "presets/ holds no <model>/<dataset>.yaml file"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_preset_fields_validate(path: Path) -> None:
    assert path.parent.name in list_models(), f"{path}: folder must be a registered model name"
    preset = load_yaml_overrides(path)
    build_config(path.parent.name, preset.get("model", {}))  # ConfigError names any unknown or mistyped field
    train_config_from(preset.get("train", {}))
