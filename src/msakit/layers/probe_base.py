"""The linear-probe floor inside a model: the network learns what the probe misses.

`msakit probe` fits ridge (regression) or logistic regression (classification) on each
sample's pooled features; a model that cannot beat it has learned nothing the features did
not already say. With ``ModelConfig.probe_base`` on, a model's prediction becomes

    prediction = probe(pooled raw inputs) + network(batch)

where ``probe`` is exactly the probe `ProbeResult.best()` would pick (each modality alone and
all together, each pooling and ridge α, chosen on the validation split; `msakit.probe.fit_linear_map`),
fitted once on the training split before the first epoch and then frozen (buffers, never
trained), and the network is the model unchanged, trained on the task loss of the sum, so
that it fits the probe's residual. This is stacking (Wolpert, "Stacked Generalization", 1992)
with the wide-and-deep sum as the combiner (Cheng et al., 2016: a linear and a deep part added
before the loss), the linear part fitted first rather than jointly.

Cross-fitting: while training, a training sample's probe part is its *out-of-fold* score
(`msakit.probe.out_of_fold_scores`: the same probe refitted on the other 4 of 5 folds), because
the full fit's residuals on the very samples it was fitted on are optimistically small (on MMMO
the in-sample version left the network almost nothing to learn: qa_moe/mmmo's 5-seed validation
MAE rose from 0.950 to 1.086, runs/probebase/DECISION.md). Evaluation, inference and any batch
holding a sample outside the training split use the full fit. Augmentations that drop a
modality while training do not reach the out-of-fold part (it is a per-sample constant).

Classification: the probe's logits (multinomial logistic regression's decision values) are
added to the network's logits. The probe reads the *raw* batch, before the model's input
normaliser, so that its pooled columns are those `msakit probe` sees; robustness
perturbations reach it as they reach the model (a dropped modality pools to zeros with a 0
presence column, as the probe's own rows). `ModelOutput.explanations["probe_base"]` holds
each sample's probe part ((B,) regression, (B, C) logits), so the network's share is the
prediction minus it.

Until fitted the module adds nothing (a model built outside the trainer, the registry-wide
tests). A checkpoint stores the fitted arrays; the state dict's shapes pin the data widths.

Dimensions: B batch, L steps, D a modality's width, F pooled columns (2D + 1 per modality:
mean, std, present), C outputs (1 for regression).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput
from msakit.probe import LinearMap


def _float32(values: np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(values, np.float64), dtype=torch.float32)


#: a fitted probe base: the chosen probe and its out-of-fold scores of the training samples (N, C)
ProbeFit = tuple[LinearMap, np.ndarray]


class ProbeBase(nn.Module):
    """A frozen linear map of pooled raw inputs (module docstring); `fit` loads a `LinearMap`."""

    center: Tensor  # (F,) buffers: the probe's standardisation, weights and bias
    scale: Tensor
    weight: Tensor  # (C, F)
    bias: Tensor  # (C,)
    fitted: Tensor  # () bool
    train_scores: Tensor  # (N, C) training samples' out-of-fold scores, not saved

    def __init__(self, dims: Mapping[str, int], outputs: int) -> None:
        super().__init__()
        self.dims = dict(dims)  # modality -> D, in canonical order
        width = sum(2 * d + 1 for d in self.dims.values())
        self.register_buffer("center", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.register_buffer("weight", torch.zeros(outputs, width))
        self.register_buffer("bias", torch.zeros(outputs))
        self.register_buffer("fitted", torch.tensor(False))
        # training samples' out-of-fold scores (`set_train_scores`), read in training mode only; not
        # saved (a checkpoint is used at inference, and a resumed fit refits them: deterministic)
        self.register_buffer("train_scores", torch.zeros(0, outputs), persistent=False)
        self.train_rows: dict[str, int] = {}

    def _offsets(self) -> dict[str, int]:
        out, at = {}, 0
        for m, d in self.dims.items():
            out[m], at = at, at + 2 * d + 1
        return out

    def fit(self, fitted: LinearMap) -> None:
        """Load `fitted` (columns `pooled_features` of its group and pooling) into this layout."""
        offsets = self._offsets()
        cols: list[int] = []
        for m in fitted.group:
            d, at = self.dims[m], offsets[m]
            cols += list(range(at, at + d))  # mean
            if fitted.pooling == "mean+std":
                cols += list(range(at + d, at + 2 * d))
            cols.append(at + 2 * d)  # present
        if len(cols) != fitted.coef.shape[1] or fitted.coef.shape[0] != self.weight.shape[0]:
            raise ValueError(
                f"probe base: a map of shape {fitted.coef.shape} does not fit "
                f"{len(cols)} columns x {self.weight.shape[0]} outputs"
            )
        idx = torch.tensor(cols, dtype=torch.long)
        with torch.no_grad():
            self.center.zero_()
            self.scale.fill_(1.0)
            self.weight.zero_()
            self.center[idx] = _float32(fitted.center)
            self.scale[idx] = _float32(fitted.scale)
            self.weight[:, idx] = _float32(fitted.coef)
            self.bias.copy_(_float32(fitted.intercept))
            self.fitted.fill_(True)

    def set_train_scores(self, ids: Sequence[str], scores: np.ndarray) -> None:
        """The out-of-fold probe scores (N, C) of the training samples `ids` (`msakit.probe.out_of_fold_scores`)."""
        self.train_scores = _float32(scores).to(self.center.device)
        self.train_rows = {sample: k for k, sample in enumerate(ids)}

    def pooled(self, batch: Batch) -> Tensor:
        """(B, F): per modality the mean and population std over valid steps and a 0/1 presence column
        (`msakit.probe.pooled_features`, in float32); zeros for a modality the batch does not carry."""
        parts = []
        for m, d in self.dims.items():
            if m not in batch.features:
                parts.append(torch.zeros(batch.size, 2 * d + 1, device=self.center.device))
                continue
            x = batch.features[m].float()
            steps = (batch.masks[m] & batch.present_mask(m)[:, None]).float()  # (B, L)
            count = steps.sum(1, keepdim=True)  # (B, 1)
            w = steps.unsqueeze(-1)
            mean = (x * w).sum(1) / count.clamp_min(1.0)
            std = (((x - mean[:, None]) ** 2 * w).sum(1) / count.clamp_min(1.0)).clamp_min(0.0).sqrt()
            parts.append(torch.cat([mean, std, (count > 0).float()], dim=1))
        return torch.cat(parts, dim=1)

    def forward(self, batch: Batch) -> Tensor:
        """(B, C) the probe's scores (zeros until fitted); in training mode, for a batch of training
        samples, their out-of-fold scores."""
        if self.training and self.train_rows and all(i in self.train_rows for i in batch.ids):
            return self.train_scores[[self.train_rows[i] for i in batch.ids]] * self.fitted.float()
        x = (self.pooled(batch) - self.center) / self.scale
        return (x @ self.weight.T + self.bias) * self.fitted.float()

    def add_to(self, batch: Batch, out: ModelOutput, *, classifier: bool) -> ModelOutput:
        """`out` with the probe's scores added to its prediction (and recorded in its explanations)."""
        if not bool(self.fitted):
            return out
        base = self(batch)
        base = base if classifier else base[:, 0]
        out.prediction = out.prediction + base
        out.explanations["probe_base"] = base
        return out


__all__ = ["ProbeBase", "ProbeFit"]
