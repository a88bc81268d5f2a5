"""TSSP-MSA: Tri-Stage Self-supervised Pretraining for multimodal sentiment analysis (seed paper §3).

Stage 1 (modality-specific self-supervision) lives in `msakit.pretrain` (objectives
`s_mlm`, `ecam`, `fmr`); this model loads what they wrote through `pretrained_text`,
`pretrained_audio`, `pretrained_visual` in `load_pretrained` (the trainer calls it once
on fresh training; `__init__` builds modules only and a checkpoint holds every weight,
the re-encoding MiniLM included, so it loads without the stage-1 folders). Stages 2
and 3 are this file:

    z_m   = TimeAwarePool(Enc_m(x_m))                      per-modality encoder (+ Time2Vec, TEAC)
    z̃_m   = W_m z_m + b_m                                  (UEMF 1) common space
    u_m   = H[p(y | f_m(dropout(z̃_m)))], T MC samples      (UEMF 2) epistemic uncertainty
    α_m   = softmax_{m present}(−u_m / τ)                  (UEMF 3) expert weights
    z_f   = Σ_m α_m z̃_m                                    (UEMF 4)
    r     = LN(z_f + Σ_m α_m g_m ⊙ z̃_m + Σ_{i<j} α_i α_j P z̃_i ⊙ P z̃_j)   GTFAR, g_m = σ(W_g[z̃_m; z_f])
    ŷ     = head(r)
    L     = L_task + λ_e·L_experts + λ7·L_C3R + λ_kd·L_KL + λ_fa·L_align + λ_o·L_orth + λ_a·L_TEAC

Dimension legend: B batch, L steps, D feature width, H hidden width, M modalities of the
config, T MC-dropout samples, C outputs (1 regression, else classes).

Interpretations (choices where the paper is silent or ambiguous):
- Uncertainty for regression: each expert head predicts a Gaussian (μ, log σ²) trained
  with Gaussian NLL; the T MC-dropout samples are moment-matched into one Gaussian with
  var = mean σ² + var μ, and u = its entropy ½·log(2πe·var). For classification u is
  the entropy of the mean MC softmax (the paper's H[Softmax(f(z̃))]). MC dropout acts on
  the expert head's input; in eval mode its masks come from a fixed-seed generator so
  predictions are deterministic. `mc_masks` says how that eval draw covers the batch:
  "per_sample" (the default) draws (T, B, H), so a sample's masks depend on where it sits
  in its batch and on the batch's size (seed 1's validation MAE on MOSI-e5 moves from
  0.7699 at batch 256 to 0.7716 at 128); "shared" draws one (T, 1, H) set for every
  sample, which makes the model padding-invariant (`capabilities_for`). The default keeps
  the old draw so that every documented tssp_msa number still reproduces from its command
  (off = bit-identical, tests/test_tssp_msa.py). Absent modalities get u = 0 and α = 0.
- "w/o uncertainty weighting" = uniform α over present modalities; "simple
  concatenation" = the concatenated z̃ (zeros where absent) through a linear layer,
  replacing UEMF and GTFAR (no expert weights are reported then).
- C3R: InfoNCE between nonlinear projections h_m of every present modality pair, both
  directions, averaged over pairs (the paper sums; the constant is in λ7). Curriculum:
  in epoch e only the `frac(e)` most confident samples of a batch (lowest mean u) take
  part, frac rising linearly from `curriculum_start` to 1 over `curriculum_epochs`.
  The ranking covers only samples with at least one modality: a sample with none has no
  u (YouTube has 125 such clips among 173 training clips) and never counts as confident.
- Missing modalities at test time: α is renormalised over what a sample has, so the
  model runs on any subset. Training with `-t modality_dropout=0.3` (the trainer's
  per-sample modality dropout) is what keeps the drop-one cost under 2 points on the
  synthetic benchmark (docs/models/tssp_msa.md); it is a training choice, not a field here.
- Rotating distillation: the teacher is modality (e−1) mod M in epoch e; every other
  modality is a student on samples where both are present and, with
  `distill_confident_only`, where the teacher is the more certain one. Outputs: KL
  between the teacher's and the student's predictive Gaussians (regression) or softmaxes
  (classification); features: 1 − cos(z̃_student, sg(z̃_teacher)).
- Orthogonality: MISA's ‖Ẑ_iᵀ Ẑ_j‖²_F between the batch-centred, L2-normalised pooled
  encodings z_i, z_j (before the common projection, so it does not fight C3R's alignment).
- TEAC: Time2Vec of each step's relative position enters the attention pooling of every
  encoder. The paper calls stage 2 "intra-modality sentiment anchoring" that sharpens
  the *unimodal* embeddings, so by default (`anchor_space="modality"`) k-means++
  (scikit-learn) clusters each modality's z̃_m over the training set and the
  emotion-weighted supervised contrastive loss runs within each modality (averaged over
  modalities); `anchor_space="fused"` clusters and contrasts the fused r instead (the
  seed implementation's reading). The representations are collected by id from the
  training batches of the previous epoch (`on_train_batch_end`, train mode) and
  clustered in `on_epoch_start` every `anchor_refresh` epochs; in epoch 1, before any
  clustering, the sentiment sign (or class) is the pseudo-label. Anchor i is weighted
  by (|y_i|/label_range + 0.1)·exp(−ū_i) (classes: exp(−ū_i)).
- Text adaptation feeds stage 2 by re-encoding `Batch.raw_text` with the adapted MiniLM
  (`layers.RawTextEncoder`: frozen, its weights in the state dict, token states in a
  bounded per-instance cache), replacing the dataset's precomputed states of the
  original MiniLM. `text_adaptation` picks the stage-1 folder: "s_mlm" =
  `pretrained_text` (sentiment-aware masking, p1 = 0.4 > p2 = 0.15), "plain_mlm" =
  `pretrained_text_plain` (the same objective with p1 = p2 = 0.15: the paper's "w/o
  S-MLM" control, which removes only the sentiment-aware masking), "none" = the
  precomputed features (no text adaptation at all).
- Search space (`msakit tune`): beside the shared fields, the loss weights the paper leaves
  open (λ_e, λ7, λ_kd, λ_a) and τ of the expert weights are declared tunable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput, modality_index
from msakit.config import ModelConfig, tunable
from msakit.data.stats import DatasetStats
from msakit.errors import ConfigError
from msakit.layers import MLP, SequenceEncoder, masked_softmax, symmetric_info_nce
from msakit.layers.pretrained import load_encoder_state, load_weights, unprefixed
from msakit.layers.text_reencoder import HIDDEN_DIM, RawTextEncoder
from msakit.layers.time2vec import Time2Vec
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model


@dataclass
class TSSPMSAConfig(ModelConfig):
    encoder: str = "transformer"  # SequenceEncoder kind; stage-1 weights must use the same
    time2vec_dim: int = 8  # TEAC: Time2Vec channels in the time-aware pooling
    # stage 1: folders written by `msakit pretrain s_mlm | ecam | fmr` ("" = no pretraining)
    pretrained_text: str = ""  # S-MLM folder: re-encode raw_text with the adapted MiniLM
    pretrained_text_plain: str = ""  # plain-MLM folder (`s_mlm -o p_sentiment=0.15`), the control
    text_adaptation: str = "s_mlm"  # s_mlm (pretrained_text) | plain_mlm (pretrained_text_plain) | none
    text_cache_size: int = 4096  # transcripts whose re-encoded states are kept (per model instance)
    pretrained_audio: str = ""
    pretrained_visual: str = ""
    text_max_tokens: int = 50  # as the dataset's precomputed MiniLM states
    # stage 2: UEMF
    fusion: str = "uncertainty"  # uncertainty | mean (w/o uncertainty weighting) | concat (simple concatenation)
    mc_samples: int = 8  # T
    mc_dropout: float = 0.2  # dropout rate of the MC samples
    # eval-mode MC masks (training always draws fresh per-sample masks): "per_sample" = one
    # fixed-seed (T, B, H) draw, so a sample's masks, hence its u and α, depend on its position
    # in the batch and the batch size; "shared" = one fixed-seed (T, 1, H) set broadcast over
    # the batch, so a sample's eval output depends on it alone (padding_invariant). The default
    # stays "per_sample": every documented tssp_msa number was measured with it and reproduces.
    mc_masks: str = "per_sample"
    tau: float = tunable(0.5, low=0.1, high=2.0, log=True)  # τ of α = softmax(−u/τ)
    expert_weight: float = tunable(0.5, low=0.0, high=1.0)  # per-modality expert heads' own loss (Gaussian NLL / CE)
    # stage 3: C3R, distillation, GTFAR, orthogonality, TEAC
    contrastive_weight: float = tunable(0.1, low=0.0, high=0.5)  # λ7
    contrastive_temperature: float = 0.1
    curriculum_start: float = 0.5  # share of most confident samples used in epoch 1
    curriculum_epochs: int = 10  # epochs until every sample takes part
    distill_weight: float = tunable(0.1, low=0.0, high=0.5)  # KL between teacher and student outputs
    distill_feature_weight: float = 0.1  # teacher-student feature alignment
    distill_confident_only: bool = True  # distil only where the teacher is more certain
    orth_weight: float = 0.01
    anchor_weight: float = tunable(0.1, low=0.0, high=0.5)  # emotion-weighted supervised contrastive loss on anchors
    anchor_temperature: float = 0.2
    num_anchors: int = 8  # k of k-means++
    anchor_refresh: int = 1  # epochs between pseudo-label refreshes
    anchor_space: str = "modality"  # TEAC anchors per modality (z̃_m, the paper's "intra-modality") | fused (r)

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "w/o S-MLM (plain MLM)": {"text_adaptation": "plain_mlm"},  # the paper's row: p1 = p2 = 0.15
        "w/o text adaptation": {"text_adaptation": "none"},  # precomputed MiniLM states, no stage-1 text
        "w/o ECAM": {"pretrained_audio": ""},
        "w/o FMR": {"pretrained_visual": ""},
        "w/o uncertainty weighting": {"fusion": "mean"},
        "simple concatenation": {"fusion": "concat"},
        "w/o contrastive loss": {"contrastive_weight": 0.0},
        "w/o rotating distillation": {"distill_weight": 0.0, "distill_feature_weight": 0.0},
    }


class TimeAwarePool(nn.Module):
    """Attention pooling whose scores see Time2Vec(t / (len − 1)): (B, L, H), (B, L) -> (B, H)."""

    def __init__(self, dim: int, time_dim: int) -> None:
        super().__init__()
        self.time = Time2Vec(time_dim)
        self.key = nn.Linear(dim + time_dim, dim)
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1, keepdim=True).clamp_min(2).to(states.dtype)  # (B, 1)
        t = torch.arange(states.shape[1], device=states.device, dtype=states.dtype)[None, :] / (lengths - 1)
        keys = torch.tanh(self.key(torch.cat([states, self.time(t.unsqueeze(-1))], dim=-1)))  # (B, L, H)
        weights = masked_softmax(self.score(keys).squeeze(-1), mask)  # (B, L), 0 where no valid step
        return (weights.unsqueeze(-1) * states).sum(1)


TEXT_ADAPTATIONS = ("s_mlm", "plain_mlm", "none")
ANCHOR_SPACES = ("modality", "fused")
MC_MASKS = ("per_sample", "shared")


@register_model("tssp_msa")
class TSSPMSA(MSAModel):
    config_class = TSSPMSAConfig
    config: TSSPMSAConfig

    @classmethod
    def capabilities_for(cls, config: ModelConfig) -> Capabilities:
        """Reads raw text when a stage-1 text folder is in use (it re-encodes the transcripts);
        padding-invariant only with shared eval MC masks (per-sample ones move with the batch)."""
        assert isinstance(config, TSSPMSAConfig)
        return Capabilities(
            reads_raw_text=bool(_text_folder(config)) and "text" in config.modalities,
            padding_invariant=config.mc_masks == "shared",  # tests/test_speed.py checks it
        )

    def __init__(self, config: TSSPMSAConfig) -> None:
        super().__init__(config)
        if config.fusion not in ("uncertainty", "mean", "concat"):
            raise ConfigError(f"model 'tssp_msa': fusion must be uncertainty, mean or concat, got {config.fusion!r}")
        if config.text_adaptation not in TEXT_ADAPTATIONS:
            raise ConfigError(
                f"model 'tssp_msa': text_adaptation must be one of {TEXT_ADAPTATIONS}, got {config.text_adaptation!r}"
            )
        if config.mc_masks not in MC_MASKS:
            raise ConfigError(f"model 'tssp_msa': mc_masks must be one of {MC_MASKS}, got {config.mc_masks!r}")
        if config.anchor_space not in ANCHOR_SPACES:
            raise ConfigError(
                f"model 'tssp_msa': anchor_space must be one of {ANCHOR_SPACES}, got {config.anchor_space!r}"
            )
        if config.text_adaptation == "plain_mlm" and not config.pretrained_text_plain:
            raise ConfigError(
                "model 'tssp_msa': text_adaptation='plain_mlm' needs pretrained_text_plain "
                "(the folder of `msakit pretrain s_mlm -o p_sentiment=0.15`)"
            )
        h, mods = config.hidden_dim, self.modalities
        self.regression = config.num_classes == 1
        expert_out = 2 if self.regression else config.num_classes  # (μ, log σ²) or logits
        self.encoders = nn.ModuleDict(
            {m: SequenceEncoder(config.dim(m), h, kind=config.encoder, dropout=config.dropout) for m in mods}
        )
        self.pools = nn.ModuleDict({m: TimeAwarePool(h, config.time2vec_dim) for m in mods})
        self.project = nn.ModuleDict({m: nn.Linear(h, h) for m in mods})  # W_i, b_i
        self.experts = nn.ModuleDict({m: MLP(h, expert_out, hidden_dim=h) for m in mods})  # f_i
        self.contrast = nn.ModuleDict({m: MLP(h, h, hidden_dim=h) for m in mods})  # Proj_i of C3R
        if config.fusion == "concat":
            self.concat = nn.Linear(h * len(mods), h)
        else:
            self.gates = nn.ModuleDict({m: nn.Linear(2 * h, h) for m in mods})  # GTFAR g_m
            self.pair_proj = nn.Linear(h, h)  # GTFAR tensor term P
            self.fuse_norm = nn.LayerNorm(h)
        spaces = mods if config.anchor_space == "modality" else ("fused",)
        self.anchor_proj = nn.ModuleDict({k: MLP(h, h, hidden_dim=h) for k in spaces})  # TEAC
        self.head = MLP(h, config.num_classes, hidden_dim=h, dropout=config.dropout)
        self.text_encoder: RawTextEncoder | None = None
        if _text_folder(config) and "text" in mods:
            if config.text_dim != HIDDEN_DIM:
                raise ConfigError("model 'tssp_msa': pretrained_text re-encodes with MiniLM, text_dim must be 384")
            self.text_encoder = RawTextEncoder(max_tokens=config.text_max_tokens, cache_size=config.text_cache_size)
        # training state set by hooks (not parameters, not saved)
        self._curriculum = 1.0
        self._teacher = 0
        self._pseudo: dict[str, dict[str, int]] = {}  # anchor space -> id -> cluster
        self._collected: dict[str, dict[str, Tensor]] = {}  # anchor space -> id -> representation

    # ---- stage 1 -> stage 2 ----------------------------------------------------------
    def load_pretrained(self) -> None:
        """Stage-1 weights from the folders the config names (called once, fresh training only)."""
        c = self.config
        for m, path in (("audio", c.pretrained_audio), ("visual", c.pretrained_visual)):
            if path and m in self.modalities:
                state = load_encoder_state(path, modality=m, in_dim=c.dim(m), hidden_dim=c.hidden_dim, kind=c.encoder)
                self.encoders[m].load_state_dict(state)
        folder = _text_folder(c)
        if self.text_encoder is not None:
            tensors, meta = load_weights(folder)
            if meta.get("objective") != "s_mlm":
                raise ConfigError(f"{folder}: pretrained_text needs `msakit pretrain s_mlm` output")
            masking = meta.get("config", {})
            plain = masking.get("p_sentiment") == masking.get("p_other")
            if plain != (c.text_adaptation == "plain_mlm"):
                want = "p_sentiment == p_other (plain MLM)" if not plain else "p_sentiment > p_other (S-MLM)"
                field = "pretrained_text_plain" if c.text_adaptation == "plain_mlm" else "pretrained_text"
                raise ConfigError(
                    f"{folder}: {field} needs an s_mlm folder with {want}; it was trained with "
                    f"p_sentiment={masking.get('p_sentiment')}, p_other={masking.get('p_other')}"
                )
            self.text_encoder.load_encoder_state(unprefixed(tensors, "encoder"))

    def _text_states(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Adapted-MiniLM token states for raw_text (B, Lt, 384), or the precomputed ones."""
        if self.text_encoder is None:
            return batch.features["text"], batch.masks["text"]
        if batch.raw_text is None:
            raise ConfigError("model 'tssp_msa': pretrained_text re-encodes transcripts, but the batch has no raw_text")
        return self.text_encoder(batch.raw_text, batch.present_mask("text"))

    # ---- stage 2: UEMF ---------------------------------------------------------------
    def _uncertainty(self, m: str, zt: Tensor) -> tuple[Tensor, Tensor]:
        """MC-dropout predictive entropy (B,) and the deterministic expert output (B, E)."""
        c = self.config
        gen, rows = None, zt.shape[0]  # training: fresh masks for every sample
        if not self.training:  # fixed-seed masks: deterministic eval; "shared" = one set for the batch
            gen = torch.Generator(device=zt.device).manual_seed(0)
            rows = 1 if c.mc_masks == "shared" else rows
        keep = torch.rand((c.mc_samples, rows, zt.shape[1]), generator=gen, device=zt.device) >= c.mc_dropout
        samples = self.experts[m](zt.unsqueeze(0) * keep / (1 - c.mc_dropout))  # (T, B, E)
        if self.regression:
            mu, logvar = samples[..., 0], samples[..., 1].clamp(-6, 6)
            var = logvar.exp().mean(0) + mu.var(0, unbiased=False)  # (B,) moment-matched
            u = 0.5 * torch.log(2 * math.pi * math.e * var)
        else:
            p = samples.softmax(-1).mean(0)  # (B, C)
            u = -(p * p.clamp_min(1e-9).log()).sum(-1)
        return u, self.experts[m](zt)

    def forward(self, batch: Batch) -> ModelOutput:
        c, mods = self.config, self.modalities
        present = batch.present[:, [modality_index(m) for m in mods]]  # (B, M)
        z, zt, u, expert = {}, {}, [], {}
        for i, m in enumerate(mods):
            x, mask = self._text_states(batch) if m == "text" else (batch.features[m], batch.masks[m])
            mask = mask & present[:, i : i + 1]
            states, _ = self.encoders[m](x, mask)  # (B, L, H)
            z[m] = self.pools[m](states, mask)  # (B, H)
            zt[m] = self.project[m](z[m]) * present[:, i : i + 1]  # (UEMF 1), zero where absent
            u_m, expert[m] = self._uncertainty(m, zt[m])
            u.append(u_m)
        unc = torch.stack(u, dim=1) * present  # (B, M), 0 where absent
        stacked = torch.stack([zt[m] for m in mods], dim=1)  # (B, M, H)
        alpha: Tensor | None = None
        if c.fusion == "concat":
            r = self.concat(stacked.flatten(1))  # (B, H)
        else:
            scores = -unc / c.tau if c.fusion == "uncertainty" else torch.zeros_like(unc)
            alpha = masked_softmax(scores, present)  # (UEMF 3), (B, M)
            fused = (alpha.unsqueeze(-1) * stacked).sum(1)  # (UEMF 4), (B, H)
            r = self._gtfar(stacked, fused, alpha)
        prediction = self.bound_prediction(self.head(r))
        aux: dict[str, Tensor] = {}
        if self.training:
            aux = self._stage3_losses(batch, present, z, zt, unc, expert, r)
        weights = torch.zeros_like(batch.present, dtype=r.dtype)
        uncertainty = torch.zeros_like(weights)
        columns = [modality_index(m) for m in mods]
        uncertainty[:, columns] = unc
        if alpha is not None:
            weights[:, columns] = alpha
        return ModelOutput(
            prediction=prediction,
            modality_weights=weights if alpha is not None else None,
            uncertainty=uncertainty,
            aux_losses=aux,
            features={"fused": r, **{m: zt[m] for m in mods}},
            explanations={
                "expert_predictions": torch.stack([expert[m][:, 0] for m in mods], 1)
                if self.regression
                else torch.stack([expert[m] for m in mods], 1)
            },
        )

    def _gtfar(self, stacked: Tensor, fused: Tensor, alpha: Tensor) -> Tensor:
        """Gated tensor fusion with confidence (α) reweighting: (B, M, H), (B, H), (B, M) -> (B, H)."""
        gated = sum(
            alpha[:, i : i + 1] * torch.sigmoid(self.gates[m](torch.cat([stacked[:, i], fused], -1))) * stacked[:, i]
            for i, m in enumerate(self.modalities)
        )
        q = self.pair_proj(stacked)  # (B, M, H)
        tensor = sum(
            (alpha[:, i] * alpha[:, j]).unsqueeze(-1) * q[:, i] * q[:, j]
            for i, j in combinations(range(len(self.modalities)), 2)
        )
        return self.fuse_norm(fused + gated + tensor)

    # ---- stage 3: C3R and calibration --------------------------------------------------
    def _stage3_losses(
        self,
        batch: Batch,
        present: Tensor,
        z: dict[str, Tensor],
        zt: dict[str, Tensor],
        unc: Tensor,
        expert: dict[str, Tensor],
        r: Tensor,
    ) -> dict[str, Tensor]:
        c, mods, y = self.config, self.modalities, batch.labels
        zero = r.sum() * 0.0
        aux: dict[str, Tensor] = {}
        # per-expert supervision keeps each u_m meaningful (Gaussian NLL / CE)
        expert_losses = [
            self._expert_loss(expert[m][present[:, i]], y[present[:, i]])
            for i, m in enumerate(mods)
            if present[:, i].any()
        ]
        if c.expert_weight > 0 and expert_losses:
            aux["experts"] = c.expert_weight * torch.stack(expert_losses).mean()
        # curriculum: the frac most confident samples (lowest mean u over present modalities);
        # a sample with no modality has no u and is never among them
        mean_u = (unc.detach() * present).sum(1) / present.sum(1).clamp_min(1)  # (B,)
        confident = self._confident(mean_u, present)  # (B,) bool
        pairs = list(combinations(range(len(mods)), 2))
        if c.contrastive_weight > 0 and pairs:  # C3R (Algorithm 3)
            h = {m: self.contrast[m](zt[m]) for m in mods}
            nce = [
                symmetric_info_nce(
                    h[mods[i]],
                    h[mods[j]],
                    temperature=c.contrastive_temperature,
                    valid=present[:, i] & present[:, j] & confident,
                )
                for i, j in pairs
            ]
            aux["c3r"] = c.contrastive_weight * torch.stack(nce).mean()
        if (c.distill_weight > 0 or c.distill_feature_weight > 0) and len(mods) > 1:
            aux.update(self._distill(present, zt, unc, expert, zero))
        if c.orth_weight > 0 and pairs:
            aux["orth"] = (
                c.orth_weight
                * torch.stack(
                    [_orthogonality(z[mods[i]], z[mods[j]], present[:, i] & present[:, j]) for i, j in pairs]
                ).mean()
            )
        if c.anchor_weight > 0:
            if c.anchor_space == "fused":
                teac = self._anchor_loss(batch, "fused", r, mean_u, confident, zero)
            else:  # intra-modality anchoring: each modality's z̃_m against its own clusters
                teac = torch.stack(
                    [
                        self._anchor_loss(batch, m, zt[m], mean_u, confident & present[:, i], zero)
                        for i, m in enumerate(mods)
                    ]
                ).mean()
            aux["teac"] = c.anchor_weight * teac
        return aux

    def _confident(self, mean_u: Tensor, present: Tensor) -> Tensor:
        """The curriculum: the `frac(e)` samples with the lowest mean u (B,) bool; a sample
        with no modality has no u and is never among them."""
        seen = present.any(1)  # (B,)
        n_keep = max(2, math.ceil(self._curriculum * int(seen.sum())))
        ranked = mean_u.masked_fill(~seen, float("inf"))
        return (ranked.argsort().argsort() < n_keep) & seen

    def _expert_loss(self, out: Tensor, y: Tensor) -> Tensor:
        if not self.regression:
            return F.cross_entropy(out, y.long())
        mu, logvar = out[:, 0], out[:, 1].clamp(-6, 6)
        return 0.5 * (logvar + (y.float() - mu).pow(2) / logvar.exp()).mean()

    def _distill(
        self, present: Tensor, zt: dict[str, Tensor], unc: Tensor, expert: dict[str, Tensor], zero: Tensor
    ) -> dict[str, Tensor]:
        """Rotating teacher -> students: KL on outputs, cosine alignment of z̃."""
        c, mods = self.config, self.modalities
        t = self._teacher % len(mods)
        kl, align = [], []
        for s in range(len(mods)):
            if s == t:
                continue
            ok = present[:, t] & present[:, s]
            if c.distill_confident_only:
                ok &= unc[:, t].detach() < unc[:, s].detach()
            if not ok.any():
                continue
            teacher, student = expert[mods[t]][ok].detach(), expert[mods[s]][ok]
            kl.append(self._output_kl(teacher, student))
            align.append(self._align(zt[mods[s]][ok], zt[mods[t]][ok].detach()))
        return {
            "distill_kl": c.distill_weight * (torch.stack(kl).mean() if kl else zero),
            "distill_align": c.distill_feature_weight * (torch.stack(align).mean() if align else zero),
        }

    @staticmethod
    def _align(student: Tensor, teacher: Tensor) -> Tensor:
        """Feature alignment 1 − cos(z̃_student, sg(z̃_teacher)), averaged over samples."""
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()

    def _output_kl(self, teacher: Tensor, student: Tensor) -> Tensor:
        if not self.regression:
            return F.kl_div(student.log_softmax(-1), teacher.softmax(-1), reduction="batchmean")
        mt, lt = teacher[:, 0], teacher[:, 1].clamp(-6, 6)
        ms, ls = student[:, 0], student[:, 1].clamp(-6, 6)
        return 0.5 * (ls - lt + (lt.exp() + (mt - ms).pow(2)) / ls.exp() - 1).mean()  # KL(N_t || N_s)

    def _anchor_loss(
        self, batch: Batch, space: str, r: Tensor, mean_u: Tensor, confident: Tensor, zero: Tensor
    ) -> Tensor:
        """TEAC: emotion-weighted supervised contrastive loss over k-means++ pseudo-labels of `space`."""
        c, y = self.config, batch.labels
        fallback = y.long() if not self.regression else torch.sign(y.float()).long()
        pseudo = self._pseudo.get(space, {})
        labels = torch.tensor([pseudo.get(i, -1) for i in batch.ids], device=r.device)
        labels = torch.where(labels >= 0, labels, fallback + 1000) if pseudo else fallback
        a = F.normalize(self.anchor_proj[space](r), dim=-1)  # (B, H)
        eye = torch.eye(batch.size, dtype=torch.bool, device=r.device)
        logits = (a @ a.T / c.anchor_temperature).masked_fill(eye, float("-inf"))
        log_prob = logits.log_softmax(-1).masked_fill(eye, 0.0)
        pos = (labels[:, None] == labels[None, :]) & ~eye & confident[None, :]
        rows = pos.any(1) & confident
        if not rows.any():
            return zero + a.sum() * 0.0
        per_anchor = -(log_prob * pos).sum(1)[rows] / pos.sum(1)[rows]
        w = self._anchor_weights(y, mean_u)[rows]
        return (w * per_anchor).sum() / w.sum().clamp_min(1e-9)

    def _anchor_weights(self, y: Tensor, mean_u: Tensor) -> Tensor:
        """Emotion-weighted SupCon: (|y|/label_range + 0.1)·exp(−ū) per anchor (classes: exp(−ū))."""
        emotion = y.float().abs() / self.config.label_range + 0.1 if self.regression else torch.ones_like(mean_u)
        return emotion * torch.exp(-mean_u)

    # ---- hooks -----------------------------------------------------------------------
    def on_fit_start(self, stats: DatasetStats) -> None:
        self._pseudo, self._collected = {}, {}

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        c = self.config
        progress = min(1.0, (epoch - 1) / max(1, c.curriculum_epochs))
        self._curriculum = c.curriculum_start + (1.0 - c.curriculum_start) * progress
        self._teacher = self.teacher_of(epoch)
        if c.anchor_weight > 0 and self._collected and (epoch - 1) % max(1, c.anchor_refresh) == 0:
            self.refresh_anchors()

    def teacher_of(self, epoch: int) -> int:
        """Rotating distillation: each modality teaches in turn, modality (e − 1) mod M in epoch e."""
        return (epoch - 1) % len(self.modalities)

    @torch.no_grad()
    def on_train_batch_end(self, batch: Batch, output: ModelOutput, epoch: int) -> None:
        """Keep each training sample's latest anchor representation(s), by id, for the next k-means."""
        if self.config.anchor_weight <= 0:
            return
        for space in self.anchor_proj:
            feats = output.features[space].detach().float().cpu()  # (B, H)
            keep = batch.present_mask(space).cpu() if space != "fused" else batch.present.any(1).cpu()
            store = self._collected.setdefault(space, {})
            for i, f, k in zip(batch.ids, feats, keep, strict=True):
                if k:
                    store[i] = f

    def refresh_anchors(self) -> None:
        """k-means++ over the collected representations of each anchor space -> pseudo-labels by id."""
        from sklearn.cluster import KMeans

        for space, store in self._collected.items():
            ids = list(store)
            k = min(self.config.num_anchors, len(ids))
            if k < 2:
                continue
            x = torch.stack([store[i] for i in ids]).numpy()
            assign = KMeans(n_clusters=k, init="k-means++", n_init=3, random_state=0).fit_predict(x)
            self._pseudo[space] = dict(zip(ids, (int(a) for a in assign), strict=True))


def _orthogonality(a: Tensor, b: Tensor, valid: Tensor) -> Tensor:
    """‖Âᵀ B̂‖²_F / H² on batch-centred, row-normalised encodings (MISA's difference loss)."""
    if valid.sum() < 2:
        return a.sum() * 0.0 + b.sum() * 0.0
    a, b = a[valid], b[valid]
    a = F.normalize(a - a.mean(0), dim=-1)
    b = F.normalize(b - b.mean(0), dim=-1)
    return (a.T @ b).pow(2).mean()


def _text_folder(config: TSSPMSAConfig) -> str:
    """The stage-1 text folder `text_adaptation` selects (\"\" = precomputed features)."""
    return {"s_mlm": config.pretrained_text, "plain_mlm": config.pretrained_text_plain}.get(config.text_adaptation, "")
