"""A mixture-of-experts block with pluggable routing.

Experts are small two-layer MLPs held as stacked weights (one einsum for all of them);
every expert runs on every token and the gate mixes them, so a top-k gate is sparse in
its weights, not in compute (cheap at msakit's sizes, and every expert gets a gradient).

Routing is pluggable in two ways: the router may read extra inputs beside the token
(`route_dim`, e.g. a modality's log-uncertainty), and callers may add a bias to the gate
logits (`bias`, e.g. -λ·σ² to push unreliable tokens to a dedicated expert). `top_k`
keeps the k largest logits (softmax among them); `top_k` = 0 or ≥ E is a dense softmax.
The load-balancing loss is Switch Transformer's E·Σ_e f_e·P_e over valid tokens (f_e the
share of tokens whose top-1 is e, P_e the mean gate probability), 1 when balanced.

Dimension legend: N tokens (any leading shape), D width, E experts, F expert hidden width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class MoEOutput:
    output: Tensor  # (…, D)
    gates: Tensor  # (…, E) mixing weights actually used (zero outside the top k)
    balance_loss: Tensor  # scalar


class MixtureOfExperts(nn.Module):
    def __init__(
        self,
        dim: int,
        *,
        num_experts: int = 4,
        top_k: int = 2,
        hidden_dim: int | None = None,
        route_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"MixtureOfExperts needs num_experts >= 1, got {num_experts}")
        f = hidden_dim or 2 * dim
        self.num_experts, self.top_k = num_experts, top_k
        self.w1 = nn.Parameter(torch.empty(num_experts, dim, f))
        self.b1 = nn.Parameter(torch.zeros(num_experts, f))
        self.w2 = nn.Parameter(torch.empty(num_experts, f, dim))
        self.b2 = nn.Parameter(torch.zeros(num_experts, dim))
        for w in (self.w1, self.w2):
            nn.init.kaiming_uniform_(w.view(-1, w.shape[-1]), a=math.sqrt(5))
        self.router = nn.Linear(dim + route_dim, num_experts)
        self.dropout = nn.Dropout(dropout)

    def route(self, x: Tensor, route_input: Tensor | None = None, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Gate logits -> (used gates (…, E), full softmax probabilities (…, E))."""
        logits = self.router(x if route_input is None else torch.cat([x, route_input], -1))
        if bias is not None:
            logits = logits + bias
        probs = logits.softmax(-1)
        if 0 < self.top_k < self.num_experts:
            kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return logits.softmax(-1), probs

    def forward(
        self,
        x: Tensor,
        *,
        route_input: Tensor | None = None,
        bias: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> MoEOutput:
        """x (…, D); route_input (…, R); bias (…, E); valid (…,) bool tokens for the balance loss."""
        gates, probs = self.route(x, route_input, bias)
        hidden = torch.relu(torch.einsum("...d,edf->...ef", x, self.w1) + self.b1)  # (…, E, F)
        experts = torch.einsum("...ef,efd->...ed", self.dropout(hidden), self.w2) + self.b2  # (…, E, D)
        output = (gates.unsqueeze(-1) * experts).sum(-2)
        flat_g, flat_p = gates.reshape(-1, self.num_experts), probs.reshape(-1, self.num_experts)
        if valid is not None:
            keep = valid.reshape(-1)
            flat_g, flat_p = flat_g[keep], flat_p[keep]
        if flat_g.shape[0] == 0 or self.num_experts == 1:
            balance = probs.sum() * 0.0
        else:
            share = nn.functional.one_hot(flat_g.argmax(-1), self.num_experts).to(x.dtype).mean(0)  # f_e
            balance = self.num_experts * (share * flat_p.mean(0)).sum()
        return MoEOutput(output=output, gates=gates, balance_loss=balance)
