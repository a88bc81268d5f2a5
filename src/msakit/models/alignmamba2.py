"""AlignMamba-2: dual (OT + MMD) alignment and a modality-aware mixture-of-experts Mamba.

"AlignMamba-2: an effective and efficient framework for multimodal fusion and sentiment
analysis" (abstract only, ../shared/seeds/003). What the abstract says, and what we chose:

- "a dual alignment strategy that regularizes the model using both Optimal Transport
  distance and Maximum Mean Discrepancy ... without incurring any inference-time
  overhead". Chosen: two training-only losses on the encoded token sequences, between
  the anchor modality (text by default; every pair when the anchor is absent from the
  data) and each other modality, averaged over samples that have both: a debiased
  Sinkhorn divergence (OT, `geomloss`, blur `ot_blur`) over the two token clouds (the
  "geometric" consistency) and a squared Gaussian-kernel MMD (`mmd_sigma`) over the same
  clouds (the "statistical" one; kernel width `mmd_sigma`·√H, the scale of LayerNorm'd
  tokens, else every kernel value vanishes and so does the gradient). Eval-mode forward computes neither;
  `alignment_distances(batch)` measures both on any data.
- "a Modality-Aware Mamba layer, which employs a Mixture-of-Experts architecture with
  modality-specific and modality-shared experts". Chosen: the tokens of all modalities
  are concatenated (text, audio, visual order) into one sequence; in each layer the
  in-projection of a Mamba mixer is a mixture of the token's own modality-specific
  expert and `num_shared` shared experts, softmax-routed per token; the selective scan
  and out-projection are shared (`msakit.layers.mamba.ModalityAwareMamba`). No
  load-balancing loss (the abstract names none; with 1 + K ≤ 5 dense experts every
  expert is used).
- The scan is causal (Mamba's); absent modalities and padding are skipped by the scan
  (Δ = 0), so a later modality never reads an absent one.
- Token layout (`pack_tokens`). By default each modality's segment is padded to the batch's
  longest, so padded steps sit *between* segments. The scan passes them unchanged, but the
  causal depthwise conv before it (kernel 4) does not: the first steps of a segment see
  zeros where, alone, they see the previous segment's last tokens, so a sample's eval output
  moves with the other samples' lengths (tests/test_alignmamba2.py shows that a kernel-1
  conv removes the difference). `pack_tokens=True` packs each sample's valid tokens
  contiguously (modality order, then time) with all padding at the end, trimmed to the
  longest sample: a causal conv and scan never see a padded step before a valid one, so
  the output is exactly the one the sample gets alone (padding-invariant; `msakit predict`
  may batch by length). Chosen over masking the conv (gathering each step's previous valid
  steps) because it is the same function, one stable sort + gather per batch rather than
  per layer, and the packed sequence is shorter. The alignment losses and the readout work
  on the per-modality tokens and masks, which packing leaves alone.
- Encoders: per modality LayerNorm → Linear → LayerNorm to the width H (the alignment
  losses see these tokens, so their scale is fixed and OT/MMD cannot shrink by
  shrinking the features); a learned modality embedding is added only after alignment.
- Readout: the mean of each modality's output tokens, concatenated (zeros where absent),
  then an MLP; regression output label_range · tanh.
- Explanations: `routing_<m>` (B, 1 + K) the mean routing weights of m's tokens in the
  last layer (column 0 = the specific expert), and `specific_share` (B, M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from msakit.batch import MODALITIES, Batch, ModelOutput, masked_mean
from msakit.config import ModelConfig, tunable
from msakit.errors import ConfigError
from msakit.layers.alignment import mmd, sinkhorn_distance
from msakit.layers.mamba import ModalityAwareMamba
from msakit.layers.mlp import MLP
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model


@dataclass
class AlignMamba2Config(ModelConfig):
    num_layers: int = tunable(2, choices=(1, 2, 3))
    state_size: int = tunable(16, choices=(4, 8, 16))  # N; must divide hidden_dim (Δ rank = H / N)
    expand: float = 2.0  # inner width E = expand · H
    num_shared: int = tunable(2, choices=(1, 2, 4))  # modality-shared experts per layer
    experts: str = "both"  # "both" | "specific" | "shared" | "none" (plain Mamba)
    ot_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # weight of the Sinkhorn loss
    mmd_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # weight of the MMD loss
    ot_blur: float = 0.5  # entropic blur ε of the Sinkhorn divergence
    mmd_sigma: float = 1.0  # Gaussian kernel width of the MMD, in units of √H (LayerNorm'd tokens have norm ≈ √H)
    anchor: str = "text"  # the modality others are aligned to; "" = every pair
    # pack each sample's valid tokens before its padding (module docstring): padding-invariant eval;
    # False = the stop-1..8 layout (segments padded in place), kept bit-identical for its numbers
    pack_tokens: bool = False

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "AlignMamba-2": {},
        "w/o OT": {"ot_weight": 0.0},
        "w/o MMD": {"mmd_weight": 0.0},
        "w/o alignment": {"ot_weight": 0.0, "mmd_weight": 0.0},
        "w/o specific experts": {"experts": "shared"},
        "w/o shared experts": {"experts": "specific"},
        "plain Mamba (no MoE)": {"experts": "none"},
    }


@register_model("alignmamba2")
class AlignMamba2(MSAModel):
    config_class = AlignMamba2Config
    config: AlignMamba2Config
    capabilities = Capabilities(padding_invariant=False)  # the default config's (pack_tokens=False)

    @classmethod
    def capabilities_for(cls, config: ModelConfig) -> Capabilities:
        """Padding-invariant only with `pack_tokens`: the padded-segment layout moves a sample's eval
        output with its batch (the conv reads padding between segments; tests/test_speed.py)."""
        assert isinstance(config, AlignMamba2Config)
        return Capabilities(padding_invariant=config.pack_tokens)

    def __init__(self, config: AlignMamba2Config) -> None:
        super().__init__(config)
        name, h = self.model_name, config.hidden_dim
        if config.anchor not in ("", *MODALITIES):
            raise ConfigError(f"model {name!r}: anchor must be '' or one of {MODALITIES}, got {config.anchor!r}")
        if config.num_layers < 1:
            raise ConfigError(f"model {name!r}: num_layers must be >= 1, got {config.num_layers}")
        if config.ot_weight < 0 or config.mmd_weight < 0:
            raise ConfigError(f"model {name!r}: ot_weight and mmd_weight must be >= 0")
        self.encoders = nn.ModuleDict(
            {
                m: nn.Sequential(nn.LayerNorm(config.dim(m)), nn.Linear(config.dim(m), h), nn.LayerNorm(h))
                for m in self.modalities
            }
        )
        self.modality_embedding = nn.Parameter(torch.zeros(len(self.modalities), h))
        self.layers = nn.ModuleList(
            ModalityAwareMamba(
                h,
                len(self.modalities),
                num_shared=config.num_shared,
                experts=config.experts,
                state_size=config.state_size,
                expand=config.expand,
                dropout=config.dropout,
                owner=f"model {name!r}",
            )
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(h)
        self.head = MLP(h * len(self.modalities), config.num_classes, hidden_dim=h, dropout=config.dropout)

    def _pairs(self) -> list[tuple[str, str]]:
        mods, a = self.modalities, self.config.anchor
        if a in mods:
            return [(a, m) for m in mods if m != a]
        return [(x, y) for i, x in enumerate(mods) for y in mods[i + 1 :]]

    def encode(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-modality tokens (B, Lm, H) and valid masks (B, Lm) (absent samples all False)."""
        masks = {m: batch.masks[m] & batch.present_mask(m)[:, None] for m in self.modalities}
        tokens = {m: self.encoders[m](batch.features[m]) * masks[m].unsqueeze(-1) for m in self.modalities}
        return tokens, masks

    def alignment_distances(
        self, batch: Batch, tokens: dict[str, Tensor] | None = None, masks: dict[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Mean OT and MMD over the modality pairs, over samples having both: {"ot", "mmd"} scalars."""
        if tokens is None or masks is None:
            tokens, masks = self.encode(batch)
        cfg, ot, md = self.config, [], []
        for a, b in self._pairs():
            valid = masks[a].any(1) & masks[b].any(1)
            if not valid.any():
                continue
            ot.append(sinkhorn_distance(tokens[a], masks[a], tokens[b], masks[b], blur=cfg.ot_blur)[valid].mean())
            md.append(
                mmd(tokens[a], masks[a], tokens[b], masks[b], sigma=cfg.mmd_sigma * self.config.hidden_dim**0.5)[
                    valid
                ].mean()
            )
        zero = next(iter(tokens.values())).new_zeros(())
        return {"ot": torch.stack(ot).mean() if ot else zero, "mmd": torch.stack(md).mean() if md else zero}

    def forward(self, batch: Batch) -> ModelOutput:
        cfg = self.config
        tokens, masks = self.encode(batch)
        aux: dict[str, Tensor] = {}
        if self.training and (cfg.ot_weight > 0 or cfg.mmd_weight > 0):  # training-only dual alignment
            dist = self.alignment_distances(batch, tokens, masks)
            if cfg.ot_weight > 0:
                aux["ot"] = cfg.ot_weight * dist["ot"]
            if cfg.mmd_weight > 0:
                aux["mmd"] = cfg.mmd_weight * dist["mmd"]
        lengths = [tokens[m].shape[1] for m in self.modalities]
        x = torch.cat([tokens[m] + self.modality_embedding[i] for i, m in enumerate(self.modalities)], dim=1)
        mask = torch.cat([masks[m] for m in self.modalities], dim=1)  # (B, ΣL)
        ids = torch.cat([torch.full((n,), i, device=x.device) for i, n in enumerate(lengths)])  # (ΣL,)
        routing = None
        if cfg.pack_tokens:
            x, routing = self._packed_layers(x, ids, mask)
        else:
            for layer in self.layers:
                x, routing = layer(x, ids, mask)  # (B, ΣL, H), (B, ΣL, 1 + K) | None
        x = self.norm(x)
        pooled, explanations, share = [], {}, x.new_zeros(batch.size, len(MODALITIES))
        segments = zip(x.split(lengths, 1), self._split(routing, lengths), self.modalities, strict=True)
        for seg, seg_routing, m in segments:
            pooled.append(masked_mean(seg, masks[m]))  # (B, H), zero where absent
            if seg_routing is not None:
                explanations[f"routing_{m}"] = r = masked_mean(seg_routing, masks[m])  # (B, 1 + K)
                if cfg.experts == "both":
                    share[:, MODALITIES.index(m)] = r[:, 0]
        if routing is not None and cfg.experts == "both":
            explanations["specific_share"] = share
        fused = torch.cat(pooled, dim=-1)  # (B, M·H)
        raw = self.head(fused)
        if not self.is_classifier:
            raw = cfg.label_range * torch.tanh(raw)
        return ModelOutput(
            prediction=self.bound_prediction(raw), aux_losses=aux, features={"fused": fused}, explanations=explanations
        )

    def _packed_layers(self, x: Tensor, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """The layers over each sample's valid tokens packed first (`pack_tokens`), returned in the
        segment layout: x (B, ΣL, H), ids (ΣL,), mask (B, ΣL) -> (B, ΣL, H), (B, ΣL, 1 + K) | None.
        Steps that are padding in the segment layout hold whatever the packed padding held."""
        order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices  # valid steps first, in order
        order = order[:, : max(int(mask.sum(1).max()), 1)]  # (B, P): P = the longest sample's valid steps
        h, index = x.shape[-1], order.unsqueeze(-1)
        packed, packed_mask = x.gather(1, index.expand(-1, -1, h)), mask.gather(1, order)  # (B, P, H), (B, P)
        packed_ids = ids.expand(x.shape[0], -1).gather(1, order)  # (B, P): each token's modality
        routing = None
        for layer in self.layers:
            packed, routing = layer(packed, packed_ids, packed_mask)
        out = x.new_zeros(x.shape).scatter(1, index.expand(-1, -1, h), packed)  # back to the segments
        if routing is not None:
            routing = routing.new_zeros(*x.shape[:2], routing.shape[-1]).scatter(
                1, index.expand(-1, -1, routing.shape[-1]), routing
            )
        return out, routing

    @staticmethod
    def _split(routing: Tensor | None, lengths: list[int]) -> list[Tensor | None]:
        return list(routing.split(lengths, 1)) if routing is not None else [None] * len(lengths)
