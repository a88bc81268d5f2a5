"""The one engine, the trainer's protocol on top of it, evaluation and checkpoints."""

from msakit.training.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from msakit.training.distributed import Runtime, init_runtime
from msakit.training.engine import Callback, FitState, fit, fit_steps
from msakit.training.trainer import RunResult, SeedResult, Trainer, evaluate, train_config_from

__all__ = [
    "Callback",
    "FitState",
    "RunResult",
    "Runtime",
    "SeedResult",
    "Trainer",
    "evaluate",
    "fit",
    "fit_steps",
    "init_runtime",
    "load_checkpoint",
    "read_checkpoint_meta",
    "save_checkpoint",
    "train_config_from",
]
