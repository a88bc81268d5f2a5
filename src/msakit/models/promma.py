"""ProMMA: Prompt-based Missing Modality Adaptation.

Chen et al., "Prompt-based Missing Modality Adaptation for multimodal sentiment
analysis" (abstract only; the public repository rongfei-chen/ProMMA holds a README and
no code). The abstract names four parts; every choice below is ours.

1. Missing Modality Evaluator (MME), at the input. Abstract: it "dynamically assess[es]
   the importance of missing modalities using pretrained models and pseudo labels,
   thereby avoiding low quality data imputation". Chosen: for each missing modality m
   of a sample, an imputer I_m generates one token of m (in the encoded input space)
   from the mean of the sample's other encoded modalities c_m, and an evaluator
   e_m(c_m) decides impute (e_m > 0) or skip (m stays absent). e_m is trained with
   BCE on pseudo-labels: for training samples that *have* m, a reference model
   predicts once with m imputed and once with m skipped, and the pseudo-label is 1
   when imputing gave the lower loss. "Pretrained model": the reference is a frozen
   snapshot of this model taken in `on_epoch_start` after `stage1_epochs` epochs
   (the trainer's own loop; no private loop); before the snapshot exists the current
   weights, detached, stand in. The snapshot lives outside the state dict (a training
   aid; a resumed run takes a fresh one). The imputer is trained by MSE against the
   real encoded token of samples that have m.
2. Modality-invariant Prompt Disentanglement (MPD). Chosen: shared prompts P_s (K, H)
   and per modality a low-rank private offset, P_m = P_s + P_s U_m V_m
   (`layers.DisentangledPrompts`), with an orthogonality loss between the private
   offsets of different modalities and between each offset and P_s.
3. Dynamic Prompt Weighting (DPW): "mutual information based weights from cross
   attention outputs". Chosen: the prompt slots of m attend over the other available
   modalities' sequences (cross-attention) and are pooled to a_m; an InfoNCE critic
   between a_m and the pooled prompt slots of the other modalities (a lower bound on
   their mutual information, trained on the batch) gives each modality a pointwise
   score; w = softmax of the scores over the modalities available to the sample
   (observed or imputed), so a skipped modality gets exactly 0 and an imputed one that
   does not agree with the rest gets little.
4. Multi-level Prompt Dynamic Connection (MPDC): after every self-attention level
   over [P_m; X_m] the prompt slots get + g_l · P_s (a learned gate per level,
   `layers.PromptedEncoder`), so the global prompt prior re-enters at each level.

5. Adaptation to missing modalities (optional, `missing_weight`, default 0): "prompt-based
   missing modality *adaptation*" read as training the prompts on the missing patterns
   themselves. Each batch is also seen with one present modality removed per sample (the
   same simulated drop as the MME's pseudo-labels) and that view's task loss is added;
   late fusion gets the same from its per-modality losses. Measured (docs/models/promma.md):
   on ICT-MMMO it lifts the test AUILC by about a point, inside the seeds' spread, and
   the validation AUILC not at all, so it is off by default.

6. Per-modality prediction heads (`fusion="predictions"`, the default since the fifth
   stop; `"representations"` is the earlier single head over Σ_m w_m a_m). The abstract's
   DPW "suppress[es] interference from missing modalities"; read literally, the weights
   should leave a lone modality predicting as well as it can on its own. With one
   shared head over the weighted representation they did not: on ICT-MMMO, with only the
   visual stream left, the shared head predicted worse than a constant (docs/models/promma.md).
   Chosen: each modality m has its own head h_m; the prediction is Σ_m w_m h_m(a_m), the
   DPW weights mixing per-modality *predictions*, and each h_m also gets the task loss of
   its modality's own path h_m(o_m) (o_m the mean of m's prompt slots before the
   cross-attention, weight `unimodal_weight`) for the samples that have m. A sample left
   with one modality gets w_m = 1 and a_m = o_m (nothing to attend to), so its prediction
   is exactly that trained unimodal path — as late fusion's unimodal heads are.

7. Head input (`head_input`, default "cross", sixth stop). "own" makes each head read its
   modality's own path o_m, so a missing modality changes the others' predictions not at all,
   only the DPW weights (still from the cross-attention outputs), exactly as in late fusion.
   Measured (docs/models/promma.md, 5 seeds): worse on validation on ICT-MMMO, synthetic and
   MOSI-e5 alike (shared AUILC 78.4 / 88.1 / 74.8 against 80.2 / 88.3 / 76.2), so it is off.

8. Weighting temperature (`weight_temperature`, default 0 = the InfoNCE `temperature` 0.2, the
   earlier behaviour; seventh stop). The DPW weights are softmax(critic cosine / T). One
   temperature served both the InfoNCE bound (where a sharp T is the usual contrastive
   choice) and the mixing; on the synthetic preset ProMMA's complete-data Acc-2 spread over
   seeds (92.8 ± 1.6 against late fusion's 94.4 ± 0.5) sits in the clips with small |y|, where
   near one-hot weights let one modality's noise decide the sign. A separate, softer T keeps
   the critic's ranking and averages more. Measured (docs/models/promma.md): softening at
   inference time raises the synthetic test AUILC a little (shared 90.3 to 90.9 at T = 2) but
   not the validation one (88.3 at both); trained at T = 1 it leaves the shared AUILC where it
   was on both splits (90.3 test, 88.3 validation); so it stays off.

9. Seed variance (eighth stop). The remaining gaps to late fusion and to the probe swing from seed
   to seed (on synthetic they sit in the weak-label clips, whose sign one run gets right and the
   next not), so no component is changed for them; the presets train a deep ensemble instead
   (the trainer's `ensemble` option, not a model field), chosen on validation MAE: `promma/mmmo`
   3 members (0.870 against the single model's 0.954), `promma/mosi` 5 members (0.760; 3 members
   0.763, single 0.799); docs/models/promma.md, "Deep ensembles".

Prediction: Σ_m w_m h_m(a_m) (or, with `fusion="representations"`, one MLP head over
Σ_m w_m a_m). `modality_weights` are the DPW weights of
the *observed* modalities (an imputed modality's weight is in
`explanations["prompt_weights"]`, its decision in `explanations["impute"]`, the
evaluator's probability in `explanations["impute_prob"]`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import MODALITIES, Batch, ModelOutput, masked_mean, modality_index
from msakit.config import ModelConfig, tunable
from msakit.errors import ConfigError
from msakit.layers import MLP, CrossModalAttention, SequenceEncoder, info_nce, masked_softmax
from msakit.layers.fusion import mean_of_others
from msakit.layers.prompts import DisentangledPrompts, PromptedEncoder
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model

EVALUATOR_MODES = ("learned", "always", "never")
FUSION_MODES = ("predictions", "representations")
HEAD_INPUTS = ("own", "cross")


@dataclass
class ProMMAConfig(ModelConfig):
    num_prompts: int = tunable(4, choices=(2, 4, 8))  # K prompt tokens per modality
    prompt_rank: int = tunable(4, choices=(2, 4, 8))  # rank r of each private prompt offset
    levels: int = 2  # self-attention levels of the prompted encoder (MPDC connects each)
    evaluator: str = "learned"  # MME: "learned" | "always" impute | "never" impute
    private_prompts: bool = True  # MPD on; False = every modality uses the shared prompts
    weighting: str = "mi"  # DPW: "mi" | "uniform" over available modalities
    connect: bool = True  # MPDC: residual of the shared prompts after each level
    stage1_epochs: int = 3  # epochs before the frozen reference snapshot is taken
    impute_weight: float = tunable(0.5, low=0.05, high=2.0, log=True)  # weight of the imputer's MSE
    evaluator_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # weight of the evaluator BCE (pseudo-labels)
    mi_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # weight of the DPW critic's InfoNCE
    disentangle_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)  # weight of the MPD orthogonality loss
    temperature: float = 0.2  # InfoNCE temperature (and the weighting's, unless weight_temperature is set)
    weight_temperature: float = 0.0  # DPW softmax temperature; 0 = `temperature` (point 8)
    missing_weight: float = tunable(0.0, low=0.0, high=2.0)  # weight of the task loss of the one-modality-removed view
    fusion: str = "predictions"  # "predictions": DPW mixes per-modality heads; "representations": one shared head
    unimodal_weight: float = tunable(0.5, low=0.0, high=1.0)  # task loss of each modality's own path h_m(o_m)
    head_input: str = "cross"  # per-modality heads read "cross" (a_m) or "own" (o_m; measured worse, point 7)

    #: checkpoints saved before a field existed had these values (load_checkpoint fills them in)
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"fusion": "representations"}

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "ProMMA": {},
        "w/o MME (always impute)": {"evaluator": "always"},
        "w/o MME (never impute)": {"evaluator": "never"},
        "w/o MPD": {"private_prompts": False, "disentangle_weight": 0.0},
        "w/o DPW": {"weighting": "uniform", "mi_weight": 0.0},
        "w/o MPDC": {"connect": False},
        "w/o per-modality heads": {"fusion": "representations", "unimodal_weight": 0.0},
    }


@register_model("promma")
class ProMMA(MSAModel):
    config_class = ProMMAConfig
    config: ProMMAConfig
    capabilities = Capabilities(min_modalities=1)

    def __init__(self, config: ProMMAConfig) -> None:
        super().__init__(config)
        if config.evaluator not in EVALUATOR_MODES:
            raise ConfigError(f"model 'promma': evaluator must be one of {EVALUATOR_MODES}, got {config.evaluator!r}")
        if config.weighting not in ("mi", "uniform"):
            raise ConfigError(f"model 'promma': weighting must be 'mi' or 'uniform', got {config.weighting!r}")
        if config.fusion not in FUSION_MODES:
            raise ConfigError(f"model 'promma': fusion must be one of {FUSION_MODES}, got {config.fusion!r}")
        if config.weight_temperature < 0:
            raise ConfigError(f"model 'promma': weight_temperature must be >= 0, got {config.weight_temperature}")
        if config.head_input not in HEAD_INPUTS:
            raise ConfigError(f"model 'promma': head_input must be one of {HEAD_INPUTS}, got {config.head_input!r}")
        h, mods, drop = config.hidden_dim, self.modalities, config.dropout
        heads = next(n for n in (4, 2, 1) if h % n == 0)
        self.embed = nn.ModuleDict({m: SequenceEncoder(config.dim(m), h, kind="mean", dropout=drop) for m in mods})
        self.prompts = DisentangledPrompts(
            mods, config.num_prompts, h, rank=config.prompt_rank, private=config.private_prompts
        )
        self.encoders = nn.ModuleDict(
            {
                m: PromptedEncoder(h, levels=config.levels, heads=heads, dropout=drop, connect=config.connect)
                for m in mods
            }
        )
        self.multi = len(mods) > 1
        if self.multi:  # MME and cross-attention need another modality to read from
            self.imputers = nn.ModuleDict({m: MLP(h, h, hidden_dim=h) for m in mods})
            self.evaluators = nn.ModuleDict({m: MLP(h, 1, hidden_dim=h) for m in mods})
            self.cross = nn.ModuleDict({m: CrossModalAttention(h, heads=heads, dropout=drop) for m in mods})
            self.critic_q, self.critic_k = nn.Linear(h, h), nn.Linear(h, h)
        if config.fusion == "predictions":  # one head per modality, mixed by the DPW weights
            self.heads = nn.ModuleDict({m: MLP(h, config.num_classes, hidden_dim=h, dropout=drop) for m in mods})
        else:
            self.head = MLP(h, config.num_classes, hidden_dim=h, dropout=drop)
        self._reference: list[ProMMA] = []  # the stage-1 snapshot, kept out of the state dict

    # ---- hooks -----------------------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        if self.multi and epoch == self.config.stage1_epochs + 1:
            snapshot = copy.deepcopy(self)
            snapshot._reference = []
            self._reference = [snapshot.eval().requires_grad_(False)]

    # ---- forward -----------------------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> ModelOutput:
        return self._forward(batch, self.config.evaluator, with_losses=self.training)

    def _forward(self, batch: Batch, mode: str, *, with_losses: bool) -> ModelOutput:
        mods = self.modalities
        cols = [modality_index(m) for m in mods]
        present = batch.present[:, cols]  # (B, m)
        seq = {m: self.embed[m](batch.features[m], batch.masks[m])[0] for m in mods}  # (B, L, H)
        masks = {m: batch.masks[m] for m in mods}
        pooled = torch.stack([masked_mean(seq[m], masks[m]) for m in mods], dim=1)  # (B, m, H)
        aux: dict[str, Tensor] = {}
        impute = torch.zeros_like(present)
        prob = torch.zeros(present.shape, dtype=pooled.dtype, device=pooled.device)
        imputation: list[Tensor] = []
        if self.multi:
            ctx, has_ctx = mean_of_others(pooled.detach(), present)  # (B, m, H), (B, m)
            logits = torch.cat([self.evaluators[m](ctx[:, i]) for i, m in enumerate(mods)], dim=-1)  # (B, m)
            prob = torch.sigmoid(logits)
            wanted = {"learned": logits > 0, "always": torch.ones_like(present), "never": torch.zeros_like(present)}
            impute = ~present & has_ctx & wanted[mode]
            for i, m in enumerate(mods):  # MME: generate one token of m where it is worth it
                token = self.imputers[m](ctx[:, i])  # (B, H)
                keep = present[:, i] & has_ctx[:, i]
                if with_losses and keep.any():
                    imputation.append(F.mse_loss(token[keep], pooled[keep, i].detach()))
                seq[m], masks[m] = _place_first(seq[m], masks[m], token, impute[:, i])
            if with_losses:
                aux["evaluator"] = self.config.evaluator_weight * self._evaluator_loss(batch, logits, present, has_ctx)
                if imputation:
                    aux["impute"] = self.config.impute_weight * torch.stack(imputation).mean()
        avail = present | impute  # (B, m)
        slots = {}
        for m in mods:
            private = self.prompts(m)
            slots[m], seq[m] = self.encoders[m](seq[m], masks[m], private, self.prompts.shared)  # (B, K, H)
        own = torch.stack([slots[m].mean(1) for m in mods], dim=1)  # o_m, (B, m, H)
        reps, scores = self._cross(own, slots, seq, masks, avail, aux if with_losses else None)  # (B, m, H), (B, m)
        if self.config.weighting == "uniform":
            scores = torch.zeros_like(scores)
        elif self.config.weight_temperature > 0:  # point 8: the mixing softmax at its own temperature
            scores = scores * (self.config.temperature / self.config.weight_temperature)
        weights = masked_softmax(scores, avail)  # (B, m)
        fused = (weights.unsqueeze(-1) * reps).sum(1)  # (B, H)
        if self.config.fusion == "predictions":
            read = own if self.config.head_input == "own" else reps
            per_modality = torch.stack([self.heads[m](read[:, i]) for i, m in enumerate(mods)], dim=1)  # (B, m, C)
            output = (weights.unsqueeze(-1) * per_modality).sum(1)  # (B, C)
            if with_losses and self.config.unimodal_weight > 0:
                aux["unimodal"] = self.config.unimodal_weight * self._unimodal_loss(own, present, batch)
        else:
            output = self.head(fused)
        if with_losses and self.multi and self.config.missing_weight > 0:
            aux["missing"] = self.config.missing_weight * self._missing_view_loss(batch, mode)
        if with_losses and self.config.private_prompts and self.config.disentangle_weight > 0:
            aux["disentangle"] = self.config.disentangle_weight * self.prompts.orthogonality()
        full = {
            k: torch.zeros(batch.size, len(MODALITIES), dtype=fused.dtype, device=fused.device) for k in ("w", "i", "p")
        }
        full["w"][:, cols], full["i"][:, cols], full["p"][:, cols] = weights, impute.to(fused.dtype), prob
        return ModelOutput(
            prediction=self.bound_prediction(output),
            modality_weights=full["w"] * batch.present.to(fused.dtype),
            aux_losses=aux,
            features={"fused": fused, **{m: reps[:, i] for i, m in enumerate(mods)}},
            explanations={"prompt_weights": full["w"], "impute": full["i"], "impute_prob": full["p"]},
        )

    def _cross(
        self,
        own: Tensor,
        slots: dict[str, Tensor],
        seq: dict[str, Tensor],
        masks: dict[str, Tensor],
        avail: Tensor,
        aux: dict[str, Tensor] | None,
    ) -> tuple[Tensor, Tensor]:
        """DPW: cross-attention of each modality's prompt slots over the others, and the MI critic's scores."""
        mods = self.modalities
        if not self.multi:
            return own, torch.zeros_like(avail, dtype=own.dtype)
        reps = []
        for i, m in enumerate(mods):
            others = [o for o in mods if o != m]
            keys = torch.cat([seq[o] for o in others], dim=1)  # (B, ΣL, H)
            key_mask = torch.cat([masks[o] & avail[:, mods.index(o), None] for o in others], dim=1)
            attended = self.cross[m](slots[m], keys, key_mask).mean(1)  # (B, H)
            reps.append(torch.where(key_mask.any(1, keepdim=True), attended, own[:, i]))
        rep = torch.stack(reps, dim=1)  # (B, m, H)
        context, has_ctx = mean_of_others(own, avail)  # (B, m, H)
        q = F.normalize(self.critic_q(rep), dim=-1)
        k = F.normalize(self.critic_k(context), dim=-1)
        scores = (q * k).sum(-1) / self.config.temperature  # pointwise critic score, (B, m)
        if aux is not None and self.config.mi_weight > 0:
            valid = avail & has_ctx
            terms = [
                info_nce(
                    self.critic_q(rep[:, i]),
                    self.critic_k(context[:, i]),
                    temperature=self.config.temperature,
                    valid=valid[:, i],
                )
                for i in range(len(mods))
            ]
            aux["mi"] = self.config.mi_weight * torch.stack(terms).mean()
        return rep, scores

    def _unimodal_loss(self, own: Tensor, present: Tensor, batch: Batch) -> Tensor:
        """Per-modality heads: the task loss of each modality's own path h_m(o_m), over the samples that have m."""
        losses = []
        for i, m in enumerate(self.modalities):
            keep = present[:, i]
            if keep.any():
                pred = self.bound_prediction(self.heads[m](own[keep, i]))
                losses.append(self.task_loss(pred, batch.labels[keep]))
        if not losses:
            return own.sum() * 0.0
        return torch.stack(losses).mean()

    def _evaluator_loss(self, batch: Batch, logits: Tensor, present: Tensor, has_ctx: Tensor) -> Tensor:
        """BCE of the evaluator against pseudo-labels: would imputing m have lowered the reference's loss?"""
        mods = self.modalities
        i = int(torch.randint(len(mods), (1,)).item())  # one simulated missing modality per batch
        keep = present[:, i] & has_ctx[:, i]
        if not keep.any():
            return logits.sum() * 0.0
        reference = self._reference[0] if self._reference else self
        dropped = batch.drop_modalities([mods[i]], keep)
        with torch.no_grad():
            losses = [
                self._per_sample_loss(reference._forward(dropped, mode, with_losses=False).prediction, batch.labels)
                for mode in ("always", "never")
            ]
        pseudo = (losses[0] < losses[1]).to(logits.dtype)  # 1: imputing helped the reference
        return F.binary_cross_entropy_with_logits(logits[keep, i], pseudo[keep])

    def _missing_view_loss(self, batch: Batch, mode: str) -> Tensor:
        """Adaptation to missing modalities: the task loss of the batch with one present modality removed per sample."""
        cols = [modality_index(m) for m in self.modalities]
        present = batch.present[:, cols]  # (B, m)
        eligible = present.sum(1) > 1
        if not eligible.any():
            return batch.labels.new_zeros((), dtype=torch.float32)
        draw = torch.rand(present.shape, device=present.device).masked_fill(~present, -1.0)
        gone = draw.argmax(1)  # one present modality per sample, uniformly
        view = batch
        for i, m in enumerate(self.modalities):
            view = view.drop_modalities([m], eligible & (gone == i))
        pred = self._forward(view, mode, with_losses=False).prediction
        return self.task_loss(pred[eligible], batch.labels[eligible])

    def _per_sample_loss(self, pred: Tensor, y: Tensor) -> Tensor:
        if self.is_classifier:
            return F.cross_entropy(pred, y.long(), reduction="none")
        return (pred - y.float()).abs()


def _place_first(seq: Tensor, mask: Tensor, token: Tensor, where: Tensor) -> tuple[Tensor, Tensor]:
    """Put `token` (B, H) at step 0 of `seq` (B, L, H) for the samples `where` (B,), marking only that step valid."""
    first = torch.zeros_like(mask)
    first[:, 0] = True
    seq = torch.where(where[:, None, None] & first.unsqueeze(-1), token.unsqueeze(1), seq)
    mask = torch.where(where[:, None], first, mask)
    return seq, mask
