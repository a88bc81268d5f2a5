"""The one training engine: a step loop, an epoch loop, and the events around them.

Everything that trains in msakit runs through here: `Trainer` (supervised training
over seeds), robustness training, and the pretraining objectives (`fit_steps`). The
engine knows nothing of seeds, selection or reports; those are callbacks and the
protocol in `trainer.py`. What it does:

    fit_start
    for each epoch:                      (should_stop is asked before each one)
        epoch_start
        for each batch:  forward -> loss -> backward -> after_backward -> clip -> step
        epoch_end(train losses)
        validation_end(metrics)          (when a `validate` function is given)
        checkpoint(path)                 (for each folder the `checkpoint` function wrote)
    fit_end

An exception raised by a callback (e.g. `optuna.TrialPruned`) propagates out of `fit`.
A non-finite loss raises `TrainingError` before that step touches the weights, on
every rank at once in a distributed run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from msakit.batch import Batch, ModelOutput
from msakit.data.core import DataModule
from msakit.errors import DataError, TrainingError
from msakit.models.base import MSAModel
from msakit.training.distributed import Runtime

BatchTransform = Callable[[Batch, torch.Generator], Batch]
LossFn = Callable[[MSAModel, ModelOutput, Batch], tuple[Tensor, dict[str, float]]]


@dataclass
class FitState:
    """Where one fit stands; the persistent part (`to_dict`) goes into `last/config.json`."""

    seed: int = 0
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best: float = math.nan  # best validation score so far (selection key)
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement
    model: Any = field(default=None, repr=False, compare=False)  # the MSAModel being trained (not persisted)
    epoch_seconds: list[float] = field(default_factory=list, repr=False, compare=False)
    is_main: bool = field(default=True, compare=False)  # rank 0 (or the only process): the one that writes files

    _PERSISTED = ("seed", "epoch", "step", "best", "best_epoch", "bad_epochs")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._PERSISTED}

    @classmethod
    def from_dict(cls, data: Any, *, path: object = None) -> FitState:
        if not isinstance(data, dict):
            raise DataError("fit_state must be an object", path=path, field="fit_state")
        out = cls()
        for key in cls._PERSISTED:
            if key not in data:
                if key == "seed":
                    continue  # checkpoints before the engine did not store it
                raise DataError(f"fit_state lacks {key!r}", path=path, field=f"fit_state.{key}")
            value = data[key]
            want = float if key == "best" else int
            if isinstance(value, bool) or not isinstance(value, int | float) or (want is int and value != int(value)):
                raise DataError(f"fit_state.{key} must be a number, got {value!r}", path=path, field=f"fit_state.{key}")
            setattr(out, key, want(value))
        return out


class Callback:
    """Observer of the engine; every method is optional and does nothing by default."""

    def on_fit_start(self, state: FitState) -> None: ...

    def on_epoch_start(self, state: FitState, epoch: int) -> None: ...

    def on_after_backward(self, state: FitState, batch: Batch) -> None: ...

    def on_step_end(self, state: FitState, parts: dict[str, float]) -> None: ...

    def on_epoch_end(self, state: FitState, epoch: int, train_losses: dict[str, float]) -> None: ...

    def on_validation_end(self, state: FitState, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, state: FitState, path: Path) -> None: ...

    def should_stop(self, state: FitState) -> bool:
        return False

    def on_fit_end(self, state: FitState) -> None: ...


def _emit(callbacks: Sequence[Any], event: str, *args: Any) -> None:
    for cb in callbacks:
        hook = getattr(cb, event, None)  # duck-typed observers need not subclass Callback
        if hook is not None:
            hook(*args)


def _tensors(model: nn.Module) -> list[Tensor]:
    """Every parameter and buffer of `model`, in module order (looked up afresh: a hook may replace a buffer)."""
    return [*model.parameters(), *model.buffers()]


@contextmanager
def _holding(model: nn.Module, values: Sequence[Tensor]) -> Iterator[None]:
    """`model`'s parameters and buffers hold `values` (same order) inside the block, its own again after."""
    own = [t.detach().clone() for t in _tensors(model)]
    with torch.no_grad():
        for t, v in zip(_tensors(model), values, strict=True):
            t.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for t, v in zip(_tensors(model), own, strict=True):
                t.copy_(v)


@contextmanager
def _refreshed(
    model: nn.Module, values: Sequence[Tensor], refresh: Callable[[], None] | None
) -> Iterator[list[Tensor]]:
    """`_holding(model, values)`, then `refresh()` (epoch-end statistics for these weights); yields copies
    of the parameters and buffers as they then are, i.e. exactly what is evaluated inside the block."""
    with _holding(model, values):
        if refresh is not None:
            refresh()
        yield [t.detach().clone() for t in _tensors(model)]


class WeightAverage(Callback):
    """An exponential moving average of a model's parameters, updated after every optimizer step.

    `torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn(decay)` keeps it: the
    first step copies the weights, then avg <- decay·avg + (1 − decay)·w. Buffers are not
    averaged (`use_buffers=False`): integer counters cannot be, and fitted state (the input
    normaliser, label memories) is not a weight. `applied` puts the averaged parameters into
    the live model, with its own buffers, for validation and the best checkpoint; statistics
    a model recomputes from its weights at epoch end (`MSAModel.on_train_epoch_end`) are
    recomputed for the averaged weights by the `refresh` the caller passes. Training itself
    always steps the live weights, so an off switch (`TrainConfig.ema_decay = 0`, no
    `WeightAverage`) is exactly the old training.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise TrainingError(f"weight average: decay must be in (0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.evaluated: list[Tensor] = []  # parameters and buffers as last applied (after refresh)

    def on_step_end(self, state: FitState, parts: dict[str, float]) -> None:
        self.averaged.update_parameters(self.model)

    @contextmanager
    def applied(self, refresh: Callable[[], None] | None = None) -> Iterator[None]:
        """The averaged parameters in the live model inside the block; `self.evaluated` keeps them."""
        with _refreshed(self.model, [*self.averaged.module.parameters(), *self.model.buffers()], refresh) as held:
            self.evaluated = held
            yield

    @contextmanager
    def evaluated_applied(self) -> Iterator[None]:
        """The parameters and buffers of the last `applied` block in the live model (to save them)."""
        if not self.evaluated:
            raise TrainingError("weight average: nothing was evaluated with the averaged weights yet")
        with _holding(self.model, self.evaluated):
            yield

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)


@dataclass
class Snapshot:
    """One checkpoint kept in memory: its validation score, its epoch, its parameters and buffers (CPU)."""

    score: float
    epoch: int
    tensors: list[Tensor]


class TopKAverage:
    """The k best checkpoints of one fit by validation score, and their uniform average (a "soup").

    The checkpoint averaging of fairseq's `average_checkpoints.py` and the uniform soup of
    Wortsman et al. (2022), taken over the k best validated epochs of a single run instead of
    the last k or over separate runs: no extra training, one extra validation pass.
    `offer` is called after each validation with what was evaluated (the live weights, or
    the EMA weights when `ema_decay` is on); the k best stay as CPU copies, ties going to
    the earlier epoch. `average` is the parameter mean by `torch.optim.swa_utils.AveragedModel`
    (its default running mean); the buffers are the best snapshot's (integer counters cannot
    be averaged and fitted statistics are not weights), and statistics a model recomputes
    from its weights at epoch end are recomputed for the average by the `refresh` given to
    `applied`, as for `WeightAverage`. Which of the average and the best single checkpoint
    is kept is the caller's rule (`msakit.training.trainer`).
    """

    def __init__(self, model: nn.Module, k: int, *, higher_is_better: bool) -> None:
        if k < 2:
            raise TrainingError(f"checkpoint average: k must be at least 2, got {k}")
        self.model, self.k, self.higher_is_better = model, k, higher_is_better
        self.kept: list[Snapshot] = []  # best first

    def _rank(self, snap: Snapshot) -> tuple[float, int]:
        return (-snap.score if self.higher_is_better else snap.score, snap.epoch)

    def offer(self, score: float, epoch: int, tensors: Sequence[Tensor] | None = None) -> None:
        """Keep (a CPU copy of) `tensors` (default: the model's own) when `score` is among the k best so far.

        A NaN score is never kept.
        """
        if math.isnan(score):
            return
        snap = Snapshot(score, epoch, [])
        if len(self.kept) >= self.k and self._rank(snap) >= self._rank(self.kept[-1]):
            return
        snap.tensors = [t.detach().to("cpu", copy=True) for t in (_tensors(self.model) if tensors is None else tensors)]
        self.kept = sorted([*self.kept, snap], key=self._rank)[: self.k]

    def average(self) -> list[Tensor]:
        """The kept snapshots' mean parameters, then the best snapshot's buffers (`_tensors` order)."""
        if not self.kept:
            raise TrainingError("checkpoint average: no checkpoint was kept")
        soup = AveragedModel(self.model, use_buffers=False)
        for snap in self.kept:
            with _holding(self.model, snap.tensors):
                soup.update_parameters(self.model)
        n = len(list(self.model.parameters()))
        return [*(p.detach().clone() for p in soup.module.parameters()), *self.kept[0].tensors[n:]]

    @contextmanager
    def applied(self, refresh: Callable[[], None] | None = None) -> Iterator[list[Tensor]]:
        """The average in the live model inside the block; yields what is evaluated there (after refresh)."""
        with _refreshed(self.model, self.average(), refresh) as held:
            yield held

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "kept": [{"score": s.score, "epoch": s.epoch, "tensors": s.tensors} for s in self.kept]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        kept = [Snapshot(float(s["score"]), int(s["epoch"]), list(s["tensors"])) for s in state["kept"]]
        shapes = [t.shape for t in _tensors(self.model)]
        if any([t.shape for t in s.tensors] != shapes for s in kept):
            raise KeyError("the kept snapshots' tensors do not have this model's shapes")
        self.kept = sorted(kept, key=self._rank)[: self.k]


def supervised_loss(model: MSAModel, output: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, float]]:
    """The model's task loss plus its named auxiliary losses (already weighted by the model)."""
    task = model.task_loss(output.prediction, batch.labels)
    total = task
    parts = {"task": float(task.detach())}
    for name, value in output.aux_losses.items():
        total = total + value
        parts[name] = float(value.detach())
    parts["total"] = float(total.detach())
    return total, parts


_FUSED_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW kernel and foreach norms


def adamw(param_groups: Iterable[Any], *, device: torch.device | str = "cpu", **kwargs: Any) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where the device has one (CPU, CUDA), else the foreach path.

    The default (per-parameter for-loop) path runs several small ops per parameter tensor per
    step; on CPU the fused kernel took MulT's step (234 tensors) from 7.5 to 1.5 ms
    (`benchmarks/profile_epoch.py --micro optimizer`, docs/benchmarks.md). Results agree with
    the for-loop path to float rounding (tests/test_speed.py).
    """
    if torch.device(device).type in _FUSED_DEVICES:
        return torch.optim.AdamW(param_groups, fused=True, **kwargs)
    return torch.optim.AdamW(param_groups, foreach=True, **kwargs)


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> None:
    """Global-norm clipping with torch's foreach kernels (one norm per device, not one per tensor)."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return
    foreach = grads[0].grad.device.type in _FUSED_DEVICES  # type: ignore[union-attr]
    torch.nn.utils.clip_grad_norm_(grads, max_norm, foreach=foreach)


def _step(
    state: FitState,
    loss: Tensor,
    parts: dict[str, float],
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    callbacks: Sequence[Any],
    batch: Any,
    *,
    weight: float,
    grad_clip: float,
    runtime: Runtime,
    where: str,
) -> None:
    """One optimizer step: the non-finite guard, backward, after_backward, clipping."""
    if not runtime.all_true(bool(torch.isfinite(loss.detach()).all())):
        value = loss.item() if loss.numel() == 1 else float("nan")
        raise TrainingError(f"loss became {value} at {where}step {state.step + 1} (parts: {parts})")
    optimizer.zero_grad(set_to_none=True)
    (loss * weight if weight != 1.0 else loss).backward()
    _emit(callbacks, "on_after_backward", state, batch)
    if grad_clip > 0:
        clip_grad_norm(params, grad_clip)
    optimizer.step()
    state.step += 1


def fit(
    model: MSAModel,
    data: DataModule,
    optimizer: torch.optim.Optimizer,
    callbacks: Sequence[Any] = (),
    *,
    epochs: int,
    seed: int = 0,
    state: FitState | None = None,
    runtime: Runtime | None = None,
    grad_clip: float = 1.0,
    loss_fn: LossFn = supervised_loss,
    transform: BatchTransform | None = None,
    validate: Callable[[MSAModel], dict[str, float]] | None = None,
    checkpoint: Callable[[FitState], Sequence[Path]] | None = None,
    label: str = "",
    progress: bool = False,
) -> FitState:
    """Train `model` for up to `epochs` epochs (continuing from `state` when resuming).

    Epoch `e`'s batch order and augmentation are seeded by (`seed`, `e`), so a resumed
    fit follows the uninterrupted one exactly.
    """
    runtime = runtime or Runtime()
    state = state or FitState(seed=seed)
    state.seed, state.model, state.is_main = seed, model, runtime.is_main
    net = runtime.wrap(model)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    prefix = f"{label}: " if label else ""
    _emit(callbacks, "on_fit_start", state)
    for epoch in range(state.epoch + 1, epochs + 1):
        if any(cb.should_stop(state) for cb in callbacks if hasattr(cb, "should_stop")):
            break
        start = time.perf_counter()
        model.train()
        model.on_epoch_start(epoch, epochs)
        _emit(callbacks, "on_epoch_start", state, epoch)
        loader, weights = data.train_batches(seed=seed * 10_007 + epoch)
        aug_rng = torch.Generator().manual_seed(seed * 10_009 + epoch)
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"{prefix}epoch {epoch}", leave=False, disable=not (progress and runtime.is_main))
        for batch, weight in zip(bar, weights, strict=True):
            if transform is not None:
                batch = transform(batch, aug_rng)
            batch = batch.to(runtime.device)
            with runtime.autocast():
                output = net(batch)
                loss, parts = loss_fn(model, output, batch)
            try:
                _step(
                    state,
                    loss,
                    parts,
                    optimizer,
                    params,
                    callbacks,
                    batch,
                    weight=weight,
                    grad_clip=grad_clip,
                    runtime=runtime,
                    where=f"epoch {epoch}, ",
                )
            except TrainingError as exc:
                raise TrainingError(f"{prefix}{exc}") from None
            model.on_train_batch_end(batch, output, epoch)
            for k, v in parts.items():  # weighted, so that the ranks' sums add up to the global batch means
                sums[k] = sums.get(k, 0.0) + weight * v
            _emit(callbacks, "on_step_end", state, parts)
            if not bar.disable:  # formatting the postfix costs a little per step even when nothing shows
                bar.set_postfix(loss=f"{parts.get('total', float(loss.detach())):.4f}")
        model.on_train_epoch_end(epoch, lambda: (b.to(runtime.device) for b in data.eval_batches(data.train)))
        state.epoch_seconds.append(time.perf_counter() - start)
        losses = _mean_over_ranks(sums, len(weights), runtime)
        _emit(callbacks, "on_epoch_end", state, epoch, losses)
        if validate is not None:
            metrics = validate(model)
            _emit(callbacks, "on_validation_end", state, epoch, metrics)
        state.epoch = epoch
        for path in checkpoint(state) if checkpoint is not None else ():
            _emit(callbacks, "on_checkpoint", state, path)
    _emit(callbacks, "on_fit_end", state)
    return state


def _mean_over_ranks(sums: dict[str, float], batches: int, runtime: Runtime) -> dict[str, float]:
    """Per-batch mean of the training losses over the whole (global) batches of an epoch."""
    total: dict[str, float] = {}
    for part in runtime.gather(sums):
        for k, v in part.items():
            total[k] = total.get(k, 0.0) + v
    return {k: v / (max(batches, 1) * runtime.world_size) for k, v in total.items()}


def fit_steps(
    name: str,
    items: Iterable[Any],
    loss_fn: Callable[[Any], tuple[Tensor, dict[str, float]]],
    optimizer: torch.optim.Optimizer,
    callbacks: Sequence[Any] = (),
    *,
    grad_clip: float = 1.0,
    runtime: Runtime | None = None,
    progress: bool = False,
) -> FitState:
    """The engine's step loop over any stream of items (a pretraining objective's batches).

    `loss_fn(item)` returns (loss, named parts). Callbacks see the same step events as
    in `fit` (fit start/end, after_backward, step_end); checkpointing every N steps is a
    callback's `on_step_end`. A non-finite loss raises TrainingError naming `name`.
    """
    runtime = runtime or Runtime()
    state = FitState(is_main=runtime.is_main)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    _emit(callbacks, "on_fit_start", state)
    for item in tqdm(items, desc=name, unit="step", disable=not progress):
        loss, parts = loss_fn(item)
        try:
            _step(
                state,
                loss,
                parts,
                optimizer,
                params,
                callbacks,
                item,
                weight=1.0,
                grad_clip=grad_clip,
                runtime=runtime,
                where="",
            )
        except TrainingError as exc:
            raise TrainingError(f"pretraining objective {name!r}: {exc}") from None
        _emit(callbacks, "on_step_end", state, {"loss": float(loss.detach()), **parts})
    _emit(callbacks, "on_fit_end", state)
    return state


__all__ = [
    "BatchTransform",
    "Callback",
    "FitState",
    "Snapshot",
    "TopKAverage",
    "WeightAverage",
    "adamw",
    "clip_grad_norm",
    "fit",
    "fit_steps",
    "supervised_loss",
]
