"""Ablation tables and parameter sweeps over the one trainer.

A model declares its paper's ablation rows on its config class:

    @dataclass
    class AMSGFNConfig(ModelConfig):
        ...
        ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
            "full": {},
            "w/o CCAM": {"use_ccam": False},
        }

`run_ablation` trains every row over the same seeds and returns one table;
`run_sweep` does the same for values of one field. Every row follows the trainer's
protocol (validation-only selection), so the rows are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msakit.config import TrainConfig
from msakit.data.core import MSADataset
from msakit.errors import ConfigError
from msakit.metrics import get_metric_set
from msakit.registry import build_config, create_model, get_model_class
from msakit.report import format_value, metric_table
from msakit.training.trainer import RunResult, Trainer


@dataclass
class ExperimentTable:
    model: str
    dataset: str
    metric_set: str
    rows: list[tuple[str, RunResult]]
    skipped: dict[str, str] = field(default_factory=dict)  # row -> why the data cannot run it

    def best_on_validation(self) -> str:
        """The row a validation-only protocol would pick: best mean validation selection score."""
        metric = get_metric_set(self.metric_set)
        key, sign = metric.select_key, 1.0 if metric.higher_is_better[metric.select_key] else -1.0
        return max(self.rows, key=lambda row: sign * row[1].summary("valid")[key][0])[0]

    def markdown(self) -> str:
        """Test metrics per row; the row chosen on validation is marked with *."""
        best = self.best_on_validation()
        key = get_metric_set(self.metric_set).select_key
        table = metric_table(
            [(f"{label}{' *' if label == best else ''}", r.summary()) for label, r in self.rows], self.metric_set
        )
        valid = ", ".join(f"{label}: {format_value(key, r.summary('valid')[key][0])}" for label, r in self.rows)
        notes = "".join(f"\n\nnot run: {label} ({why})" for label, why in self.skipped.items())
        return f"{table}\n\n\\* best on validation {key} (mean over seeds): {valid}{notes}"

    def to_dict(self) -> dict[str, Any]:
        rows = {k: r.to_dict() for k, r in self.rows}
        return {"model": self.model, "dataset": self.dataset, "rows": rows, "skipped": self.skipped}


def ablations_of(model: str) -> dict[str, dict[str, Any]]:
    rows = getattr(get_model_class(model).config_class, "ABLATIONS", None)
    if not rows:
        raise ConfigError(f"model {model!r} declares no ablations (ABLATIONS on its config class)")
    return dict(rows)


def run_rows(
    model: str,
    dataset: MSADataset,
    rows: Mapping[str, Mapping[str, Any]],
    *,
    base_overrides: Mapping[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path,
) -> ExperimentTable:
    """Train `model` once per row (row overrides on top of `base_overrides`).

    Every row is checked before the first one trains: a config error (unknown field,
    wrong type) stops the run; a row the data cannot support (e.g. a visual-oriented
    variant on a dataset without visual) is skipped and reported in the table.
    """
    out_dir = Path(out_dir)
    runnable, skipped = {}, {}
    for label, overrides in rows.items():
        try:
            config = build_config(model, {**dataset.info.model_overrides(), **(base_overrides or {}), **overrides})
        except ConfigError as exc:
            raise ConfigError(f"row {label!r}: {exc}") from exc
        try:
            create_model(model, config)
        except ConfigError as exc:
            skipped[label] = str(exc)
            continue
        runnable[label] = overrides
    results = []
    for i, (label, overrides) in enumerate(runnable.items()):
        trainer = Trainer(
            model,
            dataset,
            model_overrides={**(base_overrides or {}), **overrides},
            train_config=train_config,
            out_dir=out_dir / f"{i:02d}",
        )
        results.append((label, trainer.fit()))
    return ExperimentTable(model, dataset.info.name, dataset.info.metric_set, results, skipped)


def run_ablation(model: str, dataset: MSADataset, **kwargs: Any) -> ExperimentTable:
    return run_rows(model, dataset, ablations_of(model), **kwargs)


def run_sweep(model: str, dataset: MSADataset, name: str, values: Sequence[Any], **kwargs: Any) -> ExperimentTable:
    return run_rows(model, dataset, {f"{name}={v}": {name: v} for v in values}, **kwargs)
