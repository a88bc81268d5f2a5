"""Robustness: registered perturbations, protocols, summaries and plots.

Test time: `run_protocols(model, dataset, "all")` or `msakit robustness CHECKPOINT`.
Training time: pass `RandomMissingRate()` as the trainer's ``train_transform`` (or use
`TrainConfig.modality_dropout`), and `GradientNormLogger` to log the MLI; both through
`fit_with_robustness` or `msakit robustness-train`.
"""

from msakit.robustness.perturbations import (
    Compose,
    DropModalities,
    GaussianNoise,
    Perturbation,
    RandomMissingRate,
    RobustnessError,
    Spectrum,
    StepMissing,
    TemporalShuffle,
    TextNoise,
    bind,
    compose,
    create_perturbation,
    list_perturbations,
    noisy_texts,
    register_perturbation,
)
from msakit.robustness.protocols import (
    PROTOCOLS,
    RobustnessReport,
    RobustnessSettings,
    auilc,
    relative_robustness,
    run_protocols,
)
from msakit.robustness.training import GradientNormLogger, equity_index, fit_with_robustness, gini

__all__ = [
    "PROTOCOLS",
    "Compose",
    "DropModalities",
    "GaussianNoise",
    "GradientNormLogger",
    "Perturbation",
    "RandomMissingRate",
    "RobustnessError",
    "RobustnessReport",
    "RobustnessSettings",
    "Spectrum",
    "StepMissing",
    "TemporalShuffle",
    "TextNoise",
    "auilc",
    "bind",
    "compose",
    "create_perturbation",
    "equity_index",
    "fit_with_robustness",
    "gini",
    "list_perturbations",
    "noisy_texts",
    "register_perturbation",
    "relative_robustness",
    "run_protocols",
]
