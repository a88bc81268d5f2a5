"""The one trainer: protocol, determinism, checkpoints, resume, divergence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from msakit.data import MSADataset
from msakit.errors import ConfigError, TrainingError
from msakit.training import Trainer, evaluate, load_checkpoint, train_config_from


def _cfg(**kw: object):  # type: ignore[no-untyped-def]
    return train_config_from({"epochs": 3, "seeds": [1], "progress": False, "tensorboard": False, **kw})


def test_same_seed_gives_identical_results(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    a = Trainer("late_fusion", tiny_dataset, train_config=_cfg(), out_dir=tmp_path / "a").fit()
    b = Trainer("late_fusion", tiny_dataset, train_config=_cfg(), out_dir=tmp_path / "b").fit()
    assert a.seeds[0].test == b.seeds[0].test


def test_selection_uses_validation_and_checkpoint_reproduces_test(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    result = Trainer("text_only", tiny_dataset, train_config=_cfg(epochs=4), out_dir=tmp_path).fit()
    seed = result.seeds[0]
    log = (tmp_path / "seed1" / "log.csv").read_text().splitlines()
    header = log[0].split(",")
    maes = [float(row.split(",")[header.index("valid_MAE")]) for row in log[1:]]
    assert seed.best_epoch == 1 + maes.index(min(maes))  # best validation MAE, never test
    model, meta = load_checkpoint(seed.checkpoint)
    assert meta["epoch"] == seed.best_epoch
    assert evaluate(model, tiny_dataset.split("test"), "mosi") == seed.test
    summary = json.loads((tmp_path / "results.json").read_text())["test_summary"]
    assert summary["MAE"]["mean"] == pytest.approx(seed.test["MAE"])


def test_mean_and_std_over_seeds(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    result = Trainer("text_only", tiny_dataset, train_config=_cfg(epochs=2, seeds=[1, 2]), out_dir=tmp_path).fit()
    maes = [s.test["MAE"] for s in result.seeds]
    mean, std = result.summary()["MAE"]
    assert mean == pytest.approx(sum(maes) / 2)
    assert std == pytest.approx(abs(maes[0] - maes[1]) / 2**0.5)


def test_resume_matches_uninterrupted_run(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    full = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=4), out_dir=tmp_path / "full").fit()
    Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=2), out_dir=tmp_path / "part").fit()
    resumed = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=4), out_dir=tmp_path / "part")
    assert resumed.fit(resume=True).seeds[0].test == full.seeds[0].test


def test_diverging_loss_stops_with_step_and_keeps_last_good_checkpoint(
    tiny_dataset: MSADataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msakit.models.text_only import TextOnly

    trainer = Trainer("text_only", tiny_dataset, train_config=_cfg(epochs=3, batch_size=8), out_dir=tmp_path)
    original = TextOnly.forward
    calls = {"n": 0}

    def flaky(self, batch):  # type: ignore[no-untyped-def]
        out = original(self, batch)
        calls["n"] += self.training
        if self.training and calls["n"] > 4:  # the first epoch (3 batches) and one more step are fine
            out.prediction = out.prediction * float("nan")
        return out

    monkeypatch.setattr(TextOnly, "forward", flaky)
    with pytest.raises(TrainingError, match=r"epoch 2, step 5"):
        trainer.fit()
    model, meta = load_checkpoint(tmp_path / "seed1" / "best")
    assert meta["epoch"] == 1 and all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_train_config_fails_before_training(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match=r"trainer: unknown config field 'epoch'"):
        train_config_from({"epoch": 3})
    with pytest.raises(ConfigError, match=r"select_metric 'Acc'"):
        Trainer("text_only", tiny_dataset, train_config=_cfg(select_metric="Acc"))
    with pytest.raises(ConfigError, match=r"model 'late_fusion'.*'encoder_kind'"):
        Trainer("late_fusion", tiny_dataset, model_overrides={"encoder_kind": "x"})


def test_modality_dropout_never_removes_every_modality(tiny_dataset: MSADataset) -> None:
    trainer = Trainer("late_fusion", tiny_dataset, train_config=_cfg(modality_dropout=0.9))
    batch = tiny_dataset.split("train").batch(range(24))
    out = trainer._augment(batch, torch.Generator().manual_seed(0))
    assert out.present.any(dim=1).all()
    assert out.present.sum() < batch.present.sum()
