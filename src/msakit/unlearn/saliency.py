"""The non-convex part of a deletion: saliency-selected parameters, a calibrated Gaussian update.

A deletion replaces, for the forget set S, each training sample x_i by x_i with modality
m removed (x_i⁻). Its first-order effect on the mean training gradient is

    d = 1/n Σ_{i∈S} [∇ℓ(x_i⁻) − ∇ℓ(x_i)]        (estimated on up to `saliency_samples` of S, scaled)

Saliency of a parameter element: |d ⊙ θ| (how much the removed data moved the loss through
it, first-order Taylor). The top `fraction` of the body's elements (the convex head is
solved exactly elsewhere; parameters of deleted modules are gone) are the candidates.

On them, each record's damped diagonal Newton step s_i = (1/n)(F + λ)⁻¹[∇ℓ(x_i) − ∇ℓ(x_i⁻)]
(F the diagonal empirical Fisher of the retained data, λ = `damping` · mean(F)) is
clipped to l2 norm C = `clip` · ‖θ_c‖ / n, as DP-SGD clips per-example gradients; the
update is Σ_i s_i (scaled from the sample to S) plus N(0, σ²) per candidate with the
Gaussian mechanism's σ = C · sqrt(2 ln(1.25/δ)) / ε. Clipping makes C a true bound on
one record's contribution to *this update*, so the noise is calibrated, not guessed.
What it does not give: a bound between the trained network and a retrained one (the
body was trained on the removed data, and non-convex training has no such bound), so
there is no (ε, δ) unlearning guarantee for the body; its effect is measured
(docs/unlearning.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from msakit.batch import Batch
from msakit.data.core import SplitData
from msakit.errors import ConfigError
from msakit.models.base import MSAModel

Transform = Callable[[Batch], Batch]
CHUNK = 64  # samples per forward pass of the gradient estimates


@dataclass(frozen=True)
class BodyUpdate:
    candidates: int  # parameter elements updated
    considered: int  # body elements considered
    sensitivity: float  # C, the l2 bound of one record's clipped step
    sigma: float  # noise standard deviation per candidate
    step_norm: float  # ‖Δ‖₂ over the candidates
    noise_norm: float  # ‖noise‖₂ actually added
    damping: float  # λ
    clipped: float  # share of the sampled records whose step was clipped
    step: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)  # Δ per candidate tensor


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The Gaussian mechanism's σ = Δ₂ · sqrt(2 ln(1.25/δ)) / ε."""
    if not (epsilon > 0 and 0 < delta < 1):
        raise ConfigError(f"unlearn: need ε > 0 and 0 < δ < 1, got ε={epsilon}, δ={delta}")
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def _per_sample_loss(model: MSAModel, pred: Tensor, labels: Tensor) -> Tensor:
    """(B,) the task loss of each sample (`task_loss` is the batch mean of these)."""
    if model.is_classifier:
        return torch.nn.functional.cross_entropy(pred, labels.long(), reduction="none")
    kind = getattr(model.config, "task_loss", "l1")
    if kind not in ("mse", "l1"):
        raise ConfigError(f"unlearn: no per-sample form of task_loss {kind!r}")
    error = pred.reshape(labels.shape) - labels.float()
    return error**2 if kind == "mse" else error.abs()


def _per_sample_grads(
    model: MSAModel, split: SplitData, indices: Sequence[int], params: dict[str, Tensor], transform: Transform | None
) -> dict[str, Tensor]:
    """∇ℓ(x_i) for each i of `indices`: {name: (len(indices), *shape)}, in one forward and one batched
    backward pass per chunk (autograd's `is_grads_batched`: the backward is vectorised over the
    one-hot output gradients), not one pass per sample."""
    model.eval()  # no dropout, no random hiding: the deterministic network being edited
    chunks: dict[str, list[Tensor]] = {k: [] for k in params}
    for start in range(0, len(indices), CHUNK):
        batch = split.batch(indices[start : start + CHUNK])
        if transform is not None:
            batch = transform(batch)
        losses = _per_sample_loss(model, model(batch).prediction, batch.labels)  # (B,)
        eye = torch.eye(batch.size, dtype=losses.dtype)
        grads = torch.autograd.grad(losses, list(params.values()), eye, is_grads_batched=True, allow_unused=True)
        for (k, p), g in zip(params.items(), grads, strict=True):
            chunks[k].append(g if g is not None else torch.zeros(batch.size, *p.shape, dtype=p.dtype))
    return {k: torch.cat(v) for k, v in chunks.items()}


def _batch_fisher(per_sample: dict[str, Tensor]) -> dict[str, Tensor]:
    """Σ over chunks of B·ḡ² (ḡ the chunk's mean gradient), divided later by the count: a diagonal empirical Fisher."""
    out = {}
    for k, g in per_sample.items():
        sums = [c.sum(0) for c in g.split(CHUNK)]
        out[k] = sum((s**2 / len(c) for s, c in zip(sums, g.split(CHUNK), strict=True)), torch.zeros_like(g[0]))
    return out


def warm_up() -> None:
    """Load what autograd's batched backward needs (its first call imports modules, about 0.4 s of CPU):
    start-up, done before the edit is timed, as `msakit.metrics.import_backend` is for scikit-learn."""
    w = torch.zeros(1, requires_grad=True)
    torch.autograd.grad(w * torch.ones(2), [w], torch.eye(2), is_grads_batched=True)


def select_and_update(
    source: MSAModel,
    target: MSAModel,
    split: SplitData,
    forget: Sequence[int],
    forget_transform: Transform,
    *,
    exclude: Callable[[str], bool],
    fraction: float,
    epsilon: float,
    delta: float,
    damping: float = 1.0,
    clip: float = 0.1,
    saliency_samples: int = 32,
    seed: int,
    noise_seed: int,
) -> BodyUpdate:
    """Estimate the update on `source` (the trained model) and apply it to the candidates of `target`.

    Parameters of `target` that `source` lacks, or that `exclude(name)` rejects (the
    convex head), are not candidates.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"unlearn: fraction must be in (0, 1], got {fraction}")
    names = dict(target.named_parameters())
    params: dict[str, Tensor] = {
        k: p for k, p in source.named_parameters() if k in names and not exclude(k) and p.shape == names[k].shape
    }
    if not params:
        return BodyUpdate(0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    n = len(split)
    sample = sorted(rng.choice(forget, size=min(saliency_samples, len(forget)), replace=False).tolist())
    scale = len(forget) / len(sample)
    with_m = _per_sample_grads(source, split, sample, params, None)  # (S, *shape) each
    without_m = _per_sample_grads(source, split, sample, params, forget_transform)
    fisher = _batch_fisher(without_m)
    d = {k: (without_m[k] - with_m[k]).sum(0) * scale / n for k in params}
    f = {k: fisher[k] / len(sample) for k in params}
    lam = damping * float(torch.cat([v.flatten() for v in f.values()]).mean()) + 1e-12
    saliency = torch.cat([(d[k] * p.detach()).abs().flatten() for k, p in params.items()])
    threshold = torch.topk(saliency, max(1, round(fraction * saliency.numel()))).values.min()
    masks = {k: ((d[k] * p.detach()).abs() >= threshold).to(p.dtype) for k, p in params.items()}
    theta_norm = math.sqrt(sum(float(((p.detach() * masks[k]) ** 2).sum()) for k, p in params.items()))
    bound = clip * theta_norm / n  # C: the l2 bound of one record's clipped step
    # every record's step at once: s_i = −H⁻¹ of the change its deletion makes, on the candidates
    steps = {k: (with_m[k] - without_m[k]) / n / (f[k] + lam) * masks[k] for k in params}  # (S, *shape)
    norms = torch.stack([v.flatten(1).pow(2).sum(1) for v in steps.values()]).sum(0).sqrt()  # (S,)
    factor = torch.where(norms > 0, (bound / norms.clamp_min(1e-30)).clamp(max=1.0), torch.zeros_like(norms))
    clipped = int((factor < 1.0).sum())
    update = {k: torch.einsum("s,s...->...", factor, v) * scale for k, v in steps.items()}
    sigma = gaussian_sigma(bound, epsilon, delta)
    gen = torch.Generator().manual_seed(noise_seed)
    noise_sq = 0.0
    with torch.no_grad():
        for k in params:
            noise = torch.randn(names[k].shape, generator=gen) * sigma * masks[k]
            names[k].add_(update[k] + noise)
            noise_sq += float((noise**2).sum())
    step_norm = math.sqrt(sum(float((u**2).sum()) for u in update.values()))
    count = int(sum(int(m.sum()) for m in masks.values()))
    return BodyUpdate(
        count, int(saliency.numel()), bound, sigma, step_norm, math.sqrt(noise_sq), lam, clipped / len(sample), update
    )


@torch.no_grad()
def shift_step(model: MSAModel, update: BodyUpdate, sign: float) -> None:
    """Add (`sign` 1) or take back (`sign` −1) the body's Newton step Δ; the Gaussian noise stays."""
    params = dict(model.named_parameters())
    for k, v in update.step.items():
        params[k].add_(v, alpha=sign)


__all__ = ["BodyUpdate", "gaussian_sigma", "select_and_update", "shift_step"]
