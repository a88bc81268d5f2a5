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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from msakit.data.core import MSADataset, SplitData
from msakit.data.folds import cross_validation_folds
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

    def table(self, *, markdown: bool = False, split: str = "test") -> str:
        from msakit.report import metric_table

        rows = [
            (f"probe: {r.name} ({r.pooling}, α={r.alpha:.3g})", {k: (v, None) for k, v in getattr(r, split).items()})
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


#: the score a class missing from the training split gets (so that it is never predicted)
ABSENT_CLASS_SCORE = -1e9


def _fit_predict(
    x_train: np.ndarray, y: np.ndarray, xs: Sequence[np.ndarray], alpha: float, classes: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Predictions for each of `xs`, and the fitted map as arrays: scores = x @ coef.T + intercept,
    coef (C, F) and intercept (C,) (C = 1 for regression; two-class logits are ±decision, as sklearn's)."""
    from sklearn.linear_model import LogisticRegression, Ridge

    if classes > 1:
        clf = LogisticRegression(C=1.0 / alpha, max_iter=2000)
        clf.fit(x_train, y.astype(np.int64))
        out = []
        for x in xs:
            d = clf.decision_function(x)
            d = np.stack([-d, d], axis=1) if d.ndim == 1 else d  # sklearn gives one column for two classes
            scores = np.full((len(x), classes), ABSENT_CLASS_SCORE)  # a class missing from train is never predicted
            scores[:, clf.classes_.astype(np.int64)] = d
            out.append(scores)
        w, b = clf.coef_, clf.intercept_
        if len(w) == 1:
            w, b = np.concatenate([-w, w]), np.concatenate([-b, b])
        coef = np.zeros((classes, x_train.shape[1]))
        intercept = np.full(classes, ABSENT_CLASS_SCORE)
        coef[clf.classes_.astype(np.int64)], intercept[clf.classes_.astype(np.int64)] = w, b
        return out, coef, intercept
    reg = Ridge(alpha=alpha)
    reg.fit(x_train, y)
    return [reg.predict(x) for x in xs], np.asarray(reg.coef_, np.float64)[None, :], np.array([float(reg.intercept_)])


def _standardise_stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    return mean, np.where(std > 1e-8, std, 1.0)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = _standardise_stats(train)
    return [(x - mean) / std for x in (train, *others)]


@dataclass
class LinearMap:
    """A probe fitted on train and chosen on validation, as arrays (`fit_linear_map`):
    scores = ((x - center) / scale) @ coef.T + intercept, where x concatenates
    `pooled_features(split, m, pooling)` over the modalities of `group` in that order."""

    group: tuple[str, ...]
    pooling: str
    alpha: float
    center: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (C, F); C = 1 for regression
    intercept: np.ndarray  # (C,)
    valid: dict[str, float]


def _usable_groups(
    train: SplitData, mods: Sequence[str], include_all: bool
) -> tuple[list[tuple[str, tuple[str, ...]]], list[str]]:
    """(name, modalities) for each probe, and a note for each modality no training sample has."""
    notes, usable = [], []
    for m in mods:
        if not train.modalities[m].present.any():
            notes.append(f"{m}: absent from every training sample, so it cannot be learned; left out")
        else:
            usable.append(m)
    groups: list[tuple[str, tuple[str, ...]]] = [(m, (m,)) for m in usable]
    if include_all and len(usable) > 1:
        groups.append(("all", tuple(usable)))
    return groups, notes


class _Pooled:
    """Pooled features per (split, modality, pooling), computed once."""

    def __init__(self, splits: dict[str, SplitData]) -> None:
        self.splits = splits
        self.cache: dict[tuple[str, str, str], np.ndarray] = {}

    def __call__(self, split_name: str, group: tuple[str, ...], pooling: str) -> np.ndarray:
        parts = []
        for m in group:
            if (split_name, m, pooling) not in self.cache:
                self.cache[(split_name, m, pooling)] = pooled_features(self.splits[split_name], m, pooling)
            parts.append(self.cache[(split_name, m, pooling)])
        return np.concatenate(parts, axis=1)


def _choose(
    feats: _Pooled,
    group: tuple[str, ...],
    metric_set: str,
    classes: int,
    poolings: Sequence[str],
    alphas: Sequence[float],
) -> tuple[LinearMap, np.ndarray | None]:
    """The (pooling, α) of `group` with the best validation score, and its test scores when the
    pooled features have a test split (None otherwise: the test split is never read)."""
    ms = get_metric_set(metric_set)
    key, higher = ms.select_key, ms.higher_is_better[ms.select_key]
    train, valid = feats.splits["train"], feats.splits["valid"]
    has_test = "test" in feats.splits
    best: tuple[float, LinearMap, np.ndarray | None] | None = None
    for pooling in poolings:
        x_tr = feats("train", group, pooling)
        center, scale = _standardise_stats(x_tr)
        xs = [(feats(s, group, pooling) - center) / scale for s in (("valid", "test") if has_test else ("valid",))]
        for alpha in alphas:
            preds, coef, intercept = _fit_predict((x_tr - center) / scale, train.labels, xs, alpha, classes)
            val = compute_metrics(metric_set, preds[0], valid.labels)
            if best is None or (val[key] > best[0] if higher else val[key] < best[0]):
                fitted = LinearMap(group, pooling, alpha, center, scale, coef, intercept, val)
                best = (val[key], fitted, preds[1] if has_test else None)
    assert best is not None
    return best[1], best[2]


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
    splits = {s: dataset.split(s) for s in ("train", "valid", "test")}
    mods = [m for m in (modalities or info.modalities) if m in splits["train"].modalities]
    unknown = sorted(set(modalities or ()) - set(info.modalities))
    if unknown:
        raise ConfigError(f"probe: dataset {info.name!r} has no modality {unknown}; it has {list(info.modalities)}")
    result = ProbeResult(info.name, metric_set.name, metric_set.select_key)
    groups, result.notes = _usable_groups(splits["train"], mods, include_all)
    feats = _Pooled(splits)
    for name, group in groups:
        fitted, p_te = _choose(feats, group, metric_set.name, info.num_classes, poolings, alphas)
        assert p_te is not None
        test = compute_metrics(metric_set.name, p_te, splits["test"].labels)
        result.rows.append(ProbeRow(name, group, fitted.pooling, fitted.alpha, fitted.valid, test))
    return result


def fit_linear_map(
    train: SplitData,
    valid: SplitData,
    modalities: Sequence[str],
    *,
    metric_set: str,
    num_classes: int,
    poolings: Sequence[str] = POOLINGS,
    alphas: Sequence[float] = ALPHAS,
) -> LinearMap:
    """The probe `ProbeResult.best()` would pick (each modality alone and all together, every pooling
    and α, chosen on validation), fitted on `train`, as arrays; the test split is not an argument.
    ConfigError when no modality is present in any training sample."""
    mods = [m for m in modalities if m in train.modalities]
    groups, _ = _usable_groups(train, mods, include_all=True)
    if not groups:
        raise ConfigError(f"probe: none of the modalities {list(modalities)} is present in any training sample")
    ms = get_metric_set(metric_set)
    higher = ms.higher_is_better[ms.select_key]
    feats = _Pooled({"train": train, "valid": valid})
    fits = [_choose(feats, group, metric_set, num_classes, poolings, alphas)[0] for _, group in groups]
    pick = max if higher else min
    return pick(fits, key=lambda f: f.valid[ms.select_key])  # the first of equals, as ProbeResult.best()


def cross_validated_probe(
    dataset: MSADataset,
    folds: int,
    *,
    seed: int = 0,
    modalities: Sequence[str] | None = None,
    poolings: Sequence[str] = POOLINGS,
    alphas: Sequence[float] = ALPHAS,
) -> ProbeResult:
    """The probe under the folds `msakit tune --cv` scores with (`msakit.data.folds`, same seed).

    Each fold's probe is fitted on the other folds and chooses its pooling and α on its own
    held-out part, as a cross-validated trial early-stops on it; a row's `valid` is the mean over
    folds of those held-out scores, its `test` is empty (the test split is never read), and its
    pooling and α are the folds' choices joined ("mean+std x3, mean x2"; α the folds' median).
    """
    parts = []
    for fold in cross_validation_folds(dataset, folds, seed=seed):
        held = fold.split("valid")
        scored = replace(fold, splits={"train": fold.split("train"), "valid": held, "test": held})
        parts.append(linear_probe(scored, modalities=modalities, poolings=poolings, alphas=alphas))
    first = parts[0]
    result = ProbeResult(first.dataset, first.metric_set, first.select_key, notes=list(first.notes))
    for i, row in enumerate(first.rows):
        rows = [part.rows[i] for part in parts]
        poolings_chosen = [r.pooling for r in rows]
        joined = ", ".join(f"{p} x{poolings_chosen.count(p)}" for p in dict.fromkeys(poolings_chosen))
        valid = {k: float(np.mean([r.valid[k] for r in rows])) for k in row.valid}
        result.rows.append(
            ProbeRow(row.name, row.modalities, joined, float(np.median([r.alpha for r in rows])), valid, {})
        )
    return result


def out_of_fold_scores(train: SplitData, fitted: LinearMap, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """(N, C) scores of each training sample by `fitted`'s probe (same modalities, pooling and α) refitted,
    standardisation included, on the other folds of a seeded `folds`-way split: what the probe predicts for
    a sample it did not see (cross-fitting, as stacking's level-one data). ConfigError when `folds` < 2 or
    the split has fewer samples than folds."""
    n = len(train)
    if folds < 2 or n < folds:
        raise ConfigError(f"probe: out-of-fold scores need 2 <= folds <= samples, got folds={folds} for {n} samples")
    x = np.concatenate([pooled_features(train, m, fitted.pooling) for m in fitted.group], axis=1)
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    classes = fitted.coef.shape[0]  # 1 for regression
    out = np.zeros((n, classes))
    for k in range(folds):
        held, rest = fold == k, fold != k
        center, scale = _standardise_stats(x[rest])
        x_rest, x_held = (x[rest] - center) / scale, (x[held] - center) / scale
        (scores,), _, _ = _fit_predict(x_rest, train.labels[rest], [x_held], fitted.alpha, classes)
        out[held] = scores.reshape(len(x_held), classes)
    return out


__all__ = [
    "ALPHAS",
    "POOLINGS",
    "LinearMap",
    "ProbeResult",
    "ProbeRow",
    "cross_validated_probe",
    "fit_linear_map",
    "linear_probe",
    "out_of_fold_scores",
    "pooled_features",
]
