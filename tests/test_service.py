"""The service layer: results from a checkpoint, writers, and validated arrays -> Batch."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit import service
from msakit.data import SyntheticConfig, make_synthetic
from msakit.errors import DataError
from msakit.training import Trainer, train_config_from


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[service.LoadedModel, object]:
    ds = make_synthetic(SyntheticConfig(sizes=(48, 16, 16)))
    out = tmp_path_factory.mktemp("run")
    cfg = train_config_from({"seeds": (1,), "epochs": 2, "progress": False, "tensorboard": False, "batch_size": 16})
    Trainer("late_fusion", ds, model_overrides={"hidden_dim": 8}, train_config=cfg, out_dir=out).fit()
    return service.load_model(out / "seed1" / "best"), ds


def test_eval_and_predict_results_and_writers(trained: tuple, tmp_path: Path) -> None:
    loaded, ds = trained
    result = service.evaluate_split(loaded, ds, "test")
    assert result.split == "test" and "MAE" in result.metrics
    service.write_metrics_json(result, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == pytest.approx(result.metrics)
    preds = service.predict_split(loaded, ds, "test")
    assert len(preds.samples) == 16 and preds.samples[0].weights is not None
    service.write_predictions_csv(preds, tmp_path / "p.csv")
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert rows[0] == service.PREDICTION_HEADER and len(rows) == 17
    assert float(rows[1][2]) == pytest.approx(preds.samples[0].prediction)


def test_predict_features_matches_the_dataset_path(trained: tuple) -> None:
    """Arrays sent directly give the same predictions as the same samples through the loader."""
    loaded, ds = trained
    batch = next(iter(ds.split("test").loader(4, shuffle=False)))
    samples = []
    for i in range(4):
        sample = {}
        for m in loaded.modalities:
            if batch.present[i, ["text", "audio", "visual"].index(m)]:
                sample[m] = batch.features[m][i][batch.masks[m][i]].numpy().tolist()
        samples.append(sample)
    direct = service.predict_features(loaded, samples, ids=batch.ids)
    via_split = service.predict_split(loaded, ds, "test").samples[:4]
    assert [s.id for s in direct.samples] == batch.ids
    for a, b in zip(direct.samples, via_split, strict=True):
        assert a.prediction == pytest.approx(b.prediction, abs=1e-5)
        assert a.present == b.present


def test_a_missing_modality_is_absent(trained: tuple) -> None:
    loaded, _ = trained
    dims = loaded.dims
    full = {m: np.ones(dims[m]).tolist() for m in loaded.modalities}
    text_only = {"text": full["text"]}
    out = service.predict_features(loaded, [full, text_only])
    assert out.samples[1].present == {"text": True, "audio": False, "visual": False}
    assert out.samples[0].present["audio"] is True


@pytest.mark.parametrize(
    ("sample", "field"),
    [
        ({"text": [[0.0, 1.0]]}, "samples[0].text"),  # wrong width
        ({"text": [[[0.0]]]}, "samples[0].text"),  # wrong rank
        ({"text": "abc"}, "samples[0].text"),  # not numbers
        ({"smell": [0.0]}, "smell"),  # unknown modality
        ({}, "samples[0]"),  # nothing at all
    ],
)
def test_bad_arrays_name_the_field(trained: tuple, sample: dict, field: str) -> None:
    loaded, _ = trained
    with pytest.raises(DataError, match=field.replace("[", r"\[").replace("]", r"\]")):
        service.predict_features(loaded, [sample])


def test_nan_and_limits_are_refused(trained: tuple) -> None:
    loaded, _ = trained
    d = loaded.dims["text"]
    bad = np.zeros((2, d))
    bad[1, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        service.predict_features(loaded, [{"text": bad.tolist()}])
    with pytest.raises(DataError, match="at most 3"):
        service.predict_features(loaded, [{"text": [0.0] * d}] * 4, max_samples=3)
    with pytest.raises(DataError, match="steps"):
        service.predict_features(loaded, [{"text": np.zeros((5, d)).tolist()}], max_steps=4)
    with pytest.raises(DataError, match="ids"):
        service.predict_features(loaded, [{"text": [0.0] * d}], ids=["a", "b"])


def test_npz_round_trip_and_no_pickles(trained: tuple) -> None:
    loaded, _ = trained
    d = {m: loaded.dims[m] for m in loaded.modalities}
    buf = io.BytesIO()
    mask = np.array([[True, True, False], [True, False, False]])
    np.savez(buf, text=np.ones((2, 3, d["text"]), np.float32), text_mask=mask, ids=np.array(["x", "y"]))
    samples, ids = service.samples_from_npz(buf.getvalue())
    assert ids == ["x", "y"] and [s["text"].shape[0] for s in samples] == [2, 1]
    out = service.predict_features(loaded, samples, ids=ids)
    assert [s.id for s in out.samples] == ["x", "y"]
    evil = io.BytesIO()
    np.savez(evil, text=np.array([object()], dtype=object))
    with pytest.raises(DataError, match=r"plain \.npz"):
        service.samples_from_npz(evil.getvalue())
    bomb = io.BytesIO()
    np.savez_compressed(bomb, text=np.zeros((4, 1000, d["text"]), np.float32))
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(DataError, match="decompressed"):
        service.samples_from_npz(bomb.getvalue(), max_bytes=len(bomb.getvalue()) * 4)
    with pytest.raises(DataError, match=r"not an \.npz"):
        service.samples_from_npz(b"PK\x03\x04 truncated")


def test_batch_from_arrays_pads_and_masks(trained: tuple) -> None:
    loaded, _ = trained
    d = loaded.dims["text"]
    batch = service.batch_from_arrays(loaded, [{"text": np.ones((3, d))}, {"text": np.ones((1, d))}])
    assert batch.features["text"].shape == (2, 3, d)
    assert batch.masks["text"].tolist() == [[True, True, True], [True, False, False]]
    assert torch.all(batch.features["text"][1, 1:] == 0)


def test_describe_a_packaged_checkpoint() -> None:
    from msakit.analyze import resolve_checkpoint

    described = service.load_model(resolve_checkpoint("default_text")).describe()
    assert described["modalities"] == ["text"] and described["dims"] == {"text": 384}
    assert described["text_encoder"] == "minilm_tokens"
    assert set(described["metrics"]["valid"]) >= {"MAE", "Corr", "Has0_acc_2"}
