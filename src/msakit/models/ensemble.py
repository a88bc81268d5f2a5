"""Deep ensemble: K independently trained copies of one model, predictions averaged.

Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable Predictive Uncertainty
Estimation using Deep Ensembles" (NeurIPS 2017): train K networks of the same
architecture from independent random initialisations (and, here, independent batch
orders and augmentations), then average their predictive distributions. Averaging
independent fits removes the part of the error that is run-to-run variance, which is
what keeps msakit's seed models just under their linear probes (benchmarks/seed_variance.py).

msakit does not train this model directly: `msakit train --model M -t ensemble=K` trains
K ordinary fits of M per seed (`msakit.training.trainer`) and assembles their best
checkpoints into one `ensemble` checkpoint, which every reader of checkpoints (eval,
predict, robustness, analyze, the service, export) loads like any other.

Combination (uniform: no member is weighted by its validation score, which would be one
more decision taken on a small validation split):

- regression: the mean of the members' predictions;
- classification: log of the mean of the members' softmax probabilities (eq. 2 of the
  paper, the mixture's predictive distribution), returned as logits;
- `modality_weights` / `uncertainty`: the members' mean when every member returns them,
  else None; every floating-point explanation all members report: its mean;
- `explanations["ensemble_std"]` (B,): the members' disagreement, the population std
  (ddof 0) of their predictions (classifiers: of each member's probability of the class
  the ensemble predicts); 0 when the members agree exactly;
- `aux_losses`: the mean of each loss every member reports (only used when the assembled
  model is itself trained, as the registry-wide model tests do).

Dimensions: K members, B batch, C classes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig
from msakit.errors import ConfigError
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import build_config, get_model_class, register_model

#: the `ModelConfig` fields the ensemble and its members share (data widths, task, sizes); the
#: ensemble's are the members' defaults, and a member config that disagrees is refused
SHARED_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("feature_norm", "probe_base"))


@dataclass
class EnsembleConfig(ModelConfig):
    member: str = "late_fusion"  # registered name of the members' model
    # the members' config fields (a checkpoint stores the member's full config here); unset fields
    # take the ensemble's shared fields (SHARED_FIELDS), then the member's defaults
    member_config: dict[str, Any] = field(default_factory=dict)
    size: int = 2  # K, the number of members
    # the ensemble itself never normalises: each member holds its own fitted input normaliser
    feature_norm: bool = False
    # nor adds a probe base: each member that has one adds its own (the mean then has it once)
    probe_base: bool = False


def member_config(config: EnsembleConfig) -> ModelConfig:
    """The members' validated config; ConfigError when it cannot form an ensemble of `config`."""
    if config.member == "ensemble" or not config.member:
        raise ConfigError(f"model 'ensemble': member must name a registered model, got {config.member!r}")
    shared = {k: getattr(config, k) for k in SHARED_FIELDS}
    built = build_config(config.member, {**shared, **config.member_config})
    differ = [k for k in SHARED_FIELDS if getattr(built, k) != shared[k]]
    if differ:
        k = differ[0]
        raise ConfigError(
            f"model 'ensemble': member_config {k}={getattr(built, k)!r} disagrees with the ensemble's {k}={shared[k]!r}"
        )
    return built


@register_model("ensemble")
class DeepEnsemble(MSAModel):
    """K members of one registered model; the prediction is their mean (module docstring)."""

    config_class = EnsembleConfig
    config: EnsembleConfig

    @classmethod
    def capabilities_for(cls, config: ModelConfig) -> Capabilities:
        assert isinstance(config, EnsembleConfig)
        built = member_config(config)
        return get_model_class(config.member).capabilities_for(built)

    def __init__(self, config: EnsembleConfig) -> None:
        if config.size < 2:
            raise ConfigError(f"model 'ensemble': size must be at least 2, got {config.size}")
        if config.feature_norm:
            raise ConfigError("model 'ensemble': feature_norm must be false (each member normalises its own inputs)")
        if config.probe_base:
            raise ConfigError("model 'ensemble': probe_base must be false (each member adds its own probe base)")
        super().__init__(config)
        built = member_config(config)
        cls = get_model_class(config.member)
        self.members = nn.ModuleList(cls(built) for _ in range(config.size))

    def forward(self, batch: Batch) -> ModelOutput:
        outs = [member(batch) for member in self.members]
        k = len(outs)
        if self.is_classifier:
            log_probs = torch.stack([o.prediction.float().log_softmax(-1) for o in outs])  # (K, B, C)
            prediction = torch.logsumexp(log_probs, 0) - math.log(k)  # log mean_k p_k, (B, C)
            with torch.no_grad():
                chosen = prediction.argmax(-1)  # (B,)
                picked = log_probs.exp().gather(-1, chosen[None, :, None].expand(k, -1, 1)).squeeze(-1)  # (K, B)
                spread = picked.std(0, correction=0)
        else:
            preds = torch.stack([o.prediction for o in outs])  # (K, B)
            prediction = preds.mean(0)
            spread = preds.detach().std(0, correction=0)
        explanations = _common_mean([o.explanations for o in outs], floating_only=True)
        explanations["ensemble_std"] = spread
        return ModelOutput(
            prediction=prediction,
            modality_weights=_mean_or_none([o.modality_weights for o in outs]),
            uncertainty=_mean_or_none([o.uncertainty for o in outs]),
            aux_losses=_common_mean([o.aux_losses for o in outs]),
            explanations=explanations,
        )


def _mean_or_none(values: list[Tensor | None]) -> Tensor | None:
    """The mean of `values` when every member returned one, else None. The members are one model with
    one config, so what they return has one shape (not compared here: under an ONNX trace shapes are
    traced values, and a set of them never has one element)."""
    tensors = [v for v in values if v is not None]
    return torch.stack(tensors).mean(0) if len(tensors) == len(values) else None


def _common_mean(dicts: list[dict[str, Tensor]], *, floating_only: bool = False) -> dict[str, Tensor]:
    """name -> mean over the members, for each name every member reports."""
    out = {}
    for name in dicts[0]:
        values = [d.get(name) for d in dicts]
        if floating_only and any(v is not None and not v.is_floating_point() for v in values):
            continue
        mean = _mean_or_none(values)
        if mean is not None:
            out[name] = mean
    return out


__all__ = ["SHARED_FIELDS", "DeepEnsemble", "EnsembleConfig", "member_config"]
