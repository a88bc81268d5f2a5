"""Per-modality, per-feature input normalisation held inside every model.

`FeatureNormalizer` keeps, for each modality, a centre and a scale per feature as
buffers, so they travel in the checkpoint's state dict and every path that runs the
model (train, eval, predict, robustness, analyze, serving) applies the same statistics.
`MSAModel` owns one (unless ``ModelConfig.feature_norm`` is off) and applies it to
``Batch.features`` in a forward pre-hook, before ``forward`` runs; models do nothing.

The statistics come from `msakit.data.stats.feature_stats` over the training split
(valid steps of present samples only; median and IQR, see there). Until `fit` is called
the normaliser is the identity, so a model built outside the trainer behaves as before.
Normalised values are clipped to ``±clip``: a raw outlier (MMMO's COVAREP audio holds
sentinel values of ±255) cannot dominate a batch. Padded steps and absent samples stay 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from msakit.batch import MODALITIES, Batch

if TYPE_CHECKING:
    from msakit.data.stats import DatasetStats


class FeatureNormalizer(nn.Module):
    """(x − centre) / scale per feature of each modality, clipped, zero where masked."""

    fitted: Tensor

    def __init__(self, dims: Mapping[str, int], *, clip: float = 10.0) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.clip = clip
        for m, d in self.dims.items():
            self.register_buffer(f"{m}_center", torch.zeros(d))
            self.register_buffer(f"{m}_scale", torch.ones(d))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def stats_of(self, modality: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"{modality}_center"), getattr(self, f"{modality}_scale")

    @torch.no_grad()
    def fit(self, stats: DatasetStats) -> None:
        """Take the centre and scale of every modality `stats` describes (others stay identity)."""
        for m in self.dims:
            if m not in stats.features:
                continue
            center, scale = self.stats_of(m)
            fs = stats.features[m]
            if fs.center.shape != center.shape:
                raise ValueError(f"{m} statistics are {fs.center.shape[0]}-d, the model reads {center.shape[0]}-d")
            center.copy_(torch.as_tensor(fs.center, dtype=center.dtype))
            s = torch.as_tensor(fs.scale, dtype=scale.dtype)
            scale.copy_(torch.where(torch.isfinite(s) & (s > 0), s, torch.ones_like(s)))  # never divide by 0
        self.fitted.fill_(True)

    def normalize(self, modality: str, x: Tensor, valid: Tensor) -> Tensor:
        """x (..., D) with `valid` (...,) bool: normalised, clipped, 0 where not valid."""
        center, scale = self.stats_of(modality)
        out = ((x - center) / scale).clamp(-self.clip, self.clip)
        return out * valid.unsqueeze(-1).to(out.dtype)

    def forward(self, batch: Batch) -> Batch:
        if not bool(self.fitted):
            return batch
        features = {m: self.normalize(m, x, batch.masks[m]) if m in self.dims else x for m, x in batch.features.items()}
        context = batch.context
        if context is not None:  # preceding turns are mean-pooled raw features: the same centre and scale
            pooled = {
                m: self.normalize(m, x, context.present[:, :, MODALITIES.index(m)]) if m in self.dims else x
                for m, x in context.features.items()
            }
            context = replace(context, features=pooled)
        return replace(batch, features=features, context=context)


def normalize_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook of `MSAModel`: pass the Batch through the model's ``input_norm``."""
    norm = getattr(module, "input_norm", None)
    if norm is None or not args or not isinstance(args[0], Batch):
        return None
    return (norm(args[0]), *args[1:])


__all__ = ["FeatureNormalizer", "normalize_inputs"]
