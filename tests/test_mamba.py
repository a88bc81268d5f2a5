"""The selective scan against a naive sequential recurrence, the Mamba blocks, OT / MMD / subspace losses."""

from __future__ import annotations

import builtins
import importlib

import numpy as np
import pytest
import torch

from msakit.errors import ConfigError
from msakit.layers.alignment import batch_mmd, mmd, sinkhorn_distance
from msakit.layers.mamba import MambaBlock, ModalityAwareMamba, check_mamba_dims, selective_scan
from msakit.layers.subspace import cross_correlation, hsic, l2_alignment, orthogonality


def sequential_scan(u, delta, A, B, C, D):  # type: ignore[no-untyped-def]
    """The recurrence one step at a time (state-spaces/mamba's selective_scan_ref, in plain loops)."""
    batch, length, inner = u.shape
    h = torch.zeros(batch, inner, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * B[:, t, None, :] * u[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, 1)


def _scan_inputs(g: torch.Generator, b: int, length: int, e: int, n: int) -> list[torch.Tensor]:
    u, delta = torch.randn(b, length, e, generator=g), torch.rand(b, length, e, generator=g) * 0.5
    A, D = -torch.rand(e, n, generator=g) * 2, torch.randn(e, generator=g)
    return [u, delta, A, torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g), D]


@pytest.mark.parametrize("length", [1, 7, 64, 100, 600])
def test_parallel_scan_equals_sequential_reference(length: int) -> None:
    g = torch.Generator().manual_seed(length)
    args = _scan_inputs(g, 2, length, 5, 4)
    torch.testing.assert_close(selective_scan(*args), sequential_scan(*args), atol=1e-5, rtol=1e-5)


def test_scan_gradients_match_reference() -> None:
    g = torch.Generator().manual_seed(0)
    args = _scan_inputs(g, 1, 9, 3, 2)
    a = [x.clone().requires_grad_() for x in args]
    r = [x.clone().requires_grad_() for x in args]
    selective_scan(*a).pow(2).sum().backward()
    sequential_scan(*r).pow(2).sum().backward()
    for x, y in zip(a, r, strict=True):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-4, rtol=1e-4)


def test_block_is_causal_and_skips_padding() -> None:
    torch.manual_seed(0)
    block = MambaBlock(16, state_size=4).eval()
    x = torch.randn(1, 12, 16)
    y = block(x)
    changed = x.clone()
    changed[:, 8] += 1.0
    y2 = block(changed)
    torch.testing.assert_close(y[:, :8], y2[:, :8])  # the past does not see the future
    assert (y[:, 9:] - y2[:, 9:]).abs().max() > 1e-4  # the future sees the past (the scan mixes steps)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[:, 4:6] = False  # padding in the middle
    noisy = x.clone()
    noisy[:, 4:6] = 100.0
    torch.testing.assert_close(block(x, mask)[:, 6:], block(noisy, mask)[:, 6:])
    assert (block(x, mask)[:, 4:6] == 0).all()
    # the state passes padding unchanged (Δ = 0): [a, pad, b] reads b like [a, b] (kernel-1 conv, no window)
    pointwise = MambaBlock(16, state_size=4, conv_kernel=1).eval()
    gapped = torch.cat([x[:, :4], torch.zeros(1, 3, 16), x[:, 4:]], 1)
    gap_mask = torch.ones(1, 15, dtype=torch.bool)
    gap_mask[:, 4:7] = False
    torch.testing.assert_close(pointwise(gapped, gap_mask)[:, 7:], pointwise(x)[:, 4:])


@pytest.mark.parametrize(
    ("state", "expand", "field"), [(5, 2, "state_size"), (0, 2, "state_size"), (4, 0.3, "expand"), (4, -1, "expand")]
)
def test_state_size_and_expand_must_fit_width(state: int, expand: float, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        check_mamba_dims(16, state, expand, owner="model 'x'")
    with pytest.raises(ConfigError, match=field):
        MambaBlock(16, state_size=state, expand=expand)


def test_missing_mambapy_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_mambapy(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("mambapy"):
            raise ImportError("no mambapy")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mambapy)
    with pytest.raises(ConfigError, match=r"mambapy.*msakit\[mamba\]"):
        MambaBlock(8, state_size=4)


@pytest.mark.gpu
def test_cuda_kernel_matches_reference() -> None:
    if not torch.cuda.is_available() or importlib.util.find_spec("mamba_ssm") is None:
        pytest.skip("needs a CUDA device with mamba_ssm installed")
    g = torch.Generator().manual_seed(0)
    args = _scan_inputs(g, 2, 33, 8, 4)
    out = selective_scan(*[a.cuda() for a in args]).cpu()
    torch.testing.assert_close(out, sequential_scan(*args), atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
def test_mambapy_path_on_cuda_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan a GPU machine without mamba_ssm runs (mambapy's pscan on CUDA tensors, chunked past
    SCAN_CHUNK) equals the sequential reference; the kernel lookup is forced to miss."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    import msakit.layers.mamba as mamba

    monkeypatch.setattr(mamba, "_cuda_scan", lambda: None)
    g = torch.Generator().manual_seed(0)
    args = _scan_inputs(g, 2, mamba.SCAN_CHUNK + 37, 8, 4)
    out = selective_scan(*[a.cuda() for a in args])
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), sequential_scan(*args), atol=1e-5, rtol=1e-5)


def test_modality_aware_mamba_routes_tokens_to_their_own_expert() -> None:
    torch.manual_seed(0)
    layer = ModalityAwareMamba(16, 2, num_shared=2, state_size=4).eval()
    x, ids = torch.randn(2, 6, 16), torch.tensor([0, 0, 0, 1, 1, 1])
    out, routing = layer(x, ids)
    assert routing is not None and routing.shape == (2, 6, 3)
    torch.testing.assert_close(routing.sum(-1), torch.ones(2, 6))
    with torch.no_grad():
        layer.specific[1].weight.mul_(2.0)  # modality 1's expert: the text tokens before it cannot change
    out2, _ = layer(x, ids)
    torch.testing.assert_close(out[:, :3], out2[:, :3])
    assert (out[:, 3:] - out2[:, 3:]).abs().max() > 1e-5
    plain, none = ModalityAwareMamba(16, 2, experts="none", state_size=4)(x, ids)
    assert none is None and plain.shape == x.shape
    with pytest.raises(ConfigError, match="experts"):
        ModalityAwareMamba(16, 2, experts="all")


def test_sinkhorn_and_mmd_separate_shifted_clouds_and_ignore_padding() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, 4, generator=g)
    near, far = x + 0.01 * torch.randn(3, 20, 4, generator=g), x + 3.0
    ones = torch.ones(3, 20, dtype=torch.bool)
    for dist in (sinkhorn_distance, mmd):
        d_near, d_far = dist(x, ones, near, ones), dist(x, ones, far, ones)
        assert (d_near < 0.05 * d_far).all() and (d_near >= -1e-5).all(), dist.__name__
    mask = ones.clone()
    mask[:, 10:] = False
    padded = far.clone()
    padded[:, 10:] = 1e3  # padding must not count
    # geomloss anneals ε from the clouds' diameter, padding included: equal up to that schedule
    torch.testing.assert_close(
        sinkhorn_distance(x, ones, padded, mask),
        sinkhorn_distance(x, ones, far[:, :10], ones[:, :10]),
        rtol=1e-3,
        atol=0,
    )
    empty = ones.clone()
    empty[0] = False
    assert mmd(x, empty, far, ones)[0] == 0


def test_mmd_against_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    x, y, sigma = rng.normal(size=(7, 3)), rng.normal(1.0, 1.0, size=(5, 3)), 1.3

    def k(a: np.ndarray, b: np.ndarray) -> float:
        d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return float(np.exp(-d2 / (2 * sigma**2)).mean())

    expected = 0.5 * (k(x, x) + k(y, y) - 2 * k(x, y))  # geomloss: ½ ‖α − β‖²_k
    got = batch_mmd(torch.tensor(x), torch.tensor(y), sigma=sigma).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_hsic_orthogonality_alignment() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    dependent, independent = torch.tanh(x @ torch.randn(4, 4, generator=g)), torch.randn(64, 4, generator=g)
    assert hsic(x, dependent) > 5 * hsic(x, independent)
    # independent reference: the biased estimator with the same kernels in numpy
    xs, ys = x.numpy().astype(np.float64), dependent.numpy().astype(np.float64)

    def gram(a: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None] - a[None]) ** 2).sum(-1)
        off = np.sort(d2[~np.eye(len(a), dtype=bool)])
        return np.exp(-d2 / off[(len(off) - 1) // 2])  # torch's median: the lower middle

    h = np.eye(64) - 1 / 64
    expected = np.trace(gram(xs) @ h @ gram(ys) @ h) / 63**2
    assert hsic(x, dependent).item() == pytest.approx(expected, rel=1e-4)
    # codes whose features are uncorrelated over samples are orthogonal; a code with itself is not
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, -1.0], [0.0, -1.0]])
    assert orthogonality(a, b) < 1e-6 < orthogonality(a, a)
    assert orthogonality(x, independent) < 0.2 * orthogonality(x, dependent)
    assert l2_alignment(x, x) == 0 and l2_alignment(x, x + 1).item() == pytest.approx(4.0)


def test_cross_correlation_is_the_squared_batch_correlation_between_features() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=g)
    y = torch.randn(256, 5, generator=g)
    expected = (np.corrcoef(x.numpy().T, y.numpy().T)[:3, 3:] ** 2).sum(0).mean()  # numpy reference
    assert cross_correlation(x, y).item() == pytest.approx(expected, rel=1e-3)
    # a code holding a linear copy of the other scores 1 per copied feature; an independent one near 0
    copy = torch.cat([x[:, :1] * 3 + 1, y[:, 1:]], 1)
    assert cross_correlation(x, copy).item() == pytest.approx(1 / 5 + expected * 4 / 5, abs=0.02)
    assert cross_correlation(x, y) < 0.05 < cross_correlation(x, x @ torch.randn(3, 3, generator=g))
    assert cross_correlation(x[:1], y[:1]) == 0
