"""Degenerate-training warnings (msakit.training.diagnostics)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from msakit.data.core import DatasetInfo, ModalityArrays, MSADataset, SplitData
from msakit.training import Trainer, train_config_from
from msakit.training.diagnostics import constant_prediction, early_best_epochs, untrainable_modalities


def test_constant_regression_prediction() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=100)
    assert constant_prediction(y + rng.normal(scale=0.5, size=100), y, classification=False) is None
    assert "std" in str(constant_prediction(np.full(100, 0.3) + 1e-4 * y, y, classification=False))
    same_sign = np.abs(y) * 0.5 + 0.1  # varied, but never negative although half the labels are
    assert "positive score for all 100" in str(constant_prediction(same_sign, y, classification=False))
    assert constant_prediction(same_sign, np.abs(y), classification=False) is None  # labels all positive too


def test_constant_class_prediction() -> None:
    labels = np.arange(90) % 3
    logits = np.zeros((90, 3))
    logits[:, 1] = 1.0
    assert "class 1 for 100%" in str(constant_prediction(logits, labels, classification=True))
    logits[np.arange(90), labels] = 5.0
    assert constant_prediction(logits, labels, classification=True) is None
    assert constant_prediction(np.ones(90), np.ones(90), classification=True) is None  # the labels are one class too


def test_early_best_epoch_in_every_seed() -> None:
    def run(*pairs: tuple[int, int]) -> SimpleNamespace:
        return SimpleNamespace(
            seeds=[SimpleNamespace(seed=k, best_epoch=b, epochs_run=e) for k, (b, e) in enumerate(pairs)]
        )

    assert "every seed (seed 0: 1/9, seed 1: 2/10)" in str(early_best_epochs(run((1, 9), (2, 10))))  # type: ignore[arg-type]
    assert early_best_epochs(run((1, 9), (3, 11))) is None  # type: ignore[arg-type]
    assert early_best_epochs(run((2, 2), (1, 2))) is None  # type: ignore[arg-type]  # only 2 epochs ran


def _dataset(*, zero_audio: bool = False) -> MSADataset:
    """Audio for every split; text (like MMMO's GloVe) for valid and test only."""
    rng = np.random.default_rng(0)

    def split(n: int, with_text: bool) -> SplitData:
        y = rng.normal(size=n).astype(np.float32)
        audio = np.zeros((n, 4, 3), np.float32) if zero_audio else (y[:, None, None] + rng.normal(size=(n, 4, 3)))
        text = rng.normal(size=(n, 2, 5)).astype(np.float32) * with_text
        present = np.full(n, with_text)
        return SplitData(
            labels=y,
            ids=[f"i{k}" for k in range(n)],
            modalities={
                "audio": ModalityArrays(audio.astype(np.float32), np.full(n, 4), np.ones(n, bool)),
                "text": ModalityArrays(text, np.where(present, 2, 0), present),
            },
        )

    info = DatasetInfo(name="toy", metric_set="mosi", dims={"text": 5, "audio": 3})
    return MSADataset(info, {"train": split(96, False), "valid": split(40, True), "test": split(40, True)})


def test_modality_absent_from_training() -> None:
    (warning,) = untrainable_modalities(_dataset())
    assert "'text' is present for 40 valid, 40 test samples but absent from every training sample" in warning


def test_trainer_prints_and_records_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = train_config_from({"epochs": 3, "seeds": (1,), "progress": False, "tensorboard": False})
    result = Trainer("late_fusion", _dataset(zero_audio=True), train_config=cfg, out_dir=tmp_path).fit()
    saved = json.loads((tmp_path / "results.json").read_text())["warnings"]
    assert saved == result.warnings
    assert any("absent from every training sample" in w for w in saved)
    assert any(w.startswith("seed 1: near-constant prediction on valid") for w in saved)
    assert any(w.startswith("seed 1: near-constant prediction on test") for w in saved)
    assert "msakit: warning: seed 1: near-constant prediction on test" in capsys.readouterr().err
