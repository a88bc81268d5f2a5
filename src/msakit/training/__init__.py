"""The one trainer, evaluation and checkpoints."""

from msakit.training.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from msakit.training.trainer import RunResult, SeedResult, Trainer, evaluate, train_config_from

__all__ = [
    "RunResult",
    "SeedResult",
    "Trainer",
    "evaluate",
    "load_checkpoint",
    "read_checkpoint_meta",
    "save_checkpoint",
    "train_config_from",
]
