"""The base class of every msakit model and its training hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from msakit.batch import MODALITIES, Batch, ModelOutput
from msakit.config import ModelConfig
from msakit.errors import ConfigError
from msakit.layers.normalize import FeatureNormalizer, normalize_inputs
from msakit.layers.probe_base import ProbeBase, ProbeFit

if TYPE_CHECKING:
    from msakit.data.core import SplitData
    from msakit.data.stats import DatasetStats


def concordance_loss(pred: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """1 − Lin's concordance correlation coefficient of `pred` and `y` over the batch (population moments).

    CCC = 2·cov(p, y) / (var p + var y + (mean p − mean y)²): 1 only when p = y, so unlike
    Pearson's r it also penalises scale and offset (the AVEC challenges' loss for continuous
    affect). Hand-written (four moments): torchmetrics, the library that has it, is not a dependency.
    A batch of fewer than 2 samples has no correlation: the term is 0 (still in the graph).
    Constant predictions give cov = 0 and a finite gradient; `eps` keeps 0/0 away when both
    sides are constant and equal. Shape: pred and y (B,).
    """
    if pred.numel() < 2:
        return pred.sum() * 0.0
    p, t = pred.float().reshape(-1), y.float().reshape(-1)
    dp, dt = p - p.mean(), t - t.mean()
    cov = (dp * dt).mean()
    denom = dp.pow(2).mean() + dt.pow(2).mean() + (p.mean() - t.mean()).pow(2)
    return 1.0 - 2.0 * cov / (denom + eps)


def sign_loss(pred: Tensor, y: Tensor) -> Tensor:
    """Logistic loss on the sign margin, log(1 + exp(−sign(y)·pred)), averaged over the non-zero labels.

    The binary view of a regression label that Non0 Acc-2 scores (MMSA's metricsTop drops the
    zeros and thresholds at 0): pushes each prediction to the side of zero its label is on,
    strongest near zero, and fades once the margin is a few label units wide. A batch with no
    non-zero label has no sign to learn: the term is 0 (still in the graph). Shape: pred, y (B,).
    """
    p, t = pred.float().reshape(-1), y.float().reshape(-1)
    nonzero = t != 0
    if not bool(nonzero.any()):
        return pred.sum() * 0.0
    return nn.functional.softplus(-torch.sign(t[nonzero]) * p[nonzero]).mean()


@dataclass(frozen=True)
class Capabilities:
    """What a model needs and does, declared on the class and read by the trainer, the
    robustness suite, the CLI and the service (never guessed from config attributes).

    reads_raw_text: the model (re-)encodes `Batch.raw_text` itself, so text perturbations
        must be applied to the raw text before encoding, not only to the features.
    min_modalities: modalities the model cannot run without (checked at construction).
    needs_dialogue_context: the model reads `Batch.context` (preceding turns).
    needs_frames: the model reads raw frames rather than pooled visual features.
    padding_invariant: in eval mode a sample's output depends neither on the other samples of
        its batch nor on how far the batch is padded, so inference may batch samples by length
        (`msakit predict`); tests/test_speed.py checks it for every model that declares it.
    """

    reads_raw_text: bool = False
    min_modalities: int = 1
    needs_dialogue_context: bool = False
    needs_frames: bool = False
    padding_invariant: bool = True


class MSAModel(nn.Module):
    """A multimodal sentiment model: `forward(Batch) -> ModelOutput`.

    Subclasses set `config_class` and implement `forward`. Training behaviour that is
    specific to one model (label generation, curricula, staged training) lives in the
    hooks below, which the one trainer calls; the trainer never reaches inside a model.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    model_name: ClassVar[str] = ""
    #: what the model needs and does; override on the class (see `Capabilities`), and
    #: `capabilities_for` where a config field switches one (e.g. re-encoding raw text)
    capabilities: ClassVar[Capabilities] = Capabilities()

    @classmethod
    def capabilities_for(cls, config: ModelConfig) -> Capabilities:
        """The capabilities of this model class built with `config` (default: the class's)."""
        return cls.capabilities

    @property
    def declared_capabilities(self) -> Capabilities:
        """What this instance needs and does; robustness, the CLI and the service read this."""
        return self.capabilities_for(self.config)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        mods = tuple(config.modalities)
        bad = [m for m in mods if m not in MODALITIES]
        if bad or not mods:
            raise ConfigError(f"model {self.model_name!r}: modalities must be a non-empty subset of {MODALITIES}")
        need = self.capabilities_for(config).min_modalities
        if len(mods) < need:
            raise ConfigError(
                f"model {self.model_name!r} needs at least {need} modalities, "
                f"the data provides {len(mods)}: {list(mods)}"
            )
        # inputs are normalised before `forward` runs (msakit.layers.normalize), fitted by `start_fit`
        self.input_norm: FeatureNormalizer | None = None
        if config.feature_norm:
            self.input_norm = FeatureNormalizer({m: config.dim(m) for m in mods})
            self.register_forward_pre_hook(normalize_inputs)
        # the probe floor added to the prediction (msakit.layers.probe_base), fitted by `fit_probe_base`
        self.probe_base: ProbeBase | None = None
        if config.probe_base:
            self.probe_base = ProbeBase({m: config.dim(m) for m in mods}, max(config.num_classes, 1))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`nn.Module.__call__` (hooks, then `forward`), plus the probe base on the raw batch when on."""
        out = super().__call__(*args, **kwargs)
        if self.probe_base is not None and args and isinstance(args[0], Batch) and isinstance(out, ModelOutput):
            out = self.probe_base.add_to(args[0], out, classifier=self.is_classifier)
        return out

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.config.modalities)

    @property
    def is_classifier(self) -> bool:
        return self.config.num_classes > 1

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def bound_prediction(self, raw: Tensor) -> Tensor:
        """(B, 1) head output -> (B,) prediction; logits pass through for classifiers."""
        return raw if self.is_classifier else raw.squeeze(-1)

    # ---- hooks the trainer calls; defaults do nothing -------------------------------
    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups (override to give an encoder its own rate)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr, "weight_decay": weight_decay}]

    def load_pretrained(self) -> None:
        """Load the pretrained parts the config names (stage-1 folders, pretrained heads).

        `__init__` only builds modules; the trainer calls this once after construction
        when training starts fresh (not on resume, not when a checkpoint is loaded: the
        checkpoint's state dict already holds those weights).
        """

    def on_fit_start(self, stats: DatasetStats) -> None:
        """Called once before the first epoch with statistics of the training split.

        Models never see a loader: what they need from the data (ids and labels for
        label memories, per-modality feature statistics) is in `stats`.
        """

    def start_fit(self, stats: Any) -> None:
        """Fit the input normaliser on `stats` (a `msakit.data.stats.DatasetStats` of the training
        split), then call `on_fit_start`. The trainer calls this once before the first epoch.

        With normalisation on, `on_fit_start` receives ``stats.normalized()``: the model's
        inputs already have centre 0 and scale 1, so a model that standardises by itself
        does not do it twice.
        """
        if self.input_norm is not None:
            self.input_norm.fit(stats)
            stats = stats.normalized()
        self.on_fit_start(stats)

    def fit_probe_base(
        self, train: SplitData, valid: SplitData, metric_set: str, *, fitted: ProbeFit | None = None
    ) -> ProbeFit | None:
        """Fit the probe base (`ModelConfig.probe_base`) on the raw `train` split, its probe chosen on
        `valid` as `msakit probe` chooses, with the training samples' out-of-fold scores
        (msakit.layers.probe_base), and return that fit; `fitted`, an earlier return on the same data,
        is loaded instead of fitting again. Nothing (None) when the base is off. The trainer calls this
        before the first epoch of every fit (a resumed one too: the out-of-fold scores are not in the
        checkpoint)."""
        if self.probe_base is None:
            return None
        if fitted is None:
            from msakit.probe import fit_linear_map, out_of_fold_scores

            linear = fit_linear_map(
                train, valid, self.modalities, metric_set=metric_set, num_classes=self.config.num_classes
            )
            fitted = (linear, out_of_fold_scores(train, linear))
        self.probe_base.fit(fitted[0])
        self.probe_base.set_train_scores(train.ids, fitted[1])
        return fitted

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Called at the start of each training epoch (curricula, schedules)."""

    def on_train_batch_end(self, batch: Batch, output: ModelOutput, epoch: int) -> None:
        """Called after each optimizer step (e.g. to update label memories)."""

    def on_train_epoch_end(self, epoch: int, train_batches: Callable[[], Iterable[Batch]]) -> None:
        """Called after an epoch's last optimizer step, before validation and the checkpoint.

        `train_batches()` iterates over the training split in evaluation order (inputs not
        yet normalised: pass each batch through `self(...)`, or `self.input_norm` first), for
        statistics recomputed exactly with the epoch's final weights (as precise batch norm
        does); nothing is read unless it is called.
        """

    def task_loss(self, pred: Tensor, y: Tensor) -> Tensor:
        """The supervised loss of predictions `pred` against labels `y`.

        Models override only when their paper says otherwise.
        """
        if self.is_classifier:
            return nn.functional.cross_entropy(pred, y.long())
        if self.config.task_loss == "mse":
            loss = nn.functional.mse_loss(pred, y.float())
        elif self.config.task_loss == "l1":
            loss = nn.functional.l1_loss(pred, y.float())
        else:
            raise ConfigError(
                f"model {self.model_name!r}: task_loss must be 'l1' or 'mse', got {self.config.task_loss!r}"
            )
        if self.config.ccc_weight > 0:  # off: exactly the plain loss (no extra op in the graph)
            loss = loss + self.config.ccc_weight * concordance_loss(pred, y.float())
        if self.config.sign_weight > 0:  # off: exactly the plain loss, as for ccc_weight
            loss = loss + self.config.sign_weight * sign_loss(pred, y.float())
        return loss

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def predict(self, batch: Batch) -> ModelOutput:
        was = self.training
        self.eval()
        try:
            return self(batch)
        finally:
            self.train(was)
