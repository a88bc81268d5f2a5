"""Robustness protocols: which perturbed test sets to evaluate, and how to summarise them.

Protocols (precise definitions in docs/robustness.md):

    modality             whole-modality missing for every sample: each of the 6 proper
                         non-empty subsets of (text, audio, visual) kept, plus "none kept"
                         (the reference for the MEI)
    modality_shared      MissBench shared missing rate: each sample loses each modality
                         with probability r (whole modality, per sample)
    modality_imbalanced  MissBench imbalanced missing: one modality lost per sample with
                         probability r, the others intact (one curve per modality)
    step_shared          MMSA step-level missing: every step of every modality dropped with
                         probability r (below r = 1 no sample loses a whole modality)
    step_imbalanced      step-level missing of one modality at rate r (one curve per modality)
    noise       Gaussian noise at each SNR (all modalities, and each alone), temporal
                shuffling, and raw-text noise where the model reads raw text
    spectrum    QA-MoE reliability spectrum: fixed strength s per sample at each level,
                and s ~ U(0, 1) per sample ("one checkpoint for all")

Summaries: per curve and metric the AUILC (trapezoid area over x, divided by the x
span), MultiBench's relative robustness and the drop at the largest x; per modality the
drop when it is removed; the Modality Equity Index (MEI) from Shapley contributions over
the kept subsets; the Modality Learning Index (MLI) when training logged it.
Every condition uses the same seed, so curves share their random draws. For a model
that re-encodes raw text (`Capabilities.reads_raw_text`) every condition that touches
the text also perturbs `Batch.raw_text` before it is re-encoded
(`perturbations.raw_text_counterpart`). The old names `rate` and `imbalanced` are
accepted for `step_shared` and `step_imbalanced`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msakit.batch import MODALITIES
from msakit.data.core import MSADataset, SplitData
from msakit.metrics import get_metric_set
from msakit.models.base import MSAModel
from msakit.robustness.perturbations import (
    Compose,
    DropModalities,
    GaussianNoise,
    ModalityMissing,
    Perturbation,
    RobustnessError,
    Spectrum,
    StepMissing,
    TemporalShuffle,
    TextNoise,
    bind,
    check_modalities,
    check_rate,
    raw_text_counterpart,
    snr_to_noise_fraction,
)
from msakit.robustness.training import equity_index

PROTOCOLS: tuple[str, ...] = (
    "modality",
    "modality_shared",
    "modality_imbalanced",
    "step_shared",
    "step_imbalanced",
    "noise",
    "spectrum",
)
PROTOCOL_CHOICES: tuple[str, ...] = (*PROTOCOLS, "all")
#: earlier names of the step-level protocols, still accepted
PROTOCOL_ALIASES: dict[str, str] = {"rate": "step_shared", "imbalanced": "step_imbalanced"}
DEFAULT_RATES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))
DEFAULT_SNRS: tuple[float, ...] = (20.0, 10.0, 5.0, 0.0, -5.0, -10.0)
#: the higher-is-better metric the MEI, the TSSP check and the plots use, per metric set
PRIMARY_METRIC = {"mosi": "Non0_acc_2", "sims": "Mult_acc_2", "classification": "Acc"}
#: the 6 proper non-empty subsets of the modalities, kept in the `modality` protocol
KEPT_SUBSETS: tuple[tuple[str, ...], ...] = tuple(s for k in (1, 2) for s in itertools.combinations(MODALITIES, k))


@dataclass(frozen=True)
class RobustnessSettings:
    """What the protocols evaluate. Rates and strengths must lie in [0, 1]."""

    rates: tuple[float, ...] = DEFAULT_RATES  # missing rates (rate, imbalanced) and spectrum strengths
    snrs: tuple[float, ...] = DEFAULT_SNRS  # Gaussian noise levels in dB
    shuffle_rates: tuple[float, ...] = (0.5, 1.0)  # share of samples whose steps are shuffled
    text_noise_rates: tuple[float, ...] = (0.1, 0.2, 0.3)  # word drop / typo probability
    modalities: tuple[str, ...] = ()  # modalities to perturb; empty = all the model and data share
    seed: int = 0
    split: str = "test"
    batch_size: int = 128

    def __post_init__(self) -> None:
        for name in ("rates", "shuffle_rates", "text_noise_rates"):
            values = tuple(check_rate(v, name[:-1].replace("_", " ")) for v in getattr(self, name))
            object.__setattr__(self, name, values)
        if any(math.isnan(float(s)) for s in self.snrs):
            raise RobustnessError("SNRs must be numbers in dB")
        object.__setattr__(self, "snrs", tuple(float(s) for s in self.snrs))
        check_modalities(self.modalities)


@dataclass
class Condition:
    """One evaluated (or inapplicable) perturbed test set."""

    protocol: str
    curve: str
    x: float | None
    params: dict[str, Any]
    status: str = "ok"  # "ok", or why there is no result ("absent from dataset: visual", ...)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RobustnessReport:
    model: str
    dataset: str
    checkpoint: str
    split: str
    seed: int
    metric_set: str
    primary_metric: str
    modalities: list[str]  # the modalities the model and the data share
    clean: dict[str, float]
    conditions: list[Condition] = field(default_factory=list)
    summaries: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def csv_rows(self) -> list[dict[str, Any]]:
        keys = list(self.clean)
        rows = [{"protocol": "clean", "curve": "", "x": "", "params": "", "status": "ok", **self.clean}]
        for c in self.conditions:
            params = ";".join(f"{k}={_fmt(v)}" for k, v in c.params.items())
            x = "" if c.x is None else c.x
            rows.append(
                {
                    "protocol": c.protocol,
                    "curve": c.curve,
                    "x": x,
                    "params": params,
                    "status": c.status,
                    **{k: c.metrics.get(k, "") for k in keys},
                }
            )
        return rows


def _fmt(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "+".join(str(x) for x in v) or "none"
    return str(v)


def _jsonable(obj: Any) -> Any:
    """NaN/inf become None so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


# ---- running ------------------------------------------------------------------------------


@dataclass
class _Context:
    model: MSAModel
    dataset: MSADataset
    split: SplitData
    settings: RobustnessSettings
    shared: tuple[str, ...]  # modalities in both model and data
    targets: tuple[str, ...]  # modalities to perturb

    def evaluate(self, perturbation: Perturbation | None) -> dict[str, float]:
        from msakit.training import evaluate

        if perturbation is not None and reads_raw_text(self.model) and self.split.raw_text is not None:
            text = raw_text_counterpart(perturbation)  # reach the text before the model re-encodes it
            if text is not None:
                perturbation = Compose((perturbation, text))
        transform = None if perturbation is None else bind(perturbation, self.settings.seed)
        return evaluate(
            self.model,
            self.split,
            self.dataset.info.metric_set,
            batch_size=self.settings.batch_size,
            transform=transform,
        )


def resolve_protocols(protocol: str | Iterable[str]) -> tuple[str, ...]:
    names = [protocol] if isinstance(protocol, str) else list(protocol)
    out: list[str] = []
    for name in names:
        name = PROTOCOL_ALIASES.get(name, name)
        if name not in PROTOCOL_CHOICES:
            raise RobustnessError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOL_CHOICES)}")
        out.extend(PROTOCOLS if name == "all" else [name])
    return tuple(p for p in PROTOCOLS if p in out)


def shared_modalities(model: MSAModel, dataset: MSADataset) -> tuple[str, ...]:
    return tuple(m for m in model.modalities if m in dataset.info.dims)


def check_target_modalities(model: MSAModel, dataset: MSADataset, modalities: Sequence[str]) -> tuple[str, ...]:
    """The modalities to perturb; RobustnessError when one is absent from the data or the model."""
    mods = check_modalities(modalities)
    for m in mods:
        if m not in dataset.info.dims:
            raise RobustnessError(
                f"modality {m!r} is absent from dataset {dataset.info.name!r} "
                f"(it has {', '.join(dataset.info.modalities)})"
            )
        if m not in model.modalities:
            raise RobustnessError(
                f"model {model.model_name!r} was trained without modality {m!r} (it has {', '.join(model.modalities)})"
            )
    return mods or shared_modalities(model, dataset)


def run_protocols(
    model: MSAModel,
    dataset: MSADataset,
    protocol: str | Iterable[str] = "all",
    settings: RobustnessSettings | None = None,
    *,
    checkpoint: str | Path = "",
    mli: dict[str, Any] | None = None,
) -> RobustnessReport:
    """Evaluate `model` on every condition of `protocol` and summarise."""
    settings = settings or RobustnessSettings()
    protocols = resolve_protocols(protocol)
    targets = check_target_modalities(model, dataset, settings.modalities)
    ctx = _Context(model, dataset, dataset.split(settings.split), settings, shared_modalities(model, dataset), targets)
    metric_set = dataset.info.metric_set
    report = RobustnessReport(
        model=model.model_name,
        dataset=dataset.info.name,
        checkpoint=str(checkpoint),
        split=settings.split,
        seed=settings.seed,
        metric_set=metric_set,
        primary_metric=PRIMARY_METRIC[metric_set],
        modalities=list(ctx.shared),
        clean=ctx.evaluate(None),
    )
    for name in protocols:
        report.conditions.extend(_RUNNERS[name](ctx))
    report.summaries = summarise(report)
    if mli is not None:
        report.summaries["mli"] = mli
    return report


def _modality(ctx: _Context) -> list[Condition]:
    out = []
    for kept in (*KEPT_SUBSETS, ()):
        absent = [m for m in kept if m not in ctx.dataset.info.dims]
        lacking = [m for m in kept if m not in ctx.model.modalities and m not in absent]
        params: dict[str, Any] = {"kept": list(kept)}
        curve = "kept" if kept else "none_kept"
        if absent:
            out.append(Condition("modality", curve, None, params, status=f"absent from dataset: {', '.join(absent)}"))
            continue
        if lacking:
            out.append(Condition("modality", curve, None, params, status=f"absent from model: {', '.join(lacking)}"))
            continue
        removed = [m for m in ctx.shared if m not in kept]
        params["removed"] = removed
        try:
            metrics = ctx.evaluate(DropModalities(tuple(removed)) if removed else None)
        except (RuntimeError, ValueError) as exc:  # e.g. a model that cannot run with nothing present
            out.append(Condition("modality", curve, None, params, status=f"model failed: {exc}"))
            continue
        out.append(Condition("modality", curve, None, params, metrics=metrics))
    return out


def _shared_rate(ctx: _Context, protocol: str, missing: Callable[..., Perturbation]) -> list[Condition]:
    """`missing` (step- or whole-modality) at each rate, shared by every target modality."""
    return [
        Condition(
            protocol,
            "shared",
            r,
            {"rate": r, "modalities": list(ctx.targets)},
            metrics=ctx.evaluate(missing(rate=r, modalities=ctx.targets)),
        )
        for r in ctx.settings.rates
    ]


def _one_modality_rate(ctx: _Context, protocol: str, missing: Callable[..., Perturbation]) -> list[Condition]:
    """`missing` at each rate for one modality at a time, the others intact: one curve per modality."""
    return [
        Condition(protocol, f"{m}_missing", r, {"rates": {m: r}}, metrics=ctx.evaluate(missing(rates={m: r})))
        for m in ctx.targets
        for r in ctx.settings.rates
    ]


def _noise(ctx: _Context) -> list[Condition]:
    out = []
    groups = [("all", ctx.targets)] + ([(m, (m,)) for m in ctx.targets] if len(ctx.targets) > 1 else [])
    for curve, mods in groups:
        for snr in ctx.settings.snrs:
            x = snr_to_noise_fraction(snr)
            out.append(
                Condition(
                    "noise",
                    f"gaussian_{curve}",
                    x,
                    {"snr_db": snr, "modalities": list(mods)},
                    metrics=ctx.evaluate(GaussianNoise(snr_db=snr, modalities=mods)),
                )
            )
    for r in ctx.settings.shuffle_rates:
        out.append(
            Condition(
                "noise",
                "temporal_shuffle",
                r,
                {"rate": r, "modalities": list(ctx.targets)},
                metrics=ctx.evaluate(TemporalShuffle(rate=r, modalities=ctx.targets)),
            )
        )
    if "text" in ctx.targets:
        reason = _text_noise_blocker(ctx)
        for r in ctx.settings.text_noise_rates:
            if reason:
                out.append(Condition("noise", "text_noise", r, {"rate": r}, status=f"not applicable: {reason}"))
            else:
                out.append(Condition("noise", "text_noise", r, {"rate": r}, metrics=ctx.evaluate(TextNoise(rate=r))))
    return out


def reads_raw_text(model: MSAModel) -> bool:
    """Whether the model encodes `Batch.raw_text` itself (its declared capability)."""
    return model.declared_capabilities.reads_raw_text


def _text_noise_blocker(ctx: _Context) -> str:
    if ctx.split.raw_text is None:
        return "the dataset has no raw text"
    if not reads_raw_text(ctx.model):
        return (
            f"model {ctx.model.model_name!r} reads precomputed text features; apply "
            "msakit.robustness.noisy_texts to the transcripts before encoding them"
        )
    return ""


def _spectrum(ctx: _Context) -> list[Condition]:
    out = [
        Condition(
            "spectrum",
            "fixed",
            s,
            {"strength": s, "modalities": list(ctx.targets)},
            metrics=ctx.evaluate(Spectrum(strength=s, modalities=ctx.targets)),
        )
        for s in ctx.settings.rates
    ]
    out.append(
        Condition(
            "spectrum",
            "per_sample_uniform",
            None,
            {"strength": "U(0, 1) per sample"},
            metrics=ctx.evaluate(Spectrum(strength=None, modalities=ctx.targets)),
        )
    )
    return out


_RUNNERS: dict[str, Callable[[_Context], list[Condition]]] = {
    "modality": _modality,
    "modality_shared": lambda ctx: _shared_rate(ctx, "modality_shared", ModalityMissing),
    "modality_imbalanced": lambda ctx: _one_modality_rate(ctx, "modality_imbalanced", ModalityMissing),
    "step_shared": lambda ctx: _shared_rate(ctx, "step_shared", StepMissing),
    "step_imbalanced": lambda ctx: _one_modality_rate(ctx, "step_imbalanced", StepMissing),
    "noise": _noise,
    "spectrum": _spectrum,
}


# ---- summaries ----------------------------------------------------------------------------


def auilc(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Area under the metric-vs-x curve (trapezoid) divided by the x span: the curve's mean level."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if len(x) == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2 / (x[-1] - x[0]))


def relative_robustness(ys: Sequence[float]) -> float:
    """MultiBench's relative robustness before its min-max normalisation across methods:
    the trapezoid area with a fixed 0.1 step between consecutive levels."""
    y = np.asarray(ys, dtype=float)
    return float(np.sum((y[1:] + y[:-1]) * 0.1 / 2))


def _worse(metric: str, clean: float, value: float, higher: dict[str, bool]) -> float:
    """How much worse `value` is than `clean` (positive = worse)."""
    return clean - value if higher.get(metric, True) else value - clean


def curve_points(report: RobustnessReport) -> dict[tuple[str, str], list[tuple[float, dict[str, float]]]]:
    """(protocol, curve) -> [(x, metrics)] sorted by x, with the clean point at x=0 if missing."""
    curves: dict[tuple[str, str], list[tuple[float, dict[str, float]]]] = {}
    for c in report.conditions:
        if c.x is None or c.status != "ok":
            continue
        curves.setdefault((c.protocol, c.curve), []).append((float(c.x), c.metrics))
    for pts in curves.values():
        if not any(x == 0.0 for x, _ in pts):
            pts.append((0.0, report.clean))
        pts.sort(key=lambda p: p[0])
    return curves


def summarise(report: RobustnessReport) -> dict[str, Any]:
    higher = dict(get_metric_set(report.metric_set).higher_is_better)
    out: dict[str, Any] = {"curves": {}}
    for (protocol, curve), pts in curve_points(report).items():
        xs = [x for x, _ in pts]
        per_metric = {}
        for k in report.clean:
            ys = [m[k] for _, m in pts]
            per_metric[k] = {
                "auilc": auilc(xs, ys),
                "relative_robustness": relative_robustness(ys),
                "drop_at_max": _worse(k, report.clean[k], ys[-1], higher),
            }
        out["curves"][f"{protocol}/{curve}"] = {"x": xs, "metrics": per_metric}
    modality = [c for c in report.conditions if c.protocol == "modality"]
    if modality:
        out.update(_modality_summaries(report, modality, higher))
    return out


def _modality_summaries(report: RobustnessReport, conds: list[Condition], higher: dict[str, bool]) -> dict[str, Any]:
    shared = tuple(report.modalities)
    value: dict[frozenset[str], dict[str, float]] = {frozenset(shared): report.clean}
    for c in conds:
        if c.status == "ok":
            value[frozenset(m for m in c.params["kept"] if m in shared)] = c.metrics
    drop = {}
    for m in shared:
        rest = frozenset(shared) - {m}
        if rest in value:
            drop[m] = {k: _worse(k, report.clean[k], value[rest][k], higher) for k in report.clean}
    key = report.primary_metric
    phi = _shapley(shared, {s: v[key] for s, v in value.items()})
    contributions = [max(p, 0.0) for p in phi.values()]
    mei = equity_index(contributions) if len(shared) > 1 and phi else float("nan")
    return {
        "drop_per_removed_modality": drop,
        "mei": {
            "definition": "MEI = 1 - normalised Gini of max(Shapley contribution, 0) over the modalities "
            "(msakit's definition)",
            "metric": key,
            "shapley": phi,
            "value": mei,
        },
    }


def _shapley(players: tuple[str, ...], v: dict[frozenset[str], float]) -> dict[str, float]:
    """Exact Shapley values of the metric over kept subsets; {} when a subset is unknown or NaN."""
    n = len(players)
    subsets = [frozenset(s) for k in range(n + 1) for s in itertools.combinations(players, k)]
    if any(s not in v or not math.isfinite(v[s]) for s in subsets):
        return {}
    phi = {}
    for p in players:
        total = 0.0
        for s in subsets:
            if p in s:
                continue
            weight = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
            total += weight * (v[s | {p}] - v[s])
        phi[p] = total
    return phi


def compare_summaries(reports: Sequence[RobustnessReport], labels: Sequence[str]) -> dict[str, Any]:
    """MultiBench's min-max normalised relative robustness across the compared models, per curve."""
    out: dict[str, Any] = {}
    keys = set.intersection(*(set(r.summaries.get("curves", {})) for r in reports)) if reports else set()
    for curve in sorted(keys):
        per_metric = {}
        for k in reports[0].clean:
            raw = [r.summaries["curves"][curve]["metrics"][k]["relative_robustness"] for r in reports]
            lo, hi = min(raw), max(raw)
            sign = 1.0 if get_metric_set(reports[0].metric_set).higher_is_better.get(k, True) else -1.0
            norm = [
                ((v - lo) / (hi - lo) if sign > 0 else (hi - v) / (hi - lo)) if hi > lo else float("nan") for v in raw
            ]
            per_metric[k] = {
                label: {"raw": r_, "normalised": n_} for label, r_, n_ in zip(labels, raw, norm, strict=True)
            }
        out[curve] = per_metric
    return out
