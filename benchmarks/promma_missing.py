"""ProMMA vs late fusion under whole-modality missing at shared and imbalanced rates.

    python benchmarks/promma_missing.py --data data/mosi --out runs/promma_mosi
    python benchmarks/promma_missing.py --data data/mmmo --out runs/promma_mmmo
    python benchmarks/promma_missing.py --data synthetic --out runs/promma_syn
    python benchmarks/promma_missing.py --data data/mmmo --out runs/promma_mmmo --diagnose   # one modality kept
    python benchmarks/promma_missing.py --data synthetic --out runs/a --variants runs/b --rates 0 0.2 0.4 0.6 0.8 1
    python benchmarks/promma_missing.py --data data/mmmo --compare base=promma:runs/a tuned=promma:runs/b --name N
    python benchmarks/promma_missing.py --paired promma:runs/a/results.json late_fusion:runs/b/results.json --name N
    python benchmarks/promma_missing.py --data synthetic --bands late_fusion=runs/b promma=runs/a --cut 0.5 --name N
    python benchmarks/promma_missing.py --data data/mmmo -t ensemble=3 --out runs/promma_mmmo_ens   # deep ensembles

Per seed, `promma` and `late_fusion` are trained with the same random whole-modality
dropout (`-t modality_dropout`, default 0.3; selection on validation), then evaluated on
test with `msakit.robustness`' MissBench protocols: `modality_shared` (each sample loses
each modality with probability r, keeping at least one) and `modality_imbalanced` (one
modality lost with probability r, one curve per modality), r ∈ --rates. Reported, mean ±
std over seeds: the complete-data test metrics, and per curve the AUILC (area under the
metric-vs-rate curve over the rate span: the curve's mean level) of Non0 Acc-2 and MAE.
The linear probe (ridge on mean-pooled features, L2 chosen on validation) is the floor
on complete data.

With `-t ensemble=K` every model of every seed is a K-member deep ensemble (the trainer's
option: OUT/MODEL/seedN/best is the ensemble checkpoint, whose prediction is the members'
mean), and the curves are the ensemble's; its member 0 (seedN/member0/best, exactly the
single run of that seed) is scored on the same masks beside it, as "single" in
results.json (`--paired "promma/single:OUT/results.json" ...` reads it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from msakit.data import load_dataset
from msakit.io import atomic_write_json
from msakit.robustness.protocols import RobustnessSettings, auilc, run_protocols
from msakit.training import Trainer, evaluate, load_checkpoint, train_config_from

PROTOCOLS = ("modality_shared", "modality_imbalanced")


def probe_row(data: str) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).parent))
    from unlearning import probe_metrics  # the same ridge probe as the unlearning benchmark

    dataset = load_dataset(data)
    return probe_metrics(dataset, dataset.info.modalities)


def assignments(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings (values parsed as YAML, as `msakit train -m`) as a dict."""
    return {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in pairs)}


def run(args: argparse.Namespace, model: str, seed: int, dataset: Any) -> dict[str, Any]:
    cfg = {"seeds": (seed,), "epochs": args.epochs, "progress": False, "tensorboard": False}
    cfg["modality_dropout"] = args.modality_dropout
    cfg.update(assignments(args.train_opt))  # the same training protocol for every model
    overrides = {"hidden_dim": args.hidden_dim}
    if model == "promma":
        overrides.update(assignments(args.model_opt))
    out = args.out / model
    trainer = Trainer(
        model,
        dataset,
        model_overrides=overrides,
        train_config=train_config_from(cfg),
        out_dir=out,
    )
    trainer.fit()
    found = scored(out / f"seed{seed}" / "best", dataset, args.rates, seed)
    if trainer.cfg.ensemble > 1:  # the ensemble's member 0 is this seed's single run: score it beside
        found["single"] = scored(out / f"seed{seed}" / "member0" / "best", dataset, args.rates, seed)
    return found


def scored(checkpoint: Path, dataset: Any, rates: list[float], seed: int) -> dict[str, Any]:
    """The missing-rate curves and the complete-data test metrics of one saved checkpoint."""
    best, _ = load_checkpoint(checkpoint)
    return {
        **missing_curves(best, dataset, rates, seed),
        "clean": evaluate(best, dataset.split("test"), dataset.info.metric_set),
    }


def missing_curves(model: Any, dataset: Any, rates: list[float], seed: int) -> dict[str, Any]:
    """AUILC of Non0 Acc-2 and MAE per curve, on test ("auilc") and on validation ("valid_auilc", for choosing)."""
    found = {}
    for split, key in (("test", "auilc"), ("valid", "valid_auilc")):
        report = run_protocols(
            model, dataset, PROTOCOLS, RobustnessSettings(rates=tuple(rates), seed=seed, split=split)
        )
        found[key] = {
            name: {k: curve["metrics"][k]["auilc"] for k in ("Non0_acc_2", "MAE")}
            for name, curve in report.summaries["curves"].items()
        }
    return found


def diagnose(run: Path, data: str, seeds: list[int]) -> str:
    """Where the robustness goes: test Non0 Acc-2 and the spread of the predictions with one modality kept.

    Per saved checkpoint RUN/MODEL/seedN/best: complete data and each single modality kept
    (the others removed for every sample); ProMMA with each evaluator mode (learned, always
    impute, never impute). Mean over seeds."""
    dataset = load_dataset(data)
    test = dataset.split("test")
    batch = test.batch(range(len(test)))
    nonzero = batch.labels != 0
    mods = dataset.info.modalities
    views = {"complete": batch, **{f"{m} only": batch.drop_modalities([o for o in mods if o != m]) for m in mods}}
    positive = float((batch.labels[nonzero] > 0).float().mean())
    lines = [f"test Non0 positive share (a constant positive prediction's Acc-2): {100 * positive:.1f}", ""]
    lines += ["| model | evaluator | " + " | ".join(f"Acc-2 {v} | pred. std {v}" for v in views) + " |"]
    lines.append("|" + "---|" * (2 + 2 * len(views)))
    for model in sorted(p.name for p in run.iterdir() if (p / f"seed{seeds[0]}" / "best").is_dir()):
        nets = [load_checkpoint(run / model / f"seed{s}" / "best")[0].eval() for s in seeds]
        for mode in ("learned", "always", "never") if model == "promma" else ("–",):
            cells = []
            for view in views.values():
                acc, spread = [], []
                for net in nets:
                    if mode != "–":
                        net.config.evaluator = mode  # type: ignore[attr-defined]
                    with torch.no_grad():
                        pred = net(view).prediction
                    acc.append(float(((pred[nonzero] > 0) == (view.labels[nonzero] > 0)).float().mean()))
                    spread.append(float(pred.std()))
                cells += [fmt(acc, 100), fmt(spread, digits=2)]
            lines.append(f"| {model} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


VARIANTS = {  # inference-time switches on a trained ProMMA checkpoint (no retraining)
    "as trained": {},
    "evaluator never": {"evaluator": "never"},
    "evaluator always": {"evaluator": "always"},
    "uniform weights": {"weighting": "uniform"},
    "heads read o_m": {"head_input": "own"},
}


def variants(pm_run: Path, lf_run: Path, data: str, seeds: list[int], rates: list[float]) -> str:
    """Mean Non0 Acc-2 at every rate of the shared-missing curve (and its AUILC), valid and test,
    for late fusion and for ProMMA under the inference-time VARIANTS; masks drawn with seed 1 for all."""
    dataset = load_dataset(data)
    lines = ["| model | variant | split | " + " | ".join(f"r={r:g}" for r in rates) + " | AUILC |"]
    lines.append("|" + "---|" * (4 + len(rates)))
    systems: list[tuple[str, Path, str, dict[str, Any]]] = [("late_fusion", lf_run, "–", {})]
    systems += [("promma", pm_run, k, v) for k, v in VARIANTS.items()]
    for model, run, label, switch in systems:
        for split in ("valid", "test"):
            levels, areas = [], []
            for seed in seeds:
                net, _ = load_checkpoint(run / model / f"seed{seed}" / "best")
                for key, value in switch.items():
                    setattr(net.config, key, value)
                settings = RobustnessSettings(rates=tuple(rates), seed=1, split=split)
                report = run_protocols(net.eval(), dataset, ("modality_shared",), settings)
                ys = [100 * c.metrics["Non0_acc_2"] for c in report.conditions if c.curve == "shared"]
                levels.append(ys)
                areas.append(auilc(rates, ys))
            cells = [f"{statistics.mean(col):.1f}" for col in zip(*levels, strict=True)]
            lines.append(f"| {model} | {label} | {split} | " + " | ".join(cells) + f" | {fmt(areas)} |")
    return "\n".join(lines)


@torch.no_grad()
def _predictions(net: Any, split: Any, keep: tuple[str, ...]) -> torch.Tensor:
    """Test-time predictions with every modality outside KEEP removed from every sample."""
    out = []
    for b in split.loader(256, shuffle=False):
        for m in b.modalities:
            if m not in keep:
                b = b.drop_modalities([m], torch.ones(b.size, dtype=torch.bool))
        out.append(net(b).prediction.reshape(-1))
    return torch.cat(out)


def bands(runs: dict[str, Path], data: str, seeds: list[int], cut: float, name: str) -> str:
    """Non0 Acc-2 on complete data and with one modality left, split by label strength (|y| >= CUT or
    below), per model over seeds, plus the Acc-2 of the seeds' MEAN prediction on complete data:
    where a gap lies (weak clips or strong ones) and whether it is run-to-run variance."""
    dataset = load_dataset(data)
    mods = dataset.info.modalities
    conditions = {"complete": tuple(mods), **{f"{m} only": (m,) for m in mods}}
    head = f"| split | condition | model | Acc-2 all | Acc-2 \\|y\\| ≥ {cut:g} | Acc-2 \\|y\\| < {cut:g} "
    head += f"| mean error, \\|y\\| < {cut:g} | Acc-2 of the seeds' mean prediction |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    record: dict[str, Any] = {}
    for split_name in ("valid", "test"):
        split = dataset.split(split_name)
        y = torch.as_tensor(split.labels).reshape(-1).float()
        nonzero = y != 0
        groups = {"all": nonzero, "strong": nonzero & (y.abs() >= cut), "weak": nonzero & (y.abs() < cut)}
        record[split_name] = {"clips": {k: int(v.sum()) for k, v in groups.items()}}
        for cond, keep in conditions.items():
            for model, run in runs.items():
                preds = []
                family, _, member = model.partition("/")  # MODEL/memberJ: member J of an ensemble run
                for seed in seeds:
                    net, _ = load_checkpoint(run / family / f"seed{seed}" / member / "best")
                    preds.append(_predictions(net.eval(), split, keep))
                acc = {
                    k: [float(((p > 0) == (y > 0))[g].float().mean()) for p in preds] if g.any() else []
                    for k, g in groups.items()
                }  # a group without clips (labels on a coarse grid) stays empty
                bias = [float((p - y)[groups["weak"]].mean()) for p in preds] if groups["weak"].any() else []
                mean = torch.stack(preds).mean(0)
                mean_acc = float(((mean > 0) == (y > 0))[nonzero].float().mean())
                record[split_name][f"{cond} {model}"] = {"acc": acc, "weak_bias": bias, "mean_prediction": mean_acc}
                cells = [fmt(acc[k], 100) if acc[k] else "–" for k in groups] + [fmt(bias, digits=3) if bias else "–"]
                cells.append(f"{100 * mean_acc:.1f}" if cond == "complete" else "")
                lines.append(f"| {split_name} | {cond} | {model} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    if name:
        quoted = " ".join(f"{m}={r}" for m, r in runs.items())
        command = f"python benchmarks/promma_missing.py --data {data} --bands {quoted} --cut {cut:g} --name {name}"
        target = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{name}.json"
        atomic_write_json(
            target, {"data": data, "seeds": seeds, "cut": cut, "command": command, **record, "table": text}
        )
    return text


def rescore(
    run: Path, data: str, seeds: list[int], rates: list[float], switch: dict[str, Any] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Test and validation curves of the checkpoints saved under RUN/MODEL/seedN/best (no training),
    with the inference-time SWITCH (config fields, e.g. evaluator=never) set on each loaded model."""
    dataset = load_dataset(data)
    found: dict[str, list[dict[str, Any]]] = {}
    for model_dir in sorted(p for p in run.iterdir() if (p / f"seed{seeds[0]}" / "best").is_dir()):
        for seed in seeds:
            best, _ = load_checkpoint(model_dir / f"seed{seed}" / "best")
            for key, value in (switch or {}).items():
                setattr(best.config, key, value)
            clean = evaluate(best, dataset.split("test"), dataset.info.metric_set)
            found.setdefault(model_dir.name, []).append({**missing_curves(best, dataset, rates, seed), "clean": clean})
    return found


def compare(pairs: list[str], data: str, seeds: list[int], rates: list[float], name: str) -> str:
    """One row per LABEL=MODEL:RUN[@KEY=VALUE,...]: the clean Acc-2 and AUILCs, test and validation, of
    RUN's MODEL checkpoints, with the inference-time switches after '@' (e.g. @evaluator=never)."""
    rows: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        label, _, where = pair.partition("=")
        where, _, switches = where.partition("@")
        model, _, folder = where.partition(":")
        switch = assignments(switches.split(",")) if switches else {}
        runs = rescore(Path(folder), data, seeds, rates, switch)[model]
        curves = sorted(runs[0]["auilc"])
        rows[label] = {
            "model": model,
            "run": folder,
            "switch": switch,
            "clean_Non0_acc_2": [r["clean"]["Non0_acc_2"] for r in runs],
            "clean_MAE": [r["clean"]["MAE"] for r in runs],
            **{f"test {c}": [r["auilc"][c]["Non0_acc_2"] for r in runs] for c in curves},
            **{f"valid {c}": [r["valid_auilc"][c]["Non0_acc_2"] for r in runs] for c in curves},
        }
    keys = [k for k in next(iter(rows.values())) if k.startswith(("test ", "valid "))]
    head = ["system", "Acc-2 complete", "MAE complete", *[f"AUILC {k}" for k in keys]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, row in rows.items():
        cells = [fmt(row["clean_Non0_acc_2"], 100), fmt(row["clean_MAE"], digits=3)]
        lines.append(f"| {label} | " + " | ".join(cells + [fmt(row[k], 100) for k in keys]) + " |")
    text = "\n".join(lines)
    if name:
        target = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{name}.json"
        quoted = " ".join(f'"{p}"' for p in pairs)
        command = f"python benchmarks/promma_missing.py --data {data} --compare {quoted} --name {name}"
        record = {"data": data, "seeds": seeds, "rates": rates, "command": command, "rows": rows, "table": text}
        atomic_write_json(target, record)
    return text


def paired(first: str, second: str, name: str, labels: list[str] | None = None) -> str:
    """Per curve, mean ± std over seeds of the seed-paired AUILC difference (first − second) of Non0 Acc-2.

    Each side is LABEL:JSON, either a `results.json` this benchmark wrote (LABEL: the model, or
    MODEL/single for an ensemble run's member 0, i.e. the seed's single run) or a `--compare`
    result file (LABEL: its row). The seeds pair up in order; both sides were
    scored on the same missing masks (RobustnessSettings seed = the seed)."""
    a, b = (_auilc_lists(spec) for spec in (first, second))
    rows: dict[str, Any] = {}
    lines = ["| split | curve | first | second | paired difference | seeds first ahead |", "|---|---|---|---|---|---|"]
    for key in sorted(set(a) & set(b), key=lambda k: (not k.startswith("valid"), k)):
        diff = [p - q for p, q in zip(a[key], b[key], strict=True)]
        rows[key] = {"first": a[key], "second": b[key], "difference": diff}
        split, curve = key.split(" ", 1)
        ahead = f"{sum(d > 0 for d in diff)}/{len(diff)}"
        lines.append(f"| {split} | {curve} | {fmt(a[key], 100)} | {fmt(b[key], 100)} | {fmt(diff, 100)} | {ahead} |")
    text = "\n".join(lines)
    if name:
        target = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{name}.json"
        command = f'python benchmarks/promma_missing.py --paired "{first}" "{second}" --name {name}'
        if labels:
            command += " --labels " + " ".join(f'"{label}"' for label in labels)
        labels = labels or [spec.partition(":")[0] for spec in (first, second)]
        record = {"first": first, "second": second, "labels": labels, "command": command, "rows": rows}
        atomic_write_json(target, {**record, "table": text})
    return text


def _auilc_lists(spec: str) -> dict[str, list[float]]:
    """'test CURVE' / 'valid CURVE' -> per-seed Non0 Acc-2 AUILC, from a results.json or a --compare file."""
    label, _, path = spec.partition(":")
    found = json.loads(Path(path).read_text())
    if "rows" in found:
        return {k: v for k, v in found["rows"][label].items() if k.startswith(("test ", "valid "))}
    model, _, member = label.partition("/")  # MODEL/single: an ensemble run's member 0
    runs = found["results"][model]
    if member:
        if member != "single" or "single" not in runs[0]:
            raise SystemExit(f"promma_missing: error: {path}: no '{member}' scores for {model!r} (no ensemble run)")
        runs = [r["single"] for r in runs]
    out = {}
    for key, split in (("auilc", "test"), ("valid_auilc", "valid")):
        for curve in runs[0].get(key, {}):
            out[f"{split} {curve}"] = [r[key][curve]["Non0_acc_2"] for r in runs]
    return out


def fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values) * scale:.{digits}f} ± {sd * scale:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data")
    parser.add_argument("--models", nargs="+", default=["promma", "late_fusion"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--modality-dropout", type=float, default=0.3)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8])
    parser.add_argument("-m", dest="model_opt", action="append", default=[], help="promma KEY=VALUE")
    parser.add_argument("-t", dest="train_opt", action="append", default=[], help="training KEY=VALUE (all models)")
    parser.add_argument(
        "--variants",
        type=Path,
        metavar="LATE_FUSION_RUN",
        help="only ProMMA's inference-time variants (OUT's checkpoints) against LATE_FUSION_RUN's, per rate",
    )
    parser.add_argument(
        "--bands",
        nargs="+",
        metavar="MODEL[/memberJ]=RUN",
        help="only Acc-2 by label strength (|y| >= --cut or below), complete and one modality left, of saved runs",
    )
    parser.add_argument("--cut", type=float, default=0.5, help="with --bands: the |y| that separates weak clips")
    parser.add_argument("--diagnose", action="store_true", help="only print the one-modality diagnosis of OUT's runs")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="LABEL=MODEL:RUN[@KEY=VALUE,...]",
        help="only rescore saved runs (test and validation AUILC) side by side; --out is ignored",
    )
    parser.add_argument(
        "--paired", nargs=2, metavar="MODEL:RESULTS_JSON", help="only the seed-paired AUILC differences of two runs"
    )
    parser.add_argument("--labels", nargs=2, help="with --paired --name: the two systems' names in the result file")
    parser.add_argument("--name", default="", help="write docs/results/NAME.json (a training run, --compare, --paired)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.paired:
        print(paired(args.paired[0], args.paired[1], args.name, args.labels))
        return
    if args.data is None:
        parser.error("--data is required")
    if args.bands:
        runs = {k: Path(v) for k, v in (spec.split("=", 1) for spec in args.bands)}
        print(bands(runs, args.data, args.seeds, args.cut, args.name))
        return
    if args.compare:
        print(compare(args.compare, args.data, args.seeds, args.rates, args.name))
        return
    if args.out is None:
        parser.error("--out is required")
    if args.diagnose:
        print(diagnose(args.out, args.data, args.seeds))
        return
    if args.variants:
        print(variants(args.out, args.variants, args.data, args.seeds, args.rates))
        return
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in args.models}
    dataset = load_dataset(args.data)
    for model in args.models:
        for seed in args.seeds:
            results[model].append(run(args, model, seed, dataset))
            print(json.dumps({"model": model, "seed": seed, **results[model][-1]}), flush=True)
    probe = probe_row(args.data)
    curves = sorted(results[args.models[0]][0]["auilc"])
    head = ["model", "MAE", "Corr", "Acc-2 (Non0)", "Acc-7"] + [f"AUILC Acc-2 {c}" for c in curves]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cells = [f"{probe['MAE']:.3f}", f"{probe['Corr']:.3f}", f"{100 * probe['Non0_acc_2']:.1f}"]
    cells += [f"{100 * probe['Mult_acc_7']:.1f}", *["–"] * len(curves)]
    lines.append("| linear probe (complete data) | " + " | ".join(cells) + " |")
    # label -> per-seed scores: each model, and with an ensemble also its member 0 (the single run)
    systems: dict[str, list[dict[str, Any]]] = {}
    for model, rows in results.items():
        size = assignments(args.train_opt).get("ensemble", 0)
        if "single" in rows[0]:
            systems[f"{model}, {size}-member ensemble"] = rows
            systems[f"{model}, single (member 0)"] = [r["single"] for r in rows]
        else:
            systems[model] = rows
    for label, rows in systems.items():
        clean = lambda k, rows=rows: [r["clean"][k] for r in rows]  # noqa: E731
        cells = [fmt(clean("MAE"), digits=3), fmt(clean("Corr"), digits=3), fmt(clean("Non0_acc_2"), 100)]
        cells.append(fmt(clean("Mult_acc_7"), 100))
        cells += [fmt([r["auilc"][c]["Non0_acc_2"] for r in rows], 100) for c in curves]
        lines.append(f"| {label} (modality_dropout={args.modality_dropout}) | " + " | ".join(cells) + " |")
    mae = ["", "| MAE AUILC (lower is better) | " + " | ".join(curves) + " |", "|" + "---|" * (len(curves) + 1)]
    for label, rows in systems.items():
        cells = [fmt([r["auilc"][c]["MAE"] for r in rows], digits=3) for c in curves]
        mae.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines + mae)
    print(f"\n{args.data}, rates {args.rates}, seeds {args.seeds}\n{text}")
    command = "python benchmarks/promma_missing.py " + shlex.join(sys.argv[1:])
    record = {"data": args.data, "seeds": args.seeds, "command": command, "results": results, "probe": probe}
    (args.out / "results.json").write_text(json.dumps({**record, "table": text}, indent=2))
    if args.name:  # the run's tables (complete data, Acc-2 and MAE AUILC) as a result file for the docs
        target = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{args.name}.json"
        atomic_write_json(target, {**record, "table": text})


if __name__ == "__main__":
    main()
