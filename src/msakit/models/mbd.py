"""MBD: Missing-by-Design, revocable multimodal sentiment analysis.

"Missing-by-Design (MBD): a unified framework for revocable multimodal sentiment
analysis" (abstract only). The abstract names property-aware embeddings, generator-based
reconstruction of missing channels, and, for deletion requests, saliency-driven
candidate selection with a calibrated Gaussian update that emits a machine-verifiable
Modality Deletion Certificate. The model is here; the deletion pipeline is
`msakit.unlearn` (`msakit unlearn`, `msakit verify-certificate`). Every choice is ours:

- Property-aware embeddings: each modality's pooled encoding h_m splits into a
  *sentiment property* s_m (d wide, aligned across the modalities a sample has by an
  MSE to their mean) and a *modality property* p_m (d wide, made to reconstruct the
  modality's own pooled input through a linear decoder), kept apart by a squared-cosine
  orthogonality loss. z_m = [s_m; p_m]. `properties=False` (the knockout) uses one
  undifferentiated 2d embedding and none of these losses.
- Generator-based reconstruction: G_m maps the mean sentiment property of the *other*
  present modalities to a whole z_m; it is trained by MSE to the real z_m (target
  detached) wherever m and another modality are present, and replaces z_m wherever m is
  absent. "Missing by design": in training each modality of a sample is hidden from the
  head with probability `missing_rate` (its z_m replaced by G_m's), so the head learns to
  predict from reconstructions. `generator=False`: an absent z_m is 0.
- A convex head: the prediction is a single Linear over φ = [z_1; ...; z_M] (the
  `features["fused"]` vector). That is what makes deletion certifiable: over frozen φ,
  an L2-regularised squared loss is strongly convex, so removing data from the head is
  an exact Newton step (certified removal, Guo et al. 2020); the non-convex encoders get
  the saliency-selected, Gaussian-calibrated update and measured evidence, no guarantee
  (docs/unlearning.md). The head is trained with the same squared loss (`task_loss`
  "mse", not the library's default L1): the deletion re-solves it with squared loss, so
  the model, its retrained counterpart and the edited head all optimise one objective.
  With L1 training the re-solved head pulls predictions to the mean (MMMO Acc-7 9 points
  under retraining, last stop); the cost is that MBD's own Acc-7 and MAE are those of
  squared-loss training (docs/models/mbd.md).

Explanations: `reconstruction_error` (B, M), the per-sample MSE of G_m's output against
the real z_m where both exist (0 elsewhere); `reconstructed` (B, M), 1 where the head
read G_m's output. `modality_weights`: each present modality's share of |W_m z_m| in the
head's output, an attribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import MODALITIES, Batch, ModelOutput, masked_mean, modality_index
from msakit.config import ModelConfig, tunable
from msakit.layers import MLP, SequenceEncoder
from msakit.layers.fusion import mean_of_others
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model


@dataclass
class MBDConfig(ModelConfig):
    encoder: str = tunable("mean", choices=("mean", "lstm", "transformer"))  # SequenceEncoder kind
    task_loss: str = "mse"  # the loss the deletion re-solves the convex head with
    property_dim: int = tunable(32, choices=(16, 32, 64))  # d: width of the sentiment and of the modality property
    properties: bool = True  # property-aware split [s_m; p_m] with its losses; False = one plain embedding
    generator: bool = True  # reconstruct absent z_m from the other modalities; False = zeros
    missing_rate: float = tunable(
        0.2, low=0.0, high=0.5
    )  # per-sample prob. of hiding each modality from the head in training
    recon_weight: float = tunable(0.5, low=0.05, high=2.0, log=True)  # weight of the generator's reconstruction MSE
    align_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # weight of the sentiment-property alignment MSE
    property_weight: float = tunable(
        0.1, low=0.01, high=1.0, log=True
    )  # weight of the modality-property input reconstruction
    ortho_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # weight of the s_m ⊥ p_m loss

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "MBD": {},
        "w/o property-aware embeddings": {"properties": False},
        "w/o generator": {"generator": False},
        "w/o missing-by-design training": {"missing_rate": 0.0},
    }


@register_model("mbd")
class MBD(MSAModel):
    config_class = MBDConfig
    config: MBDConfig
    capabilities = Capabilities(min_modalities=1)
    #: the Linear whose input is `features["fused"]`: what `msakit.unlearn` re-solves exactly
    convex_head: ClassVar[str] = "head"

    def __init__(self, config: MBDConfig) -> None:
        super().__init__(config)
        h, d, mods = config.hidden_dim, config.property_dim, self.modalities
        self.encoders = nn.ModuleDict(
            {m: SequenceEncoder(config.dim(m), h, kind=config.encoder, dropout=config.dropout) for m in mods}
        )
        if config.properties:
            self.sentiment = nn.ModuleDict({m: nn.Linear(h, d) for m in mods})
            self.modality = nn.ModuleDict({m: nn.Linear(h, d) for m in mods})
            self.decoders = nn.ModuleDict({m: nn.Linear(d, config.dim(m)) for m in mods})
        else:
            self.embed = nn.ModuleDict({m: nn.Linear(h, 2 * d) for m in mods})
        self.use_generator = config.generator and len(mods) > 1
        if self.use_generator:
            source = d if config.properties else 2 * d
            self.generators = nn.ModuleDict({m: MLP(source, 2 * d, hidden_dim=h) for m in mods})
        self.head = nn.Linear(2 * d * len(mods), config.num_classes)

    def forward(self, batch: Batch) -> ModelOutput:
        mods, cfg = self.modalities, self.config
        cols = [modality_index(m) for m in mods]
        present = batch.present[:, cols]  # (B, m)
        pooled = {m: self.encoders[m](batch.features[m], batch.masks[m])[1] for m in mods}  # (B, H)
        aux: dict[str, Tensor] = {}
        if cfg.properties:
            s = torch.stack([self.sentiment[m](pooled[m]) for m in mods], dim=1)  # (B, m, d)
            p = torch.stack([self.modality[m](pooled[m]) for m in mods], dim=1)  # (B, m, d)
            z = torch.cat([s, p], dim=-1)  # (B, m, 2d)
            source = s
            if self.training:
                aux.update(self._property_losses(batch, s, p, present))
        else:
            z = torch.stack([self.embed[m](pooled[m]) for m in mods], dim=1)  # (B, m, 2d)
            source = z
        shown = present
        if self.training and cfg.missing_rate > 0 and len(mods) > 1:  # missing by design
            hide = (torch.rand(present.shape, device=present.device) < cfg.missing_rate) & present
            hide &= (present & ~hide).any(1, keepdim=True)  # keep one modality per sample
            shown = present & ~hide
        z_head = z * shown.unsqueeze(-1).to(z.dtype)
        error = torch.zeros(present.shape, dtype=z.dtype, device=z.device)
        reconstructed = torch.zeros_like(present)
        if self.use_generator:
            context, has_context = mean_of_others(source, shown)  # (B, m, d), (B, m)
            target_ctx, has_target_ctx = mean_of_others(source, present)
            recon = torch.stack([self.generators[m](context[:, i]) for i, m in enumerate(mods)], dim=1)
            check = torch.stack([self.generators[m](target_ctx[:, i]) for i, m in enumerate(mods)], dim=1)
            scored = present & has_target_ctx
            error = ((check - z.detach()) ** 2).mean(-1) * scored.to(z.dtype)  # (B, m)
            reconstructed = ~shown & has_context
            z_head = torch.where(reconstructed.unsqueeze(-1), recon, z_head)
            if self.training and scored.any():
                aux["reconstruction"] = cfg.recon_weight * error[scored].mean()
        fused = z_head.flatten(1)  # φ: (B, m·2d), the convex head's input
        prediction = self.bound_prediction(self.head(fused))
        return ModelOutput(
            prediction=prediction,
            modality_weights=self._contributions(z_head, present, batch),
            aux_losses=aux,
            features={"fused": fused, **{m: z_head[:, i] for i, m in enumerate(mods)}},
            explanations={
                "reconstruction_error": _full(error, cols, batch.size),
                "reconstructed": _full(reconstructed.to(z.dtype), cols, batch.size),
            },
        )

    def _property_losses(self, batch: Batch, s: Tensor, p: Tensor, present: Tensor) -> dict[str, Tensor]:
        cfg, w = self.config, present.to(s.dtype).unsqueeze(-1)  # (B, m, 1)
        mean_s = (s * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
        losses = {"align": cfg.align_weight * (((s - mean_s.detach()) ** 2) * w).sum() / w.sum().clamp_min(1.0)}
        losses["orthogonality"] = cfg.ortho_weight * ((F.cosine_similarity(s, p, dim=-1) ** 2) * w[..., 0]).mean()
        terms = []
        for i, m in enumerate(self.modalities):  # the modality property reconstructs its own pooled input
            keep = present[:, i]
            if keep.any():
                target = masked_mean(batch.features[m], batch.masks[m])[keep]
                terms.append(F.mse_loss(self.decoders[m](p[keep, i]), target))
        if terms:
            losses["property"] = cfg.property_weight * torch.stack(terms).mean()
        return losses

    def _contributions(self, z_head: Tensor, present: Tensor, batch: Batch) -> Tensor:
        """(B, M): share of |W_m z_m| of each present modality in the head's output."""
        width = z_head.shape[-1]
        blocks = self.head.weight.reshape(self.head.weight.shape[0], len(self.modalities), width)  # (C, m, 2d)
        size = torch.einsum("bmd,cmd->bmc", z_head, blocks).abs().sum(-1) * present.to(z_head.dtype)  # (B, m)
        share = size / size.sum(1, keepdim=True).clamp_min(1e-8)
        return _full(share, [modality_index(m) for m in self.modalities], batch.size)


def _full(values: Tensor, cols: list[int], batch_size: int) -> Tensor:
    """(B, m) over the model's modalities -> (B, M) over MODALITIES, zero elsewhere."""
    out = torch.zeros(batch_size, len(MODALITIES), dtype=values.dtype, device=values.device)
    out[:, cols] = values
    return out
