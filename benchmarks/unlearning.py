"""MBD deletion vs full retraining: utility, wall time, and attacks on the removed modality.

    python benchmarks/unlearning.py --data data/mosi --modality audio --out runs/unlearn_mosi
    python benchmarks/unlearning.py --data data/mmmo --modality visual --out runs/unlearn_mmmo
    python benchmarks/unlearning.py --data synthetic --modality visual --out runs/unlearn_syn
    python benchmarks/unlearning.py --data data/mosi --modality audio --samples 0.1 --out runs/unlearn_mosi_s

Per seed: train MBD on everything (the original), retrain it from scratch without the
removed data (the gold standard: without the modality, or with it dropped for the
forget samples), and `msakit.unlearn.unlearn` the original. For a whole-modality
deletion both the retraining and the deletion run as the commands a user types
(`msakit train ... -m modalities=[...]` and `msakit unlearn ...`, each a fresh process:
start-up, imports, data loading, hashing, evidence and writes included), and their CPU
time is the comparison; sample deletion has no retraining command (a forget set per
sample), so both run in this process. Reported, mean ± std over seeds: the test metrics
of the three models and of two linear probes (ridge on the mean-pooled features, L2
chosen on validation: with all modalities and without the removed one); the CPU and wall
time of retraining and of the deletion (the edit alone, and everything); the attack, a
ridge probe that
predicts the removed modality's pooled features from each model's fused embedding (R²
on test samples that have it; fit on train); for sample deletion also the loss-threshold
membership AUC of the forget samples against the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from msakit.batch import masked_mean
from msakit.config import load_yaml_overrides
from msakit.data import load_dataset
from msakit.data.core import MSADataset, SplitData
from msakit.metrics import compute_metrics
from msakit.training import Trainer, evaluate, load_checkpoint, train_config_from
from msakit.unlearn import UnlearnSettings, unlearn
from msakit.unlearn.evidence import embeddings, membership_auc, pooled_modality, ridge_r2

METRICS = ("MAE", "Corr", "Non0_acc_2", "Non0_F1_score", "Mult_acc_7")


def pooled(split: SplitData, modalities: tuple[str, ...]) -> np.ndarray:
    batch = split.batch(range(len(split)))
    return torch.cat([masked_mean(batch.features[m], batch.masks[m]) for m in modalities], dim=-1).double().numpy()


def probe_metrics(dataset: MSADataset, modalities: tuple[str, ...]) -> dict[str, float]:
    """Ridge on mean-pooled features; L2 chosen on validation MAE; test metrics."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tr, va, te = (dataset.split(s) for s in ("train", "valid", "test"))
    x_tr, x_va, x_te = (pooled(s, modalities) for s in (tr, va, te))
    best = None
    for alpha in (0.1, 1.0, 10.0, 100.0, 1000.0):
        probe = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x_tr, tr.labels)
        mae = float(np.abs(probe.predict(x_va) - va.labels).mean())
        if best is None or mae < best[0]:
            best = (mae, probe)
    assert best is not None
    return compute_metrics(dataset.info.metric_set, best[1].predict(x_te), te.labels)


def attack_r2(model: Any, dataset: MSADataset, modality: str) -> float:
    tr, te = dataset.split("train"), dataset.split("test")
    i_tr = [i for i in range(len(tr)) if tr.modalities[modality].present[i]]
    i_te = [i for i in range(len(te)) if te.modalities[modality].present[i]]
    x_tr, _ = embeddings(model, tr, i_tr)
    x_te, _ = embeddings(model, te, i_te)
    return ridge_r2(x_tr, pooled_modality(tr, i_tr, modality), x_te, pooled_modality(te, i_te, modality))


def command(argv: list[str]) -> tuple[float, float]:
    """Run `msakit ARGV` in a fresh process (one thread): (CPU seconds, wall seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-m", "msakit", *argv], check=True, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return cpu, time.perf_counter() - start


def protocol(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one training protocol of the original and of every retraining: (model overrides, train overrides).

    A --preset gives both sections; otherwise the benchmark's defaults. -m/-t, --epochs and
    --patience go on top. The retraining command receives every value explicitly."""
    if args.preset:
        preset = load_yaml_overrides(args.preset)
        model, train = dict(preset.get("model", {})), dict(preset.get("train", {}))
    else:
        model = {"hidden_dim": args.hidden_dim, "property_dim": args.hidden_dim // 2, "encoder": args.encoder}
        train = {"epochs": 20}
    model.update({k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.model_opt)})
    train.update({k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.train_opt)})
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.patience is not None:
        train["patience"] = args.patience
    train.update(progress=False, tensorboard=False)
    return model, train


def run_seed(args: argparse.Namespace, dataset: MSADataset, seed: int) -> dict[str, Any]:
    out = args.out / f"seed{seed}"
    overrides, train_over = protocol(args)
    train_cfg = train_config_from({**train_over, "seeds": (seed,)})
    train = dataset.split("train")
    present = train.modalities[args.modality].present
    forget_ids: set[str] = set()
    samples_file = None
    if args.samples:
        rng = np.random.default_rng(seed)
        having = [train.ids[i] for i in range(len(train)) if present[i]]
        forget_ids = set(rng.choice(having, size=max(1, int(args.samples * len(having))), replace=False).tolist())
        samples_file = out / "forget_ids.txt"
        samples_file.parent.mkdir(parents=True, exist_ok=True)
        samples_file.write_text("\n".join(sorted(forget_ids)) + "\n")
    start, cpu = time.perf_counter(), time.process_time()
    Trainer("mbd", dataset, model_overrides=overrides, train_config=train_cfg, out_dir=out / "original").fit()
    t_original, c_original = time.perf_counter() - start, time.process_time() - cpu
    if not args.samples:
        return run_whole(args, dataset, seed, (overrides, train_over), out, (t_original, c_original))
    start, cpu = time.perf_counter(), time.process_time()

    def drop(batch, rng):  # type: ignore[no-untyped-def]
        mask = torch.tensor([i in forget_ids for i in batch.ids], dtype=torch.bool)
        return batch.drop_modalities([args.modality], mask)

    retrainer = Trainer(
        "mbd",
        dataset,
        model_overrides=overrides,
        train_config=train_cfg,
        out_dir=out / "retrained",
        train_transform=drop,
    )
    retrainer.fit()
    t_retrain, c_retrain = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    cert = unlearn(
        out / "original" / f"seed{seed}" / "best",
        dataset,
        args.modality,
        out / "unlearned",
        samples_file=samples_file,
        settings=UnlearnSettings(seed=seed, noise_seed=seed),
    )
    t_unlearn, c_unlearn = time.perf_counter() - start, time.process_time() - cpu
    models = {
        "original": load_checkpoint(out / "original" / f"seed{seed}" / "best")[0],
        "unlearned": load_checkpoint(out / "unlearned")[0],
        "retrained": load_checkpoint(out / "retrained" / f"seed{seed}" / "best")[0],
    }
    test = dataset.split("test")
    row: dict[str, Any] = {
        "seed": seed,
        "seconds": {  # wall clock, on a machine shared with other jobs
            "original": t_original,
            "retrain": t_retrain,
            "unlearn_edit": cert["evidence"]["seconds"],
            "unlearn_total": t_unlearn,
        },
        "cpu_seconds": {
            "original": c_original,
            "retrain": c_retrain,
            "unlearn_edit": cert["evidence"]["cpu_seconds"],
            "unlearn_total": c_unlearn,
        },
    }
    for name, model in models.items():
        row[name] = {
            **evaluate(model, test, dataset.info.metric_set),
            "attack_r2": attack_r2(model, dataset, args.modality),
        }
        members = [i for i in range(len(train)) if train.ids[i] in forget_ids]
        held = [i for i in range(len(test)) if test.modalities[args.modality].present[i]]
        row[name]["membership_auc"] = membership_auc(model, (train, members), (test, held))
    return row


def run_whole(
    args: argparse.Namespace,
    dataset: MSADataset,
    seed: int,
    over: tuple[dict[str, Any], dict[str, Any]],
    out: Path,
    original_time: tuple[float, float],
) -> dict[str, Any]:
    """Whole-modality deletion: retraining and deletion as the commands a user runs, timed alike; and both in-process.

    The retraining runs twice with the original's protocol: in this process (its CPU time
    is the in-process gold standard) and as a fresh `msakit train` command (the whole
    command's time); the two give the same checkpoint (same seed, one thread)."""
    overrides, train_over = over
    kept = [m for m in dataset.info.modalities if m != args.modality]
    start, cpu = time.perf_counter(), time.process_time()
    Trainer(
        "mbd",
        dataset,
        model_overrides={**overrides, "modalities": tuple(kept)},
        train_config=train_config_from({**train_over, "seeds": (seed,)}),
        out_dir=out / "retrained_in_process",
    ).fit()
    t_inproc, c_inproc = time.perf_counter() - start, time.process_time() - cpu
    dump = lambda v: json.dumps(list(v) if isinstance(v, tuple) else v)  # noqa: E731
    opts = [f"-m={k}={dump(v)}" for k, v in overrides.items()]
    opts += [f"-t={k}={dump(v)}" for k, v in train_over.items() if k not in ("progress", "seeds")]
    retrain = ["train", "--model", "mbd", "--data", args.data, "--out", str(out / "retrained"), "--seeds", str(seed)]
    retrain += [*opts, f"-m=modalities={json.dumps(kept)}"]
    c_retrain, t_retrain = command([*retrain, "--no-progress"])
    ckpt = out / "original" / f"seed{seed}" / "best"
    delete = ["unlearn", str(ckpt), "--modality", args.modality, "--data", args.data, "--out", str(out / "unlearned")]
    c_unlearn, t_unlearn = command([*delete, "--seed", str(seed), "--noise-seed", str(seed)])
    ev = json.loads((out / "unlearned" / "certificate.json").read_text())["evidence"]
    warm = warm_edit(ckpt, dataset, args.modality, out / "unlearned_in_process", seed)
    models = {
        "original": load_checkpoint(ckpt)[0],
        "unlearned": load_checkpoint(out / "unlearned")[0],
        "retrained": load_checkpoint(out / "retrained" / f"seed{seed}" / "best")[0],
    }
    twin = load_checkpoint(out / "retrained_in_process" / f"seed{seed}" / "best")[0]
    pairs = zip(twin.state_dict().values(), models["retrained"].state_dict().values(), strict=True)
    same = all(torch.equal(a, b) for a, b in pairs)
    row: dict[str, Any] = {
        "seed": seed,
        "protocol": "commands (fresh processes); in-process retraining alongside",
        "train_protocol": {**train_over, **{f"model.{k}": v for k, v in overrides.items()}},
        "retrain_command_equals_in_process": same,
        "seconds": {  # wall clock, on a machine shared with other jobs
            "original": original_time[0],
            "retrain": t_retrain,
            "retrain_in_process": t_inproc,
            "unlearn_edit": ev["seconds"],
            "unlearn_in_process": ev.get("seconds_total", ev["seconds"]),
            "unlearn_total": t_unlearn,
        },
        "cpu_seconds": {
            "original": original_time[1],
            "retrain": c_retrain,
            "retrain_in_process": c_inproc,
            "unlearn_edit": ev["cpu_seconds"],
            "unlearn_in_process": ev["cpu_seconds_total"],
            "unlearn_total": c_unlearn,
            **warm,
        },
    }
    for name, model in models.items():
        row[name] = {
            **evaluate(model, dataset.split("test"), dataset.info.metric_set),
            "attack_r2": attack_r2(model, dataset, args.modality),
        }
    return row


def warm_edit(ckpt: Path, dataset: MSADataset, modality: str, out: Path, seed: int) -> dict[str, float]:
    """The same deletion in this (warm) process, as the in-process retraining runs: its edit and
    edit + certificate CPU seconds. Same seeds, so the same edited checkpoint as the command's."""
    cert = unlearn(ckpt, dataset, modality, out, settings=UnlearnSettings(seed=seed, noise_seed=seed))
    return {
        "unlearn_edit_warm": cert["evidence"]["cpu_seconds"],
        "unlearn_in_process_warm": cert["evidence"]["cpu_seconds_total"],
    }


BODY_VARIANTS: dict[str, dict[str, Any]] = {
    "default (ε 1, the body's Newton step applied)": {},
    "ε 10⁶ (the noise about 0)": {"epsilon": 1e6},
    "no body step (1 candidate, ε 10⁶)": {"fraction": 1e-9, "epsilon": 1e6},
    "step chosen on validation (select_step)": {"select_step": True},
}


def body_variants(args: argparse.Namespace, dataset: MSADataset) -> str:
    """Where a utility gap comes from: the saved originals of OUT deleted again with the body's noise
    or step switched off (in this process, to a temporary folder), against the saved retrained rows."""
    saved = json.loads((args.out / "results.json").read_text())
    test = dataset.split("test")
    found: dict[str, list[dict[str, float]]] = {name: [] for name in BODY_VARIANTS}
    for row in saved["rows"]:
        seed = row["seed"]
        ckpt = args.out / f"seed{seed}" / "original" / f"seed{seed}" / "best"
        for i, (name, opts) in enumerate(BODY_VARIANTS.items()):
            out = Path(tempfile.mkdtemp(prefix="msakit-variant-")) / f"seed{seed}-{i}"
            unlearn(ckpt, dataset, args.modality, out, settings=UnlearnSettings(seed=seed, noise_seed=seed, **opts))
            model = load_checkpoint(out)[0]
            metrics = evaluate(model, test, dataset.info.metric_set)
            found[name].append({**metrics, "attack_r2": attack_r2(model, dataset, args.modality)})
            shutil.rmtree(out)
    found["retrained (the saved runs)"] = [row["retrained"] for row in saved["rows"]]
    lines = ["| deletion | MAE | Non0 Acc-2 | Acc-7 | attack R² |", "|---|---|---|---|---|"]
    for name, rows in found.items():
        get = lambda k, rows=rows: [r[k] for r in rows]  # noqa: E731
        cells = [fmt(get("MAE"), digits=3), fmt(get("Non0_acc_2"), 100), fmt(get("Mult_acc_7"), 100)]
        lines.append(f"| {name} | " + " | ".join([*cells, fmt(get("attack_r2"), digits=3)]) + " |")
    return "\n".join(lines)


def fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values) * scale:.{digits}f} ± {sd * scale:.{digits}f}"


def table(rows: list[dict[str, Any]], probes: dict[str, dict[str, float]], sample_scope: bool) -> str:
    cols = ["MAE", "Corr", "Acc-2 (Non0)", "F1 (Non0)", "Acc-7", "attack R²"] + (
        ["membership AUC"] if sample_scope else []
    )
    lines = ["| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, metrics in probes.items():
        cells = [f"{metrics['MAE']:.3f}", f"{metrics['Corr']:.3f}", f"{100 * metrics['Non0_acc_2']:.1f}"]
        cells += [f"{100 * metrics['Non0_F1_score']:.1f}", f"{100 * metrics['Mult_acc_7']:.1f}", "–"]
        lines.append(f"| {name} | " + " | ".join(cells + (["–"] if sample_scope else [])) + " |")
    for name in ("original", "unlearned", "retrained"):
        get = lambda k, name=name: [r[name][k] for r in rows]  # noqa: E731
        cells = [fmt(get("MAE"), digits=3), fmt(get("Corr"), digits=3), fmt(get("Non0_acc_2"), 100)]
        cells += [fmt(get("Non0_F1_score"), 100), fmt(get("Mult_acc_7"), 100), fmt(get("attack_r2"), digits=3)]
        if sample_scope:
            cells.append(fmt(get("membership_auc"), digits=3))
        lines.append(f"| MBD {name} | " + " | ".join(cells) + " |")
    secs = lambda k: [r["seconds"][k] for r in rows]  # noqa: E731
    cpu = lambda k: [r["cpu_seconds"][k] for r in rows]  # noqa: E731
    ratio = lambda num, den: [r["cpu_seconds"][num] / r["cpu_seconds"][den] for r in rows]  # noqa: E731
    speed = ratio("retrain", "unlearn_total")
    lines.append("")
    where = "in this process" if sample_scope else "each a fresh `msakit` command (start-up and data loading included)"
    lines.append(
        f"CPU time, one thread, {where}: retraining {fmt(cpu('retrain'))} s, deletion "
        f"{fmt(cpu('unlearn_total'), digits=2)} s (everything: load, edit, evidence, writes; the edit alone "
        f"{fmt(cpu('unlearn_edit'), digits=2)} s): speed-up {fmt(speed)}×. Wall clock on the shared machine: "
        f"retraining {fmt(secs('retrain'))} s, deletion "
        f"{fmt(secs('unlearn_total'), digits=2)} s, of which the edit {fmt(secs('unlearn_edit'), digits=2)} s."
    )
    if all("retrain_in_process" in r["cpu_seconds"] for r in rows):
        edit = ratio("retrain_in_process", "unlearn_edit")
        lines.append(
            f"In-process, one thread (no start-up): retraining {fmt(cpu('retrain_in_process'))} s of CPU, the edit "
            f"(timed inside the fresh `msakit unlearn` command) "
            f"{fmt(cpu('unlearn_edit'), digits=2)} s: speed-up {fmt(edit)}×. Start-up and data loading are what "
            f"separate the two comparisons."
        )
    if all("unlearn_edit_warm" in r["cpu_seconds"] for r in rows):
        warm = ratio("retrain_in_process", "unlearn_edit_warm")
        both = ratio("retrain_in_process", "unlearn_in_process_warm")
        lines.append(
            f"The deletion run again in this warm process, as the in-process retraining is: the edit "
            f"{fmt(cpu('unlearn_edit_warm'), digits=3)} s of CPU, speed-up {fmt(warm)}×; the edit and its "
            f"certificate {fmt(cpu('unlearn_in_process_warm'), digits=3)} s, speed-up {fmt(both)}×."
        )
    if all("unlearn_in_process" in r["cpu_seconds"] for r in rows):
        whole = ratio("retrain_in_process", "unlearn_in_process")
        lines.append(
            f"In the command's process, the edit and its certificate (evidence: attack probes, utility; data "
            f"hashes): "
            f"{fmt(cpu('unlearn_in_process'), digits=2)} s of CPU: speed-up {fmt(whole)}× over in-process retraining."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--modality", required=True, choices=("text", "audio", "visual"))
    parser.add_argument(
        "--samples", type=float, default=0.0, help="delete for this share of samples (0 = whole modality)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the preset's, else 20)")
    parser.add_argument("--patience", type=int, help="early-stopping patience (default: the preset's, else msakit's)")
    parser.add_argument("--preset", help="a preset (<model>/<dataset> or YAML) for the original and every retraining")
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--encoder", default="mean", choices=("mean", "lstm", "transformer"))
    parser.add_argument("-m", dest="model_opt", action="append", default=[], help="mbd KEY=VALUE (as msakit train)")
    parser.add_argument("-t", dest="train_opt", action="append", default=[], help="trainer KEY=VALUE (as msakit train)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="recompute the attack on the saved checkpoints of OUT (and time the deletion in-process, warm, "
        "where a run saved before that was measured lacks it)",
    )
    parser.add_argument(
        "--body-variants", action="store_true", help="delete OUT's saved originals again with the body noise/step off"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset(args.data)
    if args.body_variants:
        print(body_variants(args, dataset))
        return
    if args.rescore:
        saved = json.loads((args.out / "results.json").read_text())
        for row in saved["rows"]:
            run = args.out / f"seed{row['seed']}"
            paths = {"original": run / "original" / f"seed{row['seed']}" / "best", "unlearned": run / "unlearned"}
            paths["retrained"] = run / "retrained" / f"seed{row['seed']}" / "best"
            for name, path in paths.items():
                row[name]["attack_r2"] = attack_r2(load_checkpoint(path)[0], dataset, args.modality)
            if not args.samples and "unlearn_edit_warm" not in row["cpu_seconds"]:  # saved before it was measured
                if row is saved["rows"][0]:  # warm this process up first, as a benchmark run has trained already
                    shutil.rmtree(run / "unlearned_warm_up", ignore_errors=True)
                    warm_edit(paths["original"], dataset, args.modality, run / "unlearned_warm_up", row["seed"])
                shutil.rmtree(run / "unlearned_in_process", ignore_errors=True)
                row["cpu_seconds"].update(
                    warm_edit(paths["original"], dataset, args.modality, run / "unlearned_in_process", row["seed"])
                )
        text = table(saved["rows"], saved["probes"], bool(args.samples))
        print(text)
        (args.out / "results.json").write_text(json.dumps({**saved, "table": text}, indent=2))
        return
    kept = tuple(m for m in dataset.info.modalities if m != args.modality)
    probes = {"linear probe, all modalities": probe_metrics(dataset, dataset.info.modalities)}
    probes[f"linear probe, without {args.modality}"] = probe_metrics(dataset, kept)
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(args, dataset, seed))
        print(json.dumps(rows[-1]), flush=True)
    text = table(rows, probes, bool(args.samples))
    print(
        f"\n{dataset.info.name}: removing {args.modality}"
        + (f" for {args.samples:.0%} of samples" if args.samples else "")
    )
    print(text)
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "probes": probes, "table": text}, indent=2))


if __name__ == "__main__":
    main()
