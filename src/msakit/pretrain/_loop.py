"""What the TSSP-MSA stage-1 objectives share: the engine's step loop and a weights folder.

`guarded_steps` runs the objective through `msakit.training.engine.fit_steps`, which
stops on the first non-finite loss with the step number, *before* that step touches
the weights or the checkpoint, so the last good checkpoint on disk stays intact.
`save_weights` writes a folder `weights.safetensors` + `meta.json` with the one
weights-folder writer (`msakit.training.checkpoint.save_weights`: atomic, fsynced).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from msakit.batch import Batch
from msakit.data.core import DataModule, MSADataset
from msakit.errors import ConfigError, TrainingError
from msakit.layers.pretrained import (
    STAGE1_META,
    STAGE1_WEIGHTS,
    load_encoder_state,
    load_weights,
    prefixed,
    unprefixed,
)
from msakit.training import checkpoint
from msakit.training.engine import Callback, FitState, fit_steps

__all__ = ["guarded_steps", "load_encoder_state", "load_weights", "prefixed", "save_weights", "unprefixed"]

WEIGHTS, META = STAGE1_WEIGHTS, STAGE1_META


def save_weights(out: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write `out/` = weights.safetensors + meta.json; the previous folder survives a failed write."""
    return checkpoint.save_weights(out, tensors, meta, weights_name=WEIGHTS, meta_name=META)


def require_frames(name: str, dataset: MSADataset, modality: str, min_steps: int = 2) -> None:
    """ConfigError when `modality` has fewer than `min_steps` frames per sample (e.g. MOSI's audio)."""
    longest = int(dataset.split("train").modalities[modality].lengths.max(initial=0))
    if longest < min_steps:
        raise ConfigError(
            f"pretraining objective {name!r} needs frame-level {modality!r} sequences; dataset "
            f"{dataset.info.name!r} has at most {longest} {modality} step(s) per sample (field {modality!r} "
            f"is utterance-level), so {name} is skipped: it is never run on faked frames"
        )


def epochs_of_batches(dataset: MSADataset, batch_size: int, epochs: int, seed: int) -> Iterator[Batch]:
    data = DataModule(dataset, batch_size=batch_size)
    for epoch in range(epochs):
        loader, _ = data.train_batches(seed=seed * 10_007 + epoch)
        yield from loader


@dataclass
class _SaveEvery(Callback):
    """Checkpoint every `every` steps and at the end of a finished run."""

    save: Callable[[int], None]
    every: int
    saved: int = 0

    def on_step_end(self, state: FitState, parts: dict[str, float]) -> None:
        if self.every > 0 and state.step % self.every == 0:
            self.save(state.step)
            self.saved = state.step


@dataclass
class _Means(Callback):
    sums: dict[str, float]

    def on_step_end(self, state: FitState, parts: dict[str, float]) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + v


def guarded_steps(
    name: str,
    batches: Iterable[Any],
    loss_fn: Callable[[Any], tuple[Tensor, dict[str, float]]],
    optimizer: torch.optim.Optimizer,
    save: Callable[[int], None],
    *,
    save_every: int,
    grad_clip: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Optimise `loss_fn` over `batches` with the engine; checkpoint every `save_every` steps and at the end.

    A non-finite loss raises TrainingError naming the objective and the step; nothing
    is saved after the last finite step, so the checkpoint on disk is the last good one.
    """
    saver, means = _SaveEvery(save, save_every), _Means({})
    try:
        state = fit_steps(name, batches, loss_fn, optimizer, [means, saver], grad_clip=grad_clip, progress=progress)
    except TrainingError as exc:
        where = f"step {saver.saved}" if saver.saved else "none written yet"
        raise TrainingError(f"{exc}; stopped, the last good checkpoint ({where}) is intact") from None
    if state.step == 0:
        raise TrainingError(f"pretraining objective {name!r}: the training split gave no batch")
    if saver.saved != state.step:
        save(state.step)
    return {"objective": name, "steps": state.step, **{f"mean_{k}": v / state.step for k, v in means.sums.items()}}


def fit_frame_objective(
    name: str, net: nn.Module, dataset: MSADataset, modality: str, config: Any, out: Path, *, progress: bool
) -> dict[str, Any]:
    """The step loop shared by the frame-level objectives (ECAM, FMR).

    `net.losses(features, valid, generator)` returns (loss, named parts); `config` has
    lr, seed, hidden_dim, encoder, batch_size, epochs and save_every.
    """
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    meta = {
        "objective": name,
        "modality": modality,
        "in_dim": dataset.info.dims[modality],
        "hidden_dim": config.hidden_dim,
        "encoder": config.encoder,
        "dataset": dataset.info.name,
        "config": asdict(config),
    }

    def loss_fn(batch: Batch) -> tuple[Tensor, dict[str, float]]:
        net.train()
        valid = batch.masks[modality] & batch.present_mask(modality)[:, None]
        return net.losses(batch.features[modality], valid, gen)  # type: ignore[operator]

    def save(step: int) -> None:
        save_weights(out, prefixed(net, "net"), {**meta, "step": step})

    batches = epochs_of_batches(dataset, config.batch_size, config.epochs, config.seed)
    summary = guarded_steps(name, batches, loss_fn, optimizer, save, save_every=config.save_every, progress=progress)
    return {**summary, "out": str(out)}
