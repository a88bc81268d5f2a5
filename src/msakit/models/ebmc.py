"""EBMC: Enhance-then-Balance Modality Collaboration.

Source: the EBMC abstract (seed file 003) and, to learn the recipe, its authors' public
code (kangverse/EBMC; read, not copied). Facts taken from it: two stages, stage 2 uses the
stage-1 model as a frozen teacher; the energy, equilibrium, trust and loss weights below.

    encode   h_m = Pool(Enc_m(X_m))                                             (B, M, H)
    MSD      s_m = Shared_m(h_m), p_m = Specific_m(h_m);  L = InfoNCE_τ(s_a, s_b) + decorr(s_m, p_m)
    CCE      ĥ_{m<-n} = G([s_n; p_m]) ≈ h_m;  z_m = s_m + p_m + mean_{n≠m} ĥ_{m<-n}
    experts  (ŷ_m, log σ²_m) = Het_m(z_m)
    IMTD     w = softmax_present(Trust(z_m)), distilled toward w* ∝ c·ρ, c = exp(-σ*),
             ρ = 1 / (log(1 + σ*²) + 0.1), σ* from the frozen teacher;  y = Head(Σ_m w_m z_m)
    EMC      E_m = α‖z̄_m‖² + β·ℓ_m + γ·u_m;  L = Σ_{a<b} (E_a - E_b)² + 0.01·Σ_m ‖∂E_m/∂z_m‖²
    loss     task + unimodal + 0.5·MSD + 0.1·CCE + 0.1·EMC + 0.1·IMTD (EMC, IMTD in stage 2)

Dimension legend: B batch, M modalities the model was built for, H hidden width.

Choices (what the sources say -> what we chose -> why):
- Stages: epochs 1..`stage1_epochs` train everything but EMC and IMTD; at the start of
  epoch `stage1_epochs` + 1 (`on_epoch_start`) the model snapshots itself as the frozen
  teacher (kept outside the module tree: not trained, not in the checkpoint; inference
  never needs it). `teacher_checkpoint` instead loads a saved stage-1 EBMC (checked in
  `on_fit_start`: same model, same dimensions) and trains stage 2 from epoch 1. A resumed
  run past stage 1 re-snapshots the restored model.
- σ* (the teacher's per-sample uncertainty of modality m): regression, its unimodal
  expert's predicted standard deviation exp(½ log σ²); classification, the predictive
  entropy of its unimodal logits. u_m in the energy is σ*² (regression: the prediction
  variance) or the entropy; ℓ_m is the unimodal squared error (cross-entropy for classes).
- Energies are batch means over the samples that have the modality (the equilibrium is a
  balance of modalities, not of samples). ‖z̄_m‖² has two readings (`feature_energy`):
  the mean square of the pooled feature over its H dimensions ("mean", default: on the
  scale of ℓ_m and u_m, so α = β = γ = 1 weigh three comparable terms) or the squared norm
  ("norm", H times larger, so the norm term dominates E_m and the equilibrium mostly
  equalises feature norms; it unbalanced the gradients on synthetic:noisy, see
  docs/models/ebmc.md). The reported per-sample energy is its label-free part
  α‖z_m‖² + γ·σ²_m with the student's own σ², so it can be explained at inference.
- Trust: the student predicts trust logits from z_m; IMTD is KL(w* ‖ w) over samples with
  two or more modalities. `use_trust` False fuses with uniform weights ("w/o IMTD").
- MSD weight: the source's 0.5 is the default. On the synthetic benchmark the validation
  split picks 0 (preset `ebmc/synthetic`): its modalities share only the label, so an
  InfoNCE that must tell samples apart from their shared parts cannot be satisfied there,
  and its gradient (the largest term of the loss) costs accuracy.
- InfoNCE at τ = 0.05 over every modality pair of shared parts; decorrelation is the mean
  squared cross-correlation of batch-standardised s_m and p_m. `use_msd` False uses
  z_m = h_m (no disentanglement, hence no enhancement either).
- Unimodal experts (`unimodal_loss`): the source trains each unimodal prediction by squared
  error; we need a variance too (σ* for trust and u_m), so the default "nll" fits mean and
  variance by the Gaussian NLL, whose mean gradient is divided by σ² (an unsure modality
  learns its mean more slowly). "mse" trains the mean by the source's squared error and the
  variance by the NLL on the detached mean; "l1" the same with the absolute error (the
  trainer's default task loss, and late_fusion's unimodal loss). On synthetic:imbalanced
  neither changes the MLI over 5 seeds (docs/models/ebmc.md, "synthetic:imbalanced"), so
  the default stays "nll".
- What we measured about the balance (same section): the equilibrium gradient reaches the
  encoders, but at the source's weight it is about a tenth of the fused task gradient. That
  task gradient passes through the trust-weighted fusion, which sends most of it to the
  strong modality. Without trust EBMC is as balanced as late_fusion. The form of the
  unimodal loss (nll, mse, l1) does not change the MLI. We did not add a gradient
  modulation that the sources do not describe.
- Two switches that let EMC and IMTD rebalance, both off by default (the defaults are the
  source's reading). On synthetic:imbalanced, 5 seeds, neither brings EBMC above late_fusion
  (docs/models/ebmc.md, "synthetic:imbalanced"). `emc_gap="relative"` divides the energies by
  their detached mean before taking the gaps. The squared gap then does not vanish when the
  losses are small, and does not depend on the label scale (the source set its weights on
  IEMOCAP and MOSI). `trust_grad="distill"` stops the task gradient at the fusion weights, so
  only IMTD sets them, from the teacher's reliability (the source fuses by concatenation and
  uses trust only in its distillation target). Without it the task loss drives the trust
  softmax to 0.87 / 0.04 / 0.09 (text / audio / visual) on that preset, although the
  teacher's target w* is 0.43 / 0.36 / 0.21 (seed 1, 256 training samples; a diagnosis).
- Two more switches, off by default, for the cause measured on synthetic:imbalanced (seventh
  stop): at the preset's seed-1 checkpoint the feature term α·mean z² is 1.8 / 1.8 / 1.0
  (text / audio / visual) against ℓ_m 0.11 / 0.17 / 0.22 and u_m 0.11 / 0.14 / 0.27, so the
  energy ranks visual, the modality with the worst expert, LOWEST, and the two-sided gap then
  pushes visual's loss up and text's down. `energy_norm="term"` divides each of the three terms
  by its detached mean over the present modalities before they are summed: the terms become
  unit-free, so α = β = γ = 1 weigh them equally as the source intends (its reading assumes
  comparable scales; they differ tenfold), and the feature term no longer sets the ranking.
  `emc_pull="high"` trains only the higher-energy side of each gap (the lower energy is a
  detached target): what the gap then rewards is the weaker modality catching up, never the
  stronger one unlearning (the source's symmetric gap also raises the lowest-energy modality's
  loss, which costs accuracy). Neither brings the MLI beyond late_fusion's on that preset
  (docs/models/ebmc.md, "synthetic:imbalanced", seventh stop). A third, `emc_feature="detached"`,
  keeps the feature term in the energies (it still ranks) but stops the gap's gradient through
  it: measured without CCE, the high-energy audio closed its gap by shrinking its features
  (mean z² 0.06 against text's 0.72) while its loss stayed the worst (0.40). Detached, a modality
  can close its gap only by fitting better. With all three, CCE off and `emc_weight=0.01`, EBMC is
  level with late_fusion there over 5 seeds (MLI 87.3 ± 3.1 against 88.7 ± 2.3), not beyond it.
- CCE's reconstruction target h_m is detached (a target, not a moving one); `use_cce`
  False drops the enhancement term from z_m and its loss.
- What the enhancement does to the balancing gradients (`enhance_grad`, eighth stop). The source
  has expert m read z_m, and z_m contains ĥ_{m<-n} = G([s_n; p_m]), the other modalities' shared
  parts. So expert m's error ℓ_m, and with it m's energy gap, also trains the OTHER encoders
  through G: when visual's energy is the highest, closing its gap is partly done by text, the
  modality G rebuilds most from. The energy ranks modalities, but its gradient does not go to
  the one it ranks. `enhance_grad="own"` keeps the forward unchanged (the experts read the same
  z_m, the fused task loss still trains through ĥ) and detaches ĥ inside the unimodal and EMC
  losses only, so a modality's own fit and its own gap train its own encoder: the reading of
  "energy-guided coordination" in which the rebalancing gradient reaches the modality it
  rebalances. "all" (the source's wiring) is the default. On synthetic:imbalanced, with
  term + high + detached at `emc_weight=0.01` (the preset `ebmc/synthetic`, chosen on validation),
  the MLI is 92.2 ± 4.0 against late_fusion's 88.7 ± 2.3 over seeds 1-5 (+7.6 ± 2.3 paired at the
  fresh seeds 6-10), and either half alone stays near 84 (docs/models/ebmc.md, "Eighth stop").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput, modality_index
from msakit.config import ModelConfig, tunable
from msakit.errors import ConfigError
from msakit.layers import (
    MLP,
    HeteroscedasticHead,
    SequenceEncoder,
    gaussian_nll,
    masked_softmax,
    predictive_entropy,
    symmetric_info_nce,
    trust_weights,
)
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model

#: fields a teacher checkpoint must share with the student
TEACHER_FIELDS = ("modalities", "text_dim", "audio_dim", "visual_dim", "hidden_dim", "num_classes", "encoder")


@dataclass
class EBMCConfig(ModelConfig):
    encoder: str = "transformer"  # SequenceEncoder kind: mean | lstm | transformer
    stage1_epochs: int = tunable(5, choices=(3, 5, 8))  # the teacher is snapshotted after these
    teacher_checkpoint: str = ""  # a saved stage-1 EBMC to use as the teacher (stage 2 from epoch 1)
    temperature: float = 0.05  # τ of the MSD InfoNCE
    unimodal_weight: float = 0.5  # unimodal experts' Gaussian NLL
    msd_weight: float = tunable(0.5, low=0.05, high=1.0, log=True)
    cce_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)
    emc_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)
    imtd_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)
    alpha: float = 1.0  # energy: feature norm
    beta: float = 1.0  # energy: unimodal task loss
    gamma: float = 1.0  # energy: teacher uncertainty
    grad_penalty: float = 0.01  # EMC gradient-norm penalty
    feature_energy: str = "mean"  # the α term: mean of z_m² over the H features ("mean") or ‖z_m‖² ("norm")
    # the unimodal experts' mean: "nll" (Gaussian NLL, scaled by 1/σ²), "mse" (the source's squared
    # error) or "l1" (absolute error); with "mse" and "l1" the variance is fit by the NLL on sg[mean]
    unimodal_loss: str = "nll"
    # EMC's energy gaps: "raw" (Σ (E_a - E_b)², the source) or "relative" (the energies divided by
    # their detached mean over the modalities first: a scale-free gap whose gradient does not vanish
    # when the losses are small)
    emc_gap: str = "raw"
    # how the three energy terms are put on one scale before they are summed: "none" (the source:
    # α·f_m + β·ℓ_m + γ·u_m as measured) or "term" (each term divided by its detached mean over the
    # present modalities, so α = β = γ = 1 weigh three unit-free terms equally)
    energy_norm: str = "none"
    # which side of each energy gap it trains: "both" (the source: the gap's gradient lowers the
    # higher energy and raises the lower one) or "high" (the lower energy is a detached target, so the
    # gap only lowers the higher-energy modality's terms and never pushes the other's loss up)
    emc_pull: str = "both"
    # the feature term inside the gap: "grad" (the source: the gap can be closed by shrinking or growing
    # z_m) or "detached" (it still ranks the modalities, but only ℓ_m carries the gap's gradient, so a
    # modality closes its gap by fitting better, not by shrinking its representation)
    emc_feature: str = "grad"
    # what the unimodal experts and EMC train through CCE's enhancement: "all" (the source: expert m's
    # error also reaches the other modalities' shared parts through ĥ_{m<-n}) or "own" (the enhancement is
    # detached in those two losses, so m's expert error, and so its energy gap, trains only m's own encoder;
    # the fused task loss still trains everything through it)
    enhance_grad: str = "all"
    # the fusion weights: trained by the task loss and IMTD ("task", default) or by IMTD alone
    # ("distill": the task gradient stops at the weights, so the teacher's reliability sets them)
    trust_grad: str = "task"
    use_msd: bool = True
    use_cce: bool = True
    use_trust: bool = True

    # checkpoints written before these fields existed
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {
        "emc_gap": "raw",
        "trust_grad": "task",
        "energy_norm": "none",
        "emc_pull": "both",
        "emc_feature": "grad",
        "enhance_grad": "all",
    }
    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "full": {},
        "w/o MSD": {"use_msd": False, "use_cce": False},
        "w/o CCE": {"use_cce": False},
        "w/o EMC": {"emc_weight": 0.0},
        "w/o IMTD": {"use_trust": False, "imtd_weight": 0.0},
        "IMTD weights without distillation": {"imtd_weight": 0.0},
    }


@register_model("ebmc")
class EBMC(MSAModel):
    config_class = EBMCConfig
    config: EBMCConfig
    capabilities = Capabilities(min_modalities=2)  # balance and enhancement need a second modality
    columns: Tensor

    def __init__(self, config: EBMCConfig) -> None:
        super().__init__(config)
        if config.stage1_epochs < 0:
            raise ConfigError(f"model 'ebmc': stage1_epochs must be >= 0, got {config.stage1_epochs}")
        if config.feature_energy not in ("mean", "norm"):
            raise ConfigError(f"model 'ebmc': feature_energy must be 'mean' or 'norm', got {config.feature_energy!r}")
        if config.unimodal_loss not in ("nll", "mse", "l1"):
            raise ConfigError(f"model 'ebmc': unimodal_loss must be 'nll', 'mse' or 'l1', got {config.unimodal_loss!r}")
        if config.emc_gap not in ("raw", "relative"):
            raise ConfigError(f"model 'ebmc': emc_gap must be 'raw' or 'relative', got {config.emc_gap!r}")
        if config.energy_norm not in ("none", "term"):
            raise ConfigError(f"model 'ebmc': energy_norm must be 'none' or 'term', got {config.energy_norm!r}")
        if config.emc_pull not in ("both", "high"):
            raise ConfigError(f"model 'ebmc': emc_pull must be 'both' or 'high', got {config.emc_pull!r}")
        if config.emc_feature not in ("grad", "detached"):
            raise ConfigError(f"model 'ebmc': emc_feature must be 'grad' or 'detached', got {config.emc_feature!r}")
        if config.enhance_grad not in ("all", "own"):
            raise ConfigError(f"model 'ebmc': enhance_grad must be 'all' or 'own', got {config.enhance_grad!r}")
        if config.trust_grad not in ("task", "distill"):
            raise ConfigError(f"model 'ebmc': trust_grad must be 'task' or 'distill', got {config.trust_grad!r}")
        mods, h = self.modalities, config.hidden_dim
        self.encoders = nn.ModuleDict(
            {m: SequenceEncoder(config.dim(m), h, kind=config.encoder, dropout=config.dropout) for m in mods}
        )
        if config.use_msd:
            self.shared = nn.ModuleDict({m: MLP(h, h, hidden_dim=h) for m in mods})
            self.specific = nn.ModuleDict({m: MLP(h, h, hidden_dim=h) for m in mods})
            if config.use_cce:
                self.generator = MLP(2 * h, h, hidden_dim=h)
        self.experts = nn.ModuleDict({m: HeteroscedasticHead(h, config.num_classes, hidden_dim=h) for m in mods})
        if config.use_trust:
            self.trust = nn.Linear(h, 1)
        self.head = MLP(h, config.num_classes, hidden_dim=h, dropout=config.dropout)
        self.register_buffer("columns", torch.tensor([modality_index(m) for m in mods]), persistent=False)
        self._teacher: list[EBMC] = []  # a plain list keeps the teacher out of parameters and state dict

    # ---- stages -------------------------------------------------------------------------------
    @property
    def teacher(self) -> EBMC | None:
        return self._teacher[0] if self._teacher else None

    def set_teacher(self, teacher: EBMC) -> None:
        teacher._teacher = []
        teacher.eval().requires_grad_(False)
        self._teacher = [teacher]

    def on_fit_start(self, stats: Any) -> None:
        self._teacher = []
        path = self.config.teacher_checkpoint
        if not path:
            return
        from msakit.checkpoint_io import load_checkpoint, read_checkpoint_meta

        meta = read_checkpoint_meta(path)
        if meta["model"] != "ebmc":
            raise ConfigError(f"model 'ebmc': teacher_checkpoint {path} holds a {meta['model']!r} model, not 'ebmc'")
        for name in TEACHER_FIELDS:
            theirs, ours = meta["model_config"].get(name), getattr(self.config, name)
            if (tuple(theirs) if isinstance(theirs, list) else theirs) != ours:
                raise ConfigError(
                    f"model 'ebmc': teacher_checkpoint {path} has {name}={theirs!r}, the student has {ours!r}"
                )
        teacher, _ = load_checkpoint(path, map_location=self.columns.device)
        assert isinstance(teacher, EBMC)
        self.set_teacher(teacher)

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        if self.teacher is None and epoch > self.config.stage1_epochs:
            self._teacher = []
            self.set_teacher(copy.deepcopy(self))

    # ---- forward --------------------------------------------------------------------------------
    def _represent(self, batch: Batch) -> dict[str, Tensor]:
        cfg, mods = self.config, self.modalities
        h = torch.stack([self.encoders[m](batch.features[m], batch.masks[m])[1] for m in mods], 1)  # (B, M, H)
        present = batch.present[:, self.columns]
        out = {"h": h, "present": present, "z": h}
        if cfg.use_msd:
            s = torch.stack([self.shared[m](h[:, i]) for i, m in enumerate(mods)], 1)
            p = torch.stack([self.specific[m](h[:, i]) for i, m in enumerate(mods)], 1)
            out.update(s=s, p=p, z=s + p)
            if cfg.use_cce:
                m_ = len(mods)
                pairs = torch.cat([s.unsqueeze(1).expand(-1, m_, -1, -1), p.unsqueeze(2).expand(-1, -1, m_, -1)], -1)
                rebuilt = self.generator(pairs)  # (B, M_target, M_source, H): G([s_n; p_m])
                others = present.unsqueeze(1) & ~torch.eye(m_, dtype=torch.bool, device=h.device)  # (B, M, M)
                w = others.to(h.dtype)
                enhance = (w.unsqueeze(-1) * rebuilt).sum(2) / w.sum(2, keepdim=True).clamp_min(1)
                if cfg.enhance_grad == "own":  # same values; the experts' gradient stops at ĥ
                    out["z_expert"] = out["z"] + enhance.detach()
                out.update(rebuilt=rebuilt, z=out["z"] + enhance)
        out.setdefault("z_expert", out["z"])
        return out

    def forward(self, batch: Batch) -> ModelOutput:
        cfg, mods = self.config, self.modalities
        rep = self._represent(batch)
        z, present = rep["z"], rep["present"]
        experts = [self.experts[m](rep["z_expert"][:, i]) for i, m in enumerate(mods)]
        means = torch.stack([mu for mu, _ in experts], 1)  # (B, M, C)
        log_var = torch.stack([lv.mean(-1) for _, lv in experts], 1)  # (B, M)
        if cfg.use_trust:
            weights = masked_softmax(self.trust(z).squeeze(-1), present)
        else:
            weights = masked_softmax(torch.zeros_like(log_var), present)
        fuse_w = weights.detach() if cfg.trust_grad == "distill" else weights
        fused = (fuse_w.unsqueeze(-1) * z).sum(1)
        prediction = self.bound_prediction(self.head(fused))
        energy = cfg.alpha * self._feature_energy(z.detach()) + cfg.gamma * log_var.detach().exp()

        aux = self._aux_losses(batch, rep, means, log_var, weights) if self.training else {}
        full = torch.zeros(batch.size, batch.present.shape[1], dtype=weights.dtype, device=weights.device)
        full[:, self.columns] = weights
        explanations = {"trust": weights.detach(), "energy": energy, "unimodal_log_var": log_var.detach()}
        if self.is_classifier:
            explanations["unimodal_entropy"] = predictive_entropy(means.detach())
        return ModelOutput(
            prediction=prediction,
            modality_weights=full,
            aux_losses=aux,
            features={"fused": fused, **{m: z[:, i] for i, m in enumerate(mods)}},
            explanations=explanations,
        )

    # ---- losses ---------------------------------------------------------------------------------
    def _teacher_sigma(self, batch: Batch) -> Tensor:
        """(B, M) the frozen teacher's per-sample uncertainty σ*."""
        assert self.teacher is not None
        with torch.no_grad():
            out = self.teacher(batch)
        if self.is_classifier:
            return out.explanations["unimodal_entropy"]
        return (0.5 * out.explanations["unimodal_log_var"]).exp()

    def _unimodal_errors(self, means: Tensor, labels: Tensor) -> Tensor:
        """(B, M) per-sample unimodal task loss ℓ_m."""
        if self.is_classifier:
            flat = F.cross_entropy(
                means.flatten(0, 1), labels.long().repeat_interleave(means.shape[1]), reduction="none"
            )
            return flat.view(means.shape[:2])
        return (means.squeeze(-1) - labels.float().unsqueeze(1)).pow(2)

    def _aux_losses(
        self, batch: Batch, rep: dict[str, Tensor], means: Tensor, log_var: Tensor, weights: Tensor
    ) -> dict[str, Tensor]:
        cfg, present, z = self.config, rep["present"], rep["z"]
        valid = present.to(z.dtype)
        aux: dict[str, Tensor] = {}
        if cfg.unimodal_weight > 0:
            if self.is_classifier:
                ce = self._unimodal_errors(means, batch.labels)
                uni = (ce * valid).sum() / valid.sum().clamp_min(1)
            else:
                y = batch.labels.float()[:, None].expand_as(log_var)
                mu = means.squeeze(-1)
                point = cfg.unimodal_loss != "nll"  # the mean by its own error, the variance on sg[mean]
                fit = mu.detach() if point else mu
                uni = gaussian_nll(fit.flatten(), log_var.flatten(), y.flatten(), present.flatten())
                if point:
                    err = (mu - y).pow(2) if cfg.unimodal_loss == "mse" else (mu - y).abs()
                    uni = uni + (err * valid).sum() / valid.sum().clamp_min(1)
            aux["unimodal"] = cfg.unimodal_weight * uni
        if cfg.use_msd and cfg.msd_weight > 0:
            aux["msd"] = cfg.msd_weight * self._msd(rep["s"], rep["p"], present)
        if cfg.use_msd and cfg.use_cce and cfg.cce_weight > 0:
            err = (rep["rebuilt"] - rep["h"].detach().unsqueeze(2)).pow(2).mean(-1)  # (B, M, M)
            pair = (
                present.unsqueeze(2)
                & present.unsqueeze(1)
                & ~torch.eye(len(self.modalities), dtype=torch.bool, device=present.device)
            )
            aux["cce"] = cfg.cce_weight * (err * pair).sum() / pair.sum().clamp_min(1)
        if self.teacher is None:
            return aux  # stage 1
        sigma = self._teacher_sigma(batch)
        if cfg.emc_weight > 0:
            u = sigma if self.is_classifier else sigma.pow(2)
            errors = self._unimodal_errors(means, batch.labels)
            aux["emc"] = cfg.emc_weight * self._equilibrium(rep["z_expert"], errors, u, valid)
        if cfg.use_trust and cfg.imtd_weight > 0:
            target = trust_weights(sigma, present)
            multi = present.sum(1) >= 2
            kl = (target * (target.clamp_min(1e-8).log() - weights.clamp_min(1e-8).log())).sum(1)
            aux["imtd"] = cfg.imtd_weight * (kl * multi).sum() / multi.sum().clamp_min(1)
        return aux

    def _msd(self, s: Tensor, p: Tensor, present: Tensor) -> Tensor:
        mods, tau = range(len(self.modalities)), self.config.temperature
        nce = [
            symmetric_info_nce(s[:, a], s[:, b], temperature=tau, valid=present[:, a] & present[:, b])
            for a, b in combinations(mods, 2)
        ]
        decorr = []
        for i in mods:
            keep = present[:, i]
            if keep.sum() < 2:
                continue
            si, pi = s[keep, i], p[keep, i]
            si = (si - si.mean(0)) / (si.std(0) + 1e-5)
            pi = (pi - pi.mean(0)) / (pi.std(0) + 1e-5)
            decorr.append((si.T @ pi / si.shape[0]).pow(2).mean())
        terms = nce + decorr
        return torch.stack(terms).sum() if terms else s.sum() * 0.0

    def _feature_energy(self, z: Tensor) -> Tensor:
        """(B, M, H) -> (B, M): ‖z_m‖², or its mean over the H features."""
        sq = z.pow(2)
        return sq.sum(-1) if self.config.feature_energy == "norm" else sq.mean(-1)

    def _equilibrium(self, z: Tensor, errors: Tensor, u: Tensor, valid: Tensor) -> Tensor:
        """Σ_{a<b} (E_a - E_b)² + δ·Σ_m ‖∂E_m/∂z_m‖², energies averaged over present samples."""
        cfg = self.config
        count = valid.sum(0).clamp_min(1)  # (M,)
        has = valid.sum(0) > 0
        feature = self._feature_energy(z.detach() if cfg.emc_feature == "detached" else z)  # (B, M)
        if cfg.energy_norm == "term" and has.any():  # each term relative to its mean over modalities
            f, ell, unc = ((t * valid).sum(0) / count for t in (feature, errors, u))  # (M,)
            f, ell, unc = (t / t[has].detach().mean().clamp_min(1e-6) for t in (f, ell, unc))
            energy = cfg.alpha * f + cfg.beta * ell + cfg.gamma * unc
        else:
            per = cfg.alpha * feature + cfg.beta * errors + cfg.gamma * u  # (B, M)
            energy = (per * valid).sum(0) / count  # (M,)
        gap = energy
        if cfg.emc_gap == "relative" and has.any():
            gap = energy / energy[has].detach().mean().clamp_min(1e-6)
        pairs = [(a, b) for a, b in combinations(range(len(energy)), 2) if has[a] and has[b]]
        if cfg.emc_pull == "high":  # order each pair (higher, lower) and hold the lower fixed
            order = gap.detach()
            pairs = [(a, b) if order[a] >= order[b] else (b, a) for a, b in pairs]
            gaps = [(gap[a] - gap[b].detach()).pow(2) for a, b in pairs]
        else:
            gaps = [(gap[a] - gap[b]).pow(2) for a, b in pairs]
        loss = torch.stack(gaps).sum() if gaps else energy.sum() * 0.0
        if cfg.grad_penalty > 0 and z.requires_grad:
            (grad,) = torch.autograd.grad(energy.sum(), z, create_graph=True)  # ∂E_m/∂z_m, blocks separate
            loss = loss + cfg.grad_penalty * grad.pow(2).sum(-1).sum(0).mean()
        return loss
