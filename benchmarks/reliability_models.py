"""Measurements for the reliability-aware models (QA-MoE, PRLF, EBMC); results in docs/models/.

    # QA-MoE's one checkpoint across the reliability spectrum, against late_fusion trained with
    # random missing rates and against a QA-MoE trained separately at each level
    OMP_NUM_THREADS=1 python benchmarks/reliability_models.py spectrum --data data/mmmo --out runs/rel/spectrum_mmmo
    # to choose a setting: train sealed and score validation, then (choice made) open test from the same runs
    ... spectrum --data data/mmmo --out runs/rel/spectrum_mmmo --split valid --seal-test
    ... spectrum --data data/mmmo --out runs/rel/spectrum_mmmo --reuse qa_moe late_fusion specialists
    # MLI (optimisation balance) of EBMC against late_fusion, with the test metrics
    OMP_NUM_THREADS=1 python benchmarks/reliability_models.py mli --data data/mmmo --out runs/rel/mli_mmmo \
        --name ebmc_mli_mmmo   # + docs/results/ebmc_mli_mmmo.json, a docgen table; -m MODEL:KEY=VALUE overrides
    # PRLF's dominant modality against the informative one on synthetic:dominant
    OMP_NUM_THREADS=1 python benchmarks/reliability_models.py dominant --runs runs/rel/dominant/prlf
    # which loss term sends how much input x gradient to each modality (final checkpoints, train split)
    python benchmarks/reliability_models.py terms --runs runs/rel/mli_imbalanced/ebmc+preset --data synthetic:imbalanced
    # ablation rows run one `msakit ablate --rows R --out DIR` at a time -> one docgen ablation table;
    # --full: a `msakit train` run of the same config and budget that stands for the "full" row
    python benchmarks/reliability_models.py ablations --name ebmc_ablation_mosi-e5 --full runs/x/ebmc \
        --rows runs/rel/ablate/ebmc/r1 runs/rel/ablate/ebmc/r2 --how "msakit ablate ..."
    # what QA-MoE's uncertainty and prior slot do along the spectrum (one checkpoint, test split)
    python benchmarks/reliability_models.py uncertainty --runs runs/rel/spectrum_mmmo/qa_moe/seed1/best --data data/mmmo
    # complete-data tables from `msakit train` run folders (RUNS/<data>/<model>/results.json) and
    # `msakit probe --json` files -> docs/results/NAME.json + Markdown
    python benchmarks/reliability_models.py collect --runs runs/main --name reliability_main --probe mmmo=p.json
    # this family's rows of the robustness zoo -> docs/results/reliability_models_robustness_<dataset>.json
    python benchmarks/reliability_models.py zoo

Every number is over the seeds given (default 1-5), mean ± sample std; model selection on the
validation split only; the spectrum perturbation is evaluated with seed 0 on the test split
(`spectrum --split valid`: on the validation split, to choose between settings).
Each command prints a Markdown table and writes OUT/<command>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msakit.data import load_dataset
from msakit.io import atomic_write_json
from msakit.metrics import get_metric_set
from msakit.robustness import RandomMissingRate, Spectrum, bind
from msakit.robustness.protocols import PRIMARY_METRIC, auilc
from msakit.robustness.training import fit_with_robustness
from msakit.training import Trainer, train_config_from
from msakit.training.checkpoint import load_checkpoint
from msakit.training.sealed import Seal, open_test, read_results, refuse_sealed, sealed_message
from msakit.training.trainer import evaluate, predict_split


def _train_config(args: argparse.Namespace) -> Any:
    return train_config_from(
        {
            "seeds": tuple(args.seeds),
            "epochs": args.epochs,
            "patience": args.patience,
            "batch_size": args.batch_size,
            "progress": False,
            "tensorboard": False,
        }
    )


def _overrides(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings -> {KEY: YAML-parsed VALUE} (as `msakit train -m`)."""
    import yaml

    return {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}


def _fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def _spectrum_checkpoints(args: argparse.Namespace, data: Any, system: str, run: Path, **trainer: Any) -> list[Path]:
    """The seeds' best checkpoints of `system` in `run`: read back when `system` is in --reuse and the run
    finished (a sealed run is opened first when the test split is read), else trained into `run`."""
    done = run / "results.json"
    if system in args.reuse and done.is_file():
        if args.split == "test" and sealed_message(run):
            open_test(run, data=args.data)  # the choice was made on validation: open the seal, once
        return [Path(s["checkpoint"]) for s in read_results(run)["seeds"]]
    seal = Seal(data=args.data) if args.seal_test else None
    res = Trainer(dataset=data, train_config=_train_config(args), out_dir=run, seal=seal, **trainer).fit()
    return [Path(seed.checkpoint) for seed in res.seeds]


def spectrum(args: argparse.Namespace) -> dict[str, Any]:
    """Each system's checkpoints on the `--split` split (test by default) degraded at every level."""
    data = load_dataset(args.data)
    metric_set = get_metric_set(data.info.metric_set).name
    key = PRIMARY_METRIC.get(metric_set, "Non0_acc_2")
    out, levels, split = Path(args.out), [float(s) for s in args.levels], args.split
    if split == "test" and args.seal_test:
        print("spectrum: error: --seal-test never reads test; use it with --split valid", file=sys.stderr)
        raise SystemExit(2)
    qa = dict(_overrides(args.model_opt))
    # label -> its runs: (name in --reuse, run folder, Trainer arguments, the one level it is scored at or None)
    systems: dict[str, list[tuple[str, Path, dict[str, Any], float | None]]] = {
        "qa_moe (one checkpoint)": [("qa_moe", out / "qa_moe", {"model_name": "qa_moe", "model_overrides": qa}, None)],
        "late_fusion + random missing rates": [
            (
                "late_fusion",
                out / "late_fusion",
                {"model_name": "late_fusion", "train_transform": RandomMissingRate(max_rate=0.9)},
                None,
            )
        ],
    }
    if args.specialists:  # one QA-MoE per level, trained at that level only (self-corruption off)
        specialist = {**qa, "self_corrupt": 0.0}
        systems["qa_moe trained at the level"] = [
            (
                "specialists",
                out / f"specialist_{s}",
                {
                    "model_name": "qa_moe",
                    "model_overrides": specialist,
                    "train_transform": Spectrum(strength=s) if s else None,
                },
                s,
            )
            for s in levels
        ]
    rows: dict[str, dict[float, list[float]]] = {}
    maes: dict[str, dict[float, list[float]]] = {}
    for label, runs in systems.items():
        rows[label], maes[label] = {s: [] for s in levels}, {s: [] for s in levels}
        for system, run, trainer, level in runs:
            for checkpoint in _spectrum_checkpoints(args, data, system, run, **trainer):
                ckpt, _ = load_checkpoint(checkpoint)
                for s in levels if level is None else [level]:
                    t = bind(Spectrum(strength=s), seed=0)
                    metrics = evaluate(ckpt, data.split(split), metric_set, transform=t)
                    rows[label][s].append(metrics[key])
                    maes[label][s].append(metrics["MAE"])
    lines = [
        f"| system ({key}, {split}) | " + " | ".join(f"s = {s:g}" for s in levels) + " | area (AUILC) |",
        "|---|" + "---|" * (len(levels) + 1),
    ]
    areas: dict[str, list[float]] = {}  # label -> the per-seed areas (AUILC)
    for label, by_level in rows.items():
        per_seed_area = [auilc(levels, [by_level[s][i] for s in levels]) for i in range(len(by_level[levels[0]]))]
        cells = " | ".join(_fmt(by_level[s], 100) for s in levels)
        lines.append(f"| {label} | {cells} | {_fmt(per_seed_area, 100, 2)} |")
        areas[label] = per_seed_area
    lines += [
        "",
        f"| system (MAE, {split}) | " + " | ".join(f"s = {s:g}" for s in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for label, by_level in maes.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(by_level[s], 1, 3) for s in levels) + " |")
    print("\n".join(lines))
    table = "\n".join(lines)

    def plain(table: dict[str, dict[float, list[float]]]) -> dict[str, dict[str, list[float]]]:
        return {k: {str(s): v for s, v in r.items()} for k, r in table.items()}

    return {
        "metric": key,
        "split": split,
        "levels": levels,
        "rows": plain(rows),
        "mae": plain(maes),
        "areas": areas,
        "table": table,
    }


def mli(args: argparse.Namespace) -> dict[str, Any]:
    """MLI of each model over the seeds, with the test metrics; a docgen table (reference late_fusion)."""
    data = load_dataset(args.data)
    key = PRIMARY_METRIC.get(get_metric_set(data.info.metric_set).name, "Non0_acc_2")
    out, table = Path(args.out), {}
    per_model = _per_model_overrides(args.model_opt)
    header = ["model", "MLI ×100 (input × gradient)", f"test {key}", "test MAE", "valid MAE"]
    rows = []
    for entry in args.models:
        name, _, model = entry.rpartition("=")  # LABEL=MODEL, or MODEL labelled by itself
        name = name or model
        done = out / name / "results.json"
        if args.reuse and done.is_file():  # a finished run of this row: read it instead of training again
            seeds = json.loads(done.read_text())["seeds"]
        else:
            res = fit_with_robustness(
                model,
                data,
                out_dir=out / name,
                model_overrides=per_model.get(name, {}),
                train_config=_train_config(args),
            )
            seeds = [
                {"test": s.test, "valid": s.valid, "best_epoch": s.best_epoch, "checkpoint": s.checkpoint}
                for s in res.seeds
            ]
        logs = [json.loads((Path(s["checkpoint"]).parent / "mli.json").read_text()) for s in seeds]
        table[name] = {
            "model": model,
            "overrides": per_model.get(name, {}),
            "mli": [log["mli"] for log in logs],
            "share": [log["share"] for log in logs],
            key: [s["test"][key] for s in seeds],
            "MAE": [s["test"]["MAE"] for s in seeds],
            "valid_MAE": [s["valid"]["MAE"] for s in seeds],
            "best_epoch": [s["best_epoch"] for s in seeds],
        }
        t = table[name]
        label = name + "".join(f", `{k}={v}`" for k, v in per_model.get(name, {}).items())
        rows.append([label, _fmt(t["mli"], 100), _fmt(t[key], 100), _fmt(t["MAE"], 1, 3), _fmt(t["valid_MAE"], 1, 3)])
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    names = [entry.rpartition("=")[0] or entry for entry in args.models]
    reference_label = args.reference  # the reading compares to this row, named by its full label
    if args.reference in names:
        reference_label = rows[names.index(args.reference)][0].replace("`", "")
    return {
        "header": header,
        "rows": rows,
        "reference": reference_label,
        "primary": header[1],
        "secondary": "test MAE",
        "also": [f"test {key}"],
        "valid": "valid MAE",
        "seeds": list(args.seeds),
        "models": table,
    }


def paired(args: argparse.Namespace) -> dict[str, Any]:
    """Per MLI result file (docs/results/NAME.json from `mli --name`): row A minus row B, seed by seed
    (both trained on the same seeds), mean ± std of the difference, paired t-test p, seeds where A wins."""
    from scipy import stats

    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    lines = [f"| result | {args.a} − {args.b}, MLI ×100 per seed | mean ± std | paired t p | seeds {args.a} higher |"]
    lines.append("|---|---|---|---|---|")
    out = {}
    for name in args.names:
        models = json.loads((results / f"{name}.json").read_text())["models"]
        a, b = (np.asarray(models[k]["mli"]) * 100 for k in (args.a, args.b))
        diff = a - b
        p = float(stats.ttest_rel(a, b).pvalue)
        out[name] = {"diff": diff.tolist(), "p": p}
        cells = [
            " ".join(f"{d:+.1f}" for d in diff),
            _fmt(list(diff)),
            f"{p:.2f}",
            f"{int((diff > 0).sum())} of {len(diff)}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return {"pairs": out, "table": "\n".join(lines)}


def _per_model_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """LABEL:KEY=VALUE strings -> {LABEL: {KEY: VALUE}} (LABEL as in --models)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        model, _, rest = pair.partition(":")
        out.setdefault(model, {}).update(_overrides([rest]))
    return out


def dominant(args: argparse.Namespace) -> dict[str, Any]:
    rates = []
    for seed_dir in sorted(Path(args.runs).glob("seed*")):
        model, meta = load_checkpoint(seed_dir / "best")
        data = load_dataset(meta["dataset"]["name"] if args.data is None else args.data)
        hits = total = 0
        for output, batch in predict_split(model, data.split("test")):
            hits += int((output.explanations["dominant"] == batch.targets["informative"]).sum())
            total += batch.size
        rates.append(hits / total)
    print(f"dominant = informative modality, test: {_fmt(rates, 100)} % over {len(rates)} seeds (chance 33.3 %)")
    return {"rates": rates}


def uncertainty(args: argparse.Namespace) -> dict[str, Any]:
    """Per spectrum level, for QA-MoE checkpoints (a checkpoint folder, or a run folder: every seed*/best):
    mean log σ² per modality, log of the head's actual squared error against its clean target (what
    the log σ² should track), prior-slot weight, prediction spread and Corr (test split), mean ± std."""
    folder = Path(args.runs)
    paths = [folder] if (folder / "config.json").is_file() else sorted(folder.glob("seed*/best"))
    data = load_dataset(args.data)
    per: dict[str, dict[str, list[Any]]] = {str(s): {} for s in args.levels}
    for path in paths:
        model, _ = load_checkpoint(path)
        for s in args.levels:
            t = bind(Spectrum(strength=s), seed=0) if s > 0 else None
            got = _uncertainty_at(model, data, t)
            for k, v in got.items():
                per[str(s)].setdefault(k, []).append(v)
    mods = " / ".join(model.modalities)
    lines = [f"| s | mean log σ² ({mods}) | log squared error ({mods}) | prior weight | prediction std | Corr |"]
    lines.append("|---|---|---|---|---|---|")
    rows = {}
    for s in args.levels:
        r = per[str(s)]
        log_u, log_err = np.array(r["log_uncertainty"]), np.array(r["log_error"])  # (seeds, M)
        rows[str(s)] = {k: v for k, v in r.items()}
        cells = [" / ".join(_fmt(list(log_u[:, i]), 1, 2) for i in range(log_u.shape[1]))]
        cells += [" / ".join(_fmt(list(log_err[:, i]), 1, 2) for i in range(log_err.shape[1]))]
        cells += [_fmt(r["prior_weight"], 1, 3), _fmt(r["pred_std"], 1, 3), _fmt(r["corr"], 1, 3)]
        lines.append(f"| {s:g} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    checkpoints = [str(p) for p in paths]
    return {"checkpoints": checkpoints, "modalities": list(model.modalities), "levels": rows, "table": table}


@torch.no_grad()
def _uncertainty_at(model: Any, data: Any, transform: Any) -> dict[str, Any]:
    """One checkpoint at one spectrum level (transform None: clean) on the test split."""
    import torch.nn.functional as F

    from msakit.batch import masked_mean

    model.eval()
    log_u, err, prior, pred, y = [], [], [], [], []
    for raw in data.split("test").loader(128, shuffle=False):
        view = raw if transform is None else transform(raw)
        out = model(view)
        norm = model.input_norm if model.input_norm is not None else (lambda b: b)
        clean, seen = norm(raw), norm(view)
        encoded = [model.encoders[m](seen.features[m], seen.masks[m]) for m in model.modalities]
        heads = model._uncertainty_heads(seen, encoded)
        sq = []
        for (mu, _), m in zip(heads, model.modalities, strict=True):
            x = clean.features[m]
            target = masked_mean(F.layer_norm(x, x.shape[-1:]), clean.masks[m])
            sq.append(torch.where(clean.present_mask(m), (mu - target).pow(2).mean(-1), torch.nan))
        err.append(torch.stack(sq, 1))
        log_u.append(torch.where(raw.present[:, model.columns], out.explanations["log_uncertainty"], torch.nan))
        prior.append(out.explanations["prior_weight"])
        pred.append(out.prediction.flatten())
        y.append(raw.labels.flatten())
    p, t = torch.cat(pred), torch.cat(y)
    return {
        "log_uncertainty": torch.cat(log_u).nanmean(0).tolist(),  # over the samples that have the modality
        "log_error": torch.cat(err).nanmean(0).log().tolist(),
        "prior_weight": float(torch.cat(prior).mean()),
        "pred_std": float(p.std()),
        "corr": float(torch.corrcoef(torch.stack([p, t]))[0, 1]) if p.std() > 0 else 0.0,
    }


def terms(args: argparse.Namespace) -> dict[str, Any]:
    """Per loss term (task and each aux loss), the input × gradient attribution per modality,
    ‖x ⊙ ∂L_term/∂x‖ averaged over the first `--batches` training batches of 64 (as the MLI logger,
    in training mode) for each seed's selected checkpoint. An EBMC checkpoint does not hold its
    stage-1 teacher, so a frozen copy of the checkpoint itself stands in for it (EMC, IMTD)."""
    import copy
    from dataclasses import replace

    from msakit.robustness.training import equity_index

    data = load_dataset(args.data)
    per_seed: dict[str, dict[str, list[float]]] = {}
    for seed_dir in sorted(Path(args.runs).glob("seed*")):
        model, _ = load_checkpoint(seed_dir / "best")
        model.train()
        if hasattr(model, "set_teacher"):
            model.set_teacher(copy.deepcopy(model))
        torch.manual_seed(0)
        split, acc = data.split("train"), {}
        for start in range(0, min(len(split), 64 * args.batches), 64):
            batch = split.batch(range(start, min(start + 64, len(split))))
            leaves = {m: x.detach().clone().requires_grad_(True) for m, x in batch.features.items()}
            out = model(replace(batch, features={m: leaf * 1.0 for m, leaf in leaves.items()}))
            losses = {"task": model.task_loss(out.prediction, batch.labels), **out.aux_losses}
            for name, loss in losses.items():
                grads = torch.autograd.grad(
                    loss, [leaves[m] for m in model.modalities], retain_graph=True, allow_unused=True
                )
                for m, g in zip(model.modalities, grads, strict=True):
                    value = 0.0 if g is None else float((g * leaves[m].detach()).flatten(1).norm(dim=1).mean())
                    acc.setdefault(name, {}).setdefault(m, []).append(value)
        for name, by_mod in acc.items():
            for m, values in by_mod.items():
                per_seed.setdefault(name, {}).setdefault(m, []).append(float(np.mean(values)))
    mods = list(next(iter(per_seed.values())))
    header = ["loss term", *(f"{m} (×1000)" for m in mods), f"share of {mods[0]}", "equity (1 − Gini)"]
    rows = []
    for name, by_mod in per_seed.items():
        values = np.array([by_mod[m] for m in mods])  # (M, seeds)
        total = values.sum(0)
        share = [float(v) for v in values[0] / np.where(total > 0, total, 1.0)]
        equity = [equity_index(list(values[:, i])) if total[i] > 0 else float("nan") for i in range(values.shape[1])]
        cells = [_fmt(list(values[j]), 1000, 2) for j in range(len(mods))]
        rows.append([name, *cells, _fmt(share, 1, 2), _fmt(equity, 1, 2)])
    table = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    table += "\n".join("| " + " | ".join(r) + " |" for r in rows)
    print(table)
    # no top-level "header": docgen shows the table as written (`markdown`), with no reading against a reference
    return {"table": table, "columns": header, "cells": rows, "runs": str(args.runs), "per_seed": per_seed}


def _ablation_row(run: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A `msakit train` / `msakit ablate` result (per-seed dicts) -> per-metric lists over the seeds."""
    seeds = run["seeds"]
    return {
        "seeds": [s["seed"] for s in seeds],
        "test": {k: [s["test"][k] for s in seeds] for k in seeds[0]["test"]},
        "valid": {k: [s["valid"][k] for s in seeds] for k in seeds[0]["valid"]},
        **extra,
    }


def ablations(args: argparse.Namespace) -> dict[str, Any]:
    """Merge single-row `msakit ablate` folders (OUT/ablation.json) and a `full` training run into the
    shape docgen's `render_ablation` reads (rows: seeds, per-seed test and valid metrics)."""
    rows: dict[str, Any] = {}
    metric_set = "mosi"
    if args.full:
        refuse_sealed([args.full], "reliability_models")  # its row shows test metrics
        run = json.loads((Path(args.full) / "results.json").read_text())
        metric_set = run.get("metric_set", metric_set)
        rows["full"] = _ablation_row(run, model_overrides={}, source=str(args.full))
    for folder in args.rows:
        path = Path(folder) / "ablation.json"
        if not path.is_file():
            print(f"skipped (not finished): {folder}")
            continue
        for label, run in json.loads(path.read_text())["rows"].items():
            metric_set = run.get("metric_set", metric_set)
            rows[label] = _ablation_row(run, model_overrides=run.get("model_overrides", {}))
    return {"command": args.how, "metric_set": metric_set, "rows": rows}


ZOO_MODELS = ("qa_moe", "prlf", "ebmc", "late_fusion", "late_fusion+rmr")


def zoo(args: argparse.Namespace) -> dict[str, Any]:
    """This family's rows of the robustness zoo (docs/results/robustness.json, `benchmarks/robustness_all.py`),
    one docgen table per dataset: docs/results/reliability_models_robustness_<dataset>.json."""
    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    source = json.loads((results / "robustness.json").read_text())
    written = {}
    for dataset, info in source["datasets"].items():
        header = ["model (seed 1)", "clean", "AUILC modality_shared", "AUILC step_shared", "AUILC noise"]
        header += ["AUILC spectrum", "spectrum U(0,1)", "MEI", "MLI", "commit"]
        rows = []
        for model in ZOO_MODELS:
            r = info["models"].get(model)
            if r is None:
                continue
            cells = [r["clean"], r["auilc_modality_shared"], r["auilc_step"], r["auilc_noise"], r["auilc_spectrum"]]
            cells.append(r["spectrum_uniform"])
            row = [model, *(f"{v:.1f}" for v in cells)]
            row += ["n/a" if r.get(k) is None else f"{r[k]:.2f}" for k in ("mei", "mli")]
            rows.append([*row, r["run"]["git_commit"][:7]])
        table = {
            "provenance": f"the {dataset} rows of docs/results/robustness.json (seed 1, {info['metric']} ×100, "
            "test split), extracted by `python benchmarks/reliability_models.py zoo`",
            "command": "python benchmarks/robustness_all.py --out runs/robustness-zoo/zoo --epochs 12 --patience 4",
            "header": header,
            "rows": rows,
            "reference": "late_fusion",
            "primary": "AUILC spectrum",
            "secondary": "AUILC modality_shared",
            "also": ["clean"],
        }
        atomic_write_json(results / f"reliability_models_robustness_{dataset}.json", table)
        written[dataset] = table
        print(f"**{dataset}**\n")
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        print("\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n")
    return written


COLUMNS = (("Non0_acc_2", 100, 1), ("Non0_F1_score", 100, 1), ("MAE", 1, 3), ("Corr", 1, 3), ("Mult_acc_7", 100, 1))
CLASS_COLUMNS = (("Acc", 100, 1), ("F1_score", 100, 1))  # classification datasets (YouTube, MELD)


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """One row per run folder RUNS/<data>/<model> (mean ± std over its seeds) and the probe rows."""
    runs, tables = Path(args.runs), {}
    probes = dict(p.split("=", 1) for p in args.probe)
    columns_of = {}
    for data_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        rows = {}
        columns = COLUMNS
        for run in sorted(data_dir.iterdir()):
            if not (run / "results.json").is_file():
                continue
            refuse_sealed([run], "reliability_models")  # its table shows test metrics
            res = json.loads((run / "results.json").read_text())
            seeds = res["seeds"]
            columns = COLUMNS if "MAE" in seeds[0]["test"] else CLASS_COLUMNS
            rows[run.name] = {
                k: [s["test"][k] for s in seeds] for k, _, _ in columns if all(k in s["test"] for s in seeds)
            }
            rows[run.name]["seconds_per_epoch"] = [s["seconds_per_epoch"] for s in seeds]
            rows[run.name]["config"] = json.loads((Path(seeds[0]["checkpoint"]) / "config.json").read_text())
        probe_rows = {}
        if data_dir.name in probes:
            for row in json.loads(Path(probes[data_dir.name]).read_text())["rows"]:
                label = f"probe: {row['name']} ({row['pooling']}, α={row['alpha']:g})"
                probe_rows[label] = {k: row["test"][k] for k, _, _ in columns}
        tables[data_dir.name] = {"runs": rows, "probe": probe_rows}
        columns_of[data_dir.name] = columns
    for name, table in tables.items():
        columns = columns_of[name]
        head = " | ".join(k for k, _, _ in columns)
        lines = [f"**{name}**", "", f"| model | {head} | seeds |", "|---|" + "---|" * (len(columns) + 1)]
        for model, row in table["runs"].items():
            cells = [_fmt(row[k], scale, digits) for k, scale, digits in columns]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {len(row[columns[0][0]])} |")
        for label, row in table["probe"].items():
            lines.append(f"| {label} | " + " | ".join(f"{row[k] * sc:.{d}f}" for k, sc, d in columns) + " | |")
        print("\n".join(lines) + "\n")
    if len(tables) != 1:
        return {"tables": tables}
    # one dataset: also a docgen table (benchmarks/docgen.py render_table), read against late_fusion
    [(name, table)] = tables.items()
    columns = columns_of[name]
    header = ["model", *(k for k, _, _ in columns), "seeds"]
    rows = [
        [model, *(_fmt(row[k], sc, d) for k, sc, d in columns), str(len(row[columns[0][0]]))]
        for model, row in table["runs"].items()
    ]
    rows += [[label, *(f"{row[k] * sc:.{d}f}" for k, sc, d in columns), ""] for label, row in table["probe"].items()]
    keys = [k for k, _, _ in columns]
    also = [k for k in keys[1:] if k in ("MAE", "Corr")] or keys[1:2]  # regression: MAE and Corr beside Acc-2
    return {"tables": tables, "header": header, "rows": rows, "reference": "late_fusion", "primary": keys[0]} | (
        {"also": also} if also else {}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    collect_parser = sub.add_parser("collect")
    collect_parser.add_argument("--runs", required=True)
    collect_parser.add_argument("--name", required=True, help="writes docs/results/NAME.json")
    collect_parser.add_argument("--probe", action="append", default=[], help="DATA=probe.json (msakit probe --json)")
    sub.add_parser("zoo", help="this family's rows of docs/results/robustness.json -> docgen tables")
    for name in ("spectrum", "mli", "dominant", "uncertainty", "terms"):
        p = sub.add_parser(name)
        p.add_argument("--data", default=None)
        p.add_argument("--out", default="runs/rel/bench")
        p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
        p.add_argument("--epochs", type=int, default=15)
        p.add_argument("--patience", type=int, default=5)
        p.add_argument("--batch-size", type=int, default=64)
    for name in ("spectrum", "uncertainty"):
        sub.choices[name].add_argument("--levels", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    sub.choices["spectrum"].add_argument("--no-specialists", dest="specialists", action="store_false")
    sub.choices["spectrum"].add_argument(
        "--reuse",
        nargs="*",
        default=[],
        choices=["qa_moe", "late_fusion", "specialists"],
        help="systems whose finished OUT/<system> runs (specialists: OUT/specialist_<s>) are read back",
    )
    sub.choices["spectrum"].add_argument(
        "--split", choices=["test", "valid"], default="test", help="the split degraded and scored (valid: to choose)"
    )
    sub.choices["spectrum"].add_argument(
        "--seal-test", action="store_true", help="train sealed (never read test); open later with --split test --reuse"
    )
    sub.choices["spectrum"].add_argument("--name", help="also write docs/results/NAME.json")
    sub.choices["spectrum"].add_argument("-m", dest="model_opt", action="append", default=[], help="qa_moe KEY=VALUE")
    sub.choices["mli"].add_argument(
        "--models", nargs="+", default=["ebmc", "late_fusion"], help="MODEL or LABEL=MODEL (one row each)"
    )
    sub.choices["mli"].add_argument("-m", dest="model_opt", action="append", default=[], help="LABEL:KEY=VALUE")
    sub.choices["mli"].add_argument("--name", help="also write docs/results/NAME.json (a docgen table)")
    sub.choices["mli"].add_argument("--reuse", action="store_true", help="read rows whose OUT/LABEL run finished")
    sub.choices["mli"].add_argument("--reference", default="late_fusion", help="the row the doc's reading compares to")
    sub.choices["dominant"].add_argument("--runs", required=True)
    sub.choices["uncertainty"].add_argument("--runs", required=True, help="a qa_moe checkpoint or run folder")
    sub.choices["uncertainty"].add_argument("--name", help="also write docs/results/NAME.json")
    pair = sub.add_parser("paired", help="seed-by-seed MLI difference of two rows in mli result files")
    pair.add_argument("names", nargs="+", help="docs/results/NAME.json files written by `mli --name`")
    pair.add_argument("--a", default="ebmc+preset")
    pair.add_argument("--b", default="late_fusion")
    pair.add_argument("--out", default="runs/rel/bench")
    pair.add_argument("--name", help="also write docs/results/NAME.json")
    merge = sub.add_parser("ablations")
    merge.add_argument("--name", required=True, help="writes docs/results/NAME.json")
    merge.add_argument("--full", default="", help="a `msakit train` run folder for the 'full' row")
    merge.add_argument("--rows", nargs="+", default=[], help="`msakit ablate` output folders")
    merge.add_argument("--how", required=True, help="the commands that made the rows (shown in the doc)")
    sub.choices["terms"].add_argument("--runs", required=True, help="a run folder with seed*/best checkpoints")
    sub.choices["terms"].add_argument("--batches", type=int, default=8)
    sub.choices["terms"].add_argument("--name", help="also write docs/results/NAME.json")
    args = parser.parse_args()
    commands = {"spectrum": spectrum, "mli": mli, "dominant": dominant, "collect": collect, "uncertainty": uncertainty}
    commands["terms"] = terms
    commands["ablations"] = ablations
    commands["paired"] = paired
    result = {**commands, "zoo": zoo}[args.command](args)
    if args.command == "zoo":
        return
    if args.command == "ablations":
        out = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{args.name}.json"
        atomic_write_json(out, result)
        print(f"wrote {out} ({len(result['rows'])} rows)")
        return
    if args.command == "collect":
        out = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{args.name}.json"
        atomic_write_json(out, {"command": " ".join(["python", *__import__("sys").argv]), **result})
    elif args.command != "dominant":
        command = " ".join(["python", *__import__("sys").argv])
        if "table" in result:  # terms, spectrum, uncertainty: a docgen block shows the table as printed
            result["markdown"] = f"```bash\nOMP_NUM_THREADS=1 {command}\n```\n\n{result.pop('table')}\n"
        atomic_write_json(Path(args.out) / f"{args.command}.json", {"args": vars(args), "command": command, **result})
        if getattr(args, "name", None):
            out = Path(__file__).resolve().parents[1] / "docs" / "results" / f"{args.name}.json"
            atomic_write_json(out, {"command": f"OMP_NUM_THREADS=1 {command}", **result})


if __name__ == "__main__":
    main()
