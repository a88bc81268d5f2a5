"""Formatting results: metric tables as aligned text or Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from msakit.metrics import get_metric_set

# accuracies and F1 are shown in percent, as in the published tables
_RAW_KEYS = {"MAE", "Corr"}


def format_value(key: str, mean: float, std: float | None = None) -> str:
    scale, digits = (1.0, 3) if key in _RAW_KEYS else (100.0, 1)
    text = f"{mean * scale:.{digits}f}"
    if std is not None:
        text += f" ± {std * scale:.{digits}f}"
    return text


def metric_table(
    rows: Sequence[tuple[str, Mapping[str, tuple[float, float | None]]]], metric_set: str, *, markdown: bool = True
) -> str:
    """rows: (label, metric -> (mean, std)). Columns follow the metric set's order."""
    keys = list(get_metric_set(metric_set).higher_is_better)
    header = ["model", *keys]
    body = [[label, *(format_value(k, *summary[k]) if k in summary else "" for k in keys)] for label, summary in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *body])
