"""msakit: robust multimodal sentiment analysis.

The public API is small and explicit:

    from msakit import create_model, list_models, load_dataset, Trainer, TrainConfig
"""

from msakit.batch import MODALITIES, Batch, ModelOutput
from msakit.config import ModelConfig, TrainConfig
from msakit.data import load_dataset
from msakit.errors import ConfigError, DataError, MsakitError, TrainingError
from msakit.registry import create_model, list_models, register_model

__version__ = "0.1.0"

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


def __getattr__(name: str) -> object:
    # the trainer pulls in tqdm and metrics; import it lazily
    if name == "Trainer":
        from msakit.training import Trainer

        return Trainer
    raise AttributeError(name)
