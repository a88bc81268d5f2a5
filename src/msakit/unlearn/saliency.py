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
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from msakit.batch import Batch
from msakit.data.core import SplitData
from msakit.errors import ConfigError
from msakit.models.base import MSAModel

Transform = Callable[[Batch], Batch]


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


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """The Gaussian mechanism's σ = Δ₂ · sqrt(2 ln(1.25/δ)) / ε."""
    if not (epsilon > 0 and 0 < delta < 1):
        raise ConfigError(f"unlearn: need ε > 0 and 0 < δ < 1, got ε={epsilon}, δ={delta}")
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def _grad_sum(
    model: MSAModel, split: SplitData, indices: Sequence[int], params: dict[str, Tensor], transform: Transform | None
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Σ_i ∇ℓ(x_i) over `indices`, and Σ over batches of B²·ḡ² (divided by the count: a diagonal empirical Fisher)."""
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    fisher = {k: torch.zeros_like(p) for k, p in params.items()}
    model.eval()  # no dropout, no random hiding: the deterministic network being edited
    for start in range(0, len(indices), 64):
        batch = split.batch(indices[start : start + 64])
        if transform is not None:
            batch = transform(batch)
        loss = model.task_loss(model(batch).prediction, batch.labels)  # the batch mean
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for k, g in zip(params, grads, strict=True):
            if g is not None:
                total[k] += g * batch.size
                fisher[k] += (g * batch.size) ** 2 / batch.size  # B·ḡ²: a per-sample second moment estimate
    return total, fisher


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
    with_m, _ = _grad_sum(source, split, sample, params, None)
    without_m, fisher = _grad_sum(source, split, sample, params, forget_transform)
    d = {k: (without_m[k] - with_m[k]) * scale / n for k in params}
    f = {k: fisher[k] / len(sample) for k in params}
    lam = damping * float(torch.cat([v.flatten() for v in f.values()]).mean()) + 1e-12
    saliency = torch.cat([(d[k] * p.detach()).abs().flatten() for k, p in params.items()])
    threshold = torch.topk(saliency, max(1, round(fraction * saliency.numel()))).values.min()
    masks = {k: ((d[k] * p.detach()).abs() >= threshold).to(p.dtype) for k, p in params.items()}
    theta_norm = math.sqrt(sum(float(((p.detach() * masks[k]) ** 2).sum()) for k, p in params.items()))
    bound = clip * theta_norm / n  # C: the l2 bound of one record's clipped step
    update = {k: torch.zeros_like(p) for k, p in params.items()}
    clipped = 0
    for i in sample:
        g_with, _ = _grad_sum(source, split, [i], params, None)
        g_without, _ = _grad_sum(source, split, [i], params, forget_transform)
        step = {k: (g_with[k] - g_without[k]) / n / (f[k] + lam) * masks[k] for k in params}  # −H⁻¹ of the change
        norm = math.sqrt(sum(float((v**2).sum()) for v in step.values()))
        factor = min(1.0, bound / norm) if norm > 0 else 0.0
        clipped += int(factor < 1.0)
        for k in params:
            update[k] += step[k] * factor * scale
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
        count, int(saliency.numel()), bound, sigma, step_norm, math.sqrt(noise_sq), lam, clipped / len(sample)
    )


__all__ = ["BodyUpdate", "gaussian_sigma", "select_and_update"]
