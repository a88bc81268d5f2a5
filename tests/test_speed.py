"""Training-speed paths: the fused optimizer, foreach clipping, and that they change nothing but time."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from benchmark_module import BENCHMARKS, load_benchmark
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
    bench = load_benchmark("gpu_bench")
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


def test_compare_mmsa_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = BENCHMARKS / "compare_mmsa.py"
    data = tmp_path / "x.pkl"
    data.write_bytes(b"")
    for args, needle in (
        (["--models", "tecafn"], "MMSA 2.2.1 has no model 'tecafn'"),
        (["--models", "misa", "--size-matched"], "--size-matched has no mapping of MMSA's widths for 'misa'"),
    ):
        proc = subprocess.run([sys.executable, str(path), str(data), *args], capture_output=True, text=True)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


def test_a_size_matched_config_that_does_not_fit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_benchmark("compare_mmsa")
    monkeypatch.setattr(module, "_mem_available_bytes", lambda: 2**30)
    module.check_fits("msakit", "tfn", 1_000_000, 32, 128)  # 16 MB of state: fits
    with pytest.raises(module.BenchmarkError, match=r"msakit tfn: the size-matched configuration needs about"):
        module.check_fits("msakit", "tfn", 9_000_000_000, 32, 128)


# ---- length-bucketed batches, the split-direction LSTM, TFN's absent-modality slice ------------------


def _skewed_split():  # type: ignore[no-untyped-def]
    from msakit.data.synthetic import SyntheticConfig, make_synthetic

    data = make_synthetic(SyntheticConfig(sizes=(200, 8, 8), dims=(4, 3, 2), lengths=(40, 5, 3), seed=1))
    split = data.split("train")
    rng = np.random.default_rng(0)
    split.modalities["text"].lengths[:] = rng.integers(1, 41, size=len(split))  # MOSI-like spread
    return split


def _padded_steps(split, batches) -> int:  # type: ignore[no-untyped-def]
    lengths = split.modalities["text"].lengths
    return sum(int(lengths[b].max()) * len(b) for b in batches)


def test_length_buckets_cover_every_sample_once_with_less_padding() -> None:
    from msakit.data.core import LengthBuckets, RandomBatches

    split = _skewed_split()
    buckets = LengthBuckets(pool=4).batches(split, 16, shuffle=True, seed=5)
    flat = sorted(i for b in buckets for i in b)
    assert flat == list(range(len(split)))
    assert buckets == LengthBuckets(pool=4).batches(split, 16, shuffle=True, seed=5)  # seeded
    assert buckets != LengthBuckets(pool=4).batches(split, 16, shuffle=True, seed=6)
    random = RandomBatches().batches(split, 16, shuffle=True, seed=5)
    assert _padded_steps(split, buckets) < 0.7 * _padded_steps(split, random)
    dropped = LengthBuckets(pool=4, drop_last=True).batches(split, 16, shuffle=True, seed=5)
    assert all(len(b) == 16 for b in dropped) and len(dropped) == len(split) // 16
    # evaluation order is untouched
    assert LengthBuckets().batches(split, 16, shuffle=False, seed=0) == RandomBatches().batches(
        split, 16, shuffle=False, seed=0
    )


def test_trainer_builds_the_bucket_sampler_and_refuses_an_unknown_lstm_path(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from msakit.data.core import LengthBuckets
    from msakit.errors import ConfigError

    cfg = {"epochs": 1, "seeds": [1], "progress": False, "tensorboard": False}
    trainer = Trainer("late_fusion", tiny_dataset, train_config=train_config_from({**cfg, "sampler": "bucket"}))
    assert isinstance(trainer.data.sampler, LengthBuckets)
    with pytest.raises(ConfigError, match="lstm"):
        Trainer("late_fusion", tiny_dataset, train_config=train_config_from({**cfg, "lstm": "fast"}), out_dir=tmp_path)


def test_split_lstm_path_equals_the_packed_one_in_values_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    from msakit.layers import encoders
    from msakit.layers.encoders import SequenceEncoder, lstm_path

    torch.manual_seed(0)
    enc = SequenceEncoder(6, 8, kind="lstm", dropout=0.0)
    x = torch.randn(5, 9, 6)
    mask = torch.arange(9)[None, :] < torch.tensor([9, 3, 7, 5, 8])[:, None]
    mask[2] = False  # an absent sample
    packed_seq, packed_pool = enc(x, mask)
    packed_grads = torch.autograd.grad(packed_pool.pow(2).sum(), list(enc.parameters()))

    def no_packing(*args: object) -> None:
        raise AssertionError("the auto path packed a batch that is mostly valid steps")

    monkeypatch.setattr(encoders.SequenceEncoder, "_packed_lstm", no_packing)
    with lstm_path("auto"):
        seq, pool = enc(x, mask)
    grads = torch.autograd.grad(pool.pow(2).sum(), list(enc.parameters()))
    torch.testing.assert_close(seq, packed_seq)
    torch.testing.assert_close(pool, packed_pool)
    for a, b in zip(grads, packed_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lstm path"), lstm_path("fast"):
        pass


def test_split_lstm_path_packs_a_mostly_padded_batch() -> None:
    from msakit.layers.encoders import SPLIT_MIN_FILL, SequenceEncoder, _fill, lstm_path

    enc = SequenceEncoder(6, 8, kind="lstm").eval()
    mask = torch.arange(30)[None, :] < torch.tensor([30, 2, 2, 2])[:, None]
    assert _fill(mask) < SPLIT_MIN_FILL
    calls: list[str] = []
    enc._packed_lstm = lambda h, m: calls.append("packed") or torch.zeros(*h.shape)  # type: ignore[method-assign]
    with lstm_path("auto"):
        enc(torch.randn(4, 30, 6), mask)
    assert calls == ["packed"]


def _tfn_batch(absent_visual: bool):  # type: ignore[no-untyped-def]
    from msakit.batch import Batch

    gen = torch.Generator().manual_seed(0)
    n = 6
    masks = {
        "text": torch.arange(7)[None, :] < torch.tensor([7, 3, 5, 2, 6, 4])[:, None],
        "audio": torch.ones(n, 3, dtype=torch.bool),
        "visual": torch.ones(n, 2, dtype=torch.bool),
    }
    present = torch.ones(n, 3, dtype=torch.bool)
    if absent_visual:
        masks["visual"][:] = False
        present[:, 2] = False
    features = {
        m: torch.randn(n, k.shape[1], d, generator=gen) * k.unsqueeze(-1)
        for (m, k), d in zip(masks.items(), (8, 5, 4), strict=True)
    }
    return Batch(features=features, masks=masks, present=present, labels=torch.randn(n), ids=[str(i) for i in range(n)])


def test_tfn_skips_a_modality_absent_from_the_whole_batch_without_changing_the_function() -> None:
    from msakit import create_model

    torch.manual_seed(0)
    model = create_model("tfn", text_dim=8, audio_dim=5, visual_dim=4, modalities=("text", "audio", "visual"))
    model.eval()
    batch = _tfn_batch(absent_visual=True)
    first = model.head[0]
    calls: list[int] = []
    hook = first.register_forward_hook(lambda *a: calls.append(1))
    sliced = model(batch).prediction
    sliced_grads = torch.autograd.grad(sliced.sum(), list(model.parameters()), allow_unused=True)
    assert not calls  # the full-width first layer did not run
    model._absent_from_batch = lambda b: []  # type: ignore[method-assign]
    full = model(batch).prediction
    full_grads = torch.autograd.grad(full.sum(), list(model.parameters()), allow_unused=True)
    hook.remove()
    assert calls == [1]
    torch.testing.assert_close(sliced, full)
    for a, b in zip(sliced_grads, full_grads, strict=True):
        if a is None or b is None:
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    del model._absent_from_batch
    assert model._absent_from_batch(_tfn_batch(absent_visual=False)) == []


# ---- inference: batches of similar length for padding-invariant models ---------------------------------


# configurations that switch padding_invariant on for a model that is not by default: name -> (model, overrides)
_INVARIANT_VARIANTS = {
    "tssp_msa[mc_masks=shared]": ("tssp_msa", {"mc_masks": "shared"}),
    "alignmamba2[pack_tokens]": ("alignmamba2", {"pack_tokens": True}),
}


def _models():  # type: ignore[no-untyped-def]
    from msakit import list_models

    return [*list_models(), *_INVARIANT_VARIANTS]


@pytest.mark.parametrize("name", _models())
def test_a_padding_invariant_model_gives_each_sample_its_output_alone(name: str, tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    from msakit import create_model

    torch.manual_seed(0)
    model_name, overrides = _INVARIANT_VARIANTS.get(name, (name, {}))
    model = create_model(model_name, **tiny_dataset.info.model_overrides(), **overrides).eval()
    if not model.declared_capabilities.padding_invariant:
        pytest.skip(f"{name} declares padding_invariant=False: predict keeps split order")
    split = tiny_dataset.split("test")
    n = len(split)
    with torch.no_grad():
        together = model(split.batch(list(range(n)))).prediction  # padded to the longest sample
        alone = torch.cat([model(split.batch([i])).prediction for i in range(n)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_predict_orders_by_length_and_returns_split_order(tiny_dataset, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from msakit import create_model, service
    from msakit.data.stats import dataset_stats
    from msakit.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("late_fusion", **tiny_dataset.info.model_overrides())
    model.start_fit(dataset_stats(tiny_dataset.split("train")))
    loaded = service.load_model(save_checkpoint(tmp_path / "ckpt", model.eval(), dataset=tiny_dataset.info))
    split = tiny_dataset.split("test")
    order = service.inference_order(loaded.model, split)
    assert sorted(order) == list(range(len(split))) and order != list(range(len(split)))
    text = split.modalities["text"].lengths
    assert all(text[a] <= text[b] for a, b in itertools.pairwise(order))
    sorted_result = service.predict_split(loaded, tiny_dataset, "test", batch_size=4)
    monkeypatch.setattr(service, "inference_order", lambda m, s: list(range(len(s))))
    plain = service.predict_split(loaded, tiny_dataset, "test", batch_size=4)
    assert [s.id for s in sorted_result.samples] == split.ids == [s.id for s in plain.samples]
    for a, b in zip(sorted_result.samples, plain.samples, strict=True):
        assert a.prediction == pytest.approx(b.prediction, abs=1e-5)
        assert a.label == b.label and a.present == b.present


def test_predict_with_onnx_matches_pytorch_and_refuses_another_checkpoints_graph(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    import csv
    import types

    from msakit import create_model, export
    from msakit.cli import main
    from msakit.data import load_dataset
    from msakit.data.stats import dataset_stats
    from msakit.service import load_model
    from msakit.training.checkpoint import save_checkpoint

    data = load_dataset("synthetic")
    ckpts, graphs = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("late_fusion", **data.info.model_overrides())
        model.start_fit(dataset_stats(data.split("train")))
        ckpts.append(save_checkpoint(tmp_path / f"ckpt{seed}", model.eval(), dataset=data.info))
        graphs.append(tmp_path / f"m{seed}.onnx")
        steps = {m: int(a.values.shape[1]) for m, a in data.split("test").modalities.items()}
        export.export_onnx(types.SimpleNamespace(model=model, meta={"model": "late_fusion"}), graphs[-1], steps=steps)
    short = tmp_path / "short.onnx"  # a second graph at shorter lengths: the batches that fit run on it
    half = {m: max(1, int(a.values.shape[1]) // 2) for m, a in data.split("test").modalities.items()}
    first = types.SimpleNamespace(model=load_model(ckpts[0]).model, meta={"model": "late_fusion"})
    export.export_onnx(first, short, steps=half)
    used: list[dict[str, int]] = []
    run = export.OnnxPredictor.output
    monkeypatch.setattr(export.OnnxPredictor, "output", lambda self, b: used.append(self.steps) or run(self, b))
    rows = {}
    for name, extra in (("torch", []), ("onnx", ["--onnx", str(graphs[0]), str(short)])):
        out = tmp_path / f"{name}.csv"
        argv = ["predict", str(ckpts[0]), "--data", "synthetic", "--out", str(out), "--batch-size", "64", *extra]
        assert main(argv) == 0
        with out.open() as fh:
            rows[name] = list(csv.DictReader(fh))
    assert [r["id"] for r in rows["torch"]] == [r["id"] for r in rows["onnx"]] == data.split("test").ids
    assert half in used and steps in used  # short batches on the short graph, the longest on the full one
    for a, b in zip(rows["torch"], rows["onnx"], strict=True):
        assert float(a["prediction"]) == pytest.approx(float(b["prediction"]), abs=1e-4)
        assert float(a["weight_text"]) == pytest.approx(float(b["weight_text"]), abs=1e-4)
    capsys.readouterr()
    bad = ["predict", str(ckpts[0]), "--data", "synthetic", "--out", str(tmp_path / "x.csv"), "--onnx", str(graphs[1])]
    assert main(bad) == 2
    assert "exported from another checkpoint" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_service_runs_a_large_request_by_length_with_the_same_predictions(tiny_dataset, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import types

    from msakit import create_model, service

    torch.manual_seed(0)
    model = create_model("late_fusion", **tiny_dataset.info.model_overrides()).eval()
    loaded = types.SimpleNamespace(
        model=model, meta={"model": "late_fusion"}, modalities=model.modalities, dims=tiny_dataset.info.dims
    )
    split = tiny_dataset.split("test")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(12):
        steps = {m: int(rng.integers(1, 8)) for m in model.modalities}
        samples.append({m: split.modalities[m].values[i, : steps[m]] for m in model.modalities})
    monkeypatch.setattr(service, "REQUEST_CHUNK", 4)
    calls: list[int] = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda b: calls.append(b.size) or forward(b))
    chunked = service.predict_features(loaded, samples)  # type: ignore[arg-type]
    assert calls == [4, 4, 4]
    monkeypatch.setattr(service, "REQUEST_CHUNK", 100)
    whole = service.predict_features(loaded, samples)  # type: ignore[arg-type]
    assert [s.id for s in chunked.samples] == [s.id for s in whole.samples] == [str(i) for i in range(12)]
    for a, b in zip(chunked.samples, whole.samples, strict=True):
        assert a.prediction == pytest.approx(b.prediction, abs=1e-5)
        assert a.weights == pytest.approx(b.weights, abs=1e-5)


# ---- MMSA's architecture at MMSA's size: the unidirectional text LSTM, MulT's 2·d memory ------------------


def test_unilstm_is_mmsas_text_subnet_exact_on_each_samples_valid_steps() -> None:
    from msakit.layers.encoders import SequenceEncoder

    torch.manual_seed(0)
    enc = SequenceEncoder(6, 5, kind="unilstm", dropout=0.0)
    assert sum(p.numel() for p in enc.parameters()) == sum(p.numel() for p in nn.LSTM(6, 5).parameters())
    lengths = torch.tensor([7, 3, 1, 5])
    mask = torch.arange(7)[None, :] < lengths[:, None]
    x = torch.randn(4, 7, 6) * mask.unsqueeze(-1)
    x[1, 3:] = 9.0  # garbage behind the valid steps must not reach the output
    seq, pooled = enc(x, mask)
    for i, n in enumerate(lengths.tolist()):
        alone = enc.lstm(x[i : i + 1, :n])[0][0]  # (n, 5): the LSTM over this sample's valid steps only
        torch.testing.assert_close(seq[i, :n], alone)
        torch.testing.assert_close(pooled[i], alone.mean(0))
        assert not seq[i, n:].any()


def test_unilstm_segments_path_skips_padding_with_the_same_values_and_gradients() -> None:
    from msakit.layers.encoders import SequenceEncoder, _segment_ends, lstm_path

    torch.manual_seed(0)
    enc = SequenceEncoder(6, 5, kind="unilstm", dropout=0.0)
    lengths = torch.tensor([40, 3, 0, 25, 25, 1, 38, 12] * 3)  # 24 samples: more rows than SEGMENT_ROWS
    mask = torch.arange(40)[None, :] < lengths[:, None]
    x = torch.randn(len(lengths), 40, 6) * mask.unsqueeze(-1)
    shapes: list[tuple[int, ...]] = []
    enc.lstm.register_forward_hook(lambda m, a, o: shapes.append(tuple(a[0].shape)))

    def run(path: str) -> tuple[Tensor, Tensor, list[Tensor]]:
        enc.zero_grad()
        with lstm_path(path):
            seq, pooled = enc(x, mask)
        (seq.square().sum() + pooled.sum()).backward()
        return seq, pooled, [p.grad.clone() for p in enc.parameters()]

    seq, pooled, grads = run("auto")
    assert shapes == [tuple(x.shape)]  # the existing paths: one call on the padded batch, as before
    torch.testing.assert_close(seq, enc.lstm(x)[0] * mask.unsqueeze(-1), rtol=0, atol=0)  # bit-identical
    shapes.clear()
    seg, seg_pooled, seg_grads = run("segments")
    assert len(shapes) > 1 and sum(n * t for n, t, _ in shapes) < 0.8 * x.shape[0] * x.shape[1]
    assert all(n % 16 == 0 or n == len(lengths) for n, _, _ in shapes)  # few distinct shapes
    torch.testing.assert_close(seg, seq)
    torch.testing.assert_close(seg_pooled, pooled)
    for a, b in zip(seg_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the cut points: every sample's last step is covered, and a costly call merges neighbouring lengths
    assert _segment_ends([5] * 16 + [3] * 16 + [1] * 16, cost=0) == [1, 3, 5]
    assert _segment_ends([5] * 16 + [3] * 16 + [1] * 16, cost=1e9) == [5]
    assert _segment_ends([5, 3, 3, 1], cost=0) == [5]  # 4 rows: under SEGMENT_ROWS, a cut saves nothing
    assert _segment_ends([0, 0]) == []


def test_size_matched_mult_has_mmsas_layout_and_parameter_count() -> None:
    from msakit import create_model

    module = load_benchmark("compare_mmsa")
    cfg = module.SIZE_MATCHED["mult"]["model"]
    # the export's dims: MiniLM text 384, COVAREP audio 73, the one-wide zero visual array
    net = create_model("mult", text_dim=384, audio_dim=73, visual_dim=1, modalities=("text", "audio", "visual"), **cfg)
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - 2_473_001) / 2_473_001 < 0.05, n  # MMSA 2.2.1's MulT on the same export: 2,473,001
    assert net.pooled_dim == 100  # the memory transformers run 2·d wide, as MMSA's trans_*_mem
    block = net.cross["audio_to_text"].blocks[0]
    assert block.ffn[0].out_features == 4 * 50 and block.ffn[2].p == 0.0 and block.attn.dropout == 0.2
    layer = net.self_attn["text"].transformer.layers[0]
    assert (layer.dropout.p, layer.dropout1.p, layer.dropout2.p, layer.self_attn.dropout) == (0.0, 0.0, 0.0, 0.2)
    assert isinstance(net.self_attn["text"].proj, nn.Identity)
    with pytest.raises(Exception, match="memory must be 'project' or 'concat'"):
        create_model("mult", text_dim=8, audio_dim=5, memory="wide")


def test_mult_skips_a_source_and_a_target_absent_from_the_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from msakit import create_model

    torch.manual_seed(0)
    model = create_model("mult", text_dim=8, audio_dim=5, visual_dim=4, modalities=("text", "audio", "visual"))
    model.eval()
    batch = _tfn_batch(absent_visual=True)
    calls: list[str] = []
    hooks = [
        model.cross[name].register_forward_hook(lambda *a, _n=name: calls.append(_n))
        for name in ("visual_to_text", "text_to_visual")
    ]
    skipped = model(batch).prediction
    assert not calls  # neither the block from the absent source nor one into the absent target ran
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)  # the path a trace takes: every block runs
    full = model(batch).prediction
    assert sorted(calls) == ["text_to_visual", "visual_to_text"]
    torch.testing.assert_close(skipped, full)
    for h in hooks:
        h.remove()


def test_compare_mmsa_scopes_a_train_override_to_one_model(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = BENCHMARKS / "compare_mmsa.py"
    module = load_benchmark("compare_mmsa")
    opts = ["sampler=bucket", "mult:batch_size=64", "lstm=auto"]
    assert module.msakit_train(opts, "mult") == {"sampler": "bucket", "batch_size": 64, "lstm": "auto"}
    assert module.msakit_train(opts, "lmf") == {"sampler": "bucket", "lstm": "auto"}
    data = tmp_path / "x.pkl"
    data.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, str(path), str(data), "--models", "mult", "--msakit-train", "mlt:batch_size=64"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--msakit-train mlt:batch_size=64: no model 'mlt'" in proc.stderr, proc.stderr


def test_compare_mmsa_exits_2_naming_a_run_that_did_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    module = load_benchmark("compare_mmsa")
    why = "msakit mult: the size-matched configuration needs about 9.0 GiB (2,398,467 parameters, batch 64)"
    monkeypatch.setattr(module, "validate_request", lambda args: None)
    monkeypatch.setattr(module, "spawn", lambda fw, *a: {"error": why, "refused": True} if fw == "msakit" else {})
    out, results = tmp_path / "doc.md", tmp_path / "r.json"
    argv = ["compare_mmsa.py", "x.pkl", "--size-matched", "--models", "mult", "--seeds", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--sides", "msakit", "--out", str(out), "--json", str(results)])
    with pytest.raises(SystemExit) as exc:
        module.main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == f"compare_mmsa: {why}"
    assert why in out.read_text()  # the table names it too, and the results so far are written


def test_compare_mmsa_shows_an_ab_of_two_msakit_settings_within_the_same_pairs() -> None:
    bench = load_benchmark("compare_mmsa")

    def run(first: float, later: float) -> dict[str, object]:
        return {"cpu_seconds_per_epoch": (first + later) / 2, "epoch_cpu": [first, later], "params": 1}

    pairs = {
        "1": {"mmsa": run(2.2, 2.0), "msakit": run(1.0, 0.6), "msakit_b": run(0.8, 0.6)},
        "2": {"mmsa": run(2.0, 2.0), "msakit": run(0.8, 0.6)},  # B failed or was not run: A's row keeps it
    }
    meta = {"models": ["lf_dnn"], "seeds": [1, 2], "epochs": 2, "msakit_train": ["lstm=segments"]}
    variant = {"label": "s8", "timing": {"lf_dnn": pairs}, "timing_meta": {**meta, "msakit_b": ["lstm=valid"]}}
    section = bench.variants_section([variant], "x.pkl")
    rows = [line for line in section.splitlines() if line.startswith("| s8")]
    assert rows[0].startswith("| s8 | lf_dnn | 2.05 | 0.75 |") and rows[0].endswith("| 2 |")  # A: both pairs
    assert rows[1].startswith("| s8, B: `lstm=valid` | lf_dnn | 2.10 | 0.70 | 0.33 [0.33, 0.33] |")  # B: one pair
    assert rows[2] == "| s8, B: `lstm=valid` | lf_dnn | 0.80 | 0.70 | 0.875 [0.875, 0.875] | 1.00 / 0.80 | 1.000 | 1 |"
    assert (
        "--msakit-train lstm=segments --models lf_dnn --seeds 1 2 --timing-epochs 2 --msakit-b lstm=valid`" in section
    )
    del pairs["1"]["msakit_b"]  # no pair ran B: one row per model, no A / B table, as before
    plain = bench.variants_section([{**variant, "timing_meta": meta}], "x.pkl")
    assert plain.count("| s8") == 1 and "A / B" not in plain


def test_batch_gathers_in_memory_features_in_one_copy_with_the_same_bytes(tmp_path: Path) -> None:
    from dataclasses import replace

    from msakit.data.core import ModalityArrays
    from msakit.data.synthetic import SyntheticConfig, make_synthetic

    split = make_synthetic(SyntheticConfig(sizes=(30, 4, 4), dims=(6, 3, 2), lengths=(9, 5, 3), seed=2)).split("train")
    text = split.modalities["text"]
    values = text.values.copy()
    values[np.arange(9)[None, :] >= text.lengths[:, None]] = 7.0  # garbage behind the valid steps: masked to 0
    present = text.present.copy()
    present[[3, 11]] = False  # absent samples: masked to 0
    np.save(tmp_path / "text.npy", values)
    variants = {
        "memory": values,
        "memmap": np.load(tmp_path / "text.npy", mmap_mode="r"),
        "float64": values.astype(np.float64),
    }
    indices = [17, 3, 3, 0, 29, 11, 8]  # unsorted, a duplicate (shard's rerun of a sample), absent ones

    def reference(arr: ModalityArrays) -> tuple[Tensor, Tensor]:  # the gather as it was: sorted read, inverse
        idx = np.asarray(indices)
        order = np.argsort(idx)
        inverse = np.argsort(order)
        lengths = torch.from_numpy(arr.lengths[idx].astype(np.int64))
        width = int(lengths.max())
        feats = torch.from_numpy(np.ascontiguousarray(np.asarray(arr.values[idx[order], :width], np.float32)[inverse]))
        mask = (torch.arange(width)[None, :] < lengths[:, None]) & torch.from_numpy(arr.present[idx])[:, None]
        return feats * mask.unsqueeze(-1), mask

    for name, vals in variants.items():
        arr = ModalityArrays(values=vals, lengths=text.lengths, present=present)
        one = replace(split, modalities={**split.modalities, "text": arr})
        batch = one.batch(indices)
        feats, mask = reference(arr)
        assert batch.features["text"].dtype == torch.float32, name
        assert torch.equal(batch.features["text"], feats), name
        assert torch.equal(batch.masks["text"], mask), name
        assert not batch.features["text"][~mask].any(), name
    assert np.array_equal(variants["memory"], values)  # the split's own array is never written
