"""FMR: Facial Micro-expression Reconstruction, TSSP-MSA stage 1 for video (seed paper §3.1 C, Algorithm 3).

A frame encoder (the `SequenceEncoder` that `tssp_msa` uses for the visual modality)
reads facial features with entries masked where an action-unit importance map is high,
and reconstructs the masked entries (L_FMR, squared error on masked entries only). A
chronological-disruption detector (CDD) tells in-order clips from clips whose frames
were shuffled (binary cross-entropy). L_visual = λ5·L_FMR + λ6·L_CDD.

Dimension legend: B batch, L frames, D visual feature width, H hidden width.

Interpretations:
- The AU importance map w ∈ [0, 1]^D is over feature dimensions (datasets ship FACET /
  OpenFace vectors, not pixels). With `au_dims` given, those columns get weight 1 and
  the others `base_importance`; otherwise w_d is the dimension's mean absolute
  frame-to-frame change (standardised features) divided by the largest one: the
  fast-moving dimensions are where micro-expressions live. P(mask entry (t, d)) ∝ w_d,
  scaled so the mean masked fraction is `mask_ratio`.
- Masked entries are set to the dimension's training mean (0 after standardisation);
  targets are the standardised values, so no dimension dominates by scale.
- CDD needs an order-aware encoder ("transformer" or "lstm"); with "mean" it cannot learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from msakit.data.core import MSADataset
from msakit.layers import SequenceEncoder
from msakit.pretrain import PretrainObjective, register_objective
from msakit.pretrain._loop import fit_frame_objective, require_frames
from msakit.pretrain.ecam import frame_stats


@dataclass
class FMRConfig:
    hidden_dim: int = 64  # must equal tssp_msa's hidden_dim for the weights to load
    encoder: str = "transformer"  # SequenceEncoder kind, as in tssp_msa
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    mask_ratio: float = 0.3  # mean fraction of (frame, dimension) entries masked
    au_dims: tuple[int, ...] = ()  # columns that are action units; empty: importance from temporal change
    base_importance: float = 0.2  # importance of non-AU columns when au_dims is given
    shuffle_prob: float = 0.5  # share of clips whose frame order is disrupted for CDD
    fmr_weight: float = 1.0  # λ5
    cdd_weight: float = 0.5  # λ6
    save_every: int = 20  # steps between checkpoints
    seed: int = 0


def au_importance(dataset: MSADataset, config: FMRConfig, mean: Tensor, std: Tensor) -> Tensor:
    """w ∈ [0, 1]^D over the visual feature dimensions."""
    dim = mean.shape[0]
    if config.au_dims:
        w = torch.full((dim,), config.base_importance)
        w[list(config.au_dims)] = 1.0
        return w
    arr = dataset.split("train").modalities["visual"]
    x = (torch.from_numpy(np.asarray(arr.values, dtype=np.float32)) - mean) / std  # (N, L, D)
    valid = torch.arange(x.shape[1])[None, :] < torch.from_numpy(arr.lengths.astype(np.int64))[:, None]
    both = (valid[:, 1:] & valid[:, :-1]).unsqueeze(-1)  # (N, L-1, 1)
    change = ((x[:, 1:] - x[:, :-1]).abs() * both).sum((0, 1)) / both.sum().clamp_min(1)  # (D,)
    return change / change.max().clamp_min(1e-6)


class FMRNet(nn.Module):
    mean: Tensor  # (D,) training-frame statistics
    std: Tensor
    importance: Tensor  # (D,) AU importance map w

    def __init__(self, in_dim: int, config: FMRConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SequenceEncoder(in_dim, config.hidden_dim, kind=config.encoder)
        self.reconstruct = nn.Linear(config.hidden_dim, in_dim)
        self.cdd = nn.Linear(config.hidden_dim, 1)  # f_CDD: in order (1) or disrupted (0)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.register_buffer("importance", torch.ones(in_dim))

    def losses(self, x: Tensor, valid: Tensor, gen: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        z = (x - self.mean) / self.std  # (B, L, D)
        w = self.importance
        p = (c.mask_ratio * w * w.numel() / w.sum().clamp_min(1e-6)).clamp(max=0.95)  # (D,) P(mask) ∝ w_d
        masked = (torch.rand(x.shape, generator=gen) < p) & valid.unsqueeze(-1)  # (B, L, D)
        inputs = torch.where(masked, self.mean.expand_as(x), x)
        states, _ = self.encoder(inputs, valid)  # (B, L, H)
        # L_FMR = Σ_{p∈M} |v_p − v̂_p|² (averaged over masked entries)
        error = (self.reconstruct(states) - z).pow(2)
        l_fmr = (error * masked).sum() / masked.sum().clamp_min(1)
        # L_CDD: shuffle the valid frames of some clips, detect which were disrupted
        shuffled, in_order = self._disrupt(x, valid, gen)
        _, pooled = self.encoder(shuffled, valid)  # (B, H)
        l_cdd = nn.functional.binary_cross_entropy_with_logits(self.cdd(pooled).squeeze(-1), in_order)
        loss = c.fmr_weight * l_fmr + c.cdd_weight * l_cdd
        return loss, {"fmr": float(l_fmr.detach()), "cdd": float(l_cdd.detach())}

    def _disrupt(self, x: Tensor, valid: Tensor, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        out = x.clone()
        in_order = torch.ones(x.shape[0])
        lengths = valid.sum(1).tolist()
        for b, n in enumerate(lengths):
            if n >= 3 and float(torch.rand(1, generator=gen)) < self.config.shuffle_prob:
                perm = torch.randperm(n, generator=gen)
                if bool((perm == torch.arange(n)).all()):
                    perm = perm.roll(1)
                out[b, :n] = x[b, perm]
                in_order[b] = 0.0
        return out, in_order


@register_objective("fmr")
class FacialMicroExpressionReconstruction(PretrainObjective):
    """Stage-1 visual pretraining; writes the visual encoder for `tssp_msa -m pretrained_visual=OUT`."""

    config_class = FMRConfig
    requires = ("visual",)
    config: FMRConfig

    def check(self, dataset: MSADataset) -> None:
        super().check(dataset)
        require_frames(self.name, dataset, "visual", min_steps=3)

    def fit(self, dataset: MSADataset, out: Path, *, progress: bool = True) -> dict[str, Any]:
        self.check(dataset)
        c = self.config
        torch.manual_seed(c.seed)
        dim = dataset.info.dims["visual"]
        net = FMRNet(dim, c)
        net.mean, net.std = frame_stats(dataset, "visual")
        net.importance = au_importance(dataset, c, net.mean, net.std)
        summary = fit_frame_objective(self.name, net, dataset, "visual", c, out, progress=progress)
        return {**summary, "importance_top5": net.importance.topk(min(5, dim)).indices.tolist()}
