"""Registered, seeded, composable perturbations of a `Batch`.

A perturbation is a frozen dataclass called as ``perturbation(batch, rng) -> batch``
with a `torch.Generator`; it never modifies its input. The same signature is the
trainer's ``train_transform``, so every perturbation works at training time as it is;
`bind(perturbation, seed)` turns one into the ``batch -> batch`` transform that
`training.evaluate` takes, with a fresh generator, so an evaluation is deterministic
for a seed (the test loader is not shuffled).

Semantics (see docs/robustness.md for the protocols built on them):

* ``missing`` / `StepMissing` — MMSA's random step-level missing: each valid step of a
  modality is dropped independently with probability r, its features zeroed and its
  mask cleared (for text the token is masked, for audio/visual the frame zeroed and
  masked). A sample left with no valid step loses the modality (``present`` False), so
  rate 1.0 *is* whole-modality removal. Uniform draws are made whether or not a step is
  dropped, so with one seed the dropped set at rate r is a subset of the one at r' > r
  (common random numbers: curves over rates are monotone in what they remove).
* ``modality_missing`` / `ModalityMissing` — MissBench's whole-modality missing per
  sample: each sample loses each modality independently with probability r (one shared
  rate, or per-modality rates for the imbalanced setting); a lost modality is gone for
  that sample (features zeroed, mask cleared, present False). A sample whose draw would
  remove every modality it has keeps the one with the highest draw (every sample keeps
  at least one modality, as in MissBench's protocol).
* ``gaussian_noise`` — additive Gaussian noise on valid steps at a signal-to-noise ratio
  in dB, the signal power measured per sample and modality.
* ``temporal_shuffle`` — valid steps of a sample permuted (order-blind models are
  unaffected, which is itself a finding).
* ``text_noise`` — character typos and word drops on `Batch.raw_text`. Only models that
  encode raw text (``Capabilities.reads_raw_text``) see it; for precomputed features use
  `noisy_texts` on the transcripts *before* encoding.
* `raw_text_counterpart(p)` — what a feature-level perturbation means for the raw text
  that such a model re-encodes: step missing at r → each word dropped with probability
  r; Gaussian noise → a typo per word with probability = the noise fraction; temporal
  shuffle → the words of the chosen samples permuted; spectrum at s → word drops and
  typos at s. The robustness protocols apply it before the model re-encodes the text.
* ``spectrum`` — QA-MoE's continuous reliability spectrum: one strength s ∈ [0, 1] per
  sample drives both missingness (steps dropped with probability s) and noise (noise
  fraction s of the total power, i.e. SNR = (1 - s) / s); s = 0 is clean, s = 1 removes.
* ``random_missing_rate`` — training-time augmentation: a per-sample (and per-modality)
  rate r ~ U(0, max_rate), then step-level missing at r.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from msakit.batch import MODALITIES, Batch, modality_index
from msakit.errors import ConfigError


class RobustnessError(ConfigError):
    """A robustness protocol or perturbation asked for something impossible (CLI exit 2)."""


class Perturbation(Protocol):
    """``(batch, rng) -> batch``; must not modify `batch`."""

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch: ...


_PERTURBATIONS: dict[str, type[Any]] = {}


def register_perturbation(name: str) -> Callable[[type[Any]], type[Any]]:
    def wrap(cls: type[Any]) -> type[Any]:
        if name in _PERTURBATIONS:
            raise ValueError(f"perturbation {name!r} is registered twice")
        cls.perturbation_name = name
        _PERTURBATIONS[name] = cls
        return cls

    return wrap


def list_perturbations() -> list[str]:
    return sorted(_PERTURBATIONS)


def create_perturbation(name: str, **params: Any) -> Perturbation:
    try:
        cls = _PERTURBATIONS[name]
    except KeyError:
        raise RobustnessError(f"unknown perturbation {name!r}; registered: {', '.join(list_perturbations())}") from None
    return cls(**params)  # type: ignore[no-any-return,unused-ignore]


def bind(perturbation: Perturbation, seed: int) -> Callable[[Batch], Batch]:
    """A ``batch -> batch`` transform with its own generator seeded with `seed`."""
    rng = torch.Generator().manual_seed(int(seed))
    return lambda batch: perturbation(batch, rng)


def check_rate(value: float, name: str = "rate") -> float:
    """`value` as a float, or RobustnessError naming the allowed range [0, 1]."""
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise RobustnessError(f"{name} must be in [0, 1] (the allowed range), got {value}")
    return value


def check_modalities(modalities: Iterable[str]) -> tuple[str, ...]:
    mods = tuple(modalities)
    bad = [m for m in mods if m not in MODALITIES]
    if bad:
        raise RobustnessError(f"unknown modality {bad[0]!r}; expected one of {MODALITIES}")
    return tuple(m for m in MODALITIES if m in mods)  # canonical order, no duplicates


def _targets(batch: Batch, modalities: tuple[str, ...]) -> tuple[str, ...]:
    """The batch's modalities restricted to `modalities` (empty = every modality)."""
    return tuple(m for m in batch.modalities if not modalities or m in modalities)


def _with_steps(batch: Batch, features: dict[str, Tensor], masks: dict[str, Tensor]) -> Batch:
    """`batch` with new features/masks; a sample left without a valid step loses the modality."""
    out = replace(batch, features=features, masks=masks)
    for m in batch.modalities:
        emptied = batch.present_mask(m) & ~masks[m].any(dim=1)
        if emptied.any():
            out = out.drop_modalities([m], emptied)
    return out


def _signal_power(x: Tensor, mask: Tensor) -> Tensor:
    """(B, L, D), (B, L) -> (B,) mean squared feature value over valid steps."""
    steps = mask.sum(1).clamp_min(1).to(x.dtype) * x.shape[-1]
    return (x.pow(2) * mask.unsqueeze(-1).to(x.dtype)).sum((1, 2)) / steps


# ---- whole-modality and step-level missingness ---------------------------------------------


@register_perturbation("drop")
@dataclass(frozen=True)
class DropModalities:
    """Remove `modalities` for every sample (features zeroed, masks cleared, present False)."""

    modalities: tuple[str, ...]
    perturbation_name: ClassVar[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", check_modalities(self.modalities))

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        return batch.drop_modalities(self.modalities)


@dataclass(frozen=True)
class _MissingRates:
    """The rates of a missing-data perturbation: a shared `rate` over `modalities` (empty =
    every modality of the batch), overridden per modality by `rates`."""

    rate: float = 0.0
    modalities: tuple[str, ...] = ()
    rates: Mapping[str, float] = field(default_factory=dict)
    perturbation_name: ClassVar[str]

    def __post_init__(self) -> None:
        check_rate(self.rate)
        object.__setattr__(self, "modalities", check_modalities(self.modalities))
        check_modalities(self.rates)
        for m, r in self.rates.items():
            check_rate(r, f"rate of {m}")

    def rate_of(self, modality: str) -> float:
        if modality in self.rates:
            return float(self.rates[modality])
        return float(self.rate) if not self.modalities or modality in self.modalities else 0.0


@register_perturbation("missing")
@dataclass(frozen=True)
class StepMissing(_MissingRates):
    """MMSA step-level missing at `rate` per modality.

    rate: the shared rate, applied to `modalities` (empty = every modality of the batch).
    rates: per-modality rates (step-level imbalanced missing; not MissBench's imbalanced
        setting, which removes whole modalities per sample: `ModalityMissing`); overrides
        `rate` for the modalities it names.
    """

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        features, masks = dict(batch.features), dict(batch.masks)
        for m in batch.modalities:
            # drawn for every modality, perturbed or not: common random numbers across conditions
            u = torch.rand(batch.masks[m].shape, generator=rng)
            r = self.rate_of(m)
            if r <= 0.0:
                continue  # rate 0 leaves the batch bit-identical
            keep = masks[m] & (u >= r).to(masks[m].device)  # u < 1, so r = 1 drops every step
            masks[m] = keep
            features[m] = features[m] * keep.unsqueeze(-1).to(features[m].dtype)
        return _with_steps(batch, features, masks)


@register_perturbation("modality_missing")
@dataclass(frozen=True)
class ModalityMissing(_MissingRates):
    """MissBench whole-modality missing per sample.

    rate: the shared rate, applied to `modalities` (empty = every modality of the batch).
    rates: per-modality rates (the imbalanced setting); overrides `rate` for the
        modalities it names. Every sample keeps at least one of the modalities it has.
    """

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        u = torch.rand(batch.size, len(MODALITIES), generator=rng)  # one draw per sample and modality
        rates = torch.tensor([self.rate_of(m) if m in batch.modalities else 0.0 for m in MODALITIES])
        present = batch.present.cpu()
        lose = (u < rates[None, :]) & present  # (B, M)
        # a sample that would lose everything it has keeps its modality with the highest draw
        everything = present.any(1) & ~(present & ~lose).any(1)
        if everything.any():
            best = u.masked_fill(~present, -1.0).argmax(1)  # (B,)
            spared = torch.zeros_like(lose)
            spared[torch.arange(batch.size), best] = True
            lose &= ~(spared & everything[:, None])
        out = batch
        for m in batch.modalities:
            rows = lose[:, modality_index(m)]
            if rows.any():
                out = out.drop_modalities([m], rows.to(batch.present.device))
        return out


@register_perturbation("random_missing_rate")
@dataclass(frozen=True)
class RandomMissingRate:
    """Training augmentation: per-sample rate r ~ U(0, max_rate), then step-level missing at r.

    per_modality: draw one rate per sample *and* modality (else one per sample).
    keep_one: a sample that would lose every modality keeps its original inputs.
    """

    max_rate: float = 0.9
    per_modality: bool = True
    keep_one: bool = True
    perturbation_name: ClassVar[str]

    def __post_init__(self) -> None:
        check_rate(self.max_rate, "max_rate")

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        shape = (batch.size, len(MODALITIES)) if self.per_modality else (batch.size, 1)
        rates = (torch.rand(shape, generator=rng) * self.max_rate).expand(batch.size, len(MODALITIES))
        features, masks = dict(batch.features), dict(batch.masks)
        for m in batch.modalities:
            u = torch.rand(batch.masks[m].shape, generator=rng)
            keep = masks[m] & (u >= rates[:, modality_index(m), None]).to(masks[m].device)
            masks[m] = keep
            features[m] = features[m] * keep.unsqueeze(-1).to(features[m].dtype)
        out = _with_steps(batch, features, masks)
        if self.keep_one:
            out = _restore_empty(batch, out)
        return out


def _restore_empty(original: Batch, perturbed: Batch) -> Batch:
    """Samples that had a modality in `original` but none in `perturbed` get `original` back."""
    lost = original.present.any(1) & ~perturbed.present.any(1)  # (B,)
    if not lost.any():
        return perturbed
    rows = lost.to(perturbed.present.device)
    features = {m: torch.where(rows[:, None, None], original.features[m], x) for m, x in perturbed.features.items()}
    masks = {m: torch.where(rows[:, None], original.masks[m], x) for m, x in perturbed.masks.items()}
    present = torch.where(rows[:, None], original.present, perturbed.present)
    return replace(perturbed, features=features, masks=masks, present=present)


# ---- noise ---------------------------------------------------------------------------------


def snr_to_noise_fraction(snr_db: float) -> float:
    """Noise power / (signal + noise power) for an SNR in dB: inf -> 0, 0 dB -> 0.5."""
    return 0.0 if math.isinf(snr_db) and snr_db > 0 else 1.0 / (1.0 + 10.0 ** (snr_db / 10.0))


@register_perturbation("gaussian_noise")
@dataclass(frozen=True)
class GaussianNoise:
    """Additive Gaussian noise on valid steps: σ² = P / 10^(snr_db / 10), P per sample and modality."""

    snr_db: float = 10.0
    modalities: tuple[str, ...] = ()
    perturbation_name: ClassVar[str]

    def __post_init__(self) -> None:
        if math.isnan(self.snr_db):
            raise RobustnessError("snr_db must be a number (dB) or inf, got nan")
        object.__setattr__(self, "modalities", check_modalities(self.modalities))

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        features = dict(batch.features)
        targets = _targets(batch, self.modalities)
        for m in batch.modalities:
            eps = torch.randn(features[m].shape, generator=rng).to(features[m])
            if m not in targets or (math.isinf(self.snr_db) and self.snr_db > 0):
                continue
            x, mask = features[m], batch.masks[m]
            sigma = (_signal_power(x, mask) / 10.0 ** (self.snr_db / 10.0)).sqrt()  # (B,)
            features[m] = x + sigma[:, None, None] * eps * mask.unsqueeze(-1).to(x.dtype)
        return replace(batch, features=features)


@register_perturbation("temporal_shuffle")
@dataclass(frozen=True)
class TemporalShuffle:
    """With probability `rate` per sample and modality, permute that sample's valid steps."""

    rate: float = 1.0
    modalities: tuple[str, ...] = ()
    perturbation_name: ClassVar[str]

    def __post_init__(self) -> None:
        check_rate(self.rate)
        object.__setattr__(self, "modalities", check_modalities(self.modalities))

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        features = dict(batch.features)
        for m in _targets(batch, self.modalities):
            chosen = torch.rand(batch.size, generator=rng) < self.rate
            if not chosen.any():
                continue
            x = features[m].clone()
            for i in torch.nonzero(chosen).flatten().tolist():
                pos = torch.nonzero(batch.masks[m][i]).flatten()  # valid steps, wherever they are
                x[i, pos] = features[m][i, pos[torch.randperm(len(pos), generator=rng)]]
            features[m] = x
        return replace(batch, features=features)


# ---- raw-text noise ------------------------------------------------------------------------


def _typo(word: str, rnd: random.Random) -> str:
    """One character-level edit: swap two neighbours, delete, insert or substitute a letter."""
    if not word:
        return word
    kind = rnd.randrange(4) if len(word) > 1 else rnd.choice((2, 3))
    i = rnd.randrange(len(word))
    letter = rnd.choice(string.ascii_lowercase)
    if kind == 0:
        i = min(i, len(word) - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + letter + word[i:]
    return word[:i] + letter + word[i + 1 :]


def noisy_text(text: str, rate: float, rnd: random.Random, *, typos: bool = True, word_drops: bool = True) -> str:
    """Each word is dropped with probability `rate` (if `word_drops`), else given a typo with
    probability `rate` (if `typos`)."""
    out = []
    for word in text.split():
        if word_drops and rnd.random() < rate:
            continue
        out.append(_typo(word, rnd) if typos and rnd.random() < rate else word)
    return " ".join(out)


def noisy_texts(
    texts: Iterable[str], rate: float, *, seed: int = 0, typos: bool = True, word_drops: bool = True
) -> list[str]:
    """Noisy copies of transcripts, for use *before* encoding text features (deterministic per seed)."""
    check_rate(rate)
    rnd = random.Random(seed)
    return [noisy_text(t, rate, rnd, typos=typos, word_drops=word_drops) for t in texts]


@register_perturbation("text_noise")
@dataclass(frozen=True)
class TextNoise:
    """Typos and word drops on `Batch.raw_text` (a no-op for models reading precomputed features)."""

    rate: float = 0.1
    typos: bool = True
    word_drops: bool = True
    perturbation_name: ClassVar[str]

    def __post_init__(self) -> None:
        check_rate(self.rate)

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        if batch.raw_text is None:
            return batch
        rnd = random.Random(int(torch.randint(2**31 - 1, (1,), generator=rng)))
        texts = [noisy_text(t, self.rate, rnd, typos=self.typos, word_drops=self.word_drops) for t in batch.raw_text]
        return replace(batch, raw_text=texts)


@register_perturbation("word_shuffle")
@dataclass(frozen=True)
class WordShuffle:
    """With probability `rate` per sample, permute the words of `Batch.raw_text`."""

    rate: float = 1.0
    perturbation_name: ClassVar[str]

    def __post_init__(self) -> None:
        check_rate(self.rate)

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        if batch.raw_text is None:
            return batch
        rnd = random.Random(int(torch.randint(2**31 - 1, (1,), generator=rng)))
        texts = []
        for t in batch.raw_text:
            words = t.split()
            if rnd.random() < self.rate:
                rnd.shuffle(words)
            texts.append(" ".join(words))
        return replace(batch, raw_text=texts)


@dataclass(frozen=True)
class RawTextSpectrum:
    """Spectrum for raw text: per sample strength s (fixed, or U(0, max_strength)), words dropped
    and typos at s."""

    strength: float | None = None
    max_strength: float = 1.0

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        if batch.raw_text is None:
            return batch
        rnd = random.Random(int(torch.randint(2**31 - 1, (1,), generator=rng)))
        texts = []
        for t in batch.raw_text:
            s = self.strength if self.strength is not None else rnd.random() * self.max_strength
            texts.append(noisy_text(t, s, rnd))
        return replace(batch, raw_text=texts)


def _touches_text(modalities: tuple[str, ...]) -> bool:
    return not modalities or "text" in modalities


def raw_text_counterpart(perturbation: Any) -> Perturbation | None:
    """The raw-text perturbation matching a feature-level one, for models that re-encode text
    (None when it does not touch the text, or the text only through `present`)."""
    p = perturbation
    if isinstance(p, Compose):
        parts = [q for q in (raw_text_counterpart(x) for x in p.parts) if q is not None]
        return Compose(tuple(parts)) if parts else None
    if isinstance(p, StepMissing):
        r = p.rate_of("text")
        return TextNoise(rate=r, typos=False, word_drops=True) if 0.0 < r < 1.0 else None
    if isinstance(p, GaussianNoise) and _touches_text(p.modalities):
        f = snr_to_noise_fraction(p.snr_db)
        return TextNoise(rate=f, typos=True, word_drops=False) if f > 0 else None
    if isinstance(p, TemporalShuffle) and _touches_text(p.modalities):
        return WordShuffle(rate=p.rate) if p.rate > 0 else None
    if isinstance(p, Spectrum) and _touches_text(p.modalities):
        if p.strength == 0.0:
            return None
        return RawTextSpectrum(strength=p.strength, max_strength=p.max_strength)
    return None  # drop / modality_missing act through `present`, which the re-encoder reads


# ---- the continuous reliability spectrum (QA-MoE) ------------------------------------------


@register_perturbation("spectrum")
@dataclass(frozen=True)
class Spectrum:
    """One reliability strength s ∈ [0, 1] per sample mixes missingness and noise.

    For strength s, each valid step is dropped with probability s and the kept steps get
    Gaussian noise with noise fraction s (σ² = P·s / (1 - s)). `strength` fixes s for every
    sample; None draws s ~ U(0, max_strength) per sample (per sample and modality when
    `per_modality`), and with probability `clean_prob` a drawn s is 0 instead (a training
    mixture that keeps clean inputs in view).
    """

    strength: float | None = None
    max_strength: float = 1.0
    per_modality: bool = False
    modalities: tuple[str, ...] = ()
    clean_prob: float = 0.0
    perturbation_name: ClassVar[str]

    def __post_init__(self) -> None:
        if self.strength is not None:
            check_rate(self.strength, "strength")
        check_rate(self.max_strength, "max_strength")
        check_rate(self.clean_prob, "clean_prob")
        object.__setattr__(self, "modalities", check_modalities(self.modalities))

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        if self.strength is not None:
            s = torch.full((batch.size, len(MODALITIES)), float(self.strength))
        else:
            shape = (batch.size, len(MODALITIES)) if self.per_modality else (batch.size, 1)
            s = torch.rand(shape, generator=rng) * self.max_strength
            if self.clean_prob > 0:
                s = s * (torch.rand(shape, generator=rng) >= self.clean_prob)
            s = s.expand(batch.size, len(MODALITIES))
        features, masks = dict(batch.features), dict(batch.masks)
        targets = _targets(batch, self.modalities)
        for m in batch.modalities:
            sm = s[:, modality_index(m)]  # (B,)
            u = torch.rand(batch.masks[m].shape, generator=rng)
            eps = torch.randn(features[m].shape, generator=rng).to(features[m])
            if m not in targets or not (sm > 0).any():
                continue
            x, mask = features[m], masks[m]
            keep = mask & (u >= sm[:, None]).to(mask.device)
            ratio = torch.where(sm < 1, sm / (1 - sm).clamp_min(1e-12), torch.zeros_like(sm)).to(x)
            # the noise scale is a constant of the data: no gradient (sqrt'(0) = inf gave NaN input gradients)
            sigma = (_signal_power(x.detach(), mask) * ratio).sqrt()  # (B,)
            noisy = x + sigma[:, None, None] * eps
            masks[m] = keep
            features[m] = noisy * keep.unsqueeze(-1).to(x.dtype)
        return _with_steps(batch, features, masks)


# ---- composition ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Compose:
    """Apply perturbations in order with the same generator."""

    parts: tuple[Perturbation, ...]

    def __call__(self, batch: Batch, rng: torch.Generator) -> Batch:
        for p in self.parts:
            batch = p(batch, rng)
        return batch


def compose(*parts: Perturbation) -> Compose:
    return Compose(tuple(parts))
