"""Deep ensembles (`-t ensemble=K`): K member fits per seed, one `ensemble` checkpoint of their mean.

Off (0 or 1) is the plain training; member 0 is exactly the plain run of its seed; the saved
ensemble predicts the members' mean (regression) or log-mean-softmax (classification),
recomputed here from the member checkpoints; what the checkpoint records is what an
evaluation of it gives; every reader of checkpoints loads it; resume skips finished members
and equals the uninterrupted run; bad values exit 2 with nothing written.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from bad_inputs import _base_dataset
from msakit import create_model, service
from msakit.cli import main
from msakit.data import MSADataset, load_dataset
from msakit.errors import ConfigError, DataError
from msakit.training import Trainer, evaluate, load_checkpoint, train_config_from
from msakit.training.engine import Callback, FitState
from msakit.training.trainer import member_seeds, predict_split


def _cfg(**kw: object):  # type: ignore[no-untyped-def]
    return train_config_from({"epochs": 2, "seeds": [1], "progress": False, "tensorboard": False, **kw})


def _train(data: MSADataset, out: Path, **kw: object):  # type: ignore[no-untyped-def]
    return Trainer("late_fusion", data, model_overrides={"hidden_dim": 8}, train_config=_cfg(**kw), out_dir=out).fit()


def _bytes(folder: Path) -> bytes:
    return (folder / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _base_dataset(tmp_path_factory.mktemp("ensemble-data"))


@pytest.fixture(scope="module")
def data(folder: Path) -> MSADataset:
    return load_dataset(str(folder))


@pytest.fixture(scope="module")
def runs(data: MSADataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ensemble-runs")
    return {
        "root": root,
        "plain": _train(data, root / "plain"),
        "ens": _train(data, root / "ens", ensemble=2),
    }


def test_off_is_the_plain_training(data: MSADataset, runs: dict[str, Any], tmp_path: Path) -> None:
    one = _train(data, tmp_path / "one", ensemble=1)
    plain = runs["plain"].seeds[0]
    assert one.seeds[0].valid == plain.valid and one.seeds[0].test == plain.test
    assert _bytes(tmp_path / "one/seed1/best") == _bytes(runs["root"] / "plain/seed1/best")
    for run in (tmp_path / "one", runs["root"] / "plain"):
        assert sorted(p.name for p in (run / "seed1").iterdir()) == ["best", "last", "log.csv"]
        assert "members" not in json.loads((run / "results.json").read_text())["seeds"][0]


def test_member_0_is_the_plain_run_and_the_other_members_are_independent(runs: dict[str, Any]) -> None:
    root = runs["root"]
    seed = runs["ens"].seeds[0]
    assert [m["seed"] for m in seed.members] == member_seeds(1, 2) == [1, 1_000_001]
    assert _bytes(root / "ens/seed1/member0/best") == _bytes(root / "plain/seed1/best")
    assert seed.members[0]["valid"] == runs["plain"].seeds[0].valid
    assert _bytes(root / "ens/seed1/member1/best") != _bytes(root / "ens/seed1/member0/best")
    for j in (0, 1):
        assert (root / f"ens/seed{1}/member{j}/log.csv").is_file() and (root / f"ens/seed1/member{j}/last").is_dir()
    record = json.loads((root / "ens/seed1/ensemble.json").read_text())
    assert record["size"] == 2 and record["member_seeds"] == [1, 1_000_001] and record["valid"] == seed.valid
    saved = json.loads((root / "ens/results.json").read_text())["seeds"][0]
    assert [m["seed"] for m in saved["members"]] == [1, 1_000_001]
    assert saved["seconds_per_epoch"] == pytest.approx(sum(m["seconds_per_epoch"] for m in seed.members) / 2)


def test_derived_member_seeds_never_collide_for_normal_seed_lists() -> None:
    every = [s for seed in range(1000) for s in member_seeds(seed, 5)]
    assert len(set(every)) == len(every)
    with pytest.raises(ConfigError, match="'seeds'"):
        Trainer("late_fusion", _tiny(), train_config=_cfg(seeds=[1, 1_000_001], ensemble=2))


def _tiny() -> MSADataset:
    from msakit.data import SyntheticConfig, make_synthetic

    return make_synthetic(SyntheticConfig(sizes=(8, 4, 4), dims=(4, 3, 2), lengths=(3, 3, 3), seed=1))


def test_the_ensemble_predicts_the_member_mean_and_records_its_own_scores(
    data: MSADataset, runs: dict[str, Any]
) -> None:
    root, seed = runs["root"], runs["ens"].seeds[0]
    ens, meta = load_checkpoint(root / "ens/seed1/best")
    members = [load_checkpoint(root / f"ens/seed1/member{j}/best")[0] for j in (0, 1)]
    assert meta["model"] == "ensemble" and meta["model_config"]["member"] == "late_fusion"
    assert meta["dataset"]["name"] == data.info.name and meta["train_config"]["ensemble"] == 2
    for split in ("valid", "test"):
        got = [out for out, _ in predict_split(ens, data.split(split))]
        each = [torch.cat([o.prediction for o, _ in predict_split(m, data.split(split))]) for m in members]
        pred = torch.cat([o.prediction for o in got])
        torch.testing.assert_close(pred, (each[0] + each[1]) / 2)
        spread = torch.cat([o.explanations["ensemble_std"] for o in got])
        torch.testing.assert_close(spread, (each[0] - each[1]).abs() / 2)  # population std of two values
        assert (spread > 0).all()  # independent members disagree
    assert evaluate(ens, data.split("valid"), "mosi") == pytest.approx(meta["valid"]) == seed.valid
    assert evaluate(ens, data.split("test"), "mosi") == pytest.approx(seed.test)


def _members_and_ensemble(num_classes: int) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    dims = {"text_dim": 4, "audio_dim": 3, "visual_dim": 2, "num_classes": num_classes, "hidden_dim": 8}
    ens = create_model("ensemble", member="late_fusion", size=3, **dims).eval()
    singles = []
    for j, member in enumerate(ens.members):
        torch.manual_seed(j)
        single = create_model("late_fusion", **dims).eval()
        member.load_state_dict(single.state_dict())
        singles.append(single)
    return ens, singles


def test_classification_is_the_log_of_the_mean_softmax() -> None:
    ens, singles = _members_and_ensemble(3)
    batch = _tiny().split("train").batch(range(8))
    with torch.no_grad():
        out = ens(batch)
        probs = torch.stack([s(batch).prediction.softmax(-1) for s in singles])  # (K, B, C)
    mean = probs.mean(0)
    torch.testing.assert_close(out.prediction, mean.log())
    torch.testing.assert_close(out.prediction.softmax(-1), mean)
    chosen = mean.argmax(-1)
    picked = probs[:, torch.arange(8), chosen]  # (K, B)
    torch.testing.assert_close(out.explanations["ensemble_std"], picked.std(0, correction=0))
    weights = torch.stack([s(batch).modality_weights for s in singles]).mean(0)
    torch.testing.assert_close(out.modality_weights, weights)


def test_identical_members_agree_exactly() -> None:
    ens, singles = _members_and_ensemble(1)
    for member in ens.members:
        member.load_state_dict(singles[0].state_dict())
    batch = _tiny().split("train").batch(range(8))
    with torch.no_grad():
        out = ens(batch)
        torch.testing.assert_close(out.prediction, singles[0](batch).prediction)
    assert (out.explanations["ensemble_std"] == 0).all()


def test_capabilities_are_the_members(runs: dict[str, Any]) -> None:
    ens, _ = load_checkpoint(runs["root"] / "ens/seed1/best")
    single, _ = load_checkpoint(runs["root"] / "plain/seed1/best")
    assert ens.declared_capabilities == single.declared_capabilities
    dims = {"text_dim": 4, "audio_dim": 3, "visual_dim": 2, "hidden_dim": 16}
    mamba = create_model("ensemble", member="alignmamba2", **dims).declared_capabilities
    assert mamba == create_model("alignmamba2", **dims).declared_capabilities and not mamba.padding_invariant
    with pytest.raises(ConfigError, match="at least 2 modalities"):  # amsgfn's own minimum, checked for the ensemble
        create_model("ensemble", member="amsgfn", modalities=("text",), **dims)


def test_eval_predict_robustness_and_the_service_load_it(folder: Path, runs: dict[str, Any], tmp_path: Path) -> None:
    best = runs["root"] / "ens/seed1/best"
    assert main(["eval", str(best), "--data", str(folder), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == pytest.approx(runs["ens"].seeds[0].test)
    assert main(["predict", str(best), "--data", str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    with (tmp_path / "p.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and all(float(r["ensemble_std"]) > 0 for r in rows)
    rob = ["robustness", str(best), "--data", str(folder), "--protocol", "modality", "--out", str(tmp_path / "rob")]
    assert main(rob) == 0 and (tmp_path / "rob/robustness.json").is_file()
    loaded = service.load_model(best)
    assert loaded.describe()["model"] == "ensemble" and loaded.describe()["metrics"]["valid"] == pytest.approx(
        runs["ens"].seeds[0].valid
    )
    sample = {m: [[0.5] * d] for m, d in loaded.dims.items()}
    (pred,) = service.predict_features(loaded, [sample]).samples
    assert pred.explanations["ensemble_std"] >= 0 and math.isfinite(pred.prediction)
    pytest.importorskip("onnxruntime")
    graph = tmp_path / "ens.onnx"
    assert main(["export", "onnx", str(best), "--data", str(folder), "--out", str(graph)]) == 0  # parity-checked
    onnx_csv = tmp_path / "onnx.csv"
    assert main(["predict", str(best), "--data", str(folder), "--out", str(onnx_csv), "--onnx", str(graph)]) == 0
    with onnx_csv.open() as fh:
        spread = [float(r["ensemble_std"]) for r in csv.DictReader(fh)]
    assert spread == pytest.approx([float(r["ensemble_std"]) for r in rows], abs=1e-5)
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from msakit.serve import ServeConfig, create_app

    answer = TestClient(create_app({"ens": loaded}, ServeConfig())).post("/v1/predict", json={"sample": sample})
    assert answer.status_code == 200 and answer.json()["predictions"][0]["prediction"] == pytest.approx(pred.prediction)


class _Stop(Exception):
    pass


class _StopAt(Callback):
    """Raise after the checkpoint of `epoch` of the fit with `seed` (a kill between epochs)."""

    def __init__(self, seed: int, epoch: int) -> None:
        self.seed, self.epoch = seed, epoch

    def on_checkpoint(self, state: FitState, path: Path) -> None:
        if state.seed == self.seed and state.epoch == self.epoch and path.name == "last":
            raise _Stop


class _Starts(Callback):
    def __init__(self) -> None:
        self.fits: list[tuple[int, int]] = []  # (seed, epochs already done) at each fit start

    def on_fit_start(self, state: FitState) -> None:
        self.fits.append((state.seed, state.epoch))


def test_resume_skips_finished_members_and_equals_the_uninterrupted_run(
    data: MSADataset, runs: dict[str, Any], tmp_path: Path
) -> None:
    cfg, over = _cfg(ensemble=2), {"hidden_dim": 8}
    with pytest.raises(_Stop):
        Trainer(
            "late_fusion",
            data,
            model_overrides=over,
            train_config=cfg,
            out_dir=tmp_path,
            callbacks=[_StopAt(1_000_001, 1)],
        ).fit()
    starts = _Starts()
    again = Trainer("late_fusion", data, model_overrides=over, train_config=cfg, out_dir=tmp_path, callbacks=[starts])
    seed = again.fit(resume=True).seeds[0]
    assert starts.fits == [(1_000_001, 1)]  # member 0 is not retrained; member 1 continues after epoch 1
    full = runs["ens"].seeds[0]
    assert seed.valid == full.valid and seed.test == full.test
    assert _bytes(tmp_path / "seed1/best") == _bytes(runs["root"] / "ens/seed1/best")


def test_resume_with_another_size_or_plainly_names_the_record(runs: dict[str, Any], data: MSADataset) -> None:
    out = runs["root"] / "ens"
    for k in (3, 0):
        trainer = Trainer(
            "late_fusion", data, model_overrides={"hidden_dim": 8}, train_config=_cfg(ensemble=k), out_dir=out
        )
        with pytest.raises(DataError, match=r"ensemble\.json") as err:
            trainer.fit(resume=True)
        assert err.value.field == "size"


@pytest.mark.parametrize("value", ["-1", "2.5", "x"])
def test_a_bad_size_exits_2_with_nothing_written(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--model", "late_fusion", "--data", "synthetic", "--out", str(out), "-t", f"ensemble={value}"]
    argv += ["--epochs", "1", "--seeds", "1"]  # a broken check then trains briefly instead of for minutes
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'ensemble'" in err
    assert not out.exists()


def test_the_ensemble_model_is_not_trained_directly_and_not_tuned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--model", "ensemble", "--data", "synthetic", "--out", str(tmp_path / "r"), "--epochs", "1"]
    assert main([*argv, "--seeds", "1"]) == 2
    assert "-t ensemble=K" in capsys.readouterr().err and not (tmp_path / "r").exists()
    pytest.importorskip("optuna")
    from msakit.tuning import tune

    with pytest.raises(ConfigError, match="'ensemble'"):
        tune("late_fusion", _tiny(), out_dir=tmp_path / "t", trials=1, train_overrides={"ensemble": 3})
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_two_gloo_processes_assemble_the_ensemble_of_one(tmp_path: Path) -> None:
    """Each member fit runs on both ranks like any seed fit; rank 0 alone assembles and writes."""
    args = ["--model", "late_fusion", "--data", "synthetic", "--seeds", "1", "--epochs", "2", "--no-progress"]
    args += ["-m", "dropout=0", "-m", "unimodal_weight=0", "-t", "tensorboard=false", "-t", "ensemble=2"]
    over = {"dropout": 0.0, "unimodal_weight": 0.0}
    cfg = train_config_from({"seeds": (1,), "epochs": 2, "progress": False, "tensorboard": False, "ensemble": 2})
    one = Trainer(
        "late_fusion", load_dataset("synthetic"), model_overrides=over, train_config=cfg, out_dir=tmp_path / "one"
    )
    one.fit()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_CPP_LOG_LEVEL": "ERROR"}
    two = tmp_path / "two"
    done = subprocess.run(
        [sys.executable, "-m", "msakit", "train", "--nproc", "2", *args, "--out", str(two)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    a = json.loads((tmp_path / "one/results.json").read_text())["seeds"][0]
    b = json.loads((two / "results.json").read_text())["seeds"][0]
    assert [m["seed"] for m in b["members"]] == [1, 1_000_001]
    for split in ("valid", "test"):
        for key in a[split]:
            assert b[split][key] == pytest.approx(a[split][key], rel=1e-4, abs=1e-5), (split, key)
    assert json.loads((two / "seed1/ensemble.json").read_text())["valid"] == b["valid"]
