"""PNG plots of robustness curves (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msakit.io import atomic_path
from msakit.robustness.protocols import RobustnessReport, curve_points

_XLABEL = {
    "modality_shared": "per-sample whole-modality missing rate r (shared)",
    "modality_imbalanced": "per-sample whole-modality missing rate r of one modality",
    "step_shared": "step-level missing rate r (shared)",
    "step_imbalanced": "step-level missing rate r of one modality",
    "noise": "noise fraction (1 / (1 + 10^(SNR/10)))",
    "spectrum": "reliability strength s",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def plot_report(report: RobustnessReport, out_dir: Path, metric: str | None = None) -> list[Path]:
    """One PNG per protocol with a line per curve, and a bar chart of the modality protocol."""
    plt = _pyplot()
    metric = metric or report.primary_metric
    written = []
    by_protocol: dict[str, list[tuple[str, list[tuple[float, dict[str, float]]]]]] = {}
    for (protocol, curve), pts in curve_points(report).items():
        by_protocol.setdefault(protocol, []).append((curve, pts))
    for protocol, curves in by_protocol.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for curve, pts in curves:
            ax.plot([x for x, _ in pts], [m[metric] for _, m in pts], marker="o", label=curve)
        ax.axhline(report.clean[metric], color="grey", linestyle=":", linewidth=1, label="clean")
        ax.set(
            xlabel=_XLABEL.get(protocol, "x"), ylabel=metric, title=f"{report.model} on {report.dataset}: {protocol}"
        )
        ax.legend(fontsize=8)
        path = out_dir / f"{protocol}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    kept = [c for c in report.conditions if c.protocol == "modality" and c.status == "ok"]
    if kept:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = ["+".join(c.params["kept"]) or "none" for c in kept]
        ax.bar(names, [c.metrics[metric] for c in kept])
        ax.axhline(report.clean[metric], color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="modalities kept", ylabel=metric, title=f"{report.model} on {report.dataset}: modality")
        path = out_dir / "modality.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def plot_compare(
    reports: Sequence[RobustnessReport], labels: Sequence[str], out_dir: Path, metric: str | None = None
) -> list[Path]:
    """One PNG per (protocol, curve) overlaying the compared models."""
    plt = _pyplot()
    metric = metric or reports[0].primary_metric
    curves: dict[tuple[str, str], list[tuple[str, list[tuple[float, dict[str, float]]]]]] = {}
    for label, report in zip(labels, reports, strict=True):
        for key, pts in curve_points(report).items():
            curves.setdefault(key, []).append((label, pts))
    written = []
    for (protocol, curve), lines in sorted(curves.items()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, pts in lines:
            ax.plot([x for x, _ in pts], [m[metric] for _, m in pts], marker="o", label=label)
        ax.set(xlabel=_XLABEL.get(protocol, "x"), ylabel=metric, title=f"{protocol}: {curve}")
        ax.legend(fontsize=8)
        path = out_dir / f"compare_{protocol}_{curve}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written
