"""What the TSSP-MSA stage-1 objectives share: a guarded step loop and a weights file.

`guarded_steps` runs an optimiser loop that stops on the first non-finite loss with the
step number, *before* that step touches the weights or the checkpoint, so the last
good checkpoint on disk stays intact. `save_weights` / `load_weights` write and read a
folder `weights.safetensors` + `meta.json`, atomically (temporary sibling, then rename).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from msakit.batch import Batch
from msakit.data.core import MSADataset
from msakit.errors import ConfigError, TrainingError
from msakit.layers.pretrained import (
    STAGE1_META,
    STAGE1_WEIGHTS,
    load_encoder_state,
    load_weights,
    prefixed,
    unprefixed,
)

__all__ = ["guarded_steps", "load_encoder_state", "load_weights", "prefixed", "save_weights", "unprefixed"]

WEIGHTS, META = STAGE1_WEIGHTS, STAGE1_META


def save_weights(out: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write `out/` = weights.safetensors + meta.json; the previous folder survives a failed write."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps(meta, indent=2))
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


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
    train = dataset.split("train")
    for epoch in range(epochs):
        yield from train.loader(batch_size, shuffle=True, seed=seed * 10_007 + epoch)


def guarded_steps(
    name: str,
    batches: Iterable[Batch],
    loss_fn: Callable[[Batch], tuple[Tensor, dict[str, float]]],
    optimizer: torch.optim.Optimizer,
    save: Callable[[int], None],
    *,
    save_every: int,
    grad_clip: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Optimise `loss_fn` over `batches`; checkpoint every `save_every` steps and at the end.

    A non-finite loss raises TrainingError naming the objective and the step; nothing
    is saved after the last finite step, so the checkpoint on disk is the last good one.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sums: dict[str, float] = {}
    step, saved = 0, 0
    for batch in tqdm(batches, desc=name, unit="step", disable=not progress):
        step += 1
        loss, parts = loss_fn(batch)
        if not torch.isfinite(loss):
            where = f"step {saved}" if saved else "none written yet"
            raise TrainingError(
                f"pretraining objective {name!r}: loss became {loss.item()} at step {step} (parts: {parts}); "
                f"stopped, the last good checkpoint ({where}) is intact"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            sums[k] = sums.get(k, 0.0) + v
        if save_every > 0 and step % save_every == 0:
            save(step)
            saved = step
    if step == 0:
        raise TrainingError(f"pretraining objective {name!r}: the training split gave no batch")
    if saved != step:
        save(step)
    return {"objective": name, "steps": step, **{f"mean_{k}": v / step for k, v in sums.items()}}


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
