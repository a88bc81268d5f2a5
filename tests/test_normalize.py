"""Feature normalisation: robust training-split statistics, the normaliser inside every model,
and the checkpoint / feature-set checks around it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit import create_model
from msakit.data import load_dataset, make_synthetic
from msakit.data.core import DatasetInfo, ModalityArrays, MSADataset
from msakit.data.stats import DatasetStats, FeatureStats, dataset_stats, feature_stats
from msakit.data.synthetic import SyntheticConfig
from msakit.errors import DataError
from msakit.layers.normalize import FeatureNormalizer
from msakit.training import Trainer, load_checkpoint, train_config_from
from msakit.training.compat import check_compatible


def _arrays(n: int = 200, length: int = 6, dim: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.normal(loc=5.0, scale=2.0, size=(n, length, dim)).astype(np.float32)
    lengths = rng.integers(1, length + 1, size=n)
    present = rng.random(n) > 0.2
    return values, lengths, present


def test_stats_ignore_padding_and_absent_samples() -> None:
    values, lengths, present = _arrays()
    clean = feature_stats(values, lengths, present)
    garbage = values.copy()
    for i in range(len(values)):
        garbage[i, lengths[i] :] = 1e6  # padded steps
        if not present[i]:
            garbage[i] = -1e6  # an absent sample's rows
    dirty = feature_stats(garbage, lengths, present)
    np.testing.assert_array_equal(clean.center, dirty.center)
    np.testing.assert_array_equal(clean.scale, dirty.scale)
    assert clean.count == int(lengths[present].sum())
    np.testing.assert_allclose(clean.center, 5.0, atol=0.3)
    np.testing.assert_allclose(clean.scale, 2.0, rtol=0.15)


def test_stats_are_robust_to_outliers() -> None:
    values, lengths, present = _arrays()
    spiked = values.copy()
    spiked[::20, 0, :] = 255.0  # MMMO-style sentinel values in 5 % of the samples
    a, b = feature_stats(values, lengths, present), feature_stats(spiked, lengths, present)
    np.testing.assert_allclose(a.center, b.center, atol=0.3)
    np.testing.assert_allclose(a.scale, b.scale, rtol=0.2)
    # a plain standard deviation would grow about 20-fold here
    assert float(b.scale.max()) < 3.0


def test_constant_and_zero_columns_get_scale_one_and_no_nan() -> None:
    values, lengths, present = _arrays()
    values[..., 0] = 0.0
    values[..., 1] = 3.5
    values[..., 2] = np.where(np.arange(values.shape[1]) == 0, 1.0, 0.0)  # mostly 0: IQR is 0
    stats = feature_stats(values, lengths, present)
    assert np.isfinite(stats.center).all() and np.isfinite(stats.scale).all()
    assert stats.scale[0] == 1.0 and stats.scale[1] == 1.0 and stats.center[1] == 3.5
    assert 0 < stats.scale[2] < 1.0  # the clipped standard deviation, not 1 and not 0
    norm = FeatureNormalizer({"audio": 4})
    norm.fit(DatasetStats(ids=(), labels=np.zeros(0), features={"audio": stats}))
    x = torch.from_numpy(values[:8])
    out = norm.normalize("audio", x, torch.ones(8, values.shape[1], dtype=torch.bool))
    assert torch.isfinite(out).all()
    assert float(out[..., 0].abs().max()) == 0.0 and float(out[..., 1].abs().max()) == 0.0


def test_nan_everywhere_column_names_file_and_column() -> None:
    values, lengths, present = _arrays()
    values[..., 3] = np.nan
    with pytest.raises(DataError, match=r"data/x/audio\.npy.*audio\[:, :, 3\].*column 3 is NaN"):
        feature_stats(values, lengths, present, source="data/x", modality="audio")
    values[..., 3] = 1.0
    values[:5, :, 2] = np.nan  # a few NaN values are ignored, not fatal
    assert np.isfinite(feature_stats(values, lengths, present).scale).all()


def test_large_modalities_are_subsampled_deterministically() -> None:
    values, lengths, present = _arrays(n=400)
    a = feature_stats(values, lengths, present, max_rows=300)
    b = feature_stats(values, lengths, present, max_rows=300)
    np.testing.assert_array_equal(a.center, b.center)
    assert 200 < a.count < 400


def test_normalizer_is_identity_until_fitted_and_zero_on_masked_steps() -> None:
    norm = FeatureNormalizer({"audio": 2}, clip=3.0)
    batch = _batch(torch.tensor([[[10.0, 20.0], [1.0, 1.0]]]), torch.tensor([[True, False]]))
    assert norm(batch) is batch
    stats = FeatureStats(np.array([10.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32), 1)
    norm.fit(DatasetStats(ids=(), labels=np.zeros(0), features={"audio": stats}))
    out = norm(batch).features["audio"]
    torch.testing.assert_close(out, torch.tensor([[[0.0, 3.0], [0.0, 0.0]]]))  # 20 clipped to 3; masked step 0


def _batch(x: torch.Tensor, mask: torch.Tensor):  # type: ignore[no-untyped-def]
    from msakit.batch import Batch

    present = torch.tensor([[False, True, False]]).expand(x.shape[0], 3)
    return Batch(
        features={"audio": x}, masks={"audio": mask}, present=present, labels=torch.zeros(x.shape[0]), ids=["a"]
    )


# --------------------------------------------------------------------------- inside every model


def _scaled(dataset: MSADataset) -> MSADataset:
    """The same dataset with feature j mapped to x * a_j + b_j, a_j from 0.01 to 1000 (valid steps only).

    Different per feature, so a model's own LayerNorm (which undoes one shared scale) cannot undo it.
    """
    splits = {}
    for name, split in dataset:
        mods = {}
        for m, arr in split.modalities.items():
            values = np.asarray(arr.values, dtype=np.float32)
            dim = values.shape[2]
            scale = 10.0 ** (np.arange(dim) % 6 - 2.0)
            shift = np.linspace(-300.0, 300.0, dim)
            steps = np.arange(values.shape[1])[None, :] < arr.lengths[:, None]
            valid = (steps & arr.present[:, None])[..., None]
            mods[m] = ModalityArrays(
                np.where(valid, values * scale + shift, 0.0).astype(np.float32), arr.lengths, arr.present
            )
        splits[name] = dataclasses.replace(split, modalities=mods)
    return MSADataset(dataset.info, splits, source="scaled")


def _fit(dataset: MSADataset, out: Path, **model: object):  # type: ignore[no-untyped-def]
    cfg = train_config_from({"epochs": 2, "seeds": (1,), "progress": False, "tensorboard": False, "batch_size": 64})
    return Trainer("late_fusion", dataset, train_config=cfg, out_dir=out, model_overrides=dict(model)).fit()


def test_training_is_invariant_to_feature_scale(tmp_path: Path) -> None:
    """With the normaliser, rescaled features train as the originals do; without it they do not."""
    base = make_synthetic(SyntheticConfig(sizes=(160, 60, 60), lengths=(6, 8, 8)))
    scaled = _scaled(base)
    a = _fit(base, tmp_path / "a").seeds[0].test
    b = _fit(scaled, tmp_path / "b").seeds[0].test
    assert a["MAE"] == pytest.approx(b["MAE"], rel=1e-3, abs=1e-4)
    c = _fit(scaled, tmp_path / "c", feature_norm=False).seeds[0].test
    d = _fit(base, tmp_path / "d", feature_norm=False).seeds[0].test
    assert abs(c["MAE"] - d["MAE"]) > 1e-2


def test_checkpoint_carries_the_statistics(tmp_path: Path) -> None:
    dataset = make_synthetic(SyntheticConfig(sizes=(160, 60, 60), lengths=(6, 8, 8)))
    run = _fit(dataset, tmp_path / "run")
    model, meta = load_checkpoint(run.seeds[0].checkpoint)
    assert model.input_norm is not None and bool(model.input_norm.fitted)
    expected = dataset_stats(dataset.split("train")).features["audio"]
    center, scale = model.input_norm.stats_of("audio")
    np.testing.assert_allclose(center.numpy(), expected.center, rtol=1e-6)
    np.testing.assert_allclose(scale.numpy(), expected.scale, rtol=1e-6)
    batch = dataset.split("test").batch(range(8))
    assert model.input_norm is not None
    torch.testing.assert_close(model.predict(batch).prediction, model.forward(model.input_norm(batch)).prediction)
    off = create_model("late_fusion", **{**meta["model_config"], "feature_norm": False})
    assert off.input_norm is None and not any(k.startswith("input_norm") for k in off.state_dict())


def test_model_hooks_see_normalised_statistics() -> None:
    dataset = load_dataset("synthetic:dominant")
    seen: list[DatasetStats] = []
    model = create_model("late_fusion", **dataset.info.model_overrides())
    model.on_fit_start = seen.append  # type: ignore[method-assign]
    model.start_fit(dataset_stats(dataset.split("train")))
    assert np.all(seen[0].features["audio"].center == 0) and np.all(seen[0].features["audio"].scale == 1)


def test_checkpoint_on_another_feature_set_is_refused(tmp_path: Path) -> None:
    info = DatasetInfo(
        name="mosi", metric_set="mosi", dims={"text": 384}, features={"text": "e5-small-sentence, 384-d"}
    )
    meta = {
        "model_config": {"modalities": ["text"], "text_dim": 384, "num_classes": 1},
        "dataset": {"features": {"text": "minilm-l6-v2-tokens, 384-d"}},
    }
    with pytest.raises(DataError, match=r"e5-small-sentence.*minilm-l6-v2-tokens"):
        check_compatible(meta, info, tmp_path / "ckpt")
    meta["dataset"]["features"]["text"] = "e5-small-sentence, 384-d"
    check_compatible(meta, info, tmp_path / "ckpt")
    check_compatible({**meta, "dataset": None}, info, tmp_path / "ckpt")  # an older checkpoint: widths only


def test_checkpoint_from_before_normalisation_loads_without_it() -> None:
    from msakit.analyze import resolve_checkpoint

    model, meta = load_checkpoint(resolve_checkpoint("default_text"))  # shipped before feature_norm existed
    assert "feature_norm" not in meta["model_config"] and model.input_norm is None
