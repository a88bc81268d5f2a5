"""The data contract every msakit model consumes and returns.

Dimension legend used in shape comments across msakit:
    B  batch size
    L  sequence length (per modality: Lt, La, Lv)
    D  feature width (per modality: Dt, Da, Dv)
    M  number of modalities, always in the order of `MODALITIES`
    C  number of classes (1 for regression)

A `Batch` holds, for each modality the dataset provides, a padded feature tensor and
a step mask; a modality the dataset lacks is simply not in `features`. Whether a
modality is present *for one sample* is `present[:, m]`: an absent modality's
features are zeros and its mask is all False, so models may rely on either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

MODALITIES: tuple[str, ...] = ("text", "audio", "visual")


def modality_index(name: str) -> int:
    """Column of `name` in `Batch.present` and in per-modality output tensors."""
    try:
        return MODALITIES.index(name)
    except ValueError:
        raise ValueError(f"unknown modality {name!r}; expected one of {MODALITIES}") from None


@dataclass
class DialogueContext:
    """The preceding turns of each sample's dialogue, carried in `Batch.context`.

    K is the context window: up to K preceding turns, right-aligned (the newest preceding
    turn at index K-1); a sample with fewer has unused slots on the left, mask False.
    A dialogue's first turn has no preceding turn: its mask row is all False.

    dialogue_ids: dialogue of each sample, length B.
    turns:        (B,) long, the sample's turn index within its dialogue.
    speakers:     speaker of each sample, length B ("" when unknown).
    features:     modality -> (B, K, D) each preceding turn's mean-pooled features.
    mask:         (B, K) bool, True where a preceding turn exists.
    present:      (B, K, M) bool, True where that turn has the modality.
    same_speaker: (B, K) bool, True where that turn's speaker is the sample's.
    """

    dialogue_ids: list[str]
    turns: Tensor
    speakers: list[str]
    features: dict[str, Tensor]
    mask: Tensor
    present: Tensor
    same_speaker: Tensor

    @property
    def window(self) -> int:
        return int(self.mask.shape[1])

    def to(self, device: torch.device | str) -> DialogueContext:
        return replace(
            self,
            turns=self.turns.to(device),
            features={m: x.to(device) for m, x in self.features.items()},
            mask=self.mask.to(device),
            present=self.present.to(device),
            same_speaker=self.same_speaker.to(device),
        )

    def drop_modalities(self, modalities: Iterable[str], samples: Tensor) -> DialogueContext:
        """A copy where `modalities` are absent from the context of `samples` ((B,) bool)."""
        features, present = dict(self.features), self.present.clone()
        for m in modalities:
            if m not in features:
                continue
            keep = ~samples
            features[m] = features[m] * keep[:, None, None].to(features[m].dtype)
            present[:, :, modality_index(m)] &= keep[:, None]
        return replace(self, features=features, present=present)


@dataclass
class Batch:
    """A padded mini-batch of multimodal samples.

    features: modality -> (B, L, D) float tensor, zero where padded or absent.
    masks:    modality -> (B, L) bool tensor, True on valid steps.
    present:  (B, M) bool, True where the sample has that modality at all.
    labels:   (B,) float for regression, (B,) long for classification.
    ids:      sample ids, length B.
    raw_text: the untokenised transcripts, when the dataset has them.
    targets:  further named targets (e.g. unimodal labels "label_T"), each (B,).
    context:  the preceding dialogue turns (`DialogueContext`), when the data is dialogue.
    """

    features: dict[str, Tensor]
    masks: dict[str, Tensor]
    present: Tensor
    labels: Tensor
    ids: list[str]
    raw_text: list[str] | None = None
    targets: dict[str, Tensor] = field(default_factory=dict)
    context: DialogueContext | None = None

    def __post_init__(self) -> None:
        unknown = set(self.features) - set(MODALITIES)
        if unknown:
            raise ValueError(f"Batch has unknown modalities {sorted(unknown)}; expected {MODALITIES}")
        if set(self.masks) != set(self.features):
            raise ValueError("Batch.masks must have exactly the modalities of Batch.features")

    @property
    def size(self) -> int:
        return self.labels.shape[0]  # no int(): a trace (ONNX export) keeps the batch axis dynamic

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities carried by this batch, in canonical order."""
        return tuple(m for m in MODALITIES if m in self.features)

    def has(self, modality: str) -> bool:
        return modality in self.features

    def present_mask(self, modality: str) -> Tensor:
        """(B,) bool: which samples have `modality`."""
        return self.present[:, modality_index(modality)]

    def to(self, device: torch.device | str) -> Batch:
        return replace(
            self,
            features={m: x.to(device) for m, x in self.features.items()},
            masks={m: x.to(device) for m, x in self.masks.items()},
            present=self.present.to(device),
            labels=self.labels.to(device),
            targets={k: v.to(device) for k, v in self.targets.items()},
            context=self.context.to(device) if self.context is not None else None,
        )

    def drop_modalities(self, modalities: Iterable[str], samples: Tensor | None = None) -> Batch:
        """A copy where `modalities` are absent for `samples` ((B,) bool; default all).

        Features are zeroed and masks cleared, so a model cannot read a removed modality
        through either channel.
        """
        samples = torch.ones(self.size, dtype=torch.bool, device=self.present.device) if samples is None else samples
        features, masks, present = dict(self.features), dict(self.masks), self.present.clone()
        for m in modalities:
            if m not in features:
                continue
            keep = ~samples
            features[m] = features[m] * keep[:, None, None].to(features[m].dtype)
            masks[m] = masks[m] & keep[:, None]
            present[:, modality_index(m)] &= keep
        context = self.context.drop_modalities(modalities, samples) if self.context is not None else None
        return replace(self, features=features, masks=masks, present=present, context=context)


@dataclass
class ModelOutput:
    """What every model returns.

    prediction: (B,) for regression, (B, C) logits for classification.
    modality_weights: (B, M) per-sample contribution of each modality (explanations),
        zero for absent modalities; None when the model has no such notion.
    uncertainty: (B, M) per-modality uncertainty, None when not estimated.
    aux_losses: named scalar losses the trainer adds to the task loss (already
        weighted by the model's config).
    features: named intermediate representations (e.g. "fused": (B, H)).
    explanations: further named per-sample tensors (e.g. "dominant": (B,) long).
    """

    prediction: Tensor
    modality_weights: Tensor | None = None
    uncertainty: Tensor | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    features: dict[str, Tensor] = field(default_factory=dict)
    explanations: dict[str, Tensor] = field(default_factory=dict)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid steps: (B, L, D), (B, L) -> (B, D); zero where no step is valid."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
