"""The one trainer: every model, every dataset, the same honest protocol.

For each seed: train on `train`, evaluate on `valid` after every epoch, keep the
checkpoint with the best validation score (the metric set's selection key unless
`TrainConfig.select_metric` names another), stop after `patience` epochs without
improvement, then evaluate that checkpoint once on `test`. The test split is never
looked at before that. Results over seeds are reported as mean ± std (sample std,
ddof=1).
"""

from __future__ import annotations

import csv
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from msakit.batch import Batch, ModelOutput, modality_index
from msakit.config import ModelConfig, TrainConfig, apply_overrides
from msakit.data.core import MSADataset, SplitData
from msakit.errors import ConfigError, TrainingError
from msakit.io import atomic_path, atomic_write_json
from msakit.metrics import MetricAccumulator, get_metric_set
from msakit.models.base import MSAModel
from msakit.registry import build_config, create_model
from msakit.training.checkpoint import load_checkpoint, save_checkpoint

BatchTransform = Callable[[Batch, torch.Generator], Batch]


class Callback(Protocol):
    """Optional observer of training; every method is optional."""

    def on_after_backward(self, model: MSAModel, batch: Batch, step: int) -> None: ...


@dataclass
class SeedResult:
    seed: int
    best_epoch: int
    epochs_run: int
    valid: dict[str, float]
    test: dict[str, float]
    seconds_per_epoch: float
    checkpoint: str


@dataclass
class RunResult:
    model: str
    dataset: str
    metric_set: str
    seeds: list[SeedResult] = field(default_factory=list)

    def summary(self, split: str = "test") -> dict[str, tuple[float, float]]:
        """metric -> (mean, std) over seeds."""
        keys = getattr(self.seeds[0], split).keys()
        out = {}
        for k in keys:
            vals = np.array([getattr(s, split)[k] for s in self.seeds], dtype=float)
            out[k] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "metric_set": self.metric_set,
            "seeds": [s.__dict__ for s in self.seeds],
            "test_summary": {k: {"mean": m, "std": s} for k, (m, s) in self.summary().items()},
        }


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer: device {name!r} requested but CUDA is not available")
    return device


@torch.no_grad()
def evaluate(
    model: MSAModel,
    split: SplitData,
    metric_set: str,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    transform: Callable[[Batch], Batch] | None = None,
) -> dict[str, float]:
    """Metrics of `model` on `split` (optionally through a test-time `transform`)."""
    model.eval()
    acc = MetricAccumulator(metric_set)
    for batch in split.loader(batch_size, shuffle=False):
        if transform is not None:
            batch = transform(batch)
        out = model(batch.to(device))
        acc.update(out.prediction.float().cpu(), batch.labels)
    return acc.compute()


@torch.no_grad()
def predict_split(
    model: MSAModel, split: SplitData, *, batch_size: int = 128, device: torch.device | str = "cpu"
) -> list[tuple[ModelOutput, Batch]]:
    """(output, batch) for every batch of a split in order, for explanations and export."""
    model.eval()
    return [(model(b.to(device)), b) for b in split.loader(batch_size, shuffle=False)]


class Trainer:
    """Trains one registered model on one dataset over several seeds."""

    def __init__(
        self,
        model_name: str,
        dataset: MSADataset,
        *,
        model_overrides: dict[str, Any] | None = None,
        train_config: TrainConfig | None = None,
        out_dir: str | Path = "runs/default",
        train_transform: BatchTransform | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.model_name = model_name
        self.dataset = dataset
        self.cfg = train_config or TrainConfig()
        overrides = {**dataset.info.model_overrides(), **(model_overrides or {})}
        # validate now, before any training starts
        self.model_config: ModelConfig = build_config(model_name, overrides)
        self.metric_set = get_metric_set(dataset.info.metric_set)
        self.select_key = self.cfg.select_metric or self.metric_set.select_key
        if self.select_key not in self.metric_set.higher_is_better:
            raise ConfigError(
                f"trainer: select_metric {self.select_key!r} is not a {self.metric_set.name} metric; "
                f"choose from {sorted(self.metric_set.higher_is_better)}"
            )
        self.higher_is_better = self.metric_set.higher_is_better[self.select_key]
        self.out_dir = Path(out_dir)
        self.device = resolve_device(self.cfg.device)
        self.train_transform = train_transform
        self.callbacks = list(callbacks)

    def fit(self, *, resume: bool = False) -> RunResult:
        if self.cfg.num_threads > 0 and self.device.type == "cpu":
            torch.set_num_threads(self.cfg.num_threads)
        result = RunResult(self.model_name, self.dataset.info.name, self.metric_set.name)
        for seed in self.cfg.seeds:
            result.seeds.append(self.fit_seed(seed, resume=resume))
            # rewritten after every seed, so a stopped run keeps the seeds it finished
            atomic_write_json(
                self.out_dir / "results.json", {**result.to_dict(), "seeds_planned": list(self.cfg.seeds)}
            )
        return result

    def fit_seed(self, seed: int, *, resume: bool = False) -> SeedResult:
        cfg, run_dir = self.cfg, self.out_dir / f"seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        set_seed(seed)
        model = create_model(self.model_name, self.model_config).to(self.device)
        optimizer = torch.optim.AdamW(model.param_groups(cfg.lr, cfg.weight_decay))
        train = self.dataset.split("train")
        valid = self.dataset.split("valid")
        model.on_fit_start(train.loader(cfg.batch_size, shuffle=False))
        state = _FitState()
        if resume and (run_dir / "last").exists():
            state = self._restore(run_dir, model, optimizer)
        writer = _tensorboard(run_dir) if cfg.tensorboard else None
        log_path = run_dir / "log.csv"
        if state.epoch == 0:
            log_path.unlink(missing_ok=True)  # a fresh run does not append to an old run's log
        epoch_times: list[float] = []
        epoch = state.epoch
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            if state.bad_epochs >= cfg.patience:
                break
            start = time.perf_counter()
            model.train()
            model.on_epoch_start(epoch, cfg.epochs)
            # per-epoch seeds make a resumed run follow the uninterrupted one
            loader = train.loader(cfg.batch_size, shuffle=True, seed=seed * 10_007 + epoch, num_workers=cfg.num_workers)
            aug_rng = torch.Generator().manual_seed(seed * 10_009 + epoch)
            losses: dict[str, float] = {}
            bar = tqdm(loader, desc=f"seed {seed} epoch {epoch}", leave=False, disable=not cfg.progress)
            for batch in bar:
                batch = self._augment(batch, aug_rng)
                batch = batch.to(self.device)
                output = model(batch)
                loss, parts = self._loss(model, output, batch)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"seed {seed}: loss became {loss.item()} at epoch {epoch}, step {state.step + 1} "
                        f"(parts: {parts}); the last good checkpoint in {run_dir / 'best'} is intact"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for cb in self.callbacks:
                    hook = getattr(cb, "on_after_backward", None)
                    if hook is not None:
                        hook(model, batch, state.step)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                model.on_train_batch_end(batch, output, epoch)
                state.step += 1
                for k, v in parts.items():
                    losses[k] = losses.get(k, 0.0) + v
                bar.set_postfix(loss=f"{parts['total']:.4f}")
            epoch_times.append(time.perf_counter() - start)
            n_batches = max(math.ceil(len(train) / cfg.batch_size), 1)
            losses = {k: v / n_batches for k, v in losses.items()}
            val = evaluate(model, valid, self.metric_set.name, batch_size=cfg.batch_size * 4, device=self.device)
            score = val[self.select_key]
            if state.is_better(score, self.higher_is_better):
                state.best, state.best_epoch, state.bad_epochs = score, epoch, 0
                save_checkpoint(
                    run_dir / "best",
                    model,
                    dataset=self.dataset.info,
                    train_config=cfg,
                    extra={"epoch": epoch, "seed": seed, "valid": val},
                )
            else:
                state.bad_epochs += 1
            state.epoch = epoch
            self._save_last(run_dir, model, optimizer, state)
            _append_log(
                log_path,
                {
                    "epoch": epoch,
                    **{f"train_{k}": v for k, v in losses.items()},
                    **{f"valid_{k}": v for k, v in val.items()},
                    "seconds": epoch_times[-1],
                },
            )
            if writer is not None:
                for k, v in losses.items():
                    writer.add_scalar(f"train/{k}", v, epoch)
                for k, v in val.items():
                    writer.add_scalar(f"valid/{k}", v, epoch)
        if writer is not None:
            writer.close()
        if state.best_epoch == 0:
            raise TrainingError(f"seed {seed}: no epoch was trained (epochs={cfg.epochs}); nothing to evaluate")
        best, meta = load_checkpoint(run_dir / "best", map_location=self.device)
        test = evaluate(
            best, self.dataset.split("test"), self.metric_set.name, batch_size=cfg.batch_size * 4, device=self.device
        )
        return SeedResult(
            seed=seed,
            best_epoch=state.best_epoch,
            epochs_run=epoch,
            valid=meta["valid"],
            test=test,
            seconds_per_epoch=float(np.mean(epoch_times)) if epoch_times else float("nan"),
            checkpoint=str(run_dir / "best"),
        )

    def _augment(self, batch: Batch, rng: torch.Generator) -> Batch:
        if self.cfg.modality_dropout > 0:
            for m in batch.modalities:
                drop = torch.rand(batch.size, generator=rng) < self.cfg.modality_dropout
                others = batch.present.clone()
                others[:, modality_index(m)] = False
                drop &= others.any(dim=1)  # keep at least one modality per sample
                batch = batch.drop_modalities([m], drop)
        if self.train_transform is not None:
            batch = self.train_transform(batch, rng)
        return batch

    def _loss(self, model: MSAModel, output: ModelOutput, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        task = model.task_loss(output.prediction, batch.labels)
        total = task
        parts = {"task": float(task.detach())}
        for name, value in output.aux_losses.items():
            total = total + value
            parts[name] = float(value.detach())
        parts["total"] = float(total.detach())
        return total, parts

    def _save_last(self, run_dir: Path, model: MSAModel, optimizer: torch.optim.Optimizer, state: _FitState) -> None:
        save_checkpoint(
            run_dir / "last",
            model,
            dataset=self.dataset.info,
            train_config=self.cfg,
            extra={"fit_state": state.__dict__},
        )
        with atomic_path(run_dir / "last" / "optimizer.pt") as tmp:
            torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}, tmp)

    def _restore(self, run_dir: Path, model: MSAModel, optimizer: torch.optim.Optimizer) -> _FitState:
        restored, meta = load_checkpoint(run_dir / "last", map_location=self.device)
        model.load_state_dict(restored.state_dict())
        extra = torch.load(run_dir / "last" / "optimizer.pt", map_location=self.device, weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        torch.set_rng_state(extra["torch_rng"])
        return _FitState(**meta["fit_state"])


@dataclass
class _FitState:
    epoch: int = 0
    step: int = 0
    best: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0

    def is_better(self, score: float, higher_is_better: bool) -> bool:
        if math.isnan(score):
            return False
        if math.isnan(self.best):
            return True
        return score > self.best if higher_is_better else score < self.best


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # the [logging] extra is missing, or its protobuf clashes with mediapipe's pin
        warnings.warn(f"TensorBoard logging is off ({exc}); CSV logs are still written", stacklevel=2)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train_config_from(overrides: dict[str, Any]) -> TrainConfig:
    return apply_overrides(TrainConfig(), overrides, owner="trainer")
