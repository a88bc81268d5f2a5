"""Selective state-space (Mamba) blocks and AlignMamba-2's modality-aware mixture of experts.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (2023),
Algorithm 2. For each channel e and state n, with input-dependent Δ, B, C:

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t        (discretised recurrence, zero-order hold on A)
    y_t = C_t · h_t + D u_t

The recurrence is linear in h, so it is evaluated with a parallel (Blelloch) scan:
`mambapy`'s `pscan` on CPU and on GPUs without the CUDA kernels, and `mamba_ssm`'s fused
`selective_scan_fn` on a CUDA device when that package is installed. There is no
fallback to anything that is not the scan: without `mambapy` the block raises
ConfigError (install the `[mamba]` extra).

Padded steps get Δ = 0 and u = 0, so the state passes them unchanged (exp(0·A) = 1) and
a padded step never leaks into a later valid one.

Legend: B batch, L steps, H model width, E = expand·H inner width, N state size,
R = H / N rank of the Δ projection, K shared experts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.errors import ConfigError

ScanFn = Callable[[Tensor, Tensor], Tensor]
#: steps per parallel-scan chunk on the mambapy path: the state is carried between chunks, so the
#: result is the same; longer sequences then grow linearly instead of spilling out of the CPU caches
SCAN_CHUNK = 256


def _pscan() -> ScanFn:
    try:
        from mambapy.pscan import pscan
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigError(
            "the Mamba layers need the 'mambapy' package (parallel selective scan); "
            "install it with: pip install 'msakit[mamba]'"
        ) from exc
    return pscan


def _cuda_scan() -> Callable[..., Tensor] | None:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def check_mamba_dims(width: int, state_size: int, expand: float, *, owner: str) -> None:
    """ConfigError naming the field when the state size or expansion does not fit the width.

    The Δ projection has rank R = width / state_size (Mamba's default rank ⌈H/16⌉ with
    N = 16 is exactly that), so state_size must divide the width; the inner width
    expand·width must be a whole number.
    """
    if state_size <= 0 or width % state_size:
        raise ConfigError(f"{owner}: state_size {state_size} must be positive and divide the model width {width}")
    inner = width * expand
    if expand <= 0 or abs(inner - round(inner)) > 1e-9:
        raise ConfigError(f"{owner}: expand {expand} must be positive with expand × width ({width}) a whole number")


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """The selective scan. u, delta (B, L, E); A (E, N); B, C (B, L, N); D (E,) -> y (B, L, E).

    `delta` is already positive (softplus applied). Dispatches to `mamba_ssm`'s CUDA
    kernel when it is importable and the tensors are on a CUDA device, else `mambapy`.
    """
    if u.is_cuda:
        kernel = _cuda_scan()
        if kernel is not None:
            y = kernel(
                u.transpose(1, 2).contiguous(),
                delta.transpose(1, 2).contiguous(),
                A.float(),
                B.transpose(1, 2).contiguous(),
                C.transpose(1, 2).contiguous(),
                D.float(),
            )
            return y.transpose(1, 2)
    pscan = _pscan()
    ys, state = [], None
    for start in range(0, u.shape[1], SCAN_CHUNK):  # chunks keep the (B, T, E, N) working set in cache
        part = slice(start, start + SCAN_CHUNK)
        decay = torch.exp(delta[:, part].unsqueeze(-1) * A)  # (B, T, E, N)
        drive = (delta[:, part] * u[:, part]).unsqueeze(-1) * B[:, part].unsqueeze(2)  # (B, T, E, N)
        if state is not None:  # carry the previous chunk's last state into this chunk's first step
            drive = torch.cat([drive[:, :1] + decay[:, :1] * state.unsqueeze(1), drive[:, 1:]], dim=1)
        h = pscan(decay, drive)  # (B, T, E, N): h_t = decay_t h_{t-1} + drive_t
        state = h[:, -1]
        ys.append((h @ C[:, part].unsqueeze(-1)).squeeze(-1))
    return torch.cat(ys, dim=1) + D * u


class MambaBlock(nn.Module):
    """The Mamba mixer: in-projection to (u, z), causal depthwise conv, SiLU, selective scan,
    gate SiLU(z), out-projection. x (B, L, H), mask (B, L) -> (B, L, H), zero on padding.

    `project_input=False` leaves the in-projection to the caller, who passes `xz` (B, L, 2E)
    (AlignMamba-2's experts are in-projections).
    """

    def __init__(
        self,
        dim: int,
        *,
        state_size: int = 16,
        expand: float = 2,
        conv_kernel: int = 4,
        project_input: bool = True,
        owner: str = "MambaBlock",
    ) -> None:
        super().__init__()
        check_mamba_dims(dim, state_size, expand, owner=owner)
        _pscan()  # fail at construction, not at the first batch
        self.inner = inner = round(dim * expand)
        self.state_size, self.rank = state_size, dim // state_size
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False) if project_input else None
        self.conv = nn.Conv1d(inner, inner, conv_kernel, groups=inner, padding=conv_kernel - 1)
        self.x_proj = nn.Linear(inner, self.rank + 2 * state_size, bias=False)
        self.dt_proj = nn.Linear(self.rank, inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)
        # S4D-real initialisation A_n = -(n + 1), D = 1, Δ log-uniform in [1e-3, 0.1] (Mamba §3.6)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state_size + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        dt = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, x: Tensor, mask: Tensor | None = None, *, xz: Tensor | None = None) -> Tensor:
        length = x.shape[1]
        keep = (torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask).unsqueeze(-1)
        if xz is None:
            if self.in_proj is None:
                raise ValueError("MambaBlock(project_input=False) needs xz")
            xz = self.in_proj(x)
        u, z = xz.chunk(2, dim=-1)  # (B, L, E) each
        u = u * keep
        u = F.silu(self.conv(u.transpose(1, 2))[..., :length].transpose(1, 2))  # causal conv
        dt, B, C = self.x_proj(u).split([self.rank, self.state_size, self.state_size], dim=-1)
        delta = F.softplus(self.dt_proj(dt)) * keep  # (B, L, E); 0 on padding: the state carries over
        y = selective_scan(u * keep, delta, -torch.exp(self.A_log), B, C, self.D)
        return self.out_proj(y * F.silu(z)) * keep


class MambaLayer(nn.Module):
    """Pre-norm residual Mamba layer: x + Mamba(LayerNorm(x)), (B, L, H) -> (B, L, H)."""

    def __init__(
        self, dim: int, *, state_size: int = 16, expand: float = 2, dropout: float = 0.0, owner: str = ""
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mixer = MambaBlock(dim, state_size=state_size, expand=expand, owner=owner or "MambaLayer")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return x + self.dropout(self.mixer(self.norm(x), mask))


class ModalityAwareMamba(nn.Module):
    """AlignMamba-2's Modality-Aware Mamba layer over a sequence of tokens of several modalities.

    The in-projection of the Mamba mixer is a mixture of experts: for a token of modality
    m, xz = g_0 · W_m x + Σ_k g_k · W^shared_k x with g = softmax(router(x)) over the
    token's own modality-specific expert and K modality-shared experts; the scan and
    out-projection are shared, so the scan mixes modalities along the sequence.
    `experts` = "both" | "specific" (g_0 = 1) | "shared" (no specific expert) | "none"
    (one plain in-projection, i.e. a Mamba layer). Pre-norm residual like `MambaLayer`.

    x (B, L, H), modality_ids (L,) or, when each sample orders its tokens differently (AlignMamba-2's
    `pack_tokens`), (B, L) long, mask (B, L) -> (out (B, L, H), routing (B, L, 1 + K) or None when
    nothing is routed).
    """

    def __init__(
        self,
        dim: int,
        num_modalities: int,
        *,
        num_shared: int = 2,
        experts: str = "both",
        state_size: int = 16,
        expand: float = 2,
        dropout: float = 0.0,
        owner: str = "ModalityAwareMamba",
    ) -> None:
        super().__init__()
        if experts not in ("both", "specific", "shared", "none"):
            raise ConfigError(f"{owner}: experts must be both, specific, shared or none, got {experts!r}")
        if experts in ("both", "shared") and num_shared < 1:
            raise ConfigError(f"{owner}: num_shared must be >= 1 with experts={experts!r}, got {num_shared}")
        self.experts = experts
        self.norm = nn.LayerNorm(dim)
        self.mixer = MambaBlock(dim, state_size=state_size, expand=expand, project_input=experts == "none", owner=owner)
        inner2 = 2 * self.mixer.inner
        uses_specific, uses_shared = experts in ("both", "specific"), experts in ("both", "shared")
        self.specific = nn.ModuleList(
            nn.Linear(dim, inner2, bias=False) for _ in range(num_modalities if uses_specific else 0)
        )
        self.shared = nn.ModuleList(nn.Linear(dim, inner2, bias=False) for _ in range(num_shared if uses_shared else 0))
        routed = len(self.shared) + (1 if uses_specific else 0)
        self.router = nn.Linear(dim, routed) if routed > 1 else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, modality_ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        h = self.norm(x)
        if self.experts == "none":
            return x + self.dropout(self.mixer(h, mask)), None
        outs: list[Tensor] = []  # each (B, L, 2E)
        if self.specific:
            spec = h.new_zeros(*h.shape[:2], self.specific[0].out_features)
            for m, expert in enumerate(self.specific):
                sel = modality_ids == m  # (L,) or (B, L)
                if sel.any():
                    if sel.dim() == 1:
                        spec[:, sel] = expert(h[:, sel])
                    else:
                        spec[sel] = expert(h[sel])
            outs.append(spec)
        outs.extend(expert(h) for expert in self.shared)
        if self.router is None:
            routing, xz = None, outs[0]
        else:
            routing = self.router(h).softmax(-1)  # (B, L, 1 + K)
            xz = (torch.stack(outs, dim=-1) * routing.unsqueeze(-2)).sum(-1)
        return x + self.dropout(self.mixer(h, mask, xz=xz)), routing


__all__ = ["MambaBlock", "MambaLayer", "ModalityAwareMamba", "check_mamba_dims", "selective_scan"]
