"""Training-time robustness: random missing rates and the per-modality gradient log (MLI).

`GradientNormLogger` is a trainer callback *and* a train transform. As a transform it
makes each modality's input features a leaf that requires grad; after every backward
(``on_after_backward``) it records, per modality, the norm of input × gradient,
``g_m = mean_i ‖x_{i,m} ⊙ ∂L/∂x_{i,m}‖_F`` over the samples that have the modality (the
gradient-times-input attribution: unlike the raw input gradient it does not change when
a modality's features are rescaled and the first layer compensates). ``source="params"``
logs instead the gradient norm of the parameters whose dotted/underscored name contains
the modality's name (``encoders.text.proj.weight`` counts for text); it needs models that
name their per-modality parameters so, and sees nothing of shared layers.

MLI (our definition, see docs/robustness.md) = 1 - normalised Gini of the per-modality
mean gradient norms over all logged steps: 1 when every modality receives as much
gradient as the others, 0 when one receives all of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msakit.batch import Batch
from msakit.io import atomic_write_text
from msakit.models.base import MSAModel
from msakit.robustness.perturbations import Perturbation, RobustnessError
from msakit.training.engine import Callback, FitState


def gini(values: Sequence[float]) -> float:
    """Gini coefficient normalised to [0, 1] for n values (n / (n - 1) × the plain Gini).

    0: all equal; 1: one value holds everything. NaN for fewer than 2 values or a zero sum.
    """
    v = np.clip(np.asarray(values, dtype=float), 0.0, None)
    n = len(v)
    if n < 2 or not np.isfinite(v).all() or v.sum() <= 0:
        return float("nan")
    plain = np.abs(v[:, None] - v[None, :]).sum() / (2 * n * v.sum())
    return float(plain * n / (n - 1))


def equity_index(values: Sequence[float]) -> float:
    """1 - normalised Gini: MEI on contributions, MLI on gradient norms."""
    return 1.0 - gini(values)


@dataclass
class GradientNormLogger(Callback):
    """Engine callback + train transform logging per-modality gradient norms for the MLI.

    Each fit (one seed) starts a fresh log; at its end the summary is written to
    `out_dir/seed<N>/mli.json` when `out_dir` is set (by rank 0 only).
    """

    modalities: tuple[str, ...]
    source: str = "input"  # "input": ‖x ⊙ ∂L/∂x‖ per modality; "params": per-modality parameter names
    out_dir: Path | None = None
    note: dict[str, Any] = field(default_factory=dict)  # extra entries for mli.json
    steps: list[dict[str, float]] = field(default_factory=list)
    _leaves: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.source not in ("input", "params"):
            raise RobustnessError(f"gradient-norm source must be 'input' or 'params', got {self.source!r}")

    def reset(self) -> None:
        self.steps, self._leaves = [], {}

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        """Train transform: make the features leaves that collect their gradient."""
        if self.source != "input":
            return batch
        self._leaves = {m: x.detach().clone().requires_grad_(True) for m, x in batch.features.items()}
        # the model receives a non-leaf copy, so in-place ops inside a model stay legal
        return replace(batch, features={m: leaf * 1.0 for m, leaf in self._leaves.items()})

    def on_fit_start(self, state: FitState) -> None:
        self.reset()

    def on_after_backward(self, state: FitState, batch: Batch) -> None:
        row: dict[str, float] = {"step": float(state.step)}
        for m in self.modalities:
            value = self._input_norm(m, batch) if self.source == "input" else self._param_norm(m, state.model)
            if value is not None:
                row[m] = value
        self.steps.append(row)

    def on_fit_end(self, state: FitState) -> None:
        if self.out_dir is not None and state.is_main:
            summary = {**self.summary(), **self.note}
            atomic_write_text(self.out_dir / f"seed{state.seed}" / "mli.json", json.dumps(summary, indent=1))

    def _input_norm(self, modality: str, batch: Batch) -> float | None:
        leaf = self._leaves.get(modality)
        has = batch.present_mask(modality).cpu()
        if leaf is None or not has.any():
            return None
        if leaf.grad is None:
            return 0.0  # the loss does not depend on this modality at all
        per_sample = (leaf.grad * leaf.detach()).flatten(1).norm(dim=1)  # (B,)
        return float(per_sample[has].mean())

    def _param_norm(self, modality: str, model: MSAModel) -> float | None:
        total, found = 0.0, False
        for name, p in model.named_parameters():
            if p.grad is not None and modality in re.split(r"[._]", name):
                total += float(p.grad.detach().pow(2).sum())
                found = True
        return total**0.5 if found else None

    def summary(self) -> dict[str, Any]:
        means = {
            m: float(np.mean([r[m] for r in self.steps if m in r]))
            for m in self.modalities
            if any(m in r for r in self.steps)
        }
        total = sum(means.values())
        return {
            "definition": "MLI = 1 - normalised Gini of per-modality mean gradient norms (msakit's definition)",
            "source": self.source,
            "modalities": list(means),
            "mean_grad_norm": means,
            "share": {m: v / total for m, v in means.items()} if total > 0 else {},
            "mli": equity_index(list(means.values())) if len(means) > 1 else float("nan"),
            "steps": len(self.steps),
            "per_step": self.steps,
        }


def chain(*transforms: Perturbation | None) -> Perturbation | None:
    """Compose train transforms, skipping None; None when none is given."""
    parts = [t for t in transforms if t is not None]
    if not parts:
        return None

    def run(batch: Batch, rng: torch.Generator) -> Batch:
        for t in parts:
            batch = t(batch, rng)
        return batch

    return run


def fit_with_robustness(
    model_name: str,
    dataset: Any,
    *,
    out_dir: str | Path,
    model_overrides: dict[str, Any] | None = None,
    train_config: Any = None,
    train_transform: Perturbation | None = None,
    log_gradients: bool = True,
    gradient_source: str = "input",
) -> Any:
    """Train like `msakit train`, optionally with `train_transform` (e.g. `RandomMissingRate`),
    and write OUT/seed<N>/mli.json from a `GradientNormLogger` when `log_gradients`."""
    from msakit.training import Trainer

    out_dir = Path(out_dir)
    logger = (
        GradientNormLogger(
            tuple(dataset.info.modalities),
            source=gradient_source,
            out_dir=out_dir,
            note={"train_transform": repr(train_transform)},
        )
        if log_gradients
        else None
    )
    trainer = Trainer(
        model_name,
        dataset,
        model_overrides=model_overrides,
        train_config=train_config,
        out_dir=out_dir,
        train_transform=chain(train_transform, logger),
        callbacks=[logger] if logger is not None else (),
    )
    return trainer.fit()


def read_mli(checkpoint: str | Path) -> dict[str, Any] | None:
    """The MLI log next to a checkpoint (runs/X/seedN/best -> runs/X/seedN/mli.json), if any."""
    path = Path(checkpoint).parent / "mli.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data.pop("per_step", None)
    return data if isinstance(data, dict) else None
