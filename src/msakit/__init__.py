"""msakit: robust multimodal sentiment analysis.

The public API is small and explicit:

    from msakit import create_model, list_models, load_dataset, Trainer, TrainConfig

Every name is imported on first use (PEP 562), so `import msakit` and `msakit --help` do not
pay for torch, pandas or scikit-learn; tests/test_startup.py checks which modules it loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "MODALITIES": "msakit.batch",
    "Batch": "msakit.batch",
    "ModelOutput": "msakit.batch",
    "ModelConfig": "msakit.config",
    "TrainConfig": "msakit.config",
    "load_dataset": "msakit.data",
    "ConfigError": "msakit.errors",
    "DataError": "msakit.errors",
    "MsakitError": "msakit.errors",
    "TrainingError": "msakit.errors",
    "create_model": "msakit.registry",
    "list_models": "msakit.registry",
    "register_model": "msakit.registry",
    "Trainer": "msakit.training",
}

__all__ = [
    "MODALITIES",
    "Batch",
    "ConfigError",
    "DataError",
    "ModelConfig",
    "ModelOutput",
    "MsakitError",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "__version__",
    "create_model",
    "list_models",
    "load_dataset",
    "register_model",
]

if TYPE_CHECKING:
    from msakit.batch import MODALITIES, Batch, ModelOutput
    from msakit.config import ModelConfig, TrainConfig
    from msakit.data import load_dataset
    from msakit.errors import ConfigError, DataError, MsakitError, TrainingError
    from msakit.registry import create_model, list_models, register_model
    from msakit.training import Trainer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'msakit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
