"""A plain multi-layer perceptron."""

from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """Linear -> act -> dropout, `depth` times, then a final Linear to `out_dim`.

    depth=0 gives a single Linear(in_dim, out_dim).
    """

    def __init__(
        self, in_dim: int, out_dim: int, *, hidden_dim: int = 64, depth: int = 1, dropout: float = 0.0
    ) -> None:
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)
