"""Model-specific behaviour of the baseline zoo that tests/test_models.py does not cover."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit import create_model
from msakit.batch import Batch
from msakit.cli._export import add_export_parser, fill_absent_modalities
from msakit.data import MSADataset, SyntheticConfig, make_synthetic
from msakit.data.pickles import read_pickle_dataset, write_mmsa_pickle
from msakit.data.stats import dataset_stats
from msakit.errors import ConfigError, DataError
from msakit.layers.tensor_fusion import LowRankFusion, tensor_fusion
from msakit.models.ef_lstm import align_to_longest
from msakit.training import Trainer

BASELINES = ("ef_lstm", "lf_dnn", "tfn", "lmf", "mult", "misa", "self_mm", "mmim")


def _model(name: str, dataset: MSADataset, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model(name, **{**dataset.info.model_overrides(), "hidden_dim": 16, **overrides})


# ---- tensor fusion (TFN, LMF) ---------------------------------------------------------
def test_tfn_fusion_tensor_has_product_shape(tiny_dataset: MSADataset) -> None:
    model = _model("tfn", tiny_dataset, text_out=5, other_out=3).eval()
    batch = tiny_dataset.split("test").batch(range(4))
    out = model(batch)
    assert out.features["fused"].shape == (4, 6 * 4 * 4)
    two = _model("tfn", tiny_dataset, text_out=5, other_out=3, modalities=("text", "audio"))
    assert two.fused_dim == 6 * 4


def test_tensor_fusion_keeps_lower_order_terms_when_a_modality_is_zero() -> None:
    a, b = torch.randn(3, 4), torch.randn(3, 2)
    z = tensor_fusion([a, b, torch.zeros(3, 5)]).view(3, 5, 3, 6)
    # with c = 0 only the [1; a] ⊗ [1; b] ⊗ 1 slice survives, and it equals the bimodal fusion
    torch.testing.assert_close(z[..., 0].reshape(3, -1), tensor_fusion([a, b]))
    assert (z[..., 1:] == 0).all()
    assert torch.equal(z[:, 0, 0, 0], torch.ones(3))  # the constant term


def test_low_rank_fusion_equals_the_full_weight_tensor() -> None:
    torch.manual_seed(0)
    dims, rank, out = [3, 2, 4], 5, 2
    fusion = LowRankFusion(dims, out, rank=rank)
    vectors = [torch.randn(6, d) for d in dims]
    # W = Σ_r λ_r ⊗_m w_m^(r): (|z|, O), the tensor LMF never forms
    full = torch.zeros(4 * 3 * 5, out)
    for r in range(rank):
        f = [factor[r] for factor in fusion.factors]  # (d_m + 1, O)
        full += fusion.rank_weights[0, r] * torch.einsum("io,jo,ko->ijko", *f).reshape(-1, out)
    expected = tensor_fusion(vectors) @ full + fusion.bias
    torch.testing.assert_close(fusion(vectors), expected, rtol=1e-4, atol=1e-5)


def _einsum_low_rank_fusion(fusion: LowRankFusion, vectors: list[torch.Tensor]) -> torch.Tensor:
    """LowRankFusion.forward as it was written before the bmm form: one einsum per modality."""
    product = None
    for h, factor in zip(vectors, fusion.factors, strict=True):
        projected = torch.einsum("bi,rio->rbo", torch.cat([torch.ones_like(h[:, :1]), h], -1), factor)
        product = projected if product is None else product * projected
    assert product is not None
    return torch.einsum("r,rbo->bo", fusion.rank_weights[0], product) + fusion.bias


@pytest.mark.parametrize("dims", [[64, 72, 72], [5, 3], [7]])
@pytest.mark.parametrize("rank", [1, 3, 16])
@pytest.mark.parametrize("out", [1, 3])
def test_low_rank_fusion_is_bit_identical_to_its_einsum_form(dims: list[int], rank: int, out: int) -> None:
    """The bmm form changes no bit of the output or of any gradient (the size-matched LMF's timings rely on it)."""
    torch.manual_seed(rank * 10 + out)
    fusion = LowRankFusion(dims, out, rank=rank)
    for batch in (1, 64):
        grads = []
        for forward in (fusion, lambda v: _einsum_low_rank_fusion(fusion, v)):
            torch.manual_seed(batch)
            vectors = [torch.randn(batch, d, requires_grad=True) for d in dims]
            fusion.zero_grad(set_to_none=True)
            y = forward(vectors)
            (y * torch.randn_like(y)).sum().backward()
            grads.append([y.detach(), *(v.grad for v in vectors), *(p.grad for p in fusion.parameters())])
        assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))  # type: ignore[arg-type]


def test_low_rank_fusion_projects_without_einsum(monkeypatch: pytest.MonkeyPatch) -> None:
    """One einsum per forward (the rank sum), none per modality: their parsing and permutes cost about a sixth
    of the fusion's CPU."""
    calls = []
    einsum = torch.einsum
    monkeypatch.setattr(torch, "einsum", lambda *a: calls.append(a[0]) or einsum(*a))
    fusion = LowRankFusion([4, 3, 2], 1, rank=3)
    fusion([torch.randn(5, d) for d in (4, 3, 2)])
    assert calls == ["r,rbo->bo"]


def test_lmf_rank_sets_the_factor_count(tiny_dataset: MSADataset) -> None:
    model = _model("lmf", tiny_dataset, rank=7)
    assert all(f.shape[0] == 7 for f in model.fusion.factors)
    assert len(model.fusion.factors) == 3


# ---- sequence handling ----------------------------------------------------------------
def test_ef_lstm_repeats_a_one_step_modality_along_the_sequence() -> None:
    text = torch.arange(8.0).view(1, 4, 2)
    audio = torch.tensor([[[7.0]]])
    fused, mask = align_to_longest([text, audio], [torch.tensor([[True, True, True, False]]), torch.tensor([[True]])])
    assert mask.tolist() == [[True, True, True, False]]
    assert fused[0, :3, 2].tolist() == [7.0, 7.0, 7.0] and fused[0, 3].abs().sum() == 0
    torch.testing.assert_close(fused[0, :3, :2], text[0, :3])


def test_mult_builds_blocks_only_for_the_datasets_modalities(tiny_dataset: MSADataset) -> None:
    full = _model("mult", tiny_dataset)
    assert len(full.cross) == 6
    two = _model("mult", tiny_dataset, modalities=("text", "audio"))
    assert sorted(two.cross) == ["audio_to_text", "text_to_audio"]


def test_mult_ignores_an_absent_source(tiny_dataset: MSADataset) -> None:
    model = _model("mult", tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(6)).drop_modalities(["visual"])
    noisy = Batch(
        features={**batch.features, "visual": torch.randn_like(batch.features["visual"])},
        masks=batch.masks,
        present=batch.present,
        labels=batch.labels,
        ids=batch.ids,
    )
    with torch.no_grad():
        torch.testing.assert_close(model(batch).prediction, model(noisy).prediction)


# ---- auxiliary objectives -------------------------------------------------------------
@pytest.mark.parametrize(("name", "keys"), [("misa", {"sim", "diff", "recon"}), ("mmim", {"cpc", "ba"})])
def test_aux_losses_only_in_training(name: str, keys: set[str], tiny_dataset: MSADataset) -> None:
    model = _model(name, tiny_dataset)
    batch = tiny_dataset.split("train").batch(range(16))
    assert set(model.train()(batch).aux_losses) == keys
    assert model.eval()(batch).aux_losses == {}


def test_misa_loss_weights_scale_the_aux_losses(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(16))
    base = _model("misa", tiny_dataset, dropout=0.0).train()(batch).aux_losses
    off = _model("misa", tiny_dataset, dropout=0.0, sim_weight=0.0, recon_weight=2.0).train()(batch).aux_losses
    assert off["sim"].detach().item() == 0.0 and base["sim"].detach().item() > 0
    torch.testing.assert_close(off["recon"], 2.0 * base["recon"])


# ---- Self-MM's unimodal label generation -----------------------------------------------
def test_self_mm_label_memory_moves_away_from_the_multimodal_label(tiny_dataset: MSADataset) -> None:
    model = _model("self_mm", tiny_dataset)
    train = tiny_dataset.split("train")
    model.on_fit_start(dataset_stats(train))
    y = torch.as_tensor(train.labels, dtype=torch.float32)
    assert torch.equal(model.labels_memory["text"], y)
    batch = train.batch(range(16))
    # epoch 1: label memory untouched (every w_s = tanh(0) = 0, so the unimodal loss is 0)
    out = model.train()(batch)
    assert out.aux_losses["unimodal"].detach().item() == 0.0
    model.on_train_batch_end(batch, out, epoch=1)
    assert torch.equal(model.labels_memory["text"], y) and "fused" in model.centres
    # epoch 2: the batch's unimodal labels are regenerated, the others are left alone
    model.on_train_batch_end(batch, model(batch), epoch=2)
    moved = (model.labels_memory["text"] - y).abs() > 1e-6
    assert moved[:16].any() and not moved[16:].any()
    assert model.labels_memory["text"].abs().max() <= model.config.label_bound
    assert model(batch).aux_losses["unimodal"].detach().item() > 0.0


def test_self_mm_absent_modality_keeps_its_labels(tiny_dataset: MSADataset) -> None:
    model = _model("self_mm", tiny_dataset)
    train = tiny_dataset.split("train")
    model.on_fit_start(dataset_stats(train))
    batch = train.batch(range(16)).drop_modalities(["audio"])
    model.train()
    model.on_train_batch_end(batch, model(batch), epoch=1)
    before = model.labels_memory["audio"].clone()
    model.on_train_batch_end(batch, model(batch), epoch=2)
    assert torch.equal(model.labels_memory["audio"], before)
    assert not model.seen["audio"][:16].any()


# ---- bad input: overrides fail before training, naming field and model --------------------
@pytest.mark.parametrize("name", BASELINES)
def test_trainer_rejects_bad_overrides(name: str, tiny_dataset: MSADataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"model '{name}'.*'hiden_dim'"):
        Trainer(name, tiny_dataset, model_overrides={"hiden_dim": 8}, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=rf"model '{name}'.*'dropout' expects float, got str"):
        Trainer(name, tiny_dataset, model_overrides={"dropout": "high"}, out_dir=tmp_path)
    assert not any(tmp_path.iterdir()), "nothing may be written before the error"


# ---- export ----------------------------------------------------------------------------
def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers())
    args = parser.parse_args(["export", *argv])
    return int(args.func(args))


def test_export_round_trip_through_the_cli_function(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    src = write_mmsa_pickle(tiny_dataset, tmp_path / "src.pkl")
    out = tmp_path / "out.pkl"
    assert _export(["--format", "mmsa", str(src), str(out)]) == 0
    back = read_pickle_dataset(out)
    for name, split in tiny_dataset:
        got = back.split(name)
        assert got.ids == split.ids
        np.testing.assert_array_equal(got.labels, split.labels)
        for m, arr in split.modalities.items():
            np.testing.assert_array_equal(got.modalities[m].lengths, np.where(arr.present, arr.lengths, 0))
            np.testing.assert_array_equal(got.modalities[m].values, arr.values)
    with pytest.raises(DataError, match="exists"):
        _export([str(src), str(out)])


def test_export_writes_a_missing_modality_as_absent(tmp_path: Path) -> None:
    data = make_synthetic(
        SyntheticConfig(sizes=(6, 4, 4), dims=(5, 3, 2), lengths=(4, 2, 3), modalities=("text", "audio"))
    )
    assert "visual" not in data.info.dims
    filled = fill_absent_modalities(data)
    back = read_pickle_dataset(write_mmsa_pickle(filled, tmp_path / "two.pkl"))
    assert back.info.dims["visual"] == 1
    assert not back.split("train").modalities["visual"].present.any()
    batch = back.split("train").batch(range(6))
    assert not batch.present[:, 2].any() and batch.present[:, 0].all()
