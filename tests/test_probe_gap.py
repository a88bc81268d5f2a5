"""benchmarks/probe_gap.py: the paired bootstrap of a model's gap to the linear probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark_module import load_benchmark


def _data(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.round(rng.normal(0, 1.5, n), 1)
    return y, y + rng.normal(0, 1.0, n)


def test_metrics_match_msakit_metrics() -> None:
    from msakit.metrics import compute_metrics

    bench = load_benchmark("probe_gap")
    y, p = _data()
    ref = compute_metrics("mosi", p, y)
    for key, (fn, _) in bench.METRICS.items():
        assert abs(float(fn(p, y)) - ref[key]) < 1e-9, key


def test_a_copy_of_the_probe_is_level_and_a_better_model_is_ahead() -> None:
    bench = load_benchmark("probe_gap")
    y, probe = _data()
    same = bench.paired_gap(np.stack([probe, probe]), probe, y, resamples=300, seed=0)
    for key, gap in same.items():
        assert gap["observed"] == 0 and gap["low"] == 0 and gap["high"] == 0, key
    rng = np.random.default_rng(1)
    better = y + rng.normal(0, 0.5, len(y))  # half the probe's noise
    gap = bench.paired_gap(np.stack([better]), probe, y, resamples=300, seed=0)
    assert gap["Corr"]["low"] > 0 and gap["Corr"]["model_at_least_probe"] == 1.0
    assert gap["MAE"]["high"] < 0 and gap["MAE"]["model_at_least_probe"] == 1.0
    # paired: the same clips for both, so the interval is far narrower than two independent resamples would give
    worse = bench.paired_gap(np.stack([probe - 0.01 * (y - probe)]), probe, y, resamples=300, seed=0)
    assert worse["Corr"]["high"] < 0.01


def test_the_all_row_refit_reproduces_the_probe_rows_test_scores() -> None:
    """--probe-row all: the concatenation row of `msakit probe` (ICT-MMMO's floor), refitted exactly."""
    from msakit.data import load_dataset

    bench = load_benchmark("probe_gap")
    data = load_dataset("synthetic")
    y = np.asarray(data.split("test").labels, dtype=np.float64).reshape(-1)
    pred, info = bench.probe_test_predictions(data, "all")
    assert info["row"] == "all"
    for key, (fn, _) in bench.METRICS.items():
        assert abs(float(fn(pred, y)) - info["test"][key]) < 1e-6, key
    text, _ = bench.probe_test_predictions(data, "text")
    assert not np.allclose(pred, text)  # a different row, not the text one under another name


def test_a_member_path_reads_member_j_of_every_seed_of_an_ensemble_run(tmp_path: Path) -> None:
    """RUN/memberJ (not a folder) names member J of each seed (member 0 = the single run): its
    checkpoints in seed order, and the validation means from each member's own record."""
    import json

    import pytest

    bench = load_benchmark("probe_gap")
    run = tmp_path / "run"
    for seed, mae in ((10, 0.9), (2, 0.7), (1, 0.5)):
        for sub, value in (("best", 9.0), ("member0/best", mae), ("member1/best", 8.0)):
            folder = run / f"seed{seed}" / sub
            folder.mkdir(parents=True)
            meta = {"model": "late_fusion", "model_config": {}, "valid": {"MAE": value, "Corr": value / 2}}
            (folder / "config.json").write_text(json.dumps(meta))
    (run / "results.json").write_text(json.dumps({"seeds": [{"valid": {"MAE": 9.0, "Corr": 4.5}}]}))
    found = bench.seed_checkpoints(run / "member0")
    assert found == [run / f"seed{s}" / "member0" / "best" for s in (1, 2, 10)]
    assert bench.seed_checkpoints(run) == [run / f"seed{s}" / "best" for s in (1, 2, 10)]
    assert bench.valid_means(run / "member0") == {"MAE": pytest.approx(0.7), "Corr": pytest.approx(0.35)}
    assert bench.valid_means(run) == {"MAE": 9.0, "Corr": 4.5}


def test_sides_split_non0_accuracy_by_the_labels_side_and_auc_is_threshold_free() -> None:
    """--sides: each side's accuracy, their mean, and the sign AUC (checked against an all-pairs count)."""
    bench = load_benchmark("probe_gap")
    y = np.array([1.0, 2.0, 0.5, -1.0, -2.0, 0.0])
    p = np.array([0.5, -0.2, 1.0, -0.5, 0.3, 9.0])  # positives 2 of 3 right, negatives 1 of 2 right
    assert bench._side_acc(p, y, True) == 2 / 3 and bench._side_acc(p, y, False) == 1 / 2
    assert bench._balanced_non0(p, y) == (2 / 3 + 1 / 2) / 2
    at_zero = np.zeros(2), np.array([1.0, -1.0])  # MMSA's threshold: a prediction of exactly 0 is negative
    assert bench._side_acc(*at_zero, True) == 0 and bench._side_acc(*at_zero, False) == 1
    pos, neg = p[y > 0], p[y < 0]
    pairs = [(a > b) + 0.5 * (a == b) for a in pos for b in neg]
    assert abs(float(bench._sign_auc(p, y)) - float(np.mean(pairs))) < 1e-12
    # a constant shift moves the operating point (Non0 Acc-2, each side) but not the separation (AUC)
    y2, p2 = _data()
    shifted = p2 + 0.8
    assert bench._non0_acc(shifted, y2) != bench._non0_acc(p2, y2)
    assert abs(float(bench._sign_auc(shifted, y2)) - float(bench._sign_auc(p2, y2))) < 1e-12
    # more positive clips reward predicting positive in Non0 Acc-2, not in the balanced score
    lean = np.where(y2 != 0, np.abs(p2) + 0.1, p2)  # everything positive: every negative clip wrong
    twice = np.concatenate([y2, y2[y2 > 0]]), np.concatenate([lean, lean[y2 > 0]])
    assert bench._non0_acc(twice[1], twice[0]) > bench._non0_acc(lean, y2)
    assert abs(float(bench._balanced_non0(twice[1], twice[0]) - bench._balanced_non0(lean, y2))) < 1e-12
    scores = bench.side_scores(np.stack([p, p]), y)
    assert scores["predicted_positive"] == 3 / 5 and scores["positive_acc"] == 2 / 3
    # vectorised along the leading axes, as the paired bootstrap calls it
    many = bench._sign_auc(np.stack([p, p[::-1]]), np.stack([y, y]))
    assert many.shape == (2,) and abs(many[0] - bench._sign_auc(p, y)) < 1e-12
    assert np.isnan(bench._sign_auc(np.array([0.3, 0.1]), np.array([1.0, 2.0])))  # no negative clip: no AUC
