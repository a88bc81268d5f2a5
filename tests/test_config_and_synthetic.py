"""Typed configs (overrides, presets) and the synthetic benchmark's guarantees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from msakit.config import TrainConfig, apply_overrides, load_yaml_overrides, parse_override
from msakit.data import SyntheticConfig, load_dataset, make_synthetic
from msakit.errors import ConfigError


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("lr=3e-4") == ("lr", 3e-4)
    assert parse_override("seeds=[1, 2]") == ("seeds", [1, 2])
    assert parse_override("progress=false") == ("progress", False)
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("lr")


def test_overrides_coerce_lists_and_ints_but_reject_wrong_types() -> None:
    cfg = apply_overrides(TrainConfig(), {"seeds": [3, 4], "lr": 1}, owner="trainer")
    assert cfg.seeds == (3, 4) and isinstance(cfg.lr, float)
    with pytest.raises(ConfigError, match=r"trainer: field 'epochs' expects int, got float"):
        apply_overrides(TrainConfig(), {"epochs": 2.5}, owner="trainer")
    with pytest.raises(ConfigError, match=r"'seeds' expects"):
        apply_overrides(TrainConfig(), {"seeds": ["a"]}, owner="trainer")
    with pytest.raises(ConfigError, match=r"'progress' expects bool"):
        apply_overrides(TrainConfig(), {"progress": 1}, owner="trainer")


def test_yaml_preset_sections(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("model:\n  hidden_dim: 32\ntrain:\n  lr: 0.01\n")
    assert load_yaml_overrides(preset) == {"model": {"hidden_dim": 32}, "train": {"lr": 0.01}}
    preset.write_text("optimizer: {}\n")
    with pytest.raises(ConfigError, match="only the sections"):
        load_yaml_overrides(preset)


def test_synthetic_is_seeded_and_roles_are_honoured() -> None:
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    np.testing.assert_array_equal(a.split("train").labels, b.split("train").labels)
    np.testing.assert_array_equal(
        a.split("train").modalities["audio"].values, b.split("train").modalities["audio"].values
    )
    train = make_synthetic(SyntheticConfig(sizes=(400, 10, 10), seed=1)).split("train")
    for m in ("text", "audio", "visual"):
        role = train.targets[f"role_{m}"]
        arr = train.modalities[m]
        assert not arr.present[role == 2].any() and arr.present[role != 2].all()
        assert (np.asarray(arr.values)[role == 2] == 0).all()
    batch = train.batch(range(len(train)))
    assert batch.present.any(dim=1).all()  # never a sample with every modality missing


def test_synthetic_signal_follows_role() -> None:
    ds = make_synthetic(SyntheticConfig(sizes=(2000, 10, 10), seed=2))
    train = ds.split("train")
    y = train.labels
    for m in ("text", "audio"):
        pooled = np.asarray(train.modalities[m].values).sum(1)  # (N, D)
        direction = np.linalg.lstsq(
            pooled[train.targets[f"role_{m}"] == 0], y[train.targets[f"role_{m}"] == 0], rcond=None
        )[0]
        score = pooled @ direction
        corr = {
            r: np.corrcoef(score[train.targets[f"role_{m}"] == r], y[train.targets[f"role_{m}"] == r])[0, 1]
            for r in (0, 1, 3)
        }
        assert corr[0] > 0.5 and abs(corr[1]) < 0.3 and corr[3] < -0.3, (m, corr)


def test_dominant_preset_has_one_informative_modality() -> None:
    train = load_dataset("synthetic:dominant").split("train")
    informative = train.targets["informative"]
    for j, m in enumerate(("text", "audio", "visual")):
        role = train.targets[f"role_{m}"]
        assert ((role == 0) == (informative == j)).all()
    assert set(np.unique(informative)) == {0, 1, 2}


def test_imbalanced_preset_has_a_strong_text_and_weaker_but_informative_audio_and_visual() -> None:
    """synthetic:imbalanced (`modality_signal`): every modality carries +y, text with 2 times and
    audio/visual with 0.25 times the signal of the plain generator (same seed: same noise, labels
    and directions), and each one alone still predicts held-out labels."""
    from dataclasses import replace

    from msakit.data import synthetic_preset

    imbalanced = synthetic_preset("imbalanced")
    configs = {
        "imb": imbalanced,
        "plain": replace(imbalanced, modality_signal={}),
        "zero": replace(imbalanced, signal=0.0),
    }
    train = {k: make_synthetic(c).split("train") for k, c in configs.items()}
    for m, scale in (("text", 2.0), ("audio", 0.25), ("visual", 0.25)):
        signal = {
            k: np.asarray(train[k].modalities[m].values - train["zero"].modalities[m].values) for k in ("imb", "plain")
        }
        np.testing.assert_allclose(signal["imb"], scale * signal["plain"], rtol=1e-4, atol=1e-5)
        assert (train["imb"].targets[f"role_{m}"] == 0).all()
    data = load_dataset("synthetic:imbalanced")
    fit, test = data.split("train"), data.split("test")
    for m in ("text", "audio", "visual"):
        direction = np.linalg.lstsq(np.asarray(fit.modalities[m].values).sum(1), fit.labels, rcond=None)[0]
        score = np.asarray(test.modalities[m].values).sum(1) @ direction
        assert np.corrcoef(score, test.labels)[0, 1] > 0.5, m


def test_drop_modalities_clears_features_masks_and_presence() -> None:
    batch = load_dataset("synthetic").split("test").batch(range(6))
    which = torch.tensor([True, False, True, False, False, False])
    out = batch.drop_modalities(["audio"], which)
    assert not out.present[which, 1].any() and (out.features["audio"][which] == 0).all()
    assert not out.masks["audio"][which].any()
    torch.testing.assert_close(out.features["text"], batch.features["text"])


def test_a_fields_own_default_passes_value_checks_but_other_bad_values_do_not() -> None:
    """sadgr's key_dim defaults to 0 ("use hidden_dim"): a checkpoint's config repeats that default on load."""
    from msakit.registry import build_config

    assert build_config("sadgr", {"key_dim": 0}).key_dim == 0
    with pytest.raises(ConfigError, match="key_dim"):
        build_config("sadgr", {"key_dim": -3})
    with pytest.raises(ConfigError, match="hidden_dim"):
        build_config("sadgr", {"hidden_dim": 0})
