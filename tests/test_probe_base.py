"""The probe base (`-m probe_base=true`, msakit.layers.probe_base): the linear-probe floor, fitted on
the training split and frozen, added to a model's prediction so that the network learns its residual."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from msakit.checkpoint_io import load_checkpoint
from msakit.data import SyntheticConfig, make_synthetic
from msakit.data.core import MSADataset, SplitData
from msakit.errors import ConfigError
from msakit.metrics import compute_metrics
from msakit.models.base import MSAModel
from msakit.probe import LinearMap, fit_linear_map, linear_probe, out_of_fold_scores, pooled_features
from msakit.registry import create_model
from msakit.training import Trainer, train_config_from
from test_ensemble import _Stop, _StopAt  # raise after the `last` checkpoint of (seed, epoch)
from test_probe import _dataset as toy_dataset  # text in its mean, audio in its spread (mean+std pooling)

FEW = (0.1, 10.0, 1000.0)


def _regression() -> MSADataset:
    return make_synthetic(SyntheticConfig(sizes=(160, 60, 60), dims=(6, 4, 5), lengths=(5, 6, 6), seed=3))


def _batches(split: SplitData, size: int = 64) -> list[Any]:
    return [split.batch(range(i, min(i + size, len(split)))) for i in range(0, len(split), size)]


def _scores(fitted: LinearMap, split: SplitData) -> np.ndarray:
    x = np.concatenate([pooled_features(split, m, fitted.pooling) for m in fitted.group], axis=1)
    return ((x - fitted.center) / fitted.scale) @ fitted.coef.T + fitted.intercept


def _model(data: MSADataset, name: str = "late_fusion", **kw: Any) -> MSAModel:
    info = data.info
    dims = {f"{m}_dim": d for m, d in info.dims.items()}
    model = create_model(name, modalities=tuple(info.dims), num_classes=info.num_classes, hidden_dim=8, **dims, **kw)
    return model.eval()


def _outputs(model: MSAModel, split: SplitData) -> tuple[torch.Tensor, torch.Tensor | None]:
    preds, bases = [], []
    for batch in _batches(split):
        out = model.predict(batch)
        preds.append(out.prediction)
        if "probe_base" in out.explanations:
            bases.append(out.explanations["probe_base"])
    return torch.cat(preds), (torch.cat(bases) if bases else None)


@pytest.mark.parametrize("classes", [1, 3])
def test_the_fitted_map_is_the_probe_msakit_probe_picks(classes: int) -> None:
    data = _regression() if classes == 1 else toy_dataset(classes)
    best = linear_probe(data, alphas=FEW).best()
    fitted = fit_linear_map(
        data.split("train"),
        data.split("valid"),
        data.info.modalities,
        metric_set=data.info.metric_set,
        num_classes=data.info.num_classes,
        alphas=FEW,
    )
    assert (fitted.group, fitted.pooling, fitted.alpha) == (best.modalities, best.pooling, best.alpha)
    assert fitted.valid == pytest.approx(best.valid)
    valid = data.split("valid")  # the arrays reproduce the probe's own validation scores
    scores = _scores(fitted, valid)
    assert compute_metrics(data.info.metric_set, scores[:, 0] if classes == 1 else scores, valid.labels) == (
        pytest.approx(best.valid)
    )


@pytest.mark.parametrize("classes", [1, 3])
def test_the_model_adds_the_probe_of_its_raw_inputs_to_the_network(classes: int) -> None:
    data = _regression() if classes == 1 else toy_dataset(classes)
    torch.manual_seed(0)
    model = _model(data, probe_base=True)
    train, valid = data.split("train"), data.split("valid")
    from msakit.data.stats import dataset_stats

    model.start_fit(dataset_stats(train))  # the input normaliser is on: the base must read the raw batch
    model.fit_probe_base(train, valid, data.info.metric_set)
    assert model.probe_base is not None and bool(model.probe_base.fitted)
    pred, base = _outputs(model, valid)
    fitted = fit_linear_map(
        train, valid, data.info.modalities, metric_set=data.info.metric_set, num_classes=data.info.num_classes
    )
    expected = _scores(fitted, valid)
    assert base is not None
    np.testing.assert_allclose(base.numpy(), expected[:, 0] if classes == 1 else expected, atol=2e-4)
    plain = _model(data)  # the same network without the base
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("probe_base.")})
    network, none = _outputs(plain, valid)
    assert none is None
    torch.testing.assert_close(pred - base, network, atol=1e-5, rtol=1e-5)


def test_off_has_no_module_and_unfitted_adds_nothing() -> None:
    data = _regression()
    torch.manual_seed(0)
    off = _model(data)
    assert off.probe_base is None and not any(k.startswith("probe_base.") for k in off.state_dict())
    torch.manual_seed(0)
    unfitted = _model(data, probe_base=True)
    (a, _), (b, base) = _outputs(off, data.split("valid")), _outputs(unfitted, data.split("valid"))
    assert base is None and torch.equal(a, b)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("probe-base-runs")
    data = _regression()
    cfg = {"epochs": 3, "seeds": [1], "progress": False, "tensorboard": False}

    def fit(out: str, **kw: Any) -> Any:
        train = train_config_from({**cfg, **kw})
        over = {"hidden_dim": 8, "probe_base": True}
        return Trainer("late_fusion", data, model_overrides=over, train_config=train, out_dir=root / out).fit()

    return {"root": root, "data": data, "plain": fit("plain"), "ens": fit("ens", ensemble=2)}


def test_the_trainer_fits_it_before_training_and_the_checkpoint_keeps_it(runs: dict[str, Any]) -> None:
    data = runs["data"]
    model, _ = load_checkpoint(runs["root"] / "plain/seed1/best")
    assert model.config.probe_base and model.probe_base is not None and bool(model.probe_base.fitted)
    valid = data.split("valid")
    fitted = fit_linear_map(data.split("train"), valid, data.info.modalities, metric_set="mosi", num_classes=1)
    _, base = _outputs(model, valid)
    assert base is not None
    np.testing.assert_allclose(base.numpy(), _scores(fitted, valid)[:, 0], atol=2e-4)  # frozen: training left it
    pred, _ = _outputs(model, data.split("test"))
    assert compute_metrics("mosi", pred.numpy(), data.split("test").labels) == pytest.approx(
        runs["plain"].seeds[0].test
    )


def test_each_ensemble_member_adds_its_own_base_once(runs: dict[str, Any]) -> None:
    data = runs["data"]
    ensemble, _ = load_checkpoint(runs["root"] / "ens/seed1/best")
    assert ensemble.model_name == "ensemble" and not ensemble.config.probe_base and ensemble.probe_base is None
    members = list(ensemble.members)  # type: ignore[attr-defined]
    assert all(m.probe_base is not None and bool(m.probe_base.fitted) for m in members)
    valid = data.split("valid")
    pred, base = _outputs(ensemble, valid)
    member_preds = [_outputs(m, valid)[0] for m in members]
    torch.testing.assert_close(pred, torch.stack(member_preds).mean(0))
    _, member_base = _outputs(members[0], valid)
    assert base is not None and member_base is not None
    torch.testing.assert_close(base, member_base)  # the members' mean of one base: counted once
    info = data.info
    dims = {f"{m}_dim": d for m, d in info.dims.items()}
    with pytest.raises(ConfigError, match="probe_base must be false"):
        create_model("ensemble", member="late_fusion", probe_base=True, modalities=tuple(info.dims), **dims)


def test_a_classifier_adds_the_probes_logits(tmp_path: Path) -> None:
    data = toy_dataset(3)
    train = train_config_from({"epochs": 2, "seeds": [1], "progress": False, "tensorboard": False})
    over = {"hidden_dim": 8, "probe_base": True}
    result = Trainer("late_fusion", data, model_overrides=over, train_config=train, out_dir=tmp_path / "r").fit()
    model, _ = load_checkpoint(tmp_path / "r/seed1/best")
    pred, base = _outputs(model, data.split("valid"))
    assert base is not None and base.shape == pred.shape == (len(data.split("valid")), 3)
    best = linear_probe(data).best()
    probe_only = compute_metrics("classification", base.numpy(), data.split("valid").labels)
    assert probe_only == pytest.approx(best.valid, abs=1e-6)  # the base alone is the probe's validation row
    assert result.seeds[0].valid["Acc"] >= 0.0


def test_training_batches_read_the_out_of_fold_scores() -> None:
    data = _regression()
    train, valid = data.split("train"), data.split("valid")
    fitted = fit_linear_map(train, valid, data.info.modalities, metric_set="mosi", num_classes=1)
    oof = out_of_fold_scores(train, fitted)
    in_sample = _scores(fitted, train)
    y = train.labels[:, None]
    assert np.abs(oof - y).mean() > np.abs(in_sample - y).mean()  # held-out residuals are not shrunk
    moved = dataclasses.replace(train, labels=train.labels.copy())
    moved.labels[0] += 100.0  # a sample's own label never reaches its own out-of-fold score
    assert out_of_fold_scores(moved, fitted)[0] == pytest.approx(oof[0])
    assert abs(out_of_fold_scores(moved, fitted)[1:] - oof[1:]).max() > 1e-3
    torch.manual_seed(0)
    model = _model(data, probe_base=True)
    model.fit_probe_base(train, valid, "mosi")
    assert model.probe_base is not None
    (batch,) = _batches(train, size=len(train))
    model.train()
    np.testing.assert_allclose(model(batch).explanations["probe_base"].detach().numpy(), oof[:, 0], atol=1e-5)
    model.eval()
    np.testing.assert_allclose(model(batch).explanations["probe_base"].numpy(), in_sample[:, 0], atol=2e-4)
    (mixed,) = _batches(valid, size=len(valid))  # not training samples: the full fit, in training mode too
    model.train()
    np.testing.assert_allclose(
        model(mixed).explanations["probe_base"].detach().numpy(), _scores(fitted, valid)[:, 0], atol=2e-4
    )


def test_every_reader_of_checkpoints_applies_it(tmp_path: Path) -> None:
    from msakit import service
    from msakit.cli import main

    out = tmp_path / "run"
    argv = ["train", "--model", "late_fusion", "--data", "synthetic", "--out", str(out), "--seeds", "1"]
    assert main([*argv, "--epochs", "2", "--no-progress", "-m", "probe_base=true", "-m", "hidden_dim=8"]) == 0
    best = out / "seed1/best"
    tested = json.loads((out / "results.json").read_text())["seeds"][0]["test"]
    assert main(["eval", str(best), "--data", "synthetic", "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == pytest.approx(tested)
    assert main(["predict", str(best), "--data", "synthetic", "--out", str(tmp_path / "p.csv")]) == 0
    with (tmp_path / "p.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert "probe_base" in rows[0] and len({r["probe_base"] for r in rows}) > 1
    rob = ["robustness", str(best), "--data", "synthetic", "--protocol", "modality", "--out", str(tmp_path / "rob")]
    assert main(rob) == 0 and (tmp_path / "rob/robustness.json").is_file()
    loaded = service.load_model(best)
    sample = {m: [[0.5] * d] for m, d in loaded.dims.items()}
    (pred,) = service.predict_features(loaded, [sample]).samples
    assert math.isfinite(pred.explanations["probe_base"])
    pytest.importorskip("onnxruntime")
    graph = tmp_path / "pb.onnx"
    assert main(["export", "onnx", str(best), "--data", "synthetic", "--out", str(graph)]) == 0  # parity-checked
    onnx_csv = tmp_path / "onnx.csv"
    assert main(["predict", str(best), "--data", "synthetic", "--out", str(onnx_csv), "--onnx", str(graph)]) == 0
    with onnx_csv.open() as fh:
        exported = [float(r["prediction"]) for r in csv.DictReader(fh)]
    assert exported == pytest.approx([float(r["prediction"]) for r in rows], abs=1e-4)


def test_a_resumed_fit_equals_the_uninterrupted_one(runs: dict[str, Any], tmp_path: Path) -> None:
    """The out-of-fold scores are not in the checkpoint: a resumed fit refits them (deterministic)."""
    train = train_config_from({"epochs": 3, "seeds": [1], "progress": False, "tensorboard": False})
    over = {"hidden_dim": 8, "probe_base": True}
    with pytest.raises(_Stop):
        Trainer(
            "late_fusion",
            runs["data"],
            model_overrides=over,
            train_config=train,
            out_dir=tmp_path,
            callbacks=[_StopAt(1, 1)],
        ).fit()
    again = Trainer("late_fusion", runs["data"], model_overrides=over, train_config=train, out_dir=tmp_path)
    seed = again.fit(resume=True).seeds[0]
    full = runs["plain"].seeds[0]
    assert seed.valid == full.valid and seed.test == full.test
    done = (tmp_path / "seed1/best/model.safetensors").read_bytes()
    assert done == (runs["root"] / "plain/seed1/best/model.safetensors").read_bytes()


def test_a_run_fits_the_probe_once_for_all_its_seeds_and_members(
    runs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import msakit.probe

    calls = []
    real = msakit.probe.fit_linear_map
    monkeypatch.setattr(msakit.probe, "fit_linear_map", lambda *a, **k: calls.append(1) or real(*a, **k))
    train = train_config_from({"epochs": 1, "seeds": [1, 2], "progress": False, "tensorboard": False, "ensemble": 2})
    over = {"hidden_dim": 8, "probe_base": True}
    Trainer("late_fusion", runs["data"], model_overrides=over, train_config=train, out_dir=tmp_path).fit()
    assert len(calls) == 1  # the fit depends on the data only: 2 seeds x 2 members reuse it
