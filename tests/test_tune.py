"""`tunable` search ranges and `msakit tune`: validation-only Optuna search, pruning, resume, sharing."""

from __future__ import annotations

import dataclasses

import pytest

from msakit.config import ModelConfig, SearchRange, TrainConfig, search_ranges, tunable
from msakit.errors import ConfigError


def test_tunable_keeps_default_and_declares_range() -> None:
    @dataclasses.dataclass
    class Cfg(ModelConfig):
        rank: int = tunable(4, choices=(2, 4, 8))
        plain: float = 0.5

    ranges = search_ranges(Cfg)
    assert Cfg().rank == 4
    assert ranges["rank"] == SearchRange(choices=(2, 4, 8))
    assert "plain" not in ranges
    assert {"hidden_dim", "dropout"} <= set(ranges)  # inherited from ModelConfig
    assert {"lr", "weight_decay", "batch_size", "modality_dropout"} <= set(search_ranges(TrainConfig))


def test_redefined_field_keeps_base_range_unless_it_declares_its_own() -> None:
    @dataclasses.dataclass
    class Plain(ModelConfig):
        dropout: float = 0.3

    @dataclasses.dataclass
    class Own(ModelConfig):
        dropout: float = tunable(0.3, low=0.1, high=0.2)

    assert Plain().dropout == 0.3
    assert search_ranges(Plain)["dropout"] == search_ranges(ModelConfig)["dropout"]
    assert search_ranges(Own)["dropout"] == SearchRange(low=0.1, high=0.2)


@pytest.mark.parametrize(
    "kwargs",
    [{"low": 1.0, "high": 1.0}, {"low": 0.0, "high": 1.0, "log": True}, {"choices": ()}, {"low": 1.0}],
)
def test_bad_search_range_is_a_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="search range"):
        tunable(1.0, **kwargs)
