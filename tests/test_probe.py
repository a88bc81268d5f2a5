"""The linear-probe floor (`msakit probe`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from msakit.cli import main
from msakit.data import load_dataset
from msakit.data.core import DatasetInfo, ModalityArrays, MSADataset, SplitData
from msakit.errors import ConfigError
from msakit.metrics import compute_metrics
from msakit.probe import linear_probe, pooled_features

FEW = (0.1, 10.0, 1000.0)  # a short penalty grid keeps these tests fast


def _split(n: int, rng: np.random.Generator, *, classes: int = 1, text_present: bool = True) -> SplitData:
    """audio carries the label in its per-sample spread (std over steps), text in its mean."""
    y = rng.normal(size=n)
    spread = np.exp(y)[:, None, None]  # (N, 1, 1)
    audio = (rng.normal(size=(n, 12, 3)) * spread).astype(np.float32)
    text = (y[:, None, None] + rng.normal(scale=1.0, size=(n, 4, 5))).astype(np.float32)
    labels = (np.digitize(y, [-0.4, 0.4]) if classes > 1 else y).astype(np.int64 if classes > 1 else np.float32)
    present = np.full(n, text_present)
    return SplitData(
        labels=labels,
        ids=[f"s{k}" for k in range(n)],
        modalities={
            "text": ModalityArrays(text * present[:, None, None], np.where(present, 4, 0), present),
            "audio": ModalityArrays(audio, np.full(n, 12), np.ones(n, bool)),
        },
    )


def _dataset(classes: int = 1, *, train_text: bool = True) -> MSADataset:
    rng = np.random.default_rng(0)
    info = DatasetInfo(
        name="toy",
        metric_set="classification" if classes > 1 else "mosi",
        num_classes=classes,
        dims={"text": 5, "audio": 3},
    )
    splits = {
        "train": _split(300, rng, classes=classes, text_present=train_text),
        "valid": _split(120, rng, classes=classes),
        "test": _split(200, rng, classes=classes),
    }
    return MSADataset(info, splits)


def test_rows_per_modality_and_together_with_msakit_metrics() -> None:
    result = linear_probe(load_dataset("synthetic:dominant"), alphas=FEW)
    assert [r.name for r in result.rows] == ["text", "audio", "visual", "all"]
    keys = set(compute_metrics("mosi", np.zeros(4), np.array([1.0, -1.0, 0.5, 2.0])))
    for row in result.rows:
        assert set(row.test) == keys and row.alpha in FEW and row.pooling in ("mean", "mean+std")
    assert result.best().name in {"text", "all"}
    table = result.table()
    assert "probe: all" in table and "Non0_acc_2" in table


def test_mean_std_pooling_is_chosen_when_the_spread_carries_the_label() -> None:
    result = linear_probe(_dataset(), alphas=FEW)
    audio = next(r for r in result.rows if r.name == "audio")
    assert audio.pooling == "mean+std" and audio.test["Corr"] > 0.6
    mean_only = linear_probe(_dataset(), poolings=("mean",), alphas=FEW)
    assert next(r for r in mean_only.rows if r.name == "audio").test["Corr"] < 0.3


def test_choice_uses_validation_only() -> None:
    ds = _dataset()
    first = linear_probe(ds, alphas=FEW)
    test = ds.split("test")
    shuffled = dataclasses.replace(test, labels=np.random.default_rng(1).permutation(test.labels))
    second = linear_probe(MSADataset(ds.info, {**ds.splits, "test": shuffled}), alphas=FEW)
    assert [(r.pooling, r.alpha, r.valid) for r in first.rows] == [(r.pooling, r.alpha, r.valid) for r in second.rows]
    assert first.rows[0].test != second.rows[0].test


def test_classification_uses_logistic_regression() -> None:
    result = linear_probe(_dataset(classes=3), alphas=FEW)
    assert result.select_key == "Acc" or "acc" in result.select_key.lower()
    text = next(r for r in result.rows if r.name == "text")
    assert text.test[result.select_key] > 0.6  # chance is about 1/3


def test_modality_absent_from_training_is_left_out_with_a_note() -> None:
    result = linear_probe(_dataset(train_text=False), alphas=FEW)
    assert [r.name for r in result.rows] == ["audio"]
    assert any("text" in n and "absent from every training sample" in n for n in result.notes)


def test_pooled_features_mark_absent_samples() -> None:
    split = _split(6, np.random.default_rng(2), text_present=False)
    feats = pooled_features(split, "text", "mean+std")
    assert feats.shape == (6, 11) and not feats.any()
    feats = pooled_features(split, "audio", "mean")
    np.testing.assert_allclose(feats[:, :3], np.asarray(split.modalities["audio"].values).mean(1), rtol=1e-6)
    assert (feats[:, -1] == 1).all()
    with pytest.raises(ConfigError, match="pooling"):
        pooled_features(split, "audio", "max")


def test_cli_prints_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--data", "synthetic:dominant", "--pooling", "mean", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "probe: all (mean" in out and "MAE" in out
    payload = json.loads((tmp_path / "p.json").read_text())
    assert [r["name"] for r in payload["rows"]] == ["text", "audio", "visual", "all"]
    assert main(["probe", "--data", "synthetic:dominant", "--modalities", "smell"]) == 2
