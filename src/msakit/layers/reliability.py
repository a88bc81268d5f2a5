"""Per-sample modality reliability: cues, a learned estimator, and trust weights.

`ReliabilityEstimator` turns K scalar cues per modality (confidence, Fisher information,
uncertainty, ...) into one reliability logit per modality; weights are a softmax over the
modalities the sample has. `trust_weights` is EBMC's closed form from an uncertainty σ.
`fisher_trace_*` give the trace of the Fisher information of a unimodal head's predictive
distribution with respect to the representation it reads, in closed form for a linear last
layer (no second backward pass).

Dimension legend: B batch, M modalities, K cues, C classes, H head input width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.layers.fusion import masked_softmax


class ReliabilityEstimator(nn.Module):
    """(B, M, K) cues + (B, M) present -> reliability logits (B, M) and weights (B, M).

    Every cue is oriented so that larger means more reliable (a confidence, a log Fisher
    information, a negative uncertainty), so the estimator is monotone: logits = Σ_k a_k·cue_k
    + prior_m with a_k = softplus(·) ≥ 0, shared by the modalities, and a learned per-modality
    prior. With one cue -log σ² and a = 1 the weights are inverse-variance weights, the
    optimal combination of independent Gaussian estimates.
    """

    def __init__(self, num_cues: int, num_modalities: int) -> None:
        super().__init__()
        self.raw_scale = nn.Parameter(torch.full((num_cues,), math.log(math.e - 1.0)))  # softplus -> 1
        self.prior = nn.Parameter(torch.zeros(num_modalities))

    def forward(self, cues: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        logits = (cues * F.softplus(self.raw_scale)).sum(-1) + self.prior  # (B, M)
        return logits, masked_softmax(logits, present)


def trust_weights(sigma: Tensor, present: Tensor) -> Tensor:
    """EBMC's instance trust: w ∝ c·ρ with c = exp(-σ), ρ = 1 / (log(1 + σ²) + 0.1).

    sigma, present: (B, M); weights sum to 1 over the present modalities (0 elsewhere).
    """
    score = torch.exp(-sigma) / (torch.log1p(sigma.pow(2)) + 0.1)
    score = score * present.to(score.dtype)
    return score / score.sum(-1, keepdim=True).clamp_min(1e-12)


def fisher_trace_classifier(probs: Tensor, weight: Tensor) -> Tensor:
    """tr F for p = softmax(W h + b) w.r.t. h: Σ_c p_c ‖W_c‖² - ‖Σ_c p_c W_c‖².

    probs (…, C), weight (C, H) -> (…,).
    """
    sq = weight.pow(2).sum(-1)  # (C,)
    mean_w = probs @ weight  # (…, H)
    return (probs * sq).sum(-1) - mean_w.pow(2).sum(-1)


def fisher_trace_gaussian(log_var: Tensor, mean_weight: Tensor, log_var_weight: Tensor) -> Tensor:
    """tr F for N(μ = w_μ·h, σ² = exp(w_v·h)) w.r.t. h: ‖w_μ‖² / σ² + ½ ‖w_v‖².

    log_var (…, 1), weights (1, H) -> (…,).
    """
    return mean_weight.pow(2).sum() * torch.exp(-log_var.squeeze(-1)) + 0.5 * log_var_weight.pow(2).sum()
