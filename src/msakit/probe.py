"""The linear-probe floor: ridge / logistic regression on pooled features.

A model that cannot beat a linear map of its own mean-pooled inputs has not learned
anything the features did not already say, so every results table shows this row
beside the models (`msakit probe --data D`). For each modality alone and for all of
them together:

1. pool each sample's valid steps: ``mean``, or ``mean+std`` (mean and standard
   deviation concatenated); a sample without the modality gets zeros plus a 0/1
   "present" indicator column, so absence is visible to the probe instead of being a
   fake value;
2. standardise the pooled columns with statistics of the training split;
3. fit ridge regression (regression datasets; sklearn ``Ridge``) or multinomial
   logistic regression (classification; ``LogisticRegression``, penalty ``C = 1/α``)
   for every α on a log grid and every pooling; keep the one whose validation score
   (the metric set's selection key: MAE for regression, accuracy for classification)
   is best; the test split is scored once, with that choice.

Metrics are msakit's (MMSA's definitions), so the rows compare directly with `train`.
A modality absent from every training sample is left out, with a note (no probe can
learn it, and neither can a model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from msakit.data.core import MSADataset, SplitData
from msakit.errors import ConfigError
from msakit.metrics import compute_metrics, get_metric_set

POOLINGS = ("mean", "mean+std")
ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 4, 13))


@dataclass
class ProbeRow:
    """One probe: which modalities, the choice made on validation, and its scores."""

    name: str  # a modality, or "all"
    modalities: tuple[str, ...]
    pooling: str
    alpha: float
    valid: dict[str, float]
    test: dict[str, float]


@dataclass
class ProbeResult:
    dataset: str
    metric_set: str
    select_key: str
    rows: list[ProbeRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "metric_set": self.metric_set,
            "select_key": self.select_key,
            "rows": [asdict(r) for r in self.rows],
            "notes": list(self.notes),
        }

    def table(self, *, markdown: bool = False) -> str:
        from msakit.report import metric_table

        rows = [
            (f"probe: {r.name} ({r.pooling}, α={r.alpha:.3g})", {k: (v, None) for k, v in r.test.items()})
            for r in self.rows
        ]
        return metric_table(rows, self.metric_set, markdown=markdown)

    def best(self) -> ProbeRow:
        """The row chosen on validation among all rows (what a results table shows as "the probe")."""
        higher = get_metric_set(self.metric_set).higher_is_better[self.select_key]
        return (max if higher else min)(self.rows, key=lambda r: r.valid[self.select_key])


def pooled_features(split: SplitData, modality: str, pooling: str, chunk: int = 1024) -> np.ndarray:
    """(N, D) mean or (N, 2D) mean+std over valid steps, plus a presence column: (N, D' + 1)."""
    if pooling not in POOLINGS:
        raise ConfigError(f"probe pooling must be one of {POOLINGS}, got {pooling!r}")
    arr = split.modalities[modality]
    n, _, dim = arr.values.shape
    out = np.zeros((n, dim * (2 if pooling == "mean+std" else 1) + 1), dtype=np.float64)
    lengths = np.where(arr.present, arr.lengths, 0)
    for start in range(0, n, chunk):
        block = np.asarray(arr.values[start : start + chunk], dtype=np.float64)  # (b, L, D)
        steps = np.arange(block.shape[1])[None, :] < lengths[start : start + chunk, None]  # (b, L)
        w = steps[..., None].astype(np.float64)
        count = np.maximum(w.sum(1), 1.0)  # (b, 1)
        mean = (block * w).sum(1) / count
        rows = slice(start, start + len(block))
        out[rows, :dim] = mean
        if pooling == "mean+std":
            out[rows, dim : 2 * dim] = np.sqrt(np.maximum(((block - mean[:, None]) ** 2 * w).sum(1) / count, 0.0))
        out[rows, -1] = lengths[start : start + chunk] > 0
    return out


def _fit_predict(
    x_train: np.ndarray, y: np.ndarray, xs: Sequence[np.ndarray], alpha: float, classes: int
) -> list[np.ndarray]:
    from sklearn.linear_model import LogisticRegression, Ridge

    if classes > 1:
        clf = LogisticRegression(C=1.0 / alpha, max_iter=2000)
        clf.fit(x_train, y.astype(np.int64))
        out = []
        for x in xs:
            d = clf.decision_function(x)
            d = np.stack([-d, d], axis=1) if d.ndim == 1 else d  # sklearn gives one column for two classes
            scores = np.full((len(x), classes), -1e9)  # a class missing from train is never predicted
            scores[:, clf.classes_.astype(np.int64)] = d
            out.append(scores)
        return out
    reg = Ridge(alpha=alpha)
    reg.fit(x_train, y)
    return [reg.predict(x) for x in xs]


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    return [(x - mean) / std for x in (train, *others)]


def linear_probe(
    dataset: MSADataset,
    *,
    modalities: Sequence[str] | None = None,
    poolings: Sequence[str] = POOLINGS,
    alphas: Sequence[float] = ALPHAS,
    include_all: bool = True,
) -> ProbeResult:
    """Probe each modality and (with `include_all`) their concatenation; module docstring."""
    info = dataset.info
    metric_set = get_metric_set(info.metric_set)
    key, higher = metric_set.select_key, metric_set.higher_is_better[metric_set.select_key]
    train, valid, test = (dataset.split(s) for s in ("train", "valid", "test"))
    mods = [m for m in (modalities or info.modalities) if m in train.modalities]
    unknown = sorted(set(modalities or ()) - set(info.modalities))
    if unknown:
        raise ConfigError(f"probe: dataset {info.name!r} has no modality {unknown}; it has {list(info.modalities)}")
    result = ProbeResult(info.name, metric_set.name, key)
    usable = []
    for m in mods:
        if not train.modalities[m].present.any():
            result.notes.append(f"{m}: absent from every training sample, so it cannot be learned; left out")
        else:
            usable.append(m)
    groups: list[tuple[str, tuple[str, ...]]] = [(m, (m,)) for m in usable]
    if include_all and len(usable) > 1:
        groups.append(("all", tuple(usable)))
    cache: dict[tuple[str, str, str], np.ndarray] = {}

    def feats(split_name: str, split: SplitData, group: tuple[str, ...], pooling: str) -> np.ndarray:
        parts = []
        for m in group:
            if (split_name, m, pooling) not in cache:
                cache[(split_name, m, pooling)] = pooled_features(split, m, pooling)
            parts.append(cache[(split_name, m, pooling)])
        return np.concatenate(parts, axis=1)

    for name, group in groups:
        best: tuple[float, str, float, dict[str, float], np.ndarray, np.ndarray] | None = None
        for pooling in poolings:
            x_tr, x_va, x_te = _standardise(
                *(feats(s, d, group, pooling) for s, d in (("train", train), ("valid", valid), ("test", test)))
            )
            for alpha in alphas:
                p_va, p_te = _fit_predict(x_tr, train.labels, [x_va, x_te], alpha, info.num_classes)
                val = compute_metrics(metric_set.name, p_va, valid.labels)
                score = val[key]
                if best is None or (score > best[0] if higher else score < best[0]):
                    best = (score, pooling, alpha, val, p_te, p_va)
        assert best is not None
        _, pooling, alpha, val, p_te, _ = best
        result.rows.append(
            ProbeRow(name, group, pooling, alpha, val, compute_metrics(metric_set.name, p_te, test.labels))
        )
    return result


__all__ = ["ALPHAS", "POOLINGS", "ProbeResult", "ProbeRow", "linear_probe", "pooled_features"]
