"""Tests for msakit.metrics: hand-computed golden values, an independent MMSA-style reference, errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from msakit.metrics import (
    METRIC_SETS,
    MetricAccumulator,
    classification_metrics,
    compute_metrics,
    regression_metrics_mosi,
    regression_metrics_sims,
)

# Every test fails on any warning: degenerate inputs must stay silent.
pytestmark = pytest.mark.filterwarnings("error")

MOSI_KEYS = [
    "Has0_acc_2",
    "Has0_F1_score",
    "Non0_acc_2",
    "Non0_F1_score",
    "Mult_acc_5",
    "Mult_acc_7",
    "MAE",
    "Corr",
]
SIMS_KEYS = ["Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"]


def _pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


# ---------------------------------------------------------------- golden values, "mosi"


def test_mosi_zero_labels_split_has0_and_non0() -> None:
    truth = [0.0, 0.0, 1.0, -1.0]
    pred = [-0.5, 0.5, 1.0, 1.0]
    m = regression_metrics_mosi(np.array(pred), np.array(truth))
    assert list(m) == MOSI_KEYS
    assert all(type(v) is float for v in m.values())
    # Has0: truth>=0 [T,T,T,F], pred>=0 [F,T,T,T]; 2 of 4 agree.
    assert m["Has0_acc_2"] == 0.5
    # class T (support 3): TP=2 FP=1 FN=1 -> F1 2/3; class F (support 1): F1 0 -> 3/4 * 2/3.
    assert m["Has0_F1_score"] == pytest.approx(0.5)
    # Non0 keeps samples 2, 3: truth>0 [T,F], pred>0 [T,T].
    assert m["Non0_acc_2"] == 0.5
    # class T (support 1): P=1/2 R=1 -> 2/3; class F (support 1): 0 -> 1/2 * 2/3.
    assert m["Non0_F1_score"] == pytest.approx(1 / 3)
    # np.round(-0.5) == np.round(0.5) == 0 match the zero labels; 1 == 1; 1 != -1.
    assert m["Mult_acc_7"] == 0.75
    assert m["Mult_acc_5"] == 0.75
    assert m["MAE"] == pytest.approx((0.5 + 0.5 + 0.0 + 2.0) / 4)
    assert m["Corr"] == pytest.approx(0.0, abs=1e-12)


def test_mosi_rounds_half_to_even() -> None:
    truth = [0.5, 1.5, -2.5, 2.5, -0.5]
    pred = [0.0, 2.0, -2.0, 2.0, 0.0]  # half-to-even of truth; half-away-from-zero would give 1/5
    m = regression_metrics_mosi(np.array(pred), np.array(truth))
    assert m["Mult_acc_7"] == 1.0
    # Acc-5 clips truth to [0.5, 1.5, -2, 2, -0.5] first: same rounded classes.
    assert m["Mult_acc_5"] == 1.0


def test_mosi_clips_for_accuracy_but_not_for_mae_or_corr() -> None:
    truth = [4.0, -5.0, 3.0, 3.0, -2.6]
    pred = [3.0, -3.0, 2.6, 2.0, -2.2]
    m = regression_metrics_mosi(np.array(pred, dtype=np.float32), np.array(truth, dtype=np.float32))
    # clip to +-3 and round: truth [3,-3,3,3,-3], pred [3,-3,3,2,-2] -> 3 of 5.
    assert m["Mult_acc_7"] == pytest.approx(3 / 5)
    # clip to +-2 and round: everything becomes [2,-2,2,2,-2] on both sides.
    assert m["Mult_acc_5"] == 1.0
    assert m["MAE"] == pytest.approx((1.0 + 2.0 + 0.4 + 1.0 + 0.4) / 5, rel=1e-6)
    assert m["Corr"] == pytest.approx(_pearson(pred, truth), rel=1e-6)


def test_mosi_all_one_class_and_constant_prediction() -> None:
    m = regression_metrics_mosi(np.full(3, -1.0), np.array([1.0, 2.0, 3.0]))
    assert m["Has0_acc_2"] == 0.0 and m["Has0_F1_score"] == 0.0  # sklearn's zero_division value
    assert m["Non0_acc_2"] == 0.0 and m["Non0_F1_score"] == 0.0
    assert math.isnan(m["Corr"])  # constant prediction, as np.corrcoef gives
    m = regression_metrics_mosi(np.array([0.5, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    assert m["Has0_F1_score"] == 1.0 and m["Non0_F1_score"] == 1.0


def test_mosi_all_labels_zero_makes_non0_nan() -> None:
    m = regression_metrics_mosi(np.array([0.3, -0.2]), np.zeros(2))
    assert math.isnan(m["Non0_acc_2"]) and math.isnan(m["Non0_F1_score"])
    assert m["Has0_acc_2"] == 0.5
    assert math.isnan(m["Corr"])
    one = regression_metrics_mosi([0.3], [0.0])  # a single sample: Corr undefined, no warning
    assert math.isnan(one["Corr"]) and one["MAE"] == pytest.approx(0.3)


# ---------------------------------------------------------------- golden values, "sims"

SIMS_EDGE_TRUTH = [-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0]
# (2, 3, 5)-class bins of the truths, (low, high]: -1->(0,0,0) -0.7->(0,0,0) -0.1->(0,0,1)
# 0->(0,1,2) 0.1->(1,1,2) 0.7->(1,2,3) 1->(1,2,4); each pred lies inside the same three bins.
SIMS_INTERIOR_PRED = [-0.9, -0.8, -0.4, -0.05, 0.05, 0.4, 0.9]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("swap", [False, True])
def test_sims_bin_edges_are_left_open(dtype: Any, swap: bool) -> None:
    truth: Any
    pred: Any
    if isinstance(dtype, torch.dtype):
        truth, pred = torch.tensor(SIMS_EDGE_TRUTH, dtype=dtype), torch.tensor(SIMS_INTERIOR_PRED)
    else:
        truth, pred = np.array(SIMS_EDGE_TRUTH, dtype=dtype), np.array(SIMS_INTERIOR_PRED)
    if swap:
        truth, pred = pred, truth
    m = regression_metrics_sims(pred, truth)
    assert list(m) == SIMS_KEYS
    assert m["Mult_acc_2"] == m["Mult_acc_3"] == m["Mult_acc_5"] == m["F1_score"] == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sims_value_just_above_an_edge_changes_bin(dtype: type[np.floating[Any]]) -> None:
    truth = np.array(SIMS_EDGE_TRUTH, dtype=dtype)
    pred = truth + dtype(0.001)  # 1.001 is clipped back to 1.0
    m = regression_metrics_sims(pred, truth)
    assert m["Mult_acc_2"] == pytest.approx(6 / 7)  # only 0.0 -> (0, 1] moves
    assert m["Mult_acc_3"] == pytest.approx(5 / 7)  # -0.1 and 0.1 move
    assert m["Mult_acc_5"] == pytest.approx(3 / 7)  # -0.7, -0.1, 0.1 and 0.7 move


def test_sims_clips_before_mae_and_bins() -> None:
    m = regression_metrics_sims(np.array([0.5, -3.0]), np.array([1.5, -1.0]))
    assert m["MAE"] == pytest.approx(0.25)  # |0.5 - 1| + |-1 - -1| after clipping
    assert m["Mult_acc_5"] == 0.5  # 0.5 in (0.1, 0.7] vs 1.0 in (0.7, 1]; -1 vs -1
    m = regression_metrics_sims(np.array([0.2, 0.5, -0.3, 0.0]), np.array([-0.5, 0.5, 0.5, 0.0]))
    # 2-class: truth [0,1,1,0], pred [1,1,0,0]; each class P = R = 1/2.
    assert m["Mult_acc_2"] == 0.5 and m["F1_score"] == pytest.approx(0.5)


# ---------------------------------------------------------------- golden values, classification


def test_classification_logits_and_indices() -> None:
    logits = np.array([[2, 1, 0], [0, 3, 1], [0, 0, 5], [1, 0, 0]], dtype=np.float32)
    truth = [0, 1, 1, 2]  # argmax: [0, 1, 2, 0]
    # class 0: P=1/2 R=1 F1=2/3 (n=1); class 1: P=1 R=1/2 F1=2/3 (n=2); class 2: 0 (n=1)
    expected = {"Acc": 0.5, "F1_score": pytest.approx((2 / 3 + 2 * 2 / 3) / 4)}
    assert classification_metrics(logits, np.array(truth)) == expected
    assert classification_metrics(torch.tensor(logits), torch.tensor(truth)) == expected
    assert classification_metrics(np.array([0, 1, 2, 0]), truth) == expected
    assert compute_metrics("classification", np.array([[0.0], [1.0]]), [0, 1])["Acc"] == 1.0


# ---------------------------------------------------------------- independent MMSA reference


def _ref_mosi(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    def acc(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sum(np.round(a) == np.round(b)) / float(len(b)))

    nz = np.array([i for i, e in enumerate(t) if e != 0])
    return {
        "Has0_acc_2": float(np.mean((p >= 0) == (t >= 0))),
        "Has0_F1_score": f1_score(t >= 0, p >= 0, average="weighted"),
        "Non0_acc_2": float(np.mean((p[nz] > 0) == (t[nz] > 0))),
        "Non0_F1_score": f1_score(t[nz] > 0, p[nz] > 0, average="weighted"),
        "Mult_acc_5": acc(np.clip(p, -2.0, 2.0), np.clip(t, -2.0, 2.0)),
        "Mult_acc_7": acc(np.clip(p, -3.0, 3.0), np.clip(t, -3.0, 3.0)),
        "MAE": float(np.mean(np.absolute(p - t))),
        "Corr": float(np.corrcoef(p, t)[0][1]),
    }


def _ref_sims(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    p, t = np.clip(p, -1.0, 1.0), np.clip(t, -1.0, 1.0)

    def binned(x: np.ndarray, ms: list[float]) -> np.ndarray:
        out = x.copy()
        for i in range(len(ms) - 1):
            out[np.logical_and(x > ms[i], x <= ms[i + 1])] = i
        return out

    res = {}
    for n, ms in [(2, [-1.01, 0.0, 1.01]), (3, [-1.01, -0.1, 0.1, 1.01]), (5, [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01])]:
        res[f"Mult_acc_{n}"] = float(np.mean(binned(p, ms) == binned(t, ms)))
    ms2 = [-1.01, 0.0, 1.01]
    res["F1_score"] = f1_score(binned(t, ms2), binned(p, ms2), average="weighted")
    res["MAE"] = float(np.mean(np.absolute(p - t)))
    res["Corr"] = float(np.corrcoef(p, t)[0][1])
    return res


def _check_against(got: dict[str, float], ref: dict[str, float]) -> None:
    assert list(got) == list(ref)
    for key, value in ref.items():
        tol = 1e-5 if key in ("MAE", "Corr") else 1e-12  # reference sums in float32
        assert got[key] == pytest.approx(value, rel=tol, abs=tol), key


def _batches(n: int, rng: np.random.Generator) -> list[slice]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=4, replace=False))
    return [slice(a, b) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mosi_matches_reference_over_batches(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 503
    truth = (rng.integers(-10, 11, n) / 3).astype(np.float32)  # many exact 0s, +-1/3 steps
    truth[:40] = rng.choice([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.0], 40)  # exact halves
    pred = (rng.normal(0, 1.8, n)).astype(np.float32)
    pred[:20] = rng.choice([-3.5, -0.5, 0.0, 0.5, 2.5, 4.0], 20)
    acc = MetricAccumulator("mosi")
    for s in _batches(n, rng):
        acc.update(torch.from_numpy(pred[s]).unsqueeze(1), torch.from_numpy(truth[s]))
    assert len(acc) == n
    _check_against(acc.compute(), _ref_mosi(pred, truth))
    _check_against(compute_metrics("mosi", pred, truth), _ref_mosi(pred, truth))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sims_matches_reference_over_batches(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 401
    truth = (rng.integers(-10, 11, n) / 10).astype(np.float32)  # hits every bin edge exactly
    pred = rng.uniform(-1.3, 1.3, n).astype(np.float32)
    pred[:30] = rng.choice([-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0], 30)
    acc = MetricAccumulator("sims")
    for s in _batches(n, rng):
        acc.update(pred[s], truth[s])
    _check_against(acc.compute(), _ref_sims(pred, truth))


def test_classification_accumulator_and_reset() -> None:
    rng = np.random.default_rng(3)
    logits, truth = rng.normal(size=(200, 3)), rng.integers(0, 3, 200)
    acc = MetricAccumulator("classification")
    for s in _batches(200, rng):
        acc.update(torch.from_numpy(logits[s]), torch.from_numpy(truth[s]))
    labels = logits.argmax(axis=1)
    got = acc.compute()
    assert got["Acc"] == pytest.approx(float(np.mean(labels == truth)))
    assert got["F1_score"] == pytest.approx(f1_score(truth, labels, average="weighted"))
    acc.reset()
    assert len(acc) == 0
    with pytest.raises(ValueError, match="before any update"):
        acc.compute()


def test_accumulator_copies_inputs() -> None:
    pred, truth = torch.tensor([1.0, -1.0]), torch.tensor([1.0, -1.0])
    acc = MetricAccumulator("mosi")
    acc.update(pred, truth)
    pred.mul_(-1)
    assert acc.compute()["Has0_acc_2"] == 1.0


def test_metric_sets_describe_every_key() -> None:
    keys = {"mosi": MOSI_KEYS, "sims": SIMS_KEYS, "classification": ["Acc", "F1_score"]}
    assert set(METRIC_SETS) == set(keys)
    for name, ms in METRIC_SETS.items():
        assert ms.name == name and list(ms.higher_is_better) == keys[name]
        assert ms.select_key in ms.higher_is_better
        assert all(ms.higher_is_better[k] == (k != "MAE") for k in keys[name])
    assert METRIC_SETS["mosi"].select_key == "MAE"
    assert METRIC_SETS["classification"].select_key == "Acc"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [regression_metrics_mosi, regression_metrics_sims])
def test_regression_input_errors(fn: object) -> None:
    assert callable(fn)
    with pytest.raises(ValueError, match="pred contains NaN"):
        fn(np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="truth contains NaN or Inf"):
        fn(np.zeros(2), torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        fn(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"pred: expected shape \(N,\) or \(N, 1\)"):
        fn(np.zeros((2, 2)), np.zeros(2))


def test_classification_and_set_errors() -> None:
    with pytest.raises(ValueError, match="truth: class indices must be integers"):
        classification_metrics(np.array([0, 1]), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="pred contains NaN"):
        classification_metrics(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match=r"unknown metric set 'mosei'.*'classification', 'mosi', 'sims'"):
        compute_metrics("mosei", [0.0], [0.0])
    with pytest.raises(ValueError, match="unknown metric set"):
        MetricAccumulator("MOSI")
    with pytest.raises(ValueError, match="pred contains NaN"):
        MetricAccumulator("sims").update([float("nan")], [0.0])
