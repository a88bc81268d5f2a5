"""Evaluation metrics, defined exactly as thuiar/MMSA's ``MetricsTop`` (``MMSA/utils/metricsTop.py``).

Three metric sets; the numbers compare one-to-one with tables produced by MMSA.

``"mosi"`` (CMU-MOSI / CMU-MOSEI regression, labels in [-3, 3]; ``p`` = prediction, ``y`` = label):

* ``Has0_acc_2`` / ``Has0_F1_score``: ``y >= 0`` vs ``p >= 0`` over all samples.
* ``Non0_acc_2`` / ``Non0_F1_score``: ``y > 0`` vs ``p > 0`` over the samples with ``y != 0``.
* ``Mult_acc_7`` / ``Mult_acc_5``: ``np.round(clip(p)) == np.round(clip(y))`` with both clipped to
  [-3, 3] / [-2, 2]; ``np.round`` rounds half to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2).
* ``MAE`` and ``Corr`` (Pearson, ``np.corrcoef``) on the *unclipped* values.

``"sims"`` (CH-SIMS regression, labels in [-1, 1]): both sides are first clipped to [-1, 1], then
binned into left-open intervals ``(low, high]`` (the lowest bin also holds -1.0):

* ``Mult_acc_2``: [-1, 0], (0, 1]
* ``Mult_acc_3``: [-1, -0.1], (-0.1, 0.1], (0.1, 1]
* ``Mult_acc_5``: [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1]
* ``F1_score``: weighted F1 on the 2-class bins; ``MAE`` and ``Corr`` on the *clipped* values.

``"classification"`` (e.g. MELD or YouTube, 3 classes): predictions are logits/probabilities of shape
(N, C) (arg-maxed) or class indices (N,); ``Acc`` and weighted ``F1_score``.

Every F1 is ``sklearn.metrics.f1_score(truth, pred, average="weighted")``.

Differences from MMSA, all deliberate:

* Results are unrounded Python floats; MMSA rounds the ``mosi`` set (not ``sims``) to 4 decimals.
  Rounding is the reporter's job.
* Thresholds, clipping and rounding run in the inputs' own float dtype, as in MMSA (so a float32
  label 0.1 falls in the bin (-0.1, 0.1], as it does there), but ``MAE`` and ``Corr`` accumulate in
  float64, so they may differ from MMSA's float32 numbers around the 7th significant digit.
* Degenerate inputs never crash nor warn: ``Corr`` is ``nan`` when either side is constant (or
  N < 2), as ``np.corrcoef`` yields; ``Non0_*`` are ``nan`` when every label is 0 (MMSA raises);
  an F1 whose precision or recall is undefined takes sklearn's default value (0) silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "METRIC_SETS",
    "MetricAccumulator",
    "MetricSet",
    "classification_metrics",
    "compute_metrics",
    "get_metric_set",
    "regression_metrics_mosi",
    "regression_metrics_sims",
]

_SIMS_EDGES = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Convert a torch tensor, numpy array or sequence to a finite float (or int) numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        t = x.detach().cpu()
        try:
            arr = np.asarray(t.numpy())
        except TypeError:  # bfloat16 and friends have no numpy equivalent
            arr = np.asarray(t.float().numpy())
    else:
        arr = np.asarray(x)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise ValueError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected an array of shape (N,), got a scalar")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def _as_1d(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected shape (N,) or (N, 1), got {arr.shape}")
    return arr


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> None:
    if len(pred) != len(truth):
        raise ValueError(f"pred and truth differ in length: {len(pred)} vs {len(truth)}")
    if len(pred) == 0:
        raise ValueError("pred and truth are empty")


def _pair_1d(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _as_1d(_to_numpy(pred, "pred"), "pred")
    t = _as_1d(_to_numpy(truth, "truth"), "truth")
    _check_pair(p, t)
    return p, t


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(pred == truth))


def import_backend() -> None:
    """Import scikit-learn's F1 now; the metrics import it on first use (it costs seconds), and a
    trainer calls this before its first epoch so the import is not timed as training."""
    import sklearn.metrics  # noqa: F401


def _weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.exceptions import UndefinedMetricWarning  # imported here: sklearn costs seconds to import
    from sklearn.metrics import f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(f1_score(truth, pred, average="weighted"))


def _mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred.astype(np.float64) - truth.astype(np.float64))))


def _corr(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(np.float64), truth.astype(np.float64)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return float("nan")
    with np.errstate(all="ignore"):
        return float(np.corrcoef(p, t)[0, 1])


def _clipped_round_acc(pred: np.ndarray, truth: np.ndarray, bound: float) -> float:
    p = np.clip(pred, pred.dtype.type(-bound), pred.dtype.type(bound))
    t = np.clip(truth, truth.dtype.type(-bound), truth.dtype.type(bound))
    return _accuracy(np.round(p), np.round(t))


def _sims_bins(x: np.ndarray, n_classes: int) -> np.ndarray:
    """Class index of each value in [-1, 1]: the number of inner edges strictly below it."""
    edges = np.asarray(_SIMS_EDGES[n_classes], dtype=x.dtype)  # compare in x's own precision
    return np.searchsorted(edges, x, side="left")


def regression_metrics_mosi(pred: Any, truth: Any) -> dict[str, float]:
    """MOSI/MOSEI regression metrics (MMSA ``__eval_mosei_regression``); see the module docstring."""
    p, t = _pair_1d(pred, truth)
    has0_p, has0_t = p >= 0, t >= 0
    nonzero = t != 0
    if nonzero.any():
        non0_p, non0_t = p[nonzero] > 0, t[nonzero] > 0
        non0_acc, non0_f1 = _accuracy(non0_p, non0_t), _weighted_f1(non0_t, non0_p)
    else:
        non0_acc = non0_f1 = float("nan")
    return {
        "Has0_acc_2": _accuracy(has0_p, has0_t),
        "Has0_F1_score": _weighted_f1(has0_t, has0_p),
        "Non0_acc_2": non0_acc,
        "Non0_F1_score": non0_f1,
        "Mult_acc_5": _clipped_round_acc(p, t, 2.0),
        "Mult_acc_7": _clipped_round_acc(p, t, 3.0),
        "MAE": _mae(p, t),
        "Corr": _corr(p, t),
    }


def regression_metrics_sims(pred: Any, truth: Any) -> dict[str, float]:
    """CH-SIMS regression metrics (MMSA ``__eval_sims_regression``); see the module docstring."""
    p, t = _pair_1d(pred, truth)
    p = np.clip(p, p.dtype.type(-1.0), p.dtype.type(1.0))
    t = np.clip(t, t.dtype.type(-1.0), t.dtype.type(1.0))
    bins = {k: (_sims_bins(p, k), _sims_bins(t, k)) for k in _SIMS_EDGES}
    return {
        "Mult_acc_2": _accuracy(*bins[2]),
        "Mult_acc_3": _accuracy(*bins[3]),
        "Mult_acc_5": _accuracy(*bins[5]),
        "F1_score": _weighted_f1(bins[2][1], bins[2][0]),
        "MAE": _mae(p, t),
        "Corr": _corr(p, t),
    }


def _class_indices(arr: np.ndarray, name: str) -> np.ndarray:
    arr = _as_1d(arr, name)
    if not np.all(arr == np.round(arr)):
        raise ValueError(f"{name}: class indices must be integers")
    return arr.astype(np.int64)


def classification_metrics(pred: Any, truth: Any) -> dict[str, float]:
    """``Acc`` and weighted ``F1_score``; ``pred`` is (N, C) scores (arg-maxed) or (N,) class indices."""
    p = _to_numpy(pred, "pred")
    t = _class_indices(_to_numpy(truth, "truth"), "truth")
    if p.ndim == 2 and p.shape[1] > 1:
        p = p.argmax(axis=1) if len(p) else np.zeros(0, dtype=np.int64)
    else:
        p = _class_indices(p, "pred")
    _check_pair(p, t)
    return {"Acc": _accuracy(p, t), "F1_score": _weighted_f1(t, p)}


@dataclass(frozen=True)
class MetricSet:
    """A named metric function with its default model-selection key and each key's direction."""

    name: str
    fn: Callable[[Any, Any], dict[str, float]]
    select_key: str
    higher_is_better: Mapping[str, bool]


def _make_set(name: str, fn: Callable[[Any, Any], dict[str, float]], select_key: str, keys: str) -> MetricSet:
    directions = MappingProxyType({k: k != "MAE" for k in keys.split()})
    return MetricSet(name=name, fn=fn, select_key=select_key, higher_is_better=directions)


METRIC_SETS: Mapping[str, MetricSet] = MappingProxyType(
    {
        "mosi": _make_set(
            "mosi",
            regression_metrics_mosi,
            "MAE",
            "Has0_acc_2 Has0_F1_score Non0_acc_2 Non0_F1_score Mult_acc_5 Mult_acc_7 MAE Corr",
        ),
        "sims": _make_set("sims", regression_metrics_sims, "MAE", "Mult_acc_2 Mult_acc_3 Mult_acc_5 F1_score MAE Corr"),
        "classification": _make_set("classification", classification_metrics, "Acc", "Acc F1_score"),
    }
)


def get_metric_set(metric_set: str) -> MetricSet:
    """Look up a metric set by name; raise ``ValueError`` naming the allowed sets if unknown."""
    try:
        return METRIC_SETS[metric_set]
    except KeyError:
        allowed = ", ".join(repr(k) for k in sorted(METRIC_SETS))
        raise ValueError(f"unknown metric set {metric_set!r}; allowed: {allowed}") from None


def compute_metrics(metric_set: str, pred: Any, truth: Any) -> dict[str, float]:
    """Compute every metric of ``metric_set`` (``"mosi"``, ``"sims"`` or ``"classification"``)."""
    return get_metric_set(metric_set).fn(pred, truth)


class MetricAccumulator:
    """Collect batches with :meth:`update`; :meth:`compute` scores them all as one concatenated set."""

    def __init__(self, metric_set: str) -> None:
        self.metric_set = get_metric_set(metric_set)
        self._preds: list[np.ndarray] = []
        self._truths: list[np.ndarray] = []

    def update(self, pred: Any, truth: Any) -> None:
        """Add one batch (copied, so later in-place changes to the inputs do not leak in)."""
        p, t = _to_numpy(pred, "pred"), _to_numpy(truth, "truth")
        if len(p) != len(t):
            raise ValueError(f"pred and truth differ in length: {len(p)} vs {len(t)}")
        # (B, 1) -> (B,) so such batches concatenate with (B,) ones; (B, C) scores stay 2-D.
        self._preds.append(np.array(p[:, 0] if p.ndim == 2 and p.shape[1] == 1 else p))
        self._truths.append(np.array(t[:, 0] if t.ndim == 2 and t.shape[1] == 1 else t))

    def compute(self) -> dict[str, float]:
        """Metrics over every sample seen since construction or the last :meth:`reset`."""
        if not self._preds:
            raise ValueError("MetricAccumulator.compute() called before any update()")
        return self.metric_set.fn(np.concatenate(self._preds), np.concatenate(self._truths))

    def reset(self) -> None:
        """Forget every batch."""
        self._preds.clear()
        self._truths.clear()

    def __len__(self) -> int:
        return sum(len(p) for p in self._preds)
