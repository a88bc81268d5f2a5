"""PRLF: Progressive Representation Learning Framework for sentiment under uncertain
missing modalities.

Source: the PRLF abstract (seed file 003; only the abstract exists, no code).

    encode     H_m = Enc_m(X_m) (B, L_m, H),  h_m = Pool(H_m)
    experts    (ŷ_m, log σ²_m) = Het_m(h_m), trained on the label (Gaussian NLL; CE for classes)
    AMRE       cues_m = [confidence_m, log tr F_m]; r = softmax_present(Est(cues)); p = argmax r
    ProgInt ×K A_a ← A_a + g_a^k·CMA_k(A_a, H_p) for each other modality a      (B, A, L, H)
               g_a^k = r_a / max(r_a, r_p) (noise suppression; 1 for equally reliable)
    predict    z = Pool(H_p) + Σ_a g_a·Pool(A_a);  y = Head(z)
    loss       task + unimodal·NLL + align·mean_k (1 - cos(Pool(A_a^k), sg[Pool(H_p)]))

Dimension legend: B batch, M modalities the model was built for, A = M - 1 others, L common
padded length (max over modalities), H hidden width, K interaction steps.

Choices (what the abstract says -> what we chose -> why):
- "reliability of each modality using recognition confidence": each modality has a
  unimodal recogniser; for regression it is heteroscedastic and confidence = -log σ²_m
  (its predicted log-precision), for classification confidence = log max_c p_c.
- "... and Fisher information": the trace of the Fisher information of the recogniser's
  predictive distribution w.r.t. the representation it reads, in closed form for its
  linear last layer (`layers.reliability.fisher_trace_*`): large when a small change of
  the representation moves the prediction a lot relative to its spread. Cues are detached:
  they are measurements. The estimator is monotone (non-negative cue weights, initialised
  to 1, so it starts as inverse-variance weighting) and learns from the task loss how much
  each cue counts (a free MLP over the cues, our first version, left the dominant choice
  at chance, 34 %, after 8 epochs on a 300-sample synthetic:dominant; docs/models/prlf.md).
  `cues` selects "both" (default), "confidence" or "fisher" (ablations).
- "determine the dominant modality": p = argmax of the reliability over the modalities the
  sample has (per sample). `use_amre` False fixes p to text (the usual MSA anchor; the first
  modality the data has when it lacks text) with uniform reliabilities; `fixed_dominant`
  pins p to one modality while keeping AMRE weights.
- "iteratively aligns the other modalities with the dominant one": K cross-modal attention
  steps (query: the other modality, key: the dominant), each residual and scaled by the
  suppression gate g; an alignment loss pulls each step's pooled result toward the pooled
  dominant (stop-gradient, so the dominant is the anchor, not dragged toward the others).
- "suppressing noise": g_a = r_a / max(r_a, r_p), so a modality less reliable than the
  dominant is attenuated in every step and in the final sum; `suppress` False sets g = 1.
- The dominant sequence is gathered per sample (no loop over samples), as in AMSGFN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput, masked_mean, modality_index
from msakit.config import ModelConfig, tunable
from msakit.errors import ConfigError
from msakit.layers import (
    MLP,
    CrossModalAttention,
    HeteroscedasticHead,
    ReliabilityEstimator,
    SequenceEncoder,
    gaussian_nll,
)
from msakit.layers.reliability import fisher_trace_classifier, fisher_trace_gaussian
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model

CUES = ("both", "confidence", "fisher")


@dataclass
class PRLFConfig(ModelConfig):
    encoder: str = "transformer"  # SequenceEncoder kind: mean | lstm | transformer
    heads: int = 4
    steps: int = tunable(2, choices=(0, 1, 2, 3))  # K ProgInteract steps; 0 = no interaction
    cues: str = "both"  # AMRE cues: both | confidence | fisher
    use_amre: bool = True  # False: text dominant, uniform reliabilities
    fixed_dominant: str = ""  # "" = per-sample argmax; else pin the dominant modality
    suppress: bool = True  # reliability gate on the other modalities
    unimodal_weight: float = tunable(0.5, low=0.1, high=1.0, log=True)  # unimodal recogniser loss
    align_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # ProgInteract alignment loss

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "w/o AMRE (text dominant)": {"use_amre": False},
        "AMRE: confidence only": {"cues": "confidence"},
        "AMRE: Fisher only": {"cues": "fisher"},
        "w/o ProgInteract": {"steps": 0},
        "one interaction step": {"steps": 1},
        "w/o noise suppression": {"suppress": False},
        "w/o alignment loss": {"align_weight": 0.0},
    }


@register_model("prlf")
class PRLF(MSAModel):
    config_class = PRLFConfig
    config: PRLFConfig
    capabilities = Capabilities(min_modalities=2)  # a dominant modality and one to align to it
    columns: Tensor

    def __init__(self, config: PRLFConfig) -> None:
        super().__init__(config)
        mods, h = self.modalities, config.hidden_dim
        if config.cues not in CUES:
            raise ConfigError(f"model 'prlf': cues must be one of {CUES}, got {config.cues!r}")
        anchor = config.fixed_dominant or ("" if config.use_amre else ("text" if "text" in mods else mods[0]))
        if anchor and anchor not in mods:
            raise ConfigError(
                f"model 'prlf': fixed_dominant={anchor!r} is not one of the data's modalities {list(mods)}"
            )
        if config.steps < 0 or h % config.heads:
            raise ConfigError(f"model 'prlf': steps must be >= 0 and heads must divide hidden_dim ({config})")
        self.anchor = anchor
        self.encoders = nn.ModuleDict(
            {m: SequenceEncoder(config.dim(m), h, kind=config.encoder, dropout=config.dropout) for m in mods}
        )
        self.experts = nn.ModuleDict({m: HeteroscedasticHead(h, config.num_classes, hidden_dim=h) for m in mods})
        if config.use_amre:
            self.amre = ReliabilityEstimator(2 if config.cues == "both" else 1, len(mods))
        self.interact = nn.ModuleList(
            CrossModalAttention(h, heads=config.heads, dropout=config.dropout) for _ in range(config.steps)
        )
        self.head = MLP(h, config.num_classes, hidden_dim=h, dropout=config.dropout)
        self.register_buffer("columns", torch.tensor([modality_index(m) for m in mods]), persistent=False)

    def _cues(self, pooled: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor]:
        """Unimodal predictions and the detached (confidence, log Fisher) cues, each (B, M)."""
        outs, conf, fisher = [], [], []
        for i, m in enumerate(self.modalities):
            head = cast(HeteroscedasticHead, self.experts[m])
            mean, log_var = head(pooled[:, i])
            if self.is_classifier:
                probs = mean.detach().softmax(-1)
                conf.append(probs.max(-1).values.log())
                fisher.append(fisher_trace_classifier(probs, head.mean_layer.weight.detach()))
            else:
                conf.append(-log_var.detach().squeeze(-1))
                fisher.append(
                    fisher_trace_gaussian(
                        log_var.detach(), head.mean_layer.weight.detach(), head.log_var_layer.weight.detach()
                    )
                )
            outs.append((mean, log_var))
        return outs, torch.stack(conf, 1), torch.stack(fisher, 1).clamp_min(1e-8).log()

    def forward(self, batch: Batch) -> ModelOutput:
        cfg, mods = self.config, self.modalities
        encoded = [self.encoders[m](batch.features[m], batch.masks[m]) for m in mods]
        length = max(seq.shape[1] for seq, _ in encoded)
        seqs = torch.stack([F.pad(seq, (0, 0, 0, length - seq.shape[1])) for seq, _ in encoded], 1)  # (B, M, L, H)
        masks = torch.stack([F.pad(batch.masks[m], (0, length - batch.masks[m].shape[1])) for m in mods], 1)
        pooled = torch.stack([p for _, p in encoded], 1)  # (B, M, H)
        present = batch.present[:, self.columns]  # (B, M)
        rows = torch.arange(batch.size, device=seqs.device)

        # AMRE: per-sample reliability and the dominant modality
        unimodal, conf, log_fisher = self._cues(pooled)
        if cfg.use_amre:
            cues = {"both": torch.stack([conf, log_fisher], -1), "confidence": conf[..., None]}
            _, r = self.amre(cues.get(cfg.cues, log_fisher[..., None]), present)
        else:
            r = present.to(pooled.dtype) / present.sum(1, keepdim=True).clamp_min(1)
        p = r.argmax(-1)  # (B,)
        if self.anchor:
            fixed = torch.full_like(p, mods.index(self.anchor))
            p = torch.where(present[rows, fixed], fixed, p)

        # ProgInteract: align the other modalities to the dominant one, step by step
        others = torch.arange(len(mods), device=seqs.device).expand(batch.size, -1)
        idx = others[others != p[:, None]].view(batch.size, len(mods) - 1)  # (B, A)
        dom, dom_mask = seqs[rows, p], masks[rows, p]  # (B, L, H), (B, L)
        aux, aux_mask = seqs[rows[:, None], idx], masks[rows[:, None], idx]  # (B, A, L, H), (B, A, L)
        aux_present = present[rows[:, None], idx].to(seqs.dtype)  # (B, A)
        r_aux, r_dom = r[rows[:, None], idx], r[rows, p]
        gate = r_aux / torch.maximum(r_aux, r_dom[:, None]).clamp_min(1e-6) if cfg.suppress else torch.ones_like(r_aux)
        gate = gate * aux_present  # (B, A)
        b, a = idx.shape
        key = dom.unsqueeze(1).expand(b, a, length, -1).reshape(b * a, length, -1)
        key_mask = dom_mask.unsqueeze(1).expand(b, a, length).reshape(b * a, length)
        flat, flat_mask = aux.reshape(b * a, length, -1), aux_mask.reshape(b * a, length)
        dom_pooled = masked_mean(dom, dom_mask)  # (B, H)
        align: list[Tensor] = []
        for step in self.interact:
            update = step(flat, key, key_mask) - flat  # (B·A, L, H)
            flat = (flat + gate.reshape(-1, 1, 1) * update) * flat_mask.unsqueeze(-1).to(flat.dtype)
            cos = F.cosine_similarity(masked_mean(flat, flat_mask), dom_pooled.detach().repeat_interleave(a, 0), -1)
            align.append(((1 - cos) * aux_present.reshape(-1)).sum() / aux_present.sum().clamp_min(1))
        aux_pooled = masked_mean(flat, flat_mask).view(b, a, -1)  # (B, A, H)
        fused = dom_pooled + (gate.unsqueeze(-1) * aux_pooled).sum(1)
        prediction = self.bound_prediction(self.head(fused))

        aux_losses: dict[str, Tensor] = {}
        if self.training:
            aux_losses = self._aux_losses(batch, unimodal, present, align)
        weights = torch.zeros(batch.size, batch.present.shape[1], dtype=r.dtype, device=r.device)
        weights[:, self.columns] = r
        return ModelOutput(
            prediction=prediction,
            modality_weights=weights,
            aux_losses=aux_losses,
            features={"fused": fused, "aligned": aux_pooled, **{m: pooled[:, i] for i, m in enumerate(mods)}},
            explanations={
                "dominant": self.columns[p],
                "reliability": r.detach(),
                "confidence": conf,
                "log_fisher": log_fisher,
                "suppression": gate.detach(),
            },
        )

    def _aux_losses(
        self, batch: Batch, unimodal: list[tuple[Tensor, Tensor]], present: Tensor, align: list[Tensor]
    ) -> dict[str, Tensor]:
        cfg, out = self.config, {}
        if cfg.unimodal_weight > 0:
            terms = []
            for i, (mean, log_var) in enumerate(unimodal):
                keep = present[:, i]
                if self.is_classifier:
                    terms.append(
                        F.cross_entropy(mean[keep], batch.labels[keep].long()) if keep.any() else mean.sum() * 0
                    )
                else:
                    terms.append(gaussian_nll(mean, log_var, batch.labels.float().unsqueeze(-1), valid=keep))
            out["unimodal"] = cfg.unimodal_weight * torch.stack(terms).mean()
        if cfg.align_weight > 0 and align:
            out["align"] = cfg.align_weight * torch.stack(align).mean()
        return out
