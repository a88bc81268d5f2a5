"""QA-MoE's answer without evidence (`prior_answer`) and the spectrum benchmark's validation split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmark_module import load_benchmark
from msakit import create_model
from msakit.data import MSADataset, load_dataset
from msakit.data.stats import dataset_stats
from msakit.errors import ConfigError
from msakit.models.qa_moe import QAMoE, label_minimiser
from msakit.robustness.perturbations import Spectrum, bind
from msakit.training import Trainer, train_config_from
from msakit.training.checkpoint import load_checkpoint
from msakit.training.trainer import evaluate


def _model(dataset: MSADataset, **overrides: Any) -> QAMoE:
    torch.manual_seed(0)
    model = create_model("qa_moe", **{**dataset.info.model_overrides(), "hidden_dim": 16, "dropout": 0.0, **overrides})
    assert isinstance(model, QAMoE)
    return model


def _fitted(dataset: MSADataset, **overrides: Any) -> QAMoE:
    model = _model(dataset, **overrides)
    model.start_fit(dataset_stats(dataset.split("train")))
    return model


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_label_minimiser_is_the_constant_with_the_lowest_task_loss(tiny_dataset: MSADataset, loss: str) -> None:
    model = _model(tiny_dataset, task_loss=loss)
    y = np.array([-2.0, -0.4, 0.2, 0.6, 3.0])
    answer = label_minimiser(y, model)
    assert answer.shape == (1,)
    assert float(answer) == pytest.approx(np.median(y) if loss == "l1" else y.mean())
    labels = torch.as_tensor(y, dtype=torch.float32)
    at = model.task_loss(answer.float().expand(5), labels)
    for step in (-0.05, 0.05):  # a constant moved either way loses
        assert model.task_loss((answer.float() + step).expand(5), labels) > at


def test_label_minimiser_of_a_classifier_is_the_log_class_frequency(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, num_classes=3)
    logits = label_minimiser(np.array([0, 0, 1, 2, 2, 2]), model)
    torch.testing.assert_close(logits.softmax(0), torch.tensor([2 / 6, 1 / 6, 3 / 6], dtype=torch.float64))


def test_labels_answer_is_recorded_at_fit_start_and_answers_every_sample_without_evidence(
    tiny_dataset: MSADataset,
) -> None:
    """With `prior_answer=labels` a sample with no modality gets the training labels' median (l1), in
    evaluation and in training; the default answers Head(p_0), which is not that value."""
    median = float(np.median(tiny_dataset.split("train").labels))
    assert abs(median) > 0.05  # the test needs a median that a zero-initialised buffer does not match
    batch = tiny_dataset.split("test").batch(range(12))
    empty = bind(Spectrum(strength=1.0), seed=0)(batch)
    assert not empty.present.any()
    model = _fitted(tiny_dataset, prior_answer="labels")
    torch.testing.assert_close(model.label_answer, torch.tensor([median]))
    for train in (False, True):
        model.train(train)
        out = model(empty)  # in training the self-corruption of an empty batch leaves it empty
        torch.testing.assert_close(out.prediction, torch.full((12,), median))
        assert (out.explanations["prior_weight"] == 1).all()
    learned = _fitted(tiny_dataset).eval()
    with torch.no_grad():
        alone = learned.bound_prediction(learned.head(learned.prior_token).unsqueeze(0)).expand(12)
        torch.testing.assert_close(learned(empty).prediction, alone)
    assert not torch.allclose(alone, torch.full((12,), median))


def test_labels_answer_changes_nothing_where_there_is_evidence(tiny_dataset: MSADataset) -> None:
    """Off (the default) has no new state; on, a sample with any modality is answered exactly as off,
    and a mixed batch changes only its empty samples."""
    assert "label_answer" not in _model(tiny_dataset).state_dict()
    assert QAMoE.config_class().prior_answer == "learned"
    batch = tiny_dataset.split("test").batch(range(12))
    drop = torch.zeros(12, dtype=torch.bool)
    drop[:4] = True
    mixed = batch.drop_modalities(list(batch.modalities), drop)  # 4 samples left with nothing
    on, off = _fitted(tiny_dataset, prior_answer="labels").eval(), _fitted(tiny_dataset).eval()
    with torch.no_grad():
        a, b = on(mixed).prediction, off(mixed).prediction
    assert torch.equal(a[4:], b[4:])
    torch.testing.assert_close(a[:4], on.label_answer.expand(4))
    assert not torch.equal(a[:4], b[:4])


def test_labels_answer_travels_with_the_checkpoint(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    config = train_config_from({"seeds": (1,), "epochs": 1, "progress": False, "tensorboard": False})
    model_overrides = {"hidden_dim": 16, "prior_answer": "labels"}
    res = Trainer("qa_moe", tiny_dataset, model_overrides=model_overrides, train_config=config, out_dir=tmp_path).fit()
    loaded, _ = load_checkpoint(res.seeds[0].checkpoint)
    assert isinstance(loaded, QAMoE)
    median = float(np.median(tiny_dataset.split("train").labels))
    torch.testing.assert_close(loaded.label_answer, torch.tensor([median]))


def test_unknown_prior_answer_is_refused_naming_the_field(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match="prior_answer"):
        _model(tiny_dataset, prior_answer="mean")


# ---- benchmarks/reliability_models.py spectrum: --split valid, --seal-test, --reuse ---------------


def _spectrum_args(out: Path, **changes: Any) -> argparse.Namespace:
    base = {
        "data": "synthetic",
        "out": str(out),
        "seeds": [1],
        "epochs": 1,
        "patience": 1,
        "batch_size": 64,
        "levels": [0.0, 1.0],
        "specialists": False,
        "reuse": [],
        "model_opt": ["prior_answer=labels", "hidden_dim=16"],
        "split": "test",
        "seal_test": False,
    }
    return argparse.Namespace(**{**base, **changes})


def test_spectrum_scores_the_validation_split_sealed_then_opens_test_from_the_same_checkpoints(
    tmp_path: Path,
) -> None:
    bench = load_benchmark("reliability_models")
    valid = bench.spectrum(_spectrum_args(tmp_path, split="valid", seal_test=True))
    assert valid["split"] == "valid" and "(Non0_acc_2, valid)" in valid["table"]
    run = tmp_path / "qa_moe"
    payload = json.loads((run / "results.json").read_text())
    assert payload["test_split"]["state"] == "sealed" and all("test" not in s for s in payload["seeds"])
    checkpoint = Path(payload["seeds"][0]["checkpoint"])
    data = load_dataset("synthetic")
    ckpt, _ = load_checkpoint(checkpoint)
    clean = evaluate(ckpt, data.split("valid"), "mosi", transform=bind(Spectrum(strength=0.0), seed=0))
    assert valid["rows"]["qa_moe (one checkpoint)"]["0.0"] == [clean["Non0_acc_2"]]
    assert len(valid["areas"]["qa_moe (one checkpoint)"]) == 1
    with pytest.raises(SystemExit) as refused:  # a sealed training that reads test is a contradiction
        bench.spectrum(_spectrum_args(tmp_path / "x", seal_test=True))
    assert refused.value.code == 2 and not (tmp_path / "x").exists()
    stamp = checkpoint.stat().st_mtime_ns
    test = bench.spectrum(_spectrum_args(tmp_path, reuse=["qa_moe", "late_fusion"]))
    assert checkpoint.stat().st_mtime_ns == stamp  # read back, not retrained
    assert json.loads((run / "results.json").read_text())["test_split"]["state"] == "opened"
    on_test = evaluate(ckpt, data.split("test"), "mosi", transform=bind(Spectrum(strength=0.0), seed=0))
    assert test["rows"]["qa_moe (one checkpoint)"]["0.0"] == [on_test["Non0_acc_2"]]
    assert on_test["Non0_acc_2"] != clean["Non0_acc_2"]
