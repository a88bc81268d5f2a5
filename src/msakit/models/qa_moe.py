"""QA-MoE: Quality-Aware Mixture-of-Experts for multimodal sentiment under a continuous
reliability spectrum.

Source: the QA-MoE abstract (seed file 003; only the abstract exists). Its predecessor
EUAR (ACM MM 2024, ZixianGao/EUAR) routes with Gaussian experts and an uncertainty
routing loss; we read it to learn and wrote this from the abstract.

    encode     h_m = Pool(Enc_m(X_m))                                         (B, M, H)
    SSL-AU     (μ_m, log σ²_m) = Het_m([h_m; q_m]), trained by the Gaussian NLL against the
               *clean* pooled input x̄_m of a self-corrupted view (no labels)    (B, M, D_m)
               q_m = [std over steps of the step states; log(1 + steps)]      (B, M, H + 1)
    u_m        log-uncertainty = mean_d log σ²_m                               (B, M)
    route      g_m = TopK-softmax(R([h_m; u_m]) - λ·u_m·e_noise)                (B, M, E)
    experts    o_m = Σ_e g_{m,e}·Expert_e(h_m)                                  (B, M, H)
    fuse       [w; w_0] = softmax over present m and a prior slot of [a(o_m) - λ·u_m; b_0]
               y = Head(Σ_m w_m o_m + w_0·p_0)                                  (B, H)
    loss       task + ssl·NLL + balance·LB + routing·Σ_m w_m·σ̃²_m

Dimension legend: B batch, M modalities the model was built for, H hidden width, E experts,
D_m feature width of modality m.

Choices (what the abstract says -> what we chose -> why):
- "Continuous Reliability Spectrum unifying missingness and quality degradation": the
  robustness suite's `spectrum` perturbation (strength s drops steps with probability s and
  adds noise of noise fraction s). In training the model corrupts its own raw input (a
  forward pre-hook that runs before the input normaliser, so training sees the spectrum
  in the space where `msakit robustness` applies it; corrupting the normalised input
  instead, as last stop did, trains on a far milder spectrum than the one evaluated
  wherever feature scales differ, e.g. MMMO's raw COVAREP) with
  s ~ U(0, `self_corrupt`) per sample and modality (0 disables), left clean with
  probability `clean_share`, so one checkpoint sees the whole spectrum, both ends included
  ("one-checkpoint-for-all"); evaluation uses the input as given. The default reaches
  s = 1 (a modality fully absent): a checkpoint that never saw the far end of the
  spectrum in training has an untrained answer there (last stop's 0.8 gave 29.7 % or
  70.3 % on MMMO at s = 1, depending on the seed).
- "self-supervised aleatoric uncertainty": a heteroscedastic head per modality predicts
  the clean view's pooled, per-step-standardised input features from the encoding of the
  corrupted view; its predicted variance is the uncertainty. No label enters this loss,
  and its gradient stops at the encoder's output (`detach_ssl`), so the task sees the
  uncertainty as a measurement, not as a second objective shaping the representation.
  The head reads the pooled encoding *and* two quality cues of the view (`ssl_cues`, default
  on): the spread of the step states around their mean and the log number of valid steps.
  Why: reading the pooled encoding alone (the previous head, `ssl_cues=False`) its variance
  stayed flat along the spectrum although its actual error rose (synthetic:noisy, 5 seeds:
  log squared error +0.4 to +0.7 from s = 0 to 0.75, predicted log σ² +0.05), because mean
  pooling averages the added per-step noise away and hides how many steps were dropped.
  With the cues the variance rises with the level (docs/models/qa_moe.md, "Uncertainty along
  the spectrum"; `test_self_supervised_uncertainty_tracks_the_spectrum_level`). Both cues
  are label-free facts of the input the model is given.
- "explicitly guides expert routing": `guidance` picks the reading. "input": the router
  reads [h_m; u_m]; "bias": gate logits get -λ·u_m on every expert but the last (a
  sink expert for unreliable tokens) and the modality fusion logits get -λ·u_m;
  "both" (default) does both; "none" ignores u (the ablation). λ = `guidance_scale`.
- "suppress error propagation from unreliable signals": the fusion weights w above, plus
  EUAR's uncertainty routing loss Σ_m w_m·σ̃²_m (σ̃² the batch-normalised detached σ²).
  A softmax over the modalities alone cannot suppress *every* signal: when all of them
  are unreliable it still hands out a total weight of 1. So the fusion softmax has one
  more slot (`prior_slot`): a learned vector p_0 with a learned logit b_0 and no
  uncertainty, which takes the weight that -λ·u_m removes from degraded modalities; with
  every modality degraded or absent the head reads p_0 and predicts what training taught
  it for "no reliable evidence" (close to the label prior). Its weight is
  `explanations["prior_weight"]`; `prior_slot=False` is the ablation. What the head says
  for p_0 alone is fitted to the labels (`prior_fit`, the task loss of Head(p_0) for every
  sample: the best answer without evidence), since wholly absent inputs are rare in
  training.
- Experts are shared by the modalities (tokens of every modality compete for them), top-2
  of 4 by default, Switch load-balancing loss; `num_experts`=1 is the "w/o MoE" row.
- Absent modalities (per sample) get zero fusion weight; their uncertainty is still
  reported (what the head predicts for an empty input, which training makes high).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput, masked_mean, modality_index
from msakit.config import ModelConfig, tunable
from msakit.data.stats import DatasetStats
from msakit.errors import ConfigError
from msakit.layers import MLP, HeteroscedasticHead, MixtureOfExperts, SequenceEncoder, gaussian_nll, masked_softmax
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model
from msakit.robustness.perturbations import Spectrum, check_rate

GUIDANCE = ("both", "input", "bias", "none")
PRIOR_ANSWERS = ("learned", "labels")  # the answer without any modality: Head(p_0), or the labels' minimiser


@dataclass
class QAMoEConfig(ModelConfig):
    encoder: str = "transformer"  # SequenceEncoder kind: mean | lstm | transformer
    num_experts: int = tunable(4, choices=(1, 2, 4, 8))
    top_k: int = 2  # experts kept per token; 0 = dense softmax
    guidance: str = "both"  # how uncertainty steers routing: both | input | bias | none
    guidance_scale: float = tunable(1.0, low=0.1, high=4.0, log=True)  # λ
    ssl_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # self-supervised NLL
    balance_weight: float = 0.01  # Switch load-balancing loss
    routing_weight: float = tunable(0.01, low=0.001, high=0.1, log=True)  # Σ w·σ̃² (EUAR)
    self_corrupt: float = tunable(1.0, low=0.0, high=1.0)  # max spectrum strength of the self-corruption
    clean_share: float = tunable(0.25, low=0.0, high=0.5)  # share of training inputs left uncorrupted
    prior_slot: bool = True  # a fusion slot that takes the weight of unreliable modalities
    prior_fit: float = 0.1  # weight of the task loss of Head(p_0): the answer without evidence
    prior_answer: str = "learned"  # with no modality: learned (Head(p_0)) | labels (training labels' minimiser)
    detach_ssl: bool = True  # the SSL head reads a detached encoding
    ssl_cues: bool = True  # the SSL head also reads the view's quality cues (step spread, log step count)

    # checkpoints written before `ssl_cues` existed read the pooled encoding alone
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"ssl_cues": False}
    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "w/o uncertainty guidance": {"guidance": "none"},
        "guidance: router input only": {"guidance": "input"},
        "guidance: logit bias only": {"guidance": "bias"},
        "w/o self-supervised uncertainty": {"ssl_weight": 0.0, "guidance": "none"},
        "w/o spectrum self-corruption": {"self_corrupt": 0.0},
        "w/o prior slot": {"prior_slot": False},
        "w/o MoE (one expert)": {"num_experts": 1, "top_k": 0},
        "dense routing": {"top_k": 0},
    }


@register_model("qa_moe")
class QAMoE(MSAModel):
    config_class = QAMoEConfig
    config: QAMoEConfig
    capabilities = Capabilities(min_modalities=1)
    columns: Tensor
    label_answer: Tensor  # registered only with prior_answer="labels"

    def __init__(self, config: QAMoEConfig) -> None:
        super().__init__(config)
        if config.guidance not in GUIDANCE:
            raise ConfigError(f"model 'qa_moe': guidance must be one of {GUIDANCE}, got {config.guidance!r}")
        check_rate(config.self_corrupt, "model 'qa_moe': self_corrupt (the maximum spectrum strength)")
        check_rate(config.clean_share, "model 'qa_moe': clean_share")
        if config.prior_answer not in PRIOR_ANSWERS:
            raise ConfigError(
                f"model 'qa_moe': prior_answer must be one of {PRIOR_ANSWERS}, got {config.prior_answer!r}"
            )
        h, mods = config.hidden_dim, self.modalities
        self.encoders = nn.ModuleDict(
            {m: SequenceEncoder(config.dim(m), h, kind=config.encoder, dropout=config.dropout) for m in mods}
        )
        ssl_in = 2 * h + 1 if config.ssl_cues else h  # [pooled; step spread; log step count]
        self.uncertainty = nn.ModuleDict({m: HeteroscedasticHead(ssl_in, config.dim(m), hidden_dim=h) for m in mods})
        route_dim = 1 if config.guidance in ("both", "input") else 0
        self.moe = MixtureOfExperts(
            h, num_experts=config.num_experts, top_k=config.top_k, route_dim=route_dim, dropout=config.dropout
        )
        self.modality_embed = nn.Parameter(torch.zeros(len(mods), h))
        self.attend = nn.Linear(h, 1)
        self.prior_token = nn.Parameter(torch.zeros(h)) if config.prior_slot else None
        self.prior_logit = nn.Parameter(torch.zeros(1)) if config.prior_slot else None
        self.head = MLP(h, config.num_classes, hidden_dim=h, dropout=config.dropout)
        if config.prior_answer == "labels":  # set by on_fit_start, saved with the checkpoint
            self.register_buffer("label_answer", torch.zeros(config.num_classes))
        self.register_buffer("columns", torch.tensor([modality_index(m) for m in mods]), persistent=False)
        self.register_forward_pre_hook(_self_corrupt, prepend=True)  # before the input normaliser

    def _corrupt(self, batch: Batch) -> Batch:
        if not self.training or self.config.self_corrupt <= 0:
            return batch
        rng = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))  # follows the trainer's seed
        cfg = self.config
        return Spectrum(max_strength=cfg.self_corrupt, per_modality=True, clean_prob=cfg.clean_share)(batch, rng)

    def on_fit_start(self, stats: DatasetStats) -> None:
        if self.config.prior_answer == "labels":
            self.label_answer.copy_(label_minimiser(stats.labels, self))

    def forward(self, batch: Batch, clean: Batch | None = None) -> ModelOutput:
        """batch: the input (in training, a self-corrupted view); clean: its normalised clean view."""
        cfg, mods = self.config, self.modalities
        view, clean = batch, batch if clean is None else clean
        encoded = [self.encoders[m](view.features[m], view.masks[m]) for m in mods]  # (B, L_m, H), (B, H)
        pooled = torch.stack([p for _, p in encoded], 1)  # (B, M, H)
        present = view.present[:, self.columns]  # (B, M)

        # self-supervised aleatoric uncertainty (no labels): predict the clean view
        heads = self._uncertainty_heads(view, encoded)  # (μ, log σ²) each (B, D_m)
        log_u = torch.stack([lv.mean(-1) for _, lv in heads], 1)  # (B, M)
        # uncertainty is a measurement for routing: detached
        log_u_used = torch.zeros_like(log_u) if cfg.guidance == "none" else log_u.detach()

        # uncertainty-guided routing over shared experts
        bias = None
        if cfg.guidance in ("both", "bias") and cfg.num_experts > 1:
            bias = torch.zeros(*log_u.shape, cfg.num_experts, dtype=log_u.dtype, device=log_u.device)
            bias[..., :-1] = -cfg.guidance_scale * log_u_used.unsqueeze(-1)  # the last expert is the sink
        route_input = log_u_used.unsqueeze(-1) if cfg.guidance in ("both", "input") else None
        tokens = pooled + self.modality_embed
        moe = self.moe(tokens, route_input=route_input, bias=bias, valid=present)
        logits = self.attend(moe.output).squeeze(-1)
        if cfg.guidance in ("both", "bias"):
            logits = logits - cfg.guidance_scale * log_u_used
        if self.prior_token is not None and self.prior_logit is not None:
            slot = self.prior_logit.expand(batch.size, 1)
            valid = torch.cat([present, present.new_ones(batch.size, 1)], 1)
            both = masked_softmax(torch.cat([logits, slot], 1), valid)  # (B, M + 1)
            weights, prior_weight = both[:, :-1], both[:, -1]
            fused = (weights.unsqueeze(-1) * moe.output).sum(1) + prior_weight.unsqueeze(-1) * self.prior_token
        else:
            weights = masked_softmax(logits, present)  # (B, M)
            fused = (weights.unsqueeze(-1) * moe.output).sum(1)  # (B, H)
            prior_weight = torch.zeros(batch.size, dtype=weights.dtype, device=weights.device)
        prediction = self.bound_prediction(self.head(fused))
        empty = ~present.any(1) if self.config.prior_answer == "labels" else None  # (B,) no evidence at all
        if empty is not None and empty.any():
            answer = self.bound_prediction(self.label_answer.to(prediction.dtype).expand(batch.size, -1))
            prediction = torch.where(empty.view(-1, *[1] * (prediction.dim() - 1)), answer, prediction)

        aux: dict[str, Tensor] = {}
        if self.training:
            aux = self._aux_losses(clean, heads, log_u, weights, moe.balance_loss)
        full = torch.zeros(batch.size, batch.present.shape[1], dtype=weights.dtype, device=weights.device)
        unc = full.clone()
        full[:, self.columns] = weights
        unc[:, self.columns] = log_u.detach().exp()
        return ModelOutput(
            prediction=prediction,
            modality_weights=full,
            uncertainty=unc,
            aux_losses=aux,
            features={"fused": fused, **{m: pooled[:, i] for i, m in enumerate(mods)}},
            explanations={"routing": moe.gates, "log_uncertainty": log_u.detach(), "prior_weight": prior_weight},
        )

    def _uncertainty_heads(self, view: Batch, encoded: list[tuple[Tensor, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """Each modality's (μ, log σ²) of its clean pooled input, read from the view's encoding
        (with `ssl_cues`, also from the view's quality cues)."""
        heads = []
        for (seq, pooled), m in zip(encoded, self.modalities, strict=True):
            x = torch.cat([pooled, quality_cues(seq, view.masks[m])], -1) if self.config.ssl_cues else pooled
            heads.append(self.uncertainty[m](x.detach() if self.config.detach_ssl else x))
        return heads

    def _aux_losses(
        self, clean: Batch, heads: list[tuple[Tensor, Tensor]], log_u: Tensor, weights: Tensor, balance: Tensor
    ) -> dict[str, Tensor]:
        cfg, aux = self.config, {}
        if cfg.ssl_weight > 0:
            nll = []
            for (mu, log_var), m in zip(heads, self.modalities, strict=True):
                x = clean.features[m]
                target = masked_mean(F.layer_norm(x, x.shape[-1:]), clean.masks[m])  # (B, D_m), label-free
                nll.append(gaussian_nll(mu, log_var, target, valid=clean.present_mask(m)))
            aux["ssl_uncertainty"] = cfg.ssl_weight * torch.stack(nll).mean()
        if self.prior_token is not None and cfg.prior_fit > 0:
            alone = self.bound_prediction(self.head(self.prior_token).expand(clean.size, -1))
            aux["prior_fit"] = cfg.prior_fit * self.task_loss(alone, clean.labels)
        if cfg.balance_weight > 0 and cfg.num_experts > 1:
            aux["load_balance"] = cfg.balance_weight * balance
        if cfg.routing_weight > 0 and cfg.guidance != "none":
            u = log_u.detach().exp()
            u = u / u.mean().clamp_min(1e-6)
            aux["uncertainty_routing"] = cfg.routing_weight * (weights * u).sum(1).mean()
        return aux


def label_minimiser(labels: Any, model: MSAModel) -> Tensor:
    """(num_classes,) the constant prediction with the lowest task loss on `labels` (N,): their
    median under l1, their mean under mse, the log class frequencies for a classifier."""
    y = torch.as_tensor(labels, dtype=torch.float64).reshape(-1)
    if model.is_classifier:
        counts = torch.bincount(y.long(), minlength=model.config.num_classes).to(torch.float64)
        return (counts / counts.sum()).clamp_min(1e-12).log()
    if model.config.task_loss == "mse":
        return y.mean().reshape(1)
    return y.quantile(0.5).reshape(1)  # l1 (the default): any median minimises it; this is the midpoint


def quality_cues(seq: Tensor, mask: Tensor) -> Tensor:
    """(B, L, H) step states + (B, L) mask -> (B, H + 1): the per-feature spread (std) of the valid
    steps' states around their mean, and log(1 + the number of valid steps). Label-free facts of the
    view that mean pooling removes: added noise widens the spread, dropped steps shorten the count."""
    w = mask.to(seq.dtype).unsqueeze(-1)  # (B, L, 1)
    count = w.sum(1)  # (B, 1)
    mean = (seq * w).sum(1) / count.clamp_min(1.0)
    spread = (((seq - mean.unsqueeze(1)).pow(2) * w).sum(1) / count.clamp_min(1.0) + 1e-6).sqrt()  # (B, H)
    return torch.cat([spread, count.log1p()], -1)


def _self_corrupt(model: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook of QA-MoE, run before the input normaliser: in training, replace the raw
    batch by a self-corrupted view and pass its normalised clean view as `forward`'s `clean`."""
    if not (isinstance(model, QAMoE) and model.training and args and isinstance(args[0], Batch)) or len(args) > 1:
        return None
    batch = args[0]
    clean = model.input_norm(batch) if model.input_norm is not None else batch
    return (model._corrupt(batch), clean)
