"""ECAM: Emotion-Centred Acoustic Masking, TSSP-MSA stage 1 for audio (seed paper §3.1 B, Algorithm 2).

A frame encoder (the same `SequenceEncoder` that `tssp_msa` uses for audio) reads an
utterance whose *emotionally salient* frames were replaced by a learned mask vector and
must pick each masked frame's true latent among the other masked frames of the batch
(wav2vec 2.0's contrastive task, in-batch negatives). A time-contrastive term pulls
together the states of frames that are close in time (the paper's phoneme-time
alignment, without phoneme labels). L_audio = λ3·L_ECAM + λ4·L_time.

Dimension legend: B batch, L frames, D audio feature width, H hidden width, N masked frames.

Interpretations (the paper is ambiguous or assumes raw audio):
- Salience from the frame features themselves: energy = mean squared standardised
  feature value of a frame; pitch-variance proxy = variance of the standardised
  features over a 3-frame window (prosodic change). Both are z-scored within the
  utterance and summed. Frames are masked by Gumbel-top-k on salience / temperature,
  so salient frames are masked far more often but not deterministically; a fixed 20 %
  pitch-variance threshold needs a real F0 track, which feature sets do not label.
- wav2vec's quantiser is replaced by a linear target projection of the clean frame.
- The phoneme-time term: anchor = a random frame's context state, positive = the state
  of a frame at most `time_window` steps away in the same utterance, negatives = the
  other utterances' positives (InfoNCE).
- Utterance-level audio (MOSI's one 73-d vector per clip) has no frames: `check` refuses
  it with a ConfigError naming ECAM and the field, and nothing is faked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from msakit.data.core import MSADataset
from msakit.layers import SequenceEncoder, info_nce
from msakit.pretrain import PretrainObjective, register_objective
from msakit.pretrain._loop import fit_frame_objective, require_frames


@dataclass
class ECAMConfig:
    hidden_dim: int = 64  # must equal tssp_msa's hidden_dim for the weights to load
    encoder: str = "transformer"  # SequenceEncoder kind, as in tssp_msa
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    mask_ratio: float = 0.3  # fraction of each utterance's frames that is masked
    salience_temperature: float = 0.5  # lower: masks concentrate on the most salient frames
    temperature: float = 0.1  # κ of both contrastive terms
    time_window: int = 2  # frames at most this far apart are time-contrastive positives
    ecam_weight: float = 1.0  # λ3
    time_weight: float = 0.5  # λ4
    save_every: int = 20  # steps between checkpoints
    seed: int = 0


def frame_stats(dataset: MSADataset, modality: str) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std over the valid frames of the training split: (D,), (D,)."""
    arr = dataset.split("train").modalities[modality]
    values = torch.from_numpy(np.asarray(arr.values, dtype=np.float32))  # (N, L, D)
    valid = torch.arange(values.shape[1])[None, :] < torch.from_numpy(arr.lengths.astype(np.int64))[:, None]
    frames = values[valid]  # (F, D)
    return frames.mean(0), frames.std(0).clamp_min(1e-6)


def salience(x: Tensor, mask: Tensor) -> Tensor:
    """Energy + pitch-variance proxy per frame, z-scored within the utterance: (B, L, D) -> (B, L)."""
    energy = x.pow(2).mean(-1)  # (B, L)
    padded = nn.functional.pad(x.transpose(1, 2), (1, 1), mode="replicate")  # (B, D, L + 2)
    windows = padded.unfold(-1, 3, 1)  # (B, D, L, 3)
    variability = windows.var(-1).mean(1)  # (B, L)
    score = _zscore(energy, mask) + _zscore(variability, mask)
    return score.masked_fill(~mask, float("-inf"))


def _zscore(v: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(v.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1.0)
    mean = (v * m).sum(1, keepdim=True) / n
    std = (((v - mean) * m).pow(2).sum(1, keepdim=True) / n).sqrt().clamp_min(1e-6)
    return (v - mean) / std


def salient_mask(score: Tensor, mask: Tensor, ratio: float, temperature: float, gen: torch.Generator | None) -> Tensor:
    """Gumbel-top-k: k = ratio·length frames per utterance, biased to high `score`: (B, L) bool."""
    u = torch.rand(score.shape, generator=gen).clamp(1e-9, 1 - 1e-9)
    noisy = score / temperature - torch.log(-torch.log(u))  # (B, L)
    ranks = noisy.argsort(dim=1, descending=True).argsort(dim=1)  # rank 0 = most salient
    lengths = mask.sum(1)
    k = torch.where(lengths >= 2, (lengths.float() * ratio).round().clamp_min(1), torch.zeros_like(lengths.float()))
    return (ranks < k[:, None]) & mask


class ECAMNet(nn.Module):
    mean: Tensor  # (D,) training-frame statistics, for salience
    std: Tensor

    def __init__(self, in_dim: int, config: ECAMConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SequenceEncoder(in_dim, config.hidden_dim, kind=config.encoder)
        self.mask_emb = nn.Parameter(torch.randn(in_dim) * 0.1)
        self.query = nn.Linear(config.hidden_dim, config.hidden_dim)  # q_t from the context
        self.target = nn.Linear(in_dim, config.hidden_dim)  # K_t, the clean frame's latent
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))

    def losses(self, x: Tensor, valid: Tensor, gen: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        z = (x - self.mean) / self.std  # (B, L, D) standardised, for salience only
        masked = salient_mask(salience(z, valid), valid, c.mask_ratio, c.salience_temperature, gen)  # (B, L)
        inputs = torch.where(masked[..., None], self.mask_emb.expand_as(x), x)
        states, _ = self.encoder(inputs, valid)  # (B, L, H)
        # L_ECAM (Algorithm 2): masked frame t must find its own latent among all masked frames of the batch
        l_ecam = info_nce(self.query(states[masked]), self.target(x[masked]), temperature=c.temperature)  # (N, H)
        # L_time: a frame's state and a nearby frame's state are positives; other utterances are negatives
        lengths = valid.sum(1)
        ok = lengths >= 2
        t = (torch.rand(lengths.shape, generator=gen) * lengths).long().clamp_max(lengths - 1).clamp_min(0)
        shift = torch.randint(1, c.time_window + 1, lengths.shape, generator=gen)
        sign = torch.where(torch.rand(lengths.shape, generator=gen) < 0.5, -1, 1)
        t2 = (t + sign * shift).clamp(min=0)
        t2 = torch.minimum(t2, (lengths - 1).clamp_min(0))
        t2 = torch.where(t2 == t, (t + 1).clamp_max((lengths - 1).clamp_min(0)), t2)
        rows = torch.arange(x.shape[0])
        l_time = info_nce(states[rows, t], states[rows, t2], temperature=c.temperature, valid=ok)
        loss = c.ecam_weight * l_ecam + c.time_weight * l_time
        return loss, {"ecam": float(l_ecam.detach()), "time": float(l_time.detach()), "masked": float(masked.sum())}


@register_objective("ecam")
class EmotionCentredAcousticMasking(PretrainObjective):
    """Stage-1 audio pretraining; writes the audio encoder for `tssp_msa -m pretrained_audio=OUT`."""

    config_class = ECAMConfig
    requires = ("audio",)
    config: ECAMConfig

    def check(self, dataset: MSADataset) -> None:
        super().check(dataset)
        require_frames(self.name, dataset, "audio")

    def fit(self, dataset: MSADataset, out: Path, *, progress: bool = True) -> dict[str, Any]:
        self.check(dataset)
        c = self.config
        torch.manual_seed(c.seed)
        net = ECAMNet(dataset.info.dims["audio"], c)
        net.mean, net.std = frame_stats(dataset, "audio")
        return fit_frame_objective(self.name, net, dataset, "audio", c, out, progress=progress)
