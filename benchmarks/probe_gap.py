"""How large is a model's gap to the linear probe, against the test split's own sampling noise?

A model row in the results tables is "below the probe" when its 5-seed mean test metric is
under the probe's. With 686 MOSI test clips, a Corr of 0.77 has a sampling spread of its
own, and the model and the probe are scored on the same clips, so the honest comparison is
paired: resample the test clips with replacement (the same clips for both), recompute the
model's mean-over-seeds metric and the probe's, and read the distribution of the
difference. This script does that for each run folder given:

    python benchmarks/probe_gap.py --data data/mosi-e5 --resamples 2000 --seed 0 \\
        "tssp_msa (preset)=runs/mosi-reach/preset/tssp_msa" "TSD, preset tsd/mosi=runs/mamba-tsd/tsd-mosi-tuned" \\
        --json docs/results/mosi_e5_probe_gap.json

The probe is `msakit probe`'s text row (pooling and ridge penalty chosen on validation by
`msakit.probe.linear_probe`), refitted here to get its test predictions; the script checks
that the refit reproduces the row's test Corr and MAE. Each run's predictions come from
its `seed*/best` checkpoints (the epoch chosen on validation). Reported per run, for Corr,
MAE and Non0 Acc-2: the observed difference (model − probe; for MAE negative is better), its 95 %
percentile interval over the resamples, and the share of resamples in which the model is
at least as good as the probe. An interval that contains 0 means the test split cannot
tell the model from the probe on that metric. The last two columns are each run's mean
validation MAE and Corr over its seeds (RUN/results.json) beside the probe's, so a gap that
is already on validation shows there.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msakit.data import load_dataset
from msakit.probe import _fit_predict, _standardise, linear_probe, pooled_features
from msakit.training.checkpoint import load_checkpoint, read_checkpoint_meta
from msakit.training.sealed import refuse_sealed


def probe_test_predictions(data: Any, name: str = "text") -> tuple[np.ndarray, dict[str, Any]]:
    """Test predictions of the probe's row NAME (a modality, or "all": their concatenation, as
    `msakit probe` builds it), refitted with the row's pooling and penalty."""
    found = linear_probe(data) if name == "all" else linear_probe(data, modalities=[name], include_all=False)
    rows = {r.name: r for r in found.rows}
    if name not in rows:
        raise SystemExit(f"probe_gap: error: no probe row {name!r}; the rows are {sorted(rows)}")
    row = rows[name]
    splits = [data.split(s) for s in ("train", "valid", "test")]
    pooled = [np.concatenate([pooled_features(s, m, row.pooling) for m in row.modalities], axis=1) for s in splits]
    x_tr, _, x_te = _standardise(*pooled)
    (pred,), _, _ = _fit_predict(x_tr, splits[0].labels, [x_te], row.alpha, data.info.num_classes)
    info = {"row": name, "pooling": row.pooling, "alpha": row.alpha, "test": row.test, "valid": row.valid}
    return np.asarray(pred, dtype=np.float64), info


def seed_checkpoints(run: Path) -> list[Path]:
    """RUN/seed*/best in seed order; for RUN/memberJ (a path that is not a folder: member J of every
    seed of the `-t ensemble=K` run RUN, member 0 being the single run) RUN/seed*/memberJ/best."""
    member = not run.is_dir() and run.name.startswith("member")
    base, pattern = (run.parent, f"seed*/{run.name}/best") if member else (run, "seed*/best")
    seed_of = (lambda p: p.parent.parent.name) if member else (lambda p: p.parent.name)
    return sorted(base.glob(pattern), key=lambda p: int(seed_of(p).removeprefix("seed")))


def model_test_predictions(data: Any, run: Path, split: str = "test") -> np.ndarray:
    """(seeds, clips): each seed's selected checkpoint on the test split (or `split`), in split order."""
    ckpts = seed_checkpoints(run)
    if not ckpts:
        raise SystemExit(f"probe_gap: error: {run}: no seed*/best checkpoint")
    test = data.split(split)
    out = []
    for ckpt in ckpts:
        model, _ = load_checkpoint(ckpt)
        model.eval()
        with torch.no_grad():
            preds = [model(b).prediction.float().reshape(-1).numpy() for b in test.loader(256, shuffle=False)]
        out.append(np.concatenate(preds))
    return np.stack(out).astype(np.float64)


def valid_means(run: Path) -> dict[str, float]:
    """Mean over the seeds of the validation MAE and Corr the run recorded (RUN/results.json; for
    RUN/memberJ, each member checkpoint's own record)."""
    if not run.is_dir():
        seeds = [read_checkpoint_meta(p) for p in seed_checkpoints(run)]
    else:
        seeds = json.loads((run / "results.json").read_text())["seeds"]
    return {k: float(np.mean([s["valid"][k] for s in seeds])) for k in ("MAE", "Corr")}


def _corr(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (pred and y broadcast)."""
    pc = pred - pred.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    return (pc * yc).sum(-1) / np.sqrt((pc**2).sum(-1) * (yc**2).sum(-1))


def _non0_acc(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MMSA's Non0 Acc-2 along the last axis: sign agreement (p > 0 vs y > 0) over the clips with y != 0."""
    nonzero = y != 0
    return (((pred > 0) == (y > 0)) & nonzero).sum(-1) / nonzero.sum(-1)


# metric -> (function along the last axis, True when higher is better)
METRICS = {"Corr": (_corr, True), "MAE": (lambda p, y: np.abs(p - y).mean(-1), False), "Non0_acc_2": (_non0_acc, True)}


def _side_acc(pred: np.ndarray, y: np.ndarray, positive: bool) -> np.ndarray:
    """Non0 Acc-2 on one side only, along the last axis: the share of the clips with y > 0 (or y < 0)
    that the prediction puts on their side (p > 0, or p <= 0, as MMSA's threshold does)."""
    side = y > 0 if positive else y < 0
    hit = pred > 0 if positive else pred <= 0
    return (hit & side).sum(-1) / side.sum(-1)


def _balanced_non0(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The mean of the two sides' accuracies: Non0 Acc-2 with the positive and negative clips weighted
    equally, so a split's share of positive clips does not reward predicting positive."""
    return (_side_acc(pred, y, True) + _side_acc(pred, y, False)) / 2


def _sign_auc(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of the prediction for the label's sign over the non-zero clips, along the last axis
    (scikit-learn's `roc_auc_score`: the chance that a positive clip is scored above a negative one, ties
    1/2): how well the scores separate the two sides at every threshold, not only at 0."""
    from sklearn.metrics import roc_auc_score

    pred, y = np.broadcast_arrays(pred, y)
    flat_p, flat_y = pred.reshape(-1, pred.shape[-1]), y.reshape(-1, y.shape[-1])
    out = np.empty(len(flat_p))
    for i, (p, t) in enumerate(zip(flat_p, flat_y, strict=True)):
        keep = t != 0
        positive = t[keep] > 0
        # one side empty (a resample of a tiny split): no pair to compare, so no AUC
        out[i] = roc_auc_score(positive, p[keep]) if 0 < positive.sum() < positive.size else np.nan
    return out.reshape(pred.shape[:-1])


# --sides: where a Non0 Acc-2 gap comes from (each side's accuracy, and the threshold-free separation)
SIDE_METRICS = {"balanced_non0": (_balanced_non0, True), "sign_auc": (_sign_auc, True)}


def side_scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean over the seeds (rows of `pred`; one row for the probe) of each side's accuracy, the share of
    non-zero clips predicted positive, the balanced Non0 Acc-2 and the sign AUC."""
    pred = np.atleast_2d(pred)
    nonzero = y != 0
    return {
        "positive_acc": float(_side_acc(pred, y, True).mean()),
        "negative_acc": float(_side_acc(pred, y, False).mean()),
        "predicted_positive": float((pred[:, nonzero] > 0).mean()),
        **{key: float(fn(pred, y).mean()) for key, (fn, _) in SIDE_METRICS.items()},
    }


def paired_gap(
    model: np.ndarray,
    probe: np.ndarray,
    y: np.ndarray,
    *,
    resamples: int,
    seed: int,
    metrics: dict[str, tuple[Any, bool]] | None = None,
) -> dict[str, dict[str, float]]:
    """Observed model − probe difference of each metric (default: METRICS), with its paired-bootstrap
    95 % interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(resamples, len(y)))
    yb, pb = y[idx], probe[idx]  # (B, n): the same resampled clips for the model and the probe
    out: dict[str, dict[str, float]] = {}
    for metric, (fn, higher) in (METRICS if metrics is None else metrics).items():
        observed = float(fn(model, y).mean() - fn(probe, y))
        diffs = np.stack([fn(m[idx], yb) for m in model]).mean(0) - fn(pb, yb)
        at_least = float((diffs >= 0).mean() if higher else (diffs <= 0).mean())
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        out[metric] = {"observed": observed, "low": float(lo), "high": float(hi), "model_at_least_probe": at_least}
    return out


def markdown(command: str, probe: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"```bash\n{command}\n```\n",
        f"Probe ({probe.get('row', 'text')}, pooling {probe['pooling']}, ridge α {probe['alpha']:g}, "
        "chosen on validation): test Corr "
        f"{probe['test']['Corr']:.3f}, MAE {probe['test']['MAE']:.3f}, "
        f"Non0 Acc-2 {100 * probe['test']['Non0_acc_2']:.1f}. "
        "Difference = model (mean over its seeds) − "
        "probe on the same test clips; 95 % interval and share of resamples in which the model is at least as "
        f"good, over {rows[next(iter(rows))]['resamples']} paired resamples of the test clips.\n",
        "| run | seeds | Corr | Corr difference [95 % interval] | model ≥ probe | MAE | MAE difference [95 % interval] "
        "| model ≤ probe | Non0 Acc-2 | Non0 Acc-2 difference [95 % interval] | model ≥ probe "
        "| valid MAE | valid Corr |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| probe | – | {probe['test']['Corr']:.3f} | – | – | {probe['test']['MAE']:.3f} | – | – "
        f"| {100 * probe['test']['Non0_acc_2']:.1f} | – | – "
        f"| {probe['valid']['MAE']:.3f} | {probe['valid']['Corr']:.3f} |",
    ]
    for label, r in rows.items():
        c, m, a = r["gap"]["Corr"], r["gap"]["MAE"], r["gap"]["Non0_acc_2"]
        lines.append(
            f"| {label} | {r['seeds']} | {r['Corr']:.3f} | {c['observed']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] "
            f"| {100 * c['model_at_least_probe']:.0f} % | {r['MAE']:.3f} | {m['observed']:+.3f} "
            f"[{m['low']:+.3f}, {m['high']:+.3f}] | {100 * m['model_at_least_probe']:.0f} % "
            f"| {100 * r['Non0_acc_2']:.1f} | {100 * a['observed']:+.1f} "
            f"[{100 * a['low']:+.1f}, {100 * a['high']:+.1f}] "
            f"| {100 * a['model_at_least_probe']:.0f} % | {r['valid']['MAE']:.3f} | {r['valid']['Corr']:.3f} |"
        )
    inside = [label for label, r in rows.items() if r["gap"]["Corr"]["low"] <= 0 <= r["gap"]["Corr"]["high"]]
    below = [label for label, r in rows.items() if r["gap"]["Corr"]["high"] < 0]
    lines.append("\nReading (computed from the table):\n")
    lines.append(
        "- Corr interval contains 0 (the test split cannot tell the run from the probe): "
        + (", ".join(inside) if inside else "none")
        + "."
    )
    below_text = ", ".join(below) or "none"
    lines.append(f"- Corr interval wholly below 0 (below the probe beyond test noise): {below_text}.")
    return "\n".join(lines) + "\n"


def sides_markdown(priors: dict[str, float], probe: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str:
    """The --sides table: each side's test accuracy, the share predicted positive, and the balanced
    Non0 Acc-2 and sign AUC with their paired intervals against the probe."""
    share = ", ".join(f"{split} {100 * v:.1f} %" for split, v in priors.items())
    lines = [
        "\nWhere the Non0 Acc-2 difference comes from (test split). Share of the non-zero clips that are "
        f"positive: {share}. Positive / negative clips: the share of each side put on its side; balanced = "
        "their mean; sign AUC: the chance that a positive clip scores above a negative one (every threshold). "
        "Differences are model − probe with the paired 95 % interval of the table above.\n",
        "| run | Non0 Acc-2 | positive clips | negative clips | predicted positive | balanced Non0 Acc-2 "
        "| balanced difference [95 % interval] | sign AUC | AUC difference [95 % interval] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cells(sides: dict[str, float]) -> str:
        return (
            f"{100 * sides['positive_acc']:.1f} | {100 * sides['negative_acc']:.1f} "
            f"| {100 * sides['predicted_positive']:.1f} | {100 * sides['balanced_non0']:.1f}"
        )

    ps = probe["sides"]
    lines.append(f"| probe | {100 * probe['test']['Non0_acc_2']:.1f} | {cells(ps)} | – | {ps['sign_auc']:.3f} | – |")
    for label, r in rows.items():
        b, a = r["side_gap"]["balanced_non0"], r["side_gap"]["sign_auc"]
        lines.append(
            f"| {label} | {100 * r['Non0_acc_2']:.1f} | {cells(r['sides'])} "
            f"| {100 * b['observed']:+.1f} [{100 * b['low']:+.1f}, {100 * b['high']:+.1f}] "
            f"| {r['sides']['sign_auc']:.3f} | {a['observed']:+.3f} [{a['low']:+.3f}, {a['high']:+.3f}] |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN")
    p.add_argument("--data", required=True)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--probe-row", default="text", help="the probe row to compare with: a modality, or all")
    p.add_argument(
        "--sides",
        action="store_true",
        help="also each side's accuracy (positive / negative clips), the share predicted positive, "
        "and the balanced Non0 Acc-2 and sign AUC against the probe",
    )
    args = p.parse_args(argv)
    if args.resamples < 100:
        print("probe_gap: error: --resamples must be at least 100", file=sys.stderr)
        return 2
    refuse_sealed([spec.rpartition("=")[2] for spec in args.runs], "probe_gap")  # it reads every run's test
    data = load_dataset(args.data)
    if data.info.num_classes != 1:
        print(f"probe_gap: error: {args.data}: a regression dataset is needed (num_classes 1)", file=sys.stderr)
        return 2
    y = np.asarray(data.split("test").labels, dtype=np.float64).reshape(-1)
    probe, probe_info = probe_test_predictions(data, args.probe_row)
    for key, (fn, _) in METRICS.items():
        value = float(fn(probe, y))
        if abs(value - probe_info["test"][key]) > 1e-6:  # the refit must be the probe row itself
            expected = probe_info["test"][key]
            print(f"probe_gap: error: refitted probe {key} {value:.6f} != {expected:.6f}", file=sys.stderr)
            return 1
    rows: dict[str, dict[str, Any]] = {}
    for spec in args.runs:
        label, _, run = spec.rpartition("=")
        preds = model_test_predictions(data, Path(run))
        rows[label or run] = {
            "run": run,
            "seeds": len(preds),
            **{key: float(fn(preds, y).mean()) for key, (fn, _) in METRICS.items()},
            "valid": valid_means(Path(run)),
            "resamples": args.resamples,
            "gap": paired_gap(preds, probe, y, resamples=args.resamples, seed=args.seed),
        }
        if args.sides:
            rows[label or run]["sides"] = side_scores(preds, y)
            rows[label or run]["side_gap"] = paired_gap(
                preds, probe, y, resamples=args.resamples, seed=args.seed, metrics=SIDE_METRICS
            )
    command = "python benchmarks/probe_gap.py --data {} --resamples {} --seed {} {}{}{}".format(
        args.data,
        args.resamples,
        args.seed,
        "" if args.probe_row == "text" else f"--probe-row {args.probe_row} ",
        "--sides " if args.sides else "",
        " ".join(shlex.quote(s) for s in args.runs),
    )
    md = markdown(command, probe_info, rows)
    if args.sides:
        probe_info["sides"] = side_scores(probe, y)
        priors = {}
        for split in ("train", "valid", "test"):
            labels = np.asarray(data.split(split).labels, dtype=np.float64)
            priors[split] = float((labels > 0).sum() / (labels != 0).sum())
        probe_info["positive_share"] = priors
        md += sides_markdown(priors, probe_info, rows)
    print(md)
    if args.json is not None:
        from msakit.io import atomic_write_json

        payload = {"command": command, "data": args.data, "probe": probe_info, "rows": rows, "markdown": md}
        atomic_write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
