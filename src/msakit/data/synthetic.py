"""A seeded synthetic benchmark with MOSI-like structure and controllable modalities.

Each sample has a sentiment y in [-3, 3]. For every sample and modality a *role* is
drawn (or fixed by the preset):

    informative  the sequence carries +y along a modality-specific direction
    conflicting  it carries -y (the modality disagrees with the label)
    noisy        pure noise of the same scale, no signal
    missing      the modality is absent for that sample

The signal's amplitude is |y|, so emotionally strong samples are strong in every
informative modality, and steps carry it unevenly (a random per-step envelope), so
temporal models have something to find. Roles are returned as targets
`role_<modality>` (codes in `ROLES`) and `informative` (index in MODALITIES of the one
informative modality when the preset picks one per sample, else -1), so tests can
check what a model attends to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from msakit.batch import MODALITIES
from msakit.data.core import DatasetInfo, ModalityArrays, MSADataset, SplitData
from msakit.data.dialogue import DialogueIndex, carryover_labels, with_dialogue
from msakit.errors import ConfigError

ROLES: tuple[str, ...] = ("informative", "noisy", "missing", "conflicting")


@dataclass(frozen=True)
class SyntheticConfig:
    sizes: tuple[int, int, int] = (600, 150, 250)  # train, valid, test
    dims: tuple[int, int, int] = (32, 16, 20)  # text, audio, visual feature widths
    lengths: tuple[int, int, int] = (20, 30, 30)  # max steps per modality
    modalities: tuple[str, ...] = MODALITIES
    # per-modality probabilities of (informative, noisy, missing, conflicting)
    role_probs: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: {m: (0.8, 0.1, 0.05, 0.05) for m in MODALITIES}
    )
    one_informative: bool = False  # exactly one informative modality per sample, others noisy
    signal: float = 1.0  # signal amplitude relative to unit noise
    # per-modality multiplier of `signal` (1 where absent): a modality can be easy or slow to learn
    modality_signal: dict[str, float] = field(default_factory=dict)
    noise: float = 1.0
    seed: int = 0
    # > 0: samples form dialogues of this many turns whose sentiment carries over (msakit.data.dialogue)
    dialogue_turns: int = 0
    carryover: float = 0.8  # y_t = carryover·y_{t-1} + √(1 − carryover²)·ε within a dialogue


PRESETS: dict[str, SyntheticConfig] = {
    # every modality mostly informative, some noise, missing and conflict
    "default": SyntheticConfig(),
    # the informative modality varies per sample; the others are noise (AMSGFN's DMSM)
    "dominant": SyntheticConfig(one_informative=True),
    # only the audio carries the sentiment; text and visual are noise (SADGR's AG-VR)
    "audio": SyntheticConfig(
        role_probs={"text": (0.0, 1.0, 0.0, 0.0), "audio": (1.0, 0.0, 0.0, 0.0), "visual": (0.0, 1.0, 0.0, 0.0)}
    ),
    # all informative, but each modality is pure noise for 30 % of samples (UEMF weights)
    "noisy": SyntheticConfig(role_probs={m: (0.7, 0.3, 0.0, 0.0) for m in MODALITIES}),
    # all clean: an upper bound
    "clean": SyntheticConfig(role_probs={m: (1.0, 0.0, 0.0, 0.0) for m in MODALITIES}),
    # every modality informative, but text carries the label 8 times more strongly than audio and
    # visual: text is learnt first and can starve the weaker, still informative modalities
    # (the optimisation imbalance of OGM-GE / EBMC)
    "imbalanced": SyntheticConfig(
        role_probs={m: (1.0, 0.0, 0.0, 0.0) for m in MODALITIES},
        modality_signal={"text": 2.0, "audio": 0.25, "visual": 0.25},
    ),
    # dialogues of 6 turns whose sentiment carries over; each modality is noise for 40 % of
    # utterances, so the preceding turns tell what the current one may not (CAGMamba)
    "dialogue": SyntheticConfig(dialogue_turns=6, role_probs={m: (0.6, 0.4, 0.0, 0.0) for m in MODALITIES}),
}


def synthetic_preset(name: str) -> SyntheticConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown synthetic preset {name!r}; presets: {', '.join(PRESETS)}") from None


def make_synthetic(config: SyntheticConfig | None = None, *, name: str = "synthetic") -> MSADataset:
    """Generate the three splits; the same config and seed give identical data."""
    config = config or SyntheticConfig()
    rng = np.random.default_rng(config.seed)
    dims = dict(zip(MODALITIES, config.dims, strict=True))
    lengths = dict(zip(MODALITIES, config.lengths, strict=True))
    mods = tuple(m for m in MODALITIES if m in config.modalities)
    directions = {m: _unit(rng.standard_normal(dims[m])) * np.sqrt(dims[m]) for m in mods}
    splits = {}
    for split, n in zip(("train", "valid", "test"), config.sizes, strict=True):
        splits[split] = _make_split(config, rng, n, split, mods, dims, lengths, directions)
    info = DatasetInfo(
        name=name,
        metric_set="mosi",
        dims={m: dims[m] for m in mods},
        description="seeded synthetic benchmark (msakit.data.synthetic)",
    )
    return MSADataset(info, splits, source=name)


def _make_split(
    config: SyntheticConfig,
    rng: np.random.Generator,
    n: int,
    split: str,
    mods: tuple[str, ...],
    dims: dict[str, int],
    lengths: dict[str, int],
    directions: dict[str, np.ndarray],
) -> SplitData:
    if config.dialogue_turns > 0:
        y, dialogue_ids, turns, speakers = carryover_labels(rng, n, config.dialogue_turns, config.carryover)
    else:
        y = np.clip(rng.normal(0.0, 1.5, n), -3, 3).round(1).astype(np.float32)
    roles = _draw_roles(config, rng, n, mods)
    informative = np.full(n, -1, dtype=np.int64)
    if config.one_informative:
        informative = np.array([MODALITIES.index(mods[i]) for i in rng.integers(0, len(mods), n)], dtype=np.int64)
    modality_arrays, targets = {}, {}
    for m in mods:
        role = roles[m]
        if config.one_informative:
            role = np.where(informative == MODALITIES.index(m), 0, 1)  # the others are noise
        length = rng.integers(max(2, lengths[m] // 2), lengths[m] + 1, n)
        envelope = rng.gamma(2.0, 0.5, (n, lengths[m]))  # uneven evidence over steps
        sign = np.select([role == 0, role == 3], [1.0, -1.0], 0.0)
        amplitude = config.signal * config.modality_signal.get(m, 1.0) * sign * y / 3.0  # (N,)
        values = config.noise * rng.standard_normal((n, lengths[m], dims[m]))
        values += amplitude[:, None, None] * envelope[:, :, None] * directions[m][None, None, :]
        steps = np.arange(lengths[m])[None, :] < length[:, None]
        present = role != 2
        values *= (steps & present[:, None])[:, :, None]
        modality_arrays[m] = ModalityArrays(
            values=values.astype(np.float32), lengths=np.where(present, length, 0), present=present
        )
        targets[f"role_{m}"] = role.astype(np.int64)
    targets["informative"] = informative
    ids = [f"{split}_{i:05d}" for i in range(n)]
    data = SplitData(labels=y, ids=ids, modalities=modality_arrays, targets=targets)
    if config.dialogue_turns > 0:
        dialogue_ids = [f"{split}_{d}" for d in dialogue_ids]
        return with_dialogue(data, DialogueIndex.build(dialogue_ids, turns, speakers, ids=ids, source=split))
    return data


def _draw_roles(
    config: SyntheticConfig, rng: np.random.Generator, n: int, mods: tuple[str, ...]
) -> dict[str, np.ndarray]:
    roles = {}
    for m in mods:
        probs = np.asarray(config.role_probs.get(m, (1.0, 0.0, 0.0, 0.0)), dtype=float)
        roles[m] = rng.choice(len(ROLES), size=n, p=probs / probs.sum())
    # never leave a sample with every modality missing
    all_missing = np.all([roles[m] == 2 for m in mods], axis=0)
    roles[mods[0]][all_missing] = 0
    return roles


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
