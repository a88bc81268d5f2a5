"""Self-MM: self-supervised multi-task learning with unimodal label generation.

Paper: Yu et al., "Learning Modality-Specific Representations with Self-Supervised
Multi-Task Learning for Multimodal Sentiment Analysis" (AAAI 2021); MMSA reference:
thuiar/MMSA `models/multiTask/SELF_MM.py` and `trains/multiTask/SELF_MM.py`.

A fused head and one head per modality are trained together; the unimodal heads learn
from labels y_s that the Unimodal Label Generation Module (ULGM) derives from the
multimodal label y_m, from where each sample's feature sits between the positive and
negative class centres of its modality:

    F*_s = ReLU(W_s · Enc_s(X_s)),  F*_m = ReLU(W_m · [F_t; F_a; F_v])      (§3.2 features)
    C^p_i, C^n_i = mean of F_i over samples with y_i > 0 / y_i < 0             (Eq. 6)
    α_i = ‖F_i − C^n_i‖ / ‖F_i − C^p_i‖ − 1 (written (D^n − D^p) / D^p)       (Eq. 7-8)
    ŷ_s = ½ (y_m·α_s/α_m) + ½ (y_m + α_s − α_m),  clipped to [−H, H]          (Eq. 13-14)
    y_s^(n) = (n−1)/(n+1)·y_s^(n−1) + 2/(n+1)·ŷ_s                            (Eq. 15, momentum)
    L = Σ_i w_i·|ŷ_i − y_i|,  w_s = tanh(|y_s − y_m|), w_m = 1                (Eq. 16)

Training state is owned here: `on_fit_start` builds the label memory (every sample's
y_s, initialised to y_m) and the feature memory; `on_train_batch_end` stores the
batch's features, recomputes the centres and, from the second epoch on, updates the
batch's unimodal labels. The trainer only sees the fused prediction and the weighted
unimodal loss in `aux_losses["unimodal"]`.

Absence: an absent modality's feature is 0 in the fusion input; its unimodal head
gets no loss, and its feature and label memories are not updated for that sample.

Interpretations:
- Text: msakit's precomputed MiniLM token states stand in for fine-tuned BERT (no
  bert-base download), through the shared `SequenceEncoder`; audio and visual use the
  shared length-aware LSTM encoder.
- Centres average only the features already seen (MMSA averages a zero-initialised
  memory, which pulls the first epoch's centres towards 0).
- Samples without a memory row (forward outside `fit`, e.g. in tests) use y_m as y_s.
- Classification (num_classes > 1): ULGM is defined for regression only, so the
  unimodal heads learn the class label with cross-entropy and no label is generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig
from msakit.data.stats import DatasetStats
from msakit.layers import MLP
from msakit.layers.encoders import modality_encoders
from msakit.models.base import MSAModel
from msakit.registry import register_model

_EPS = 1e-8
_FUSED = "fused"


@dataclass
class SelfMMConfig(ModelConfig):
    text_encoder: str = "mean"  # over MiniLM token states (the paper's BERT)
    other_encoder: str = "lstm"  # audio and visual
    unimodal_dim: int = 32  # width of each F*_s (MMSA MOSI: 32 / 16 / 32)
    unimodal_weight: float = 1.0  # weight of the unimodal tasks' loss (the paper sums them, 1.0)
    label_bound: float = 3.0  # H, the clip of generated labels (MMSA: 3.0 for MOSI)


@register_model("self_mm")
class SelfMM(MSAModel):
    config_class = SelfMMConfig
    config: SelfMMConfig

    def __init__(self, config: SelfMMConfig) -> None:
        super().__init__(config)
        h, u, mods = config.hidden_dim, config.unimodal_dim, self.modalities
        self.encoders = modality_encoders(config, mods, text_kind=config.text_encoder, other_kind=config.other_encoder)
        self.fused_feature = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(h * len(mods), h), nn.ReLU())  # F*_m
        self.fused_head = MLP(h, config.num_classes, hidden_dim=h)
        self.unimodal_feature = nn.ModuleDict(
            {m: nn.Sequential(nn.Dropout(config.dropout), nn.Linear(h, u), nn.ReLU()) for m in mods}
        )  # F*_s
        self.unimodal_heads = nn.ModuleDict({m: MLP(u, config.num_classes, hidden_dim=u) for m in mods})
        # ULGM memories, (re)built by on_fit_start; not part of the checkpoint
        self._rows: dict[str, int] = {}
        self.labels_memory: dict[str, Tensor] = {}  # task -> (N,) y_i for every training sample
        self.feature_memory: dict[str, Tensor] = {}  # task -> (N, width) last seen F*_i
        self.seen: dict[str, Tensor] = {}  # task -> (N,) bool, feature stored at least once
        self.centres: dict[str, tuple[Tensor, Tensor]] = {}  # task -> (C^p, C^n)

    @property
    def tasks(self) -> tuple[str, ...]:
        return (_FUSED, *self.modalities)

    def forward(self, batch: Batch) -> ModelOutput:
        enc = {m: self.encoders[m](batch.features[m], batch.masks[m])[1] for m in self.modalities}  # (B, H)
        f = {_FUSED: self.fused_feature(torch.cat(list(enc.values()), dim=-1))}  # (B, H)
        f.update({m: self.unimodal_feature[m](enc[m]) for m in self.modalities})  # (B, U) each
        unimodal = {m: self.bound_prediction(self.unimodal_heads[m](f[m])) for m in self.modalities}
        aux = {"unimodal": self._unimodal_loss(batch, unimodal)} if self.training else {}
        return ModelOutput(
            prediction=self.bound_prediction(self.fused_head(f[_FUSED])),
            aux_losses=aux,
            features={f"feature_{k}": v for k, v in f.items()},
            explanations={f"prediction_{m}": p for m, p in unimodal.items()},
        )

    # ---- Eq. 16: the unimodal tasks, weighted by how far y_s is from y_m ------------
    def _unimodal_loss(self, batch: Batch, unimodal: dict[str, Tensor]) -> Tensor:
        losses = []
        for m, pred in unimodal.items():
            keep = batch.present_mask(m)
            if not keep.any():
                continue
            if self.is_classifier:
                losses.append(F.cross_entropy(pred[keep], batch.labels[keep].long()))
                continue
            y_m, y_s = self._labels(batch, _FUSED), self._labels(batch, m)
            w = torch.tanh((y_s - y_m).abs())[keep]
            losses.append((w * (pred[keep] - y_s[keep]).abs()).sum() / w.sum().clamp_min(_EPS))
        if not losses:
            return torch.stack([p.sum() for p in unimodal.values()]).sum() * 0.0
        return self.config.unimodal_weight * torch.stack(losses).sum()

    def _labels(self, batch: Batch, task: str) -> Tensor:
        """y_task for the batch: the label memory where the sample has a row, else y_m."""
        y = batch.labels.float().clone()
        rows, where = self._batch_rows(batch)
        if rows.numel() and task in self.labels_memory:
            y[where] = self.labels_memory[task][rows].to(y.device)
        return y

    def _batch_rows(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Memory rows of the batch's samples that have one, and their positions in the batch."""
        pairs = [(self._rows[i], j) for j, i in enumerate(batch.ids) if i in self._rows]
        rows = torch.tensor([r for r, _ in pairs], dtype=torch.long)
        where = torch.tensor([j for _, j in pairs], dtype=torch.long)
        return rows, where

    # ---- ULGM hooks -------------------------------------------------------------------
    def on_fit_start(self, stats: DatasetStats) -> None:
        ids = list(stats.ids)
        y = torch.as_tensor(stats.labels, dtype=torch.float32)  # (N,)
        self._rows = {i: r for r, i in enumerate(ids)}
        self.labels_memory = {t: y.clone() for t in self.tasks}  # every y_s starts at y_m
        widths = {_FUSED: self.config.hidden_dim, **{m: self.config.unimodal_dim for m in self.modalities}}
        self.feature_memory = {t: torch.zeros(len(ids), widths[t]) for t in self.tasks}
        self.seen = {t: torch.zeros(len(ids), dtype=torch.bool) for t in self.tasks}
        self.centres = {}

    @torch.no_grad()
    def on_train_batch_end(self, batch: Batch, output: ModelOutput, epoch: int) -> None:
        if not self._rows or self.is_classifier:
            return
        rows, where = self._batch_rows(batch)
        if not rows.numel():
            return
        feats = {t: output.features[f"feature_{t}"].detach().float().cpu()[where] for t in self.tasks}
        present = {m: batch.present_mask(m).cpu()[where] for m in self.modalities}
        if epoch > 1 and self.centres:
            self._update_labels(rows, feats, present, epoch)
        for t in self.tasks:
            keep = present.get(t, torch.ones_like(rows, dtype=torch.bool))
            self.feature_memory[t][rows[keep]] = feats[t][keep]
            self.seen[t][rows[keep]] = True
        self._update_centres()

    def _update_centres(self) -> None:
        """Eq. 6: positive and negative centres of each task's stored features."""
        for t in self.tasks:
            y, seen = self.labels_memory[t], self.seen[t]
            pos, neg = seen & (y > 0), seen & (y < 0)
            if pos.any() and neg.any():
                self.centres[t] = (self.feature_memory[t][pos].mean(0), self.feature_memory[t][neg].mean(0))

    def _update_labels(self, rows: Tensor, feats: dict[str, Tensor], present: dict[str, Tensor], epoch: int) -> None:
        if _FUSED not in self.centres:
            return

        def relative_distance(t: str) -> Tensor:  # Eq. 7-8: (D^n − D^p) / D^p
            pos, neg = self.centres[t]
            d_p, d_n = (feats[t] - pos).norm(dim=-1), (feats[t] - neg).norm(dim=-1)
            return (d_n - d_p) / (d_p + _EPS)

        alpha_m = relative_distance(_FUSED)
        y_m = self.labels_memory[_FUSED][rows]
        for m in self.modalities:
            if m not in self.centres:
                continue
            alpha_s = relative_distance(m)
            new = 0.5 * y_m * alpha_s / (alpha_m + _EPS) + 0.5 * (y_m + alpha_s - alpha_m)  # Eq. 13-14
            new = new.clamp(-self.config.label_bound, self.config.label_bound)
            old = self.labels_memory[m][rows]
            updated = (epoch - 1) / (epoch + 1) * old + 2 / (epoch + 1) * new  # Eq. 15
            keep = present[m]
            self.labels_memory[m][rows[keep]] = updated[keep]
