"""K-fold cross-validation over train + valid (`msakit.data.folds`) and `msakit tune --cv K --objective M`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from msakit.data import MSADataset, SyntheticConfig, make_synthetic
from msakit.data.folds import concat, cross_validation_folds, fold_assignment, take
from msakit.errors import ConfigError
from msakit.tuning import search_space, tune

SMALL = {"hidden_dim": 8}
SPACE = {**{k: None for k in search_space("late_fusion")}, "model.dropout": None}


def _tune(dataset: MSADataset, out: Path, trials: int, **kwargs: Any) -> Any:
    from msakit.config import SearchRange

    return tune(
        "late_fusion",
        dataset,
        out_dir=out,
        trials=trials,
        model_overrides=SMALL,
        train_overrides={"epochs": 2, "patience": 2},
        space_overrides={**SPACE, "train.lr": SearchRange(low=1e-3, high=1e-2, log=True)},
        sampler_seed=0,
        progress=False,
        **kwargs,
    )


def _row(dataset: MSADataset, sample_id: str) -> np.ndarray:
    for _, split in dataset:
        if sample_id in split.ids:
            i = split.ids.index(sample_id)
            arr = split.modalities["audio"]
            return np.asarray(arr.values[i, : arr.lengths[i]])
    raise KeyError(sample_id)


def test_folds_partition_train_and_valid_and_leave_test_out(tiny_dataset: MSADataset) -> None:
    folds = cross_validation_folds(tiny_dataset, 3)
    pool = set(tiny_dataset.split("train").ids) | set(tiny_dataset.split("valid").ids)
    test_ids = set(tiny_dataset.split("test").ids)
    held = [set(f.split("valid").ids) for f in folds]
    assert all(set(f.splits) == {"train", "valid"} for f in folds)  # no fold holds a test split
    assert set().union(*held) == pool and sum(map(len, held)) == len(pool)  # every pooled sample held out once
    assert [len(h) for h in held] == [12, 12, 12]
    for f, h in zip(folds, held, strict=True):
        assert set(f.split("train").ids) == pool - h and not (set(f.split("train").ids) | h) & test_ids
        for split_name in ("train", "valid"):  # rows travel with their ids: features and labels
            split = f.split(split_name)
            for k in (0, len(split) - 1):
                np.testing.assert_array_equal(_row(f, split.ids[k]), _row(tiny_dataset, split.ids[k]))
        labels = dict(zip(f.split("valid").ids, f.split("valid").labels, strict=True))
        original = dict(zip(tiny_dataset.split("valid").ids, tiny_dataset.split("valid").labels, strict=True))
        assert all(labels[i] == original[i] for i in labels.keys() & original.keys())


def test_folds_are_stratified_by_label_and_seeded() -> None:
    labels = np.random.default_rng(0).normal(size=23)
    folds = fold_assignment(labels, 4, seed=1)
    ranked = folds[np.argsort(labels)]
    for j in range(len(labels) // 4):  # each run of 4 neighbouring labels is dealt to the 4 folds
        assert sorted(ranked[4 * j : 4 * j + 4]) == [0, 1, 2, 3]
    assert np.bincount(folds).tolist() == [6, 6, 6, 5]
    ties = np.zeros(20)  # the seed breaks ties, so equal labels still spread over every fold
    assert not np.array_equal(fold_assignment(ties, 4, seed=0), fold_assignment(ties, 4, seed=1))
    np.testing.assert_array_equal(fold_assignment(ties, 4, seed=0), fold_assignment(ties, 4, seed=0))


def test_concat_pads_to_the_longest_split_and_take_reorders() -> None:
    short = make_synthetic(SyntheticConfig(sizes=(4, 2, 2), dims=(3, 2, 2), lengths=(3, 3, 3), seed=0))
    long = make_synthetic(SyntheticConfig(sizes=(3, 2, 2), dims=(3, 2, 2), lengths=(6, 6, 6), seed=1))
    a, b = short.split("train"), long.split("train")
    both = concat([a, b])
    assert both.modalities["text"].values.shape[:2] == (7, max(a.modalities["text"].values.shape[1], 6))
    np.testing.assert_array_equal(
        both.modalities["text"].lengths, np.r_[a.modalities["text"].lengths, b.modalities["text"].lengths]
    )
    width = a.modalities["text"].values.shape[1]
    assert not both.modalities["text"].values[:4, width:].any()  # padding is zeros
    picked = take(both, [5, 0])
    assert picked.ids == [both.ids[5], both.ids[0]]
    np.testing.assert_array_equal(picked.modalities["text"].values[1], both.modalities["text"].values[0])
    assert picked.labels.tolist() == [both.labels[5], both.labels[0]]


def test_cv_tune_scores_every_fold_and_never_tests(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    import optuna

    out = tmp_path / "run"
    result = _tune(tiny_dataset, out, trials=2, cv=3)
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    assert study.user_attrs["scored_on"] == "3-fold cross-validation over train + valid"
    for trial in study.trials:
        fold_mae = []
        for f in range(3):
            seeds = json.loads((out / "trials" / f"{trial.number:04d}" / f"fold-{f}" / "results.json").read_text())[
                "seeds"
            ]
            assert all(s["test"] == {} for s in seeds)  # no fold evaluates test
            fold_mae += [s["valid"]["MAE"] for s in seeds]
        assert trial.user_attrs["valid_per_seed"] == pytest.approx(fold_mae)
        assert trial.value == pytest.approx(np.mean(fold_mae))  # the objective: the mean over the folds
        assert len(trial.intermediate_values) == 3 * 2  # folds x epochs, one pruning step each
        assert trial.user_attrs["mean_valid"]["MAE"] == pytest.approx(trial.value)
    assert "3-fold cross-validation" in (out / "best.yaml").read_text()


def test_the_objective_may_differ_from_the_selection_metric(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    import optuna

    result = _tune(tiny_dataset, tmp_path / "run", trials=2, objective="Non0_acc_2")
    assert result.direction == "maximize" and result.select_key == "Non0_acc_2"
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    for trial in study.trials:
        seeds = json.loads((tmp_path / "run" / "trials" / f"{trial.number:04d}" / "results.json").read_text())["seeds"]
        assert trial.value == pytest.approx(seeds[0]["valid"]["Non0_acc_2"])
        assert trial.user_attrs["mean_valid"]["MAE"] == pytest.approx(seeds[0]["valid"]["MAE"])
        log = np.genfromtxt(
            tmp_path / "run" / "trials" / f"{trial.number:04d}" / "seed1" / "log.csv", delimiter=",", names=True
        )
        assert seeds[0]["best_epoch"] == int(log["epoch"][np.argmin(log["valid_MAE"])])  # early stopping: still MAE
    assert result.best_value == pytest.approx(max(t.value for t in study.trials))
    with pytest.raises(ConfigError, match="tunes scored_on 'the validation split'"):
        _tune(tiny_dataset, tmp_path / "run", trials=3, objective="Non0_acc_2", cv=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"cv": 1}, "cv: the number of folds must be an integer >= 2"), ({"objective": "bogus"}, "objective 'bogus'")],
)
def test_bad_cv_or_objective_is_refused_before_anything_is_written(
    tiny_dataset: MSADataset, tmp_path: Path, kwargs: dict, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        _tune(tiny_dataset, tmp_path / "run", trials=1, **kwargs)
    assert not (tmp_path / "run").exists()


def test_too_few_samples_for_the_folds_is_one_line() -> None:
    tiny = make_synthetic(SyntheticConfig(sizes=(3, 2, 2), dims=(3, 2, 2), lengths=(3, 3, 3), seed=0))
    with pytest.raises(ConfigError, match="3 folds need at least 6 pooled train \\+ valid samples, the pool has 5"):
        cross_validation_folds(tiny, 3)


def test_cli_cv_one_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from msakit.cli import main

    argv = ["tune", "--model", "late_fusion", "--data", "synthetic", "--out", str(tmp_path / "run"), "--cv", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cv" in err[0] and ">= 2" in err[0]
    assert not (tmp_path / "run").exists()


def test_the_progress_line_names_the_objective(
    tiny_dataset: MSADataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from msakit.config import SearchRange

    tune(
        "late_fusion",
        tiny_dataset,
        out_dir=tmp_path / "run",
        trials=1,
        model_overrides=SMALL,
        train_overrides={"epochs": 1, "patience": 1},
        space_overrides={**SPACE, "train.lr": SearchRange(low=1e-3, high=1e-2, log=True)},
        objective="Corr",
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "trial 0 Corr " in line and "best Corr " in line


def test_the_probe_under_the_same_folds_never_reads_test(tiny_dataset: MSADataset) -> None:
    import dataclasses

    from msakit.probe import cross_validated_probe, linear_probe

    result = cross_validated_probe(tiny_dataset, 3, alphas=(0.1, 10.0))
    fold_rows = []
    for fold in cross_validation_folds(tiny_dataset, 3):
        held = fold.split("valid")
        scored = dataclasses.replace(fold, splits={"train": fold.split("train"), "valid": held, "test": held})
        fold_rows.append({r.name: r.valid for r in linear_probe(scored, alphas=(0.1, 10.0)).rows})
    for row in result.rows:  # the mean over folds of each fold's held-out score
        assert row.test == {}
        assert row.valid["MAE"] == pytest.approx(np.mean([f[row.name]["MAE"] for f in fold_rows]))
    test = tiny_dataset.split("test")
    scrambled = dataclasses.replace(test, labels=test.labels[::-1].copy())
    other = dataclasses.replace(tiny_dataset, splits={**tiny_dataset.splits, "test": scrambled})
    again = cross_validated_probe(other, 3, alphas=(0.1, 10.0))
    assert [r.valid for r in again.rows] == [r.valid for r in result.rows]  # the test split changes nothing


def test_cli_probe_cv_prints_fold_means(capsys: pytest.CaptureFixture[str]) -> None:
    from msakit.cli import main

    assert main(["probe", "--data", "synthetic:noisy", "--cv", "3", "--modalities", "text"]) == 0
    out = capsys.readouterr().out
    assert "3-fold cross-validation over train + valid" in out and "probe: text (" in out
