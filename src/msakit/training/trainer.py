"""The one trainer: every model, every dataset, the same honest protocol.

For each seed: train on `train`, evaluate on `valid` after every epoch, keep the
checkpoint with the best validation score (the metric set's selection key unless
`TrainConfig.select_metric` names another), stop after `patience` epochs without
improvement, then evaluate that checkpoint once on `test`. The test split is never
looked at before that; with a `Seal` (`msakit train --seal-test`) not at all, and
`msakit test RUN` opens it later (msakit.training.sealed). Results over seeds are
reported as mean ± std (sample std, ddof=1).

The training itself is `msakit.training.engine.fit`; this module is only the protocol
around it (seeds, selection, early stopping, checkpoints, logs, reports), written as
the engine callback `_Protocol`. In a distributed run every rank follows the same
protocol on the same gathered validation metrics; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msakit.batch import Batch, ModelOutput, modality_index
from msakit.config import ModelConfig, TrainConfig, apply_overrides, config_to_dict
from msakit.data.core import DataModule, LengthBuckets, MSADataset, RandomBatches, Sampler, SplitData
from msakit.data.stats import dataset_stats
from msakit.errors import ConfigError, DataError, TrainingError
from msakit.io import atomic_write_json
from msakit.layers.encoders import LSTM_PATHS, lstm_path
from msakit.layers.probe_base import ProbeFit
from msakit.metrics import MetricAccumulator, get_metric_set, import_backend
from msakit.models.base import MSAModel
from msakit.models.ensemble import SHARED_FIELDS, DeepEnsemble
from msakit.registry import build_config, create_model, get_model_class
from msakit.training.checkpoint import (
    latest_resumable,
    load_checkpoint,
    read_checkpoint_meta,
    read_fit_state,
    read_optimizer_state,
    save_checkpoint,
)
from msakit.training.distributed import Runtime, init_runtime, is_collective_failure, lost_rank_error, resolve_device
from msakit.training.engine import (
    BatchTransform,
    Callback,
    FitState,
    TopKAverage,
    WeightAverage,
    adamw,
    fit,
    supervised_loss,
)
from msakit.training.sealed import SEAL_KEY, Seal, check_resume, previous_seal_time

__all__ = [
    "BatchTransform",
    "Callback",
    "RunResult",
    "SeedResult",
    "Trainer",
    "evaluate",
    "member_seeds",
    "predict_split",
    "resolve_device",
    "set_seed",
    "train_config_from",
]


@dataclass
class SeedResult:
    seed: int
    best_epoch: int
    epochs_run: int
    valid: dict[str, float]
    test: dict[str, float] | None  # None: the test split is sealed (msakit.training.sealed)
    seconds_per_epoch: float
    checkpoint: str
    # an ensemble seed (`TrainConfig.ensemble` >= 2): one entry per member, {seed, best_epoch, epochs_run, valid,
    # seconds_per_epoch}; best_epoch and epochs_run above are then the members' largest (so the early-best-epoch
    # warning fires only when every member peaked early) and seconds_per_epoch their mean
    members: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not (k in ("members", "test") and v is None)}


@dataclass
class RunResult:
    model: str
    dataset: str
    metric_set: str
    seeds: list[SeedResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # degenerate training (msakit.training.diagnostics)

    def summary(self, split: str = "test") -> dict[str, tuple[float, float]]:
        """metric -> (mean, std) over seeds."""
        keys = getattr(self.seeds[0], split).keys()
        out = {}
        for k in keys:
            vals = np.array([getattr(s, split)[k] for s in self.seeds], dtype=float)
            out[k] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
        return out

    @property
    def sealed(self) -> bool:
        """The test split was never evaluated (`msakit train --seal-test`): summarise validation, never test."""
        return any(s.test is None for s in self.seeds)

    def to_dict(self) -> dict[str, Any]:
        sealed = self.sealed
        summary = self.summary("valid" if sealed else "test")
        return {
            "model": self.model,
            "dataset": self.dataset,
            "metric_set": self.metric_set,
            "seeds": [s.to_dict() for s in self.seeds],
            f"{'valid' if sealed else 'test'}_summary": {k: {"mean": m, "std": s} for k, (m, s) in summary.items()},
            "warnings": list(self.warnings),
        }


def result_from_dict(payload: dict[str, Any]) -> RunResult:
    """The `RunResult` a results.json holds (its "seeds" entries as `SeedResult`s)."""
    fields = SeedResult.__dataclass_fields__
    seeds = [SeedResult(**{"test": None, **{k: v for k, v in s.items() if k in fields}}) for s in payload["seeds"]]
    return RunResult(
        payload["model"], payload["dataset"], payload["metric_set"], seeds, list(payload.get("warnings", []))
    )


MEMBER_SEED_STRIDE = 1_000_000
ENSEMBLE_RECORD = "ensemble.json"


def member_seeds(seed: int, size: int) -> list[int]:
    """The seeds of a deep ensemble's members for run seed `seed`: member 0 uses `seed` itself (it is
    exactly the plain run of that seed), member j >= 1 uses 1_000_000·j + `seed`. For seeds in
    [0, 1_000_000) no two (seed, member) pairs of a run share a seed."""
    return [seed + MEMBER_SEED_STRIDE * j for j in range(max(size, 1))]


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def score_test_split(
    model: MSAModel, dataset: MSADataset, metric_set: str, *, batch_size: int, device: torch.device | str
) -> dict[str, float]:
    """The one test evaluation of a selected checkpoint, as `msakit train` scores it and `msakit test`
    (msakit.training.sealed) opens it: {} with a warning when the dataset has no test split."""
    if "test" not in dataset.splits:
        warnings.warn(f"dataset {dataset.info.name!r} has no test split; no test score", stacklevel=3)
        return {}
    return evaluate(model, dataset.split("test"), metric_set, batch_size=batch_size, device=device)


@torch.no_grad()
def evaluate(
    model: MSAModel,
    split: SplitData,
    metric_set: str,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    transform: Callable[[Batch], Batch] | None = None,
    data: DataModule | None = None,
    runtime: Runtime | None = None,
) -> dict[str, float]:
    """Metrics of `model` on `split` (optionally through a test-time `transform`).

    With a distributed `runtime` (and its `data` module) each rank predicts its own
    unpadded slice and the predictions are gathered before the metrics are computed,
    so every sample counts exactly once.
    """
    model.eval()
    acc = MetricAccumulator(metric_set)
    if runtime is not None and runtime.is_distributed and data is not None:
        preds, labels = [], []
        for batch in data.eval_batches(split):
            if transform is not None:
                batch = transform(batch)
            preds.append(model(batch.to(runtime.device)).prediction.float().cpu())
            labels.append(batch.labels)
        parts = runtime.gather((preds, labels))  # rank order = split order (contiguous slices)
        for p, y in parts:
            for pb, yb in zip(p, y, strict=True):
                acc.update(pb, yb)
        return acc.compute()
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
        callbacks: Sequence[Any] = (),
        sampler: Sampler | None = None,
        report_warnings: bool = True,
        seal: Seal | None = None,
    ) -> None:
        if issubclass(get_model_class(model_name), DeepEnsemble):
            raise ConfigError(
                f"model {model_name!r} is assembled from trained members, not trained itself: train the member "
                "with -t ensemble=K (e.g. msakit train --model tssp_msa -t ensemble=3)"
            )
        self.model_name = model_name
        self.report_warnings = report_warnings  # False: warnings go to the result and results.json only (tune)
        self.seal = seal  # a Seal: the test split is never evaluated (msakit.training.sealed; `msakit test` opens it)
        # the probe base's fit (msakit.layers.probe_base): it depends on the data only, so every seed and
        # ensemble member of this run reuses the first one
        self._probe_fit: ProbeFit | None = None
        self.dataset = dataset
        self.cfg = train_config or TrainConfig()
        overrides = {**dataset.info.model_overrides(), **(model_overrides or {})}
        # validate now, before any training starts
        self.model_config: ModelConfig = build_config(model_name, overrides)
        self.metric_set = get_metric_set(dataset.info.metric_set)
        import_backend()  # sklearn, imported lazily by msakit.metrics: not inside the first epoch's time
        self.select_key = self.cfg.select_metric or self.metric_set.select_key
        if self.select_key not in self.metric_set.higher_is_better:
            raise ConfigError(
                f"trainer: select_metric {self.select_key!r} is not a {self.metric_set.name} metric; "
                f"choose from {sorted(self.metric_set.higher_is_better)}"
            )
        self.higher_is_better = self.metric_set.higher_is_better[self.select_key]
        if self.cfg.ensemble >= 2:
            every = [s for seed in self.cfg.seeds for s in member_seeds(seed, self.cfg.ensemble)]
            if len(set(every)) != len(every) or not all(0 <= s < 2**32 for s in every):
                raise ConfigError(
                    f"trainer: field 'seeds' {list(self.cfg.seeds)} with ensemble={self.cfg.ensemble}: member seeds "
                    f"(seed + {MEMBER_SEED_STRIDE}·j) must be distinct and in [0, 2**32); use seeds in "
                    f"[0, {MEMBER_SEED_STRIDE})"
                )
        if self.cfg.lstm not in LSTM_PATHS:
            raise ConfigError(f"trainer: lstm must be one of {', '.join(LSTM_PATHS)}, got {self.cfg.lstm!r}")
        from msakit.allocator import apply_allocator  # process-level: glibc thresholds, before any batch

        apply_allocator(self.cfg.malloc)
        self.out_dir = Path(out_dir)
        self.runtime = init_runtime(
            self.cfg.device, precision=self.cfg.precision, compile=self.cfg.compile, timeout=self.cfg.dist_timeout
        )
        self.device = self.runtime.device
        self.train_transform = train_transform
        self.callbacks = list(callbacks)
        self.data = DataModule(
            dataset,
            batch_size=self.cfg.batch_size,
            eval_batch_size=self.cfg.batch_size * 4,
            num_workers=self.cfg.num_workers,
            sampler=sampler or _sampler(self.cfg.sampler),
            rank=self.runtime.rank,
            world_size=self.runtime.world_size,
        )
        if self.runtime.is_distributed:
            self.runtime.check_same(
                "configuration",
                {
                    "model": model_name,
                    "model_config": config_to_dict(self.model_config),
                    "train_config": config_to_dict(self.cfg),
                    "dataset": dataset.info.name,
                    "splits": {k: len(v) for k, v in dataset.splits.items()},
                },
            )

    def fit(self, *, resume: bool = False) -> RunResult:
        if self.cfg.num_threads > 0 and self.device.type == "cpu":
            torch.set_num_threads(self.cfg.num_threads)
        if resume:  # before anything is written
            check_resume(self.out_dir, sealed=self.seal is not None)
            if self.seal is not None:
                self.seal.sealed_at = previous_seal_time(self.out_dir) or self.seal.sealed_at
        result = RunResult(self.model_name, self.dataset.info.name, self.metric_set.name)
        for seed in self.cfg.seeds:
            result.seeds.append(self.fit_seed(seed, resume=resume))
            if self.runtime.is_main:  # rewritten after every seed: a stopped run keeps the seeds it finished
                atomic_write_json(self.out_dir / "results.json", self._results_payload(result))
        if self.runtime.is_main and result.seeds:
            from msakit.training.diagnostics import diagnose_run

            if self.seal is None:
                result.warnings = diagnose_run(result, self.dataset, device=self.device)
            else:  # the test split is sealed: the near-constant check reads validation only
                result.warnings = diagnose_run(result, self.dataset, device=self.device, splits=("valid",))
            for message in result.warnings if self.report_warnings else ():
                print(f"msakit: warning: {message}", file=sys.stderr)
            atomic_write_json(self.out_dir / "results.json", self._results_payload(result))
        return result

    def _results_payload(self, result: RunResult) -> dict[str, Any]:
        """results.json: the result, the planned seeds and, for a sealed run, its seal record."""
        payload = {**result.to_dict(), "seeds_planned": list(self.cfg.seeds)}
        if self.seal is not None:
            record = self.seal.record(self.out_dir, eval_batch_size=self.data.eval_batch_size, device=str(self.device))
            payload[SEAL_KEY] = record
        return payload

    def fit_seed(self, seed: int, *, resume: bool = False) -> SeedResult:
        if resume and not self.cfg.save_last:  # before anything is written
            raise ConfigError(
                "trainer: save_last=false writes no seed<N>/last, so there is nothing to resume; "
                "train again without --resume, or with save_last=true to make a fit resumable"
            )
        try:
            with lstm_path(self.cfg.lstm):
                if self.cfg.ensemble >= 2:
                    return self._fit_ensemble(seed, resume=resume)
                run_dir = self.out_dir / f"seed{seed}"
                if resume and (run_dir / ENSEMBLE_RECORD).is_file():
                    raise DataError(
                        "this seed was trained as a deep ensemble; resume it with the same -t ensemble=K",
                        path=run_dir / ENSEMBLE_RECORD,
                        field="size",
                    )
                if not resume and self.runtime.is_main:
                    (run_dir / ENSEMBLE_RECORD).unlink(missing_ok=True)  # an earlier ensemble run's record
                final = self._train(seed, run_dir, resume=resume)
                return SeedResult(
                    seed=seed,
                    best_epoch=final.best_epoch,
                    epochs_run=final.epoch,
                    seconds_per_epoch=_mean_seconds(final),
                    checkpoint=str(run_dir / "best"),
                    **self._scored(run_dir),
                )
        except RuntimeError as exc:  # a collective failed: another rank died or stopped
            if isinstance(exc, TrainingError) or not (self.runtime.is_distributed and is_collective_failure(exc)):
                raise
            raise lost_rank_error(exc, self.runtime.rank) from None

    def _train(self, seed: int, run_dir: Path, *, resume: bool) -> FitState:
        """One fit with seed `seed` into `run_dir` (best, last, log.csv): a plain seed, or one ensemble member."""
        cfg, rt = self.cfg, self.runtime
        if rt.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        set_seed(seed)
        model = create_model(self.model_name, self.model_config).to(self.device)
        optimizer = adamw(model.param_groups(cfg.lr, cfg.weight_decay), device=self.device)
        last = self._resumable(run_dir) if resume else None
        if not cfg.save_last and rt.is_main:  # an earlier run's last/ must not be resumed as this fit's state
            for stale in (run_dir / "last", run_dir / ".last.old"):
                shutil.rmtree(stale, ignore_errors=True)
        state, extra = self._restore(last, model, optimizer) if last is not None else (FitState(seed=seed), {})
        if last is None:
            model.load_pretrained()  # stage-1 / pretrained parts, fresh training only
        model.start_fit(dataset_stats(self.data.train, source=self.dataset.source))  # fits the input normaliser
        self._probe_fit = model.fit_probe_base(  # nothing when the base is off
            self.data.train, self.dataset.split("valid"), self.metric_set.name, fitted=self._probe_fit
        )
        averager = self._averager(model, last, extra)
        top_k = self._top_k(model, last, extra)
        protocol = _Protocol(self, run_dir, model, optimizer, fresh=last is None, averager=averager, top_k=top_k)
        try:
            final = self._fit(model, optimizer, protocol, state, seed)
            if top_k is not None and final.best_epoch > 0:
                self._average_top_k(model, top_k, final, run_dir)
        except TrainingError as exc:
            raise TrainingError(f"{exc}; the last good checkpoint in {run_dir / 'best'} is intact") from None
        finally:
            protocol.close()
        if final.best_epoch == 0:
            raise TrainingError(f"seed {seed}: no epoch was trained (epochs={cfg.epochs}); nothing to evaluate")
        rt.barrier()  # rank 0's best checkpoint is on disk
        return final

    def _scored(self, run_dir: Path) -> dict[str, Any]:
        """{valid, test} of `run_dir/best`: its recorded validation metrics and one test evaluation (rank 0),
        the same on every rank; test None (not evaluated) when the test split is sealed."""
        outcome: dict[str, Any] | None = None
        if self.runtime.is_main:
            best, meta = load_checkpoint(run_dir / "best", map_location=self.device)
            test = None
            if self.seal is None:
                test = score_test_split(
                    best, self.dataset, self.metric_set.name, batch_size=self.data.eval_batch_size, device=self.device
                )
            outcome = {"valid": meta["valid"], "test": test}
        outcome = self.runtime.gather(outcome)[0]
        assert outcome is not None
        return outcome

    def _fit_ensemble(self, seed: int, *, resume: bool) -> SeedResult:
        """A deep ensemble for run seed `seed`: K member fits, one after another, into `seedS/member{j}/`
        (seeds `member_seeds`), then their best checkpoints assembled into ONE `ensemble` checkpoint
        `seedS/best`, evaluated once on validation (its recorded `valid`) and once on test.

        `seedS/ensemble.json` records the size, the member seeds and each finished member (seed, best and
        run epochs, validation metrics), rewritten after each; on resume a finished member is not
        retrained and an interrupted one resumes from its `last` like any seed. Rank 0 assembles.
        """
        k, rt = self.cfg.ensemble, self.runtime
        run_dir = self.out_dir / f"seed{seed}"
        record = run_dir / ENSEMBLE_RECORD
        seeds = member_seeds(seed, k)
        done = self._finished_members(run_dir, seeds) if resume else {}
        if rt.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_record(record, k, seeds, done)  # before member 0: a resume knows this seed is an ensemble
        for j, member_seed in enumerate(seeds):
            if j in done:
                continue
            final = self._train(member_seed, run_dir / f"member{j}", resume=resume)
            if rt.is_main:
                done[j] = {
                    "seed": member_seed,
                    "best_epoch": final.best_epoch,
                    "epochs_run": final.epoch,
                    "valid": read_checkpoint_meta(run_dir / f"member{j}" / "best")["valid"],
                    "seconds_per_epoch": _mean_seconds(final),
                }
                _write_record(record, k, seeds, done)
        if rt.is_main:
            valid = self._assemble(run_dir, seed, k)
            _write_record(record, k, seeds, done, valid=valid)
        rt.barrier()  # the ensemble checkpoint is on disk
        members = rt.gather([done[j] for j in sorted(done)] if rt.is_main else None)[0]
        assert members is not None
        return SeedResult(
            seed=seed,
            best_epoch=max(m["best_epoch"] for m in members),
            epochs_run=max(m["epochs_run"] for m in members),
            seconds_per_epoch=float(np.mean([m["seconds_per_epoch"] for m in members])),
            checkpoint=str(run_dir / "best"),
            members=members,
            **self._scored(run_dir),
        )

    def _finished_members(self, run_dir: Path, seeds: list[int]) -> dict[int, dict[str, Any]]:
        """Members a resumed ensemble seed need not retrain (from `ensemble.json`); DataError when the record
        was written for another ensemble size or other member seeds, or the seed was trained plainly."""
        record = run_dir / ENSEMBLE_RECORD
        if not record.is_file():
            if (run_dir / "last").is_dir():
                raise DataError(
                    "this seed was trained without ensemble; resume it with the same train config",
                    path=run_dir / "last",
                    field="ensemble",
                )
            return {}
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(
                f"not a readable ensemble record ({exc}); train again without --resume", path=record
            ) from None
        if not isinstance(data, dict):
            raise DataError("an ensemble record must be a JSON object", path=record)
        if data.get("size") != len(seeds):
            raise DataError(
                f"recorded ensemble size {data.get('size')!r}, this run asks for ensemble={len(seeds)}; "
                "resume with the recorded size or train again without --resume",
                path=record,
                field="size",
            )
        if data.get("member_seeds") != seeds:
            raise DataError(
                f"recorded member seeds {data.get('member_seeds')!r}, expected {seeds}",
                path=record,
                field="member_seeds",
            )
        done = {}
        for entry in data.get("members") or []:
            j = seeds.index(entry["seed"]) if isinstance(entry, dict) and entry.get("seed") in seeds else -1
            if j >= 0 and (run_dir / f"member{j}" / "best").is_dir():
                done[j] = entry
        return done

    def _assemble(self, run_dir: Path, seed: int, k: int) -> dict[str, float]:
        """Write `run_dir/best`: the `ensemble` of the K members' best checkpoints; returns its validation metrics."""
        shared = {name: getattr(self.model_config, name) for name in SHARED_FIELDS}
        config = build_config(
            "ensemble",
            {**shared, "member": self.model_name, "member_config": config_to_dict(self.model_config), "size": k},
        )
        ensemble = create_model("ensemble", config).to(self.device)
        assert isinstance(ensemble, DeepEnsemble)
        for j, member in enumerate(ensemble.members):
            trained, _ = load_checkpoint(run_dir / f"member{j}" / "best", map_location=self.device)
            member.load_state_dict(trained.state_dict())
        valid = evaluate(
            ensemble,
            self.dataset.split("valid"),
            self.metric_set.name,
            batch_size=self.data.eval_batch_size,
            device=self.device,
        )
        extra = {"seed": seed, "valid": valid, "member_seeds": member_seeds(seed, k)}
        save_checkpoint(run_dir / "best", ensemble, dataset=self.dataset.info, train_config=self.cfg, extra=extra)
        return valid

    def _fit(
        self, model: MSAModel, optimizer: torch.optim.Optimizer, protocol: _Protocol, state: FitState, seed: int
    ) -> FitState:
        cfg, rt = self.cfg, self.runtime
        return fit(
            model,
            self.data,
            optimizer,
            [protocol, *([protocol.averager] if protocol.averager else []), *self.callbacks],
            epochs=cfg.epochs,
            seed=seed,
            state=state,
            runtime=rt,
            grad_clip=cfg.grad_clip,
            loss_fn=supervised_loss,
            transform=self._augment,
            validate=lambda m: protocol.validate(
                lambda: evaluate(
                    m,
                    self.data.valid,
                    self.metric_set.name,
                    batch_size=self.data.eval_batch_size,
                    device=self.device,
                    data=self.data,
                    runtime=rt,
                )
            ),
            checkpoint=protocol.save,
            label=f"seed {seed}",
            progress=cfg.progress,
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

    def _resumable(self, run_dir: Path) -> Path | None:
        """The checkpoint to resume from; rank 0 alone repairs or cleans the folder, then all read it."""
        if self.runtime.is_main:
            latest_resumable(run_dir)
        self.runtime.barrier()
        last = run_dir / "last"
        return last if last.is_dir() else None

    def _averager(self, model: MSAModel, last: Path | None, extra: dict[str, Any]) -> WeightAverage | None:
        """The weight average when `ema_decay` > 0, restored from `last` when resuming."""
        if self.cfg.ema_decay <= 0:
            return None
        averager = WeightAverage(model, self.cfg.ema_decay)
        if last is not None:
            _resume_part(
                averager,
                last,
                extra,
                "averaged",
                option="ema_decay",
                misfit="the weight average does not fit this model",
            )
        return averager

    def _top_k(self, model: MSAModel, last: Path | None, extra: dict[str, Any]) -> TopKAverage | None:
        """The k best checkpoints kept for averaging when `average_top_k` >= 2, restored from `last` when resuming."""
        if self.cfg.average_top_k < 2:
            return None
        top_k = TopKAverage(model, self.cfg.average_top_k, higher_is_better=self.higher_is_better)
        if last is not None:
            _resume_part(
                top_k, last, extra, "top_k", option="average_top_k", misfit="the kept checkpoints do not fit this model"
            )
        return top_k

    def _epoch_end_refresh(self, model: MSAModel, epoch: int) -> Callable[[], None]:
        """Recompute what `model` derives from its weights at epoch end, as after a training epoch
        (train mode, the training split): for weights put in place of the trained ones."""
        data, device = self.data, self.device

        def refresh() -> None:
            model.train()
            model.on_train_epoch_end(epoch, lambda: (b.to(device) for b in data.eval_batches(data.train)))

        return refresh

    def _average_top_k(self, model: MSAModel, top_k: TopKAverage, state: FitState, run_dir: Path) -> None:
        """The uniform average of the k best checkpoints replaces `best` when it validates at least as well.

        The rule: the average is evaluated once on validation (after the model's epoch-end
        statistics are recomputed for it) and kept when its selection score is at least as good
        as the best single checkpoint's (ties keep the average); otherwise `best` stays the
        best single checkpoint. Either way `average.json` in the seed folder records the epochs
        averaged, their scores and the average's validation metrics. Every rank evaluates (the
        evaluation is collective); rank 0 writes.
        """
        if len(top_k.kept) < 2:
            return  # one checkpoint: its average is itself
        data, device, rt = self.data, self.device, self.runtime
        best_single = top_k.kept[0].score
        with top_k.applied(self._epoch_end_refresh(model, state.epoch)):
            metrics = evaluate(
                model,
                data.valid,
                self.metric_set.name,
                batch_size=data.eval_batch_size,
                device=device,
                data=data,
                runtime=rt,
            )
            score = metrics[self.select_key]
            keep = not math.isnan(score) and not _is_better(best_single, score, self.higher_is_better)
            if not rt.is_main:
                return
            epochs = [s.epoch for s in top_k.kept]
            if keep:
                extra = {"epoch": state.best_epoch, "seed": state.seed, "valid": metrics, "averaged_epochs": epochs}
                save_checkpoint(run_dir / "best", model, dataset=self.dataset.info, train_config=self.cfg, extra=extra)
        atomic_write_json(
            run_dir / "average.json",
            {
                "epochs": epochs,
                "scores": [s.score for s in top_k.kept],
                "select_metric": self.select_key,
                "valid": metrics,
                "kept": keep,
            },
        )

    def _restore(
        self, path: Path, model: MSAModel, optimizer: torch.optim.Optimizer
    ) -> tuple[FitState, dict[str, Any]]:
        """The fit state of checkpoint `path` (and its optimizer.pt extras), with model, optimizer and RNG restored."""
        state = FitState.from_dict(read_fit_state(path), path=path / "config.json")
        extra = read_optimizer_state(path, map_location=self.device)
        restored, _ = load_checkpoint(path, map_location=self.device)
        model.load_state_dict(restored.state_dict())
        try:
            optimizer.load_state_dict(extra["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise DataError(
                f"optimizer state does not fit this model's optimizer ({exc}); train again without --resume",
                path=path / "optimizer.pt",
                field="optimizer",
            ) from None
        if extra.get("torch_rng") is not None:
            torch.set_rng_state(extra["torch_rng"])
        return state, extra


def _resume_part(
    part: WeightAverage | TopKAverage, last: Path, extra: dict[str, Any], key: str, *, option: str, misfit: str
) -> None:
    """Load `part` from `extra[key]` of `last/optimizer.pt`; a DataError naming the file and `key` when the
    run was trained without `option` or the stored state does not fit this model."""
    if key not in extra:
        raise DataError(
            f"this run was trained without {option}; resume it with the same train config",
            path=last / "optimizer.pt",
            field=key,
        )
    try:
        part.load_state_dict(extra[key])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{misfit} ({' '.join(str(exc).split()[:20])})", path=last / "optimizer.pt", field=key
        ) from None


class _Protocol(Callback):
    """Validation-only selection, early stopping, best/last checkpoints and logs for one seed."""

    def __init__(
        self,
        trainer: Trainer,
        run_dir: Path,
        model: MSAModel,
        optimizer: torch.optim.Optimizer,
        *,
        fresh: bool,
        averager: WeightAverage | None = None,
        top_k: TopKAverage | None = None,
    ) -> None:
        self.t, self.run_dir, self.model, self.optimizer = trainer, run_dir, model, optimizer
        self.averager = averager  # weight averaging on: validation and `best` use the averaged weights
        self.top_k = top_k  # checkpoint averaging on: the k best evaluated weights are kept
        self.epoch = 0
        self.main = trainer.runtime.is_main
        self.log_path = run_dir / "log.csv"
        if fresh and self.main:
            self.log_path.unlink(missing_ok=True)  # a fresh run does not append to an old run's log
        self.writer = _tensorboard(run_dir) if trainer.cfg.tensorboard and self.main else None
        self.losses: dict[str, float] = {}
        self.metrics: dict[str, float] = {}
        self.improved = False

    def should_stop(self, state: FitState) -> bool:
        return state.bad_epochs >= self.t.cfg.patience

    def on_epoch_end(self, state: FitState, epoch: int, train_losses: dict[str, float]) -> None:
        self.losses, self.epoch = train_losses, epoch

    def validate(self, evaluate_valid: Callable[[], dict[str, float]]) -> dict[str, float]:
        """Validation metrics of the live weights, or of the averaged ones when averaging is on."""
        if self.averager is None:
            return evaluate_valid()
        with self.averager.applied(refresh=self.t._epoch_end_refresh(self.model, self.epoch)):
            return evaluate_valid()

    def on_validation_end(self, state: FitState, epoch: int, metrics: dict[str, float]) -> None:
        self.metrics = metrics
        score = metrics[self.t.select_key]
        self.improved = _is_better(score, state.best, self.t.higher_is_better)
        if self.improved:
            state.best, state.best_epoch, state.bad_epochs = score, epoch, 0
        else:
            state.bad_epochs += 1
        if self.top_k is not None:  # what validation just scored: the live weights, or the EMA's
            self.top_k.offer(score, epoch, self.averager.evaluated if self.averager is not None else None)
        if not self.main:
            return
        row = {
            "epoch": epoch,
            **{f"train_{k}": v for k, v in self.losses.items()},
            **{f"valid_{k}": v for k, v in metrics.items()},
            "seconds": state.epoch_seconds[-1],
        }
        _append_log(self.log_path, row)
        if self.writer is not None:
            for k, v in self.losses.items():
                self.writer.add_scalar(f"train/{k}", v, epoch)
            for k, v in metrics.items():
                self.writer.add_scalar(f"valid/{k}", v, epoch)

    def save(self, state: FitState) -> list[Path]:
        """After each epoch: `best` when it improved, and the resumable `last` (unless save_last is off)."""
        if not self.main:
            return []
        t, written = self.t, []
        if self.improved:
            extra = {"epoch": state.epoch, "seed": state.seed, "valid": self.metrics}
            with self.averager.evaluated_applied() if self.averager is not None else contextlib.nullcontext():
                best = save_checkpoint(
                    self.run_dir / "best", self.model, dataset=t.dataset.info, train_config=t.cfg, extra=extra
                )
            written.append(best)
        if not t.cfg.save_last:
            return written
        resume_state = {"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
        if self.averager is not None:
            resume_state["averaged"] = self.averager.state_dict()
        if self.top_k is not None:
            resume_state["top_k"] = self.top_k.state_dict()
        written.append(
            save_checkpoint(
                self.run_dir / "last",
                self.model,
                dataset=t.dataset.info,
                train_config=t.cfg,
                extra={"fit_state": state.to_dict()},
                optimizer_state=resume_state,
            )
        )
        return written

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _mean_seconds(state: FitState) -> float:
    return float(np.mean(state.epoch_seconds)) if state.epoch_seconds else float("nan")


def _write_record(
    path: Path, size: int, seeds: list[int], done: dict[int, dict[str, Any]], valid: dict[str, float] | None = None
) -> None:
    """`seedS/ensemble.json`: the size, the member seeds, the finished members and (once assembled) the
    ensemble's validation metrics."""
    payload: dict[str, Any] = {"size": size, "member_seeds": seeds, "members": [done[j] for j in sorted(done)]}
    if valid is not None:
        payload["valid"] = valid
    atomic_write_json(path, payload)


def _sampler(name: str) -> Sampler:
    """`TrainConfig.sampler` by name; a `Sampler` object can be given to `Trainer(sampler=...)` instead."""
    if name == "random":
        return RandomBatches()
    if name == "bucket":
        return LengthBuckets()
    if name == "dialogue":
        from msakit.data.dialogue import DialogueBatches

        return DialogueBatches()
    raise ConfigError(f"trainer: sampler must be 'random', 'bucket' or 'dialogue', got {name!r}")


def _is_better(score: float, best: float, higher_is_better: bool) -> bool:
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score > best if higher_is_better else score < best


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
