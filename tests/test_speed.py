"""Training-speed paths: the fused optimizer, foreach clipping, and that they change nothing but time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from msakit.training import Trainer, train_config_from
from msakit.training.engine import adamw, clip_grad_norm


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))


def _train(net: nn.Module, optimizer: torch.optim.Optimizer, *, clip: float, fast_clip: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    params = list(net.parameters())
    for _ in range(20):
        x = torch.randn(32, 8, generator=gen)
        loss = (net(x) - x[:, :1]).pow(2).mean() * 50  # large enough that clipping engages
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if fast_clip:
            clip_grad_norm(params, clip)
        else:
            torch.nn.utils.clip_grad_norm_(params, clip, foreach=False)
        optimizer.step()


def test_engine_optimizer_is_fused_on_cpu() -> None:
    opt = adamw(_net().parameters(), device="cpu", lr=1e-3)
    assert opt.defaults["fused"] is True


def test_fused_adamw_and_foreach_clip_match_the_reference_path() -> None:
    ref, fast = _net(), _net()
    reference = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.01, foreach=False)
    _train(ref, reference, clip=0.5, fast_clip=False)
    _train(fast, adamw(fast.parameters(), device="cpu", lr=1e-2, weight_decay=0.01), clip=0.5, fast_clip=True)
    for a, b in zip(ref.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    moved = sum(
        float((a - b).detach().abs().sum()) for a, b in zip(_net().parameters(), fast.parameters(), strict=True)
    )
    assert moved > 1e-2  # the comparison is not between two untrained nets


def test_clip_grad_norm_clips_to_the_bound() -> None:
    net = _net()
    (net(torch.randn(4, 8)).sum() * 1e4).backward()
    params = list(net.parameters())
    clip_grad_norm(params, 1.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert float(total) == pytest.approx(1.0, rel=1e-4)
    clip_grad_norm([nn.Parameter(torch.ones(2))], 1.0)  # no gradients at all: nothing to do, no error


def test_trainer_uses_the_fused_optimizer(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seen: list[torch.optim.Optimizer] = []
    trainer = Trainer(
        "late_fusion",
        tiny_dataset,
        train_config=train_config_from({"epochs": 1, "seeds": [1], "progress": False, "tensorboard": False}),
        out_dir=tmp_path,
    )
    original = trainer._fit

    def spy_fit(model, optimizer, protocol, state, seed):  # type: ignore[no-untyped-def]
        seen.append(optimizer)
        return original(model, optimizer, protocol, state, seed)

    trainer._fit = spy_fit  # type: ignore[method-assign]
    trainer.fit()
    assert seen and seen[0].defaults.get("fused") is True


@pytest.mark.gpu
def test_gpu_benchmark_measures_a_step() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: benchmarks/gpu_bench.py has nothing to measure here")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gpu_bench", Path(__file__).parents[1] / "benchmarks" / "gpu_bench.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run(["late_fusion"], batch_size=32, length=10, steps=3)
    for precision in ("fp32", "bf16"):
        row = result["late_fusion"][precision]
        assert row["step_ms"] > 0 and row["peak_memory_mib"] > 0
        assert 0 < row["fraction_of_matmul_throughput"] < 1


def test_masked_lstm_path_equals_the_packed_one() -> None:
    from msakit.layers.encoders import SequenceEncoder

    torch.manual_seed(0)
    enc = SequenceEncoder(6, 8, kind="lstm").eval()
    x = torch.randn(4, 9, 6)
    mask = torch.arange(9)[None, :] < torch.tensor([9, 3, 1, 5])[:, None]
    mask[2] = False  # an absent sample
    h = enc.proj(enc.norm(x))
    valid = mask.unsqueeze(-1)
    torch.testing.assert_close(enc._masked_lstm(h, mask) * valid, enc._packed_lstm(h, mask) * valid)
    seq, _ = enc(x, mask)  # the eager forward packs
    torch.testing.assert_close(seq, enc._packed_lstm(h, mask) * valid)


def _compare_mmsa():  # type: ignore[no-untyped-def]
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "compare_mmsa.py"
    spec = importlib.util.spec_from_file_location("compare_mmsa", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_compare_mmsa_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    import subprocess
    import sys

    path, _ = _compare_mmsa()
    data = tmp_path / "x.pkl"
    data.write_bytes(b"")
    for args, needle in (
        (["--models", "tecafn"], "MMSA 2.2.1 has no model 'tecafn'"),
        (["--models", "misa", "--size-matched"], "--size-matched has no mapping of MMSA's widths for 'misa'"),
    ):
        proc = subprocess.run([sys.executable, str(path), str(data), *args], capture_output=True, text=True)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


def test_a_size_matched_config_that_does_not_fit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _, module = _compare_mmsa()
    monkeypatch.setattr(module, "_mem_available_bytes", lambda: 2**30)
    module.check_fits("msakit", "tfn", 1_000_000, 32, 128)  # 16 MB of state: fits
    with pytest.raises(module.BenchmarkError, match=r"msakit tfn: the size-matched configuration needs about"):
        module.check_fits("msakit", "tfn", 9_000_000_000, 32, 128)
