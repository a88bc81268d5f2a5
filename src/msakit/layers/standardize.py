"""Frozen per-dimension standardisation and the STA-CA alignment heads built on it.

Shared by SADGR (`msakit.models.sadgr`, fine-tuning) and its pretraining objective
(`msakit.pretrain.sta_ca`): the heads are the same modules in both, so a pretrained
state dict loads into the model as it is.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from msakit.batch import Batch, masked_mean
from msakit.layers.contrastive import symmetric_info_nce


class Standardize(nn.Module):
    """Frozen per-dimension (x − μ) / σ with statistics of the training split (buffers)."""

    mean: Tensor
    std: Tensor
    fitted: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def set(self, center: np.ndarray | Tensor, scale: np.ndarray | Tensor) -> None:
        """Use `center` / `scale` (D,) (e.g. `msakit.data.stats.FeatureStats`); scale 0 → 1."""
        center_t = torch.as_tensor(np.asarray(center), dtype=torch.float64)
        scale_t = torch.as_tensor(np.asarray(scale), dtype=torch.float64)
        self.mean.copy_(center_t.to(self.mean))
        self.std.copy_(torch.where(scale_t > 1e-8, scale_t, torch.ones_like(scale_t)).to(self.std))
        self.fitted.fill_(True)


class AlignmentHead(nn.Module):
    """g_m: frozen standardisation, then a linear map into the shared space (SADGR eqs. 7–8)."""

    def __init__(self, in_dim: int, shared_dim: int) -> None:
        super().__init__()
        self.norm = Standardize(in_dim)
        self.proj = nn.Linear(in_dim, shared_dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Per step: (B, L, D), (B, L) -> (B, L, S), zero on padded steps."""
        return self.proj(self.norm(x)) * mask.unsqueeze(-1).to(x.dtype)

    def pool(self, x: Tensor, mask: Tensor) -> Tensor:
        """Z_m = g_m(mean of valid steps), eqs. 5–8: (B, L, D), (B, L) -> (B, S).

        g_m is affine, so pooling first equals pooling the per-step projections.
        """
        return self.proj(self.norm(masked_mean(x, mask)))


class TextAudioHeads(nn.Module):
    """g_t, g_a and the learnable temperature τ of the audio–text contrastive loss (eqs. 9–11)."""

    def __init__(self, text_dim: int, audio_dim: int, shared_dim: int, *, init_temperature: float = 0.07) -> None:
        super().__init__()
        self.text = AlignmentHead(text_dim, shared_dim)
        self.audio = AlignmentHead(audio_dim, shared_dim)
        # log(1/τ), as in CLIP; clamped so τ ≥ 0.01
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @property
    def temperature(self) -> Tensor:
        return torch.exp(-self.logit_scale.clamp(max=math.log(100.0)))

    def embed(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(Z_t, Z_a, valid): (B, S), (B, S), (B,) bool where the sample has both modalities."""
        z_t = self.text.pool(batch.features["text"], batch.masks["text"])
        z_a = self.audio.pool(batch.features["audio"], batch.masks["audio"])
        valid = batch.present_mask("text") & batch.present_mask("audio")
        return z_t, z_a, valid

    def contrastive_loss(self, z_t: Tensor, z_a: Tensor, valid: Tensor) -> Tensor:
        """L_con = ½ (L_t→a + L_a→t), cosine similarity over τ (eqs. 9–11)."""
        return symmetric_info_nce(z_t, z_a, temperature=self.temperature, valid=valid)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.state_dict().items()}
