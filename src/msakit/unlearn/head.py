"""Exact removal from the convex head: a Newton step on an L2-regularised squared loss.

Over frozen features φ (the `features["fused"]` vector, plus a constant 1 for the bias),
the head w minimises the perturbed objective of certified removal (Guo et al., ICML 2020,
their eq. 3 with the squared loss):

    J(w) = 1/(2n) Σ_i (wᵀφ_i − y_i)² + λ/2 ‖w‖² + βᵀw / n,     β ~ N(0, σ_β² I)

Removal is the Newton step w⁻ = w − H⁻¹ ∇J⁻(w) on the objective J⁻ of the retained data,
H = ΦᵀΦ/n + λI. J⁻ is quadratic, so its Hessian is constant (the Lipschitz constant γ of
the Hessian in Guo et al.'s gradient-residual bound ‖∇J⁻(w⁻)‖ ≤ γ ‖H⁻¹Δ‖² is 0): the step
lands on the exact minimiser and the gradient residual is zero up to floating point. What
is left is rounding: the solution is stored as float32 weights. The bound ε' =
`RESIDUAL_BOUND` (on Guo et al.'s sum scale L = n·J) is fixed before the solve, so that
σ_β can be drawn first; the residual of the *stored* weights is measured and must not
exceed it (the removal fails otherwise).
Classification heads (softmax cross-entropy) would need the data-dependent bound of
their Theorem 1 and iterated Newton steps; they are refused, not approximated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from msakit.errors import ConfigError

RESIDUAL_BOUND = 1e-2  # ε': the a-priori gradient-residual bound of the float32-stored head (sum scale)


@dataclass(frozen=True)
class HeadSolution:
    weight: np.ndarray  # (p,) including the bias as the last entry
    l2: float
    residual: float  # ‖∇L⁻(w⁻)‖₂ with L = n·J (Guo et al.'s sum-scale objective), measured in float64


def augment(features: np.ndarray) -> np.ndarray:
    """(n, p) -> (n, p + 1) with a constant 1 column for the bias."""
    return np.hstack([features.astype(np.float64), np.ones((features.shape[0], 1))])


def objective_noise(dim: int, sigma: float, seed: int) -> np.ndarray:
    """β of the perturbed objective, reproducible from `seed` (the verifier recomputes it)."""
    return np.random.default_rng(seed).normal(0.0, sigma, dim) if sigma > 0 else np.zeros(dim)


def gradient(w: np.ndarray, phi: np.ndarray, y: np.ndarray, l2: float, beta: np.ndarray) -> np.ndarray:
    n = phi.shape[0]
    return phi.T @ (phi @ w - y) / n + l2 * w + beta / n


def residual(w: np.ndarray, phi: np.ndarray, y: np.ndarray, l2: float, beta: np.ndarray) -> float:
    """‖∇L(w)‖₂ on Guo et al.'s sum scale, L = n·J."""
    return float(phi.shape[0] * np.linalg.norm(gradient(w, phi, y, l2, beta)))


def newton_removal(w_old: np.ndarray, phi: np.ndarray, y: np.ndarray, *, l2: float, beta: np.ndarray) -> HeadSolution:
    """One Newton step from `w_old` on the retained data's objective (exact: J⁻ is quadratic)."""
    if l2 <= 0:
        raise ConfigError(f"unlearn: the head's L2 strength must be > 0 (strong convexity), got {l2}")
    n, p = phi.shape
    hessian = phi.T @ phi / n + l2 * np.eye(p)
    w = w_old - np.linalg.solve(hessian, gradient(w_old, phi, y, l2, beta))
    return HeadSolution(weight=w, l2=l2, residual=residual(w, phi, y, l2, beta))


def noise_scale(residual_bound: float, epsilon: float, delta: float) -> float:
    """σ_β = c·ε'/ε with c = sqrt(2 ln(1.5/δ)) (Guo et al., Theorem 3, Gaussian objective perturbation)."""
    if not (epsilon > 0 and 0 < delta < 1):
        raise ConfigError(f"unlearn: need ε > 0 and 0 < δ < 1, got ε={epsilon}, δ={delta}")
    return math.sqrt(2 * math.log(1.5 / delta)) * residual_bound / epsilon


__all__ = [
    "RESIDUAL_BOUND",
    "HeadSolution",
    "augment",
    "gradient",
    "newton_removal",
    "noise_scale",
    "objective_noise",
    "residual",
]
