"""ProMMA vs late fusion under whole-modality missing at shared and imbalanced rates.

    python benchmarks/promma_missing.py --data data/mosi --out runs/promma_mosi
    python benchmarks/promma_missing.py --data data/mmmo --out runs/promma_mmmo
    python benchmarks/promma_missing.py --data synthetic --out runs/promma_syn

Per seed, `promma` and `late_fusion` are trained with the same random whole-modality
dropout (`-t modality_dropout`, default 0.3; selection on validation), then evaluated on
test with `msakit.robustness`' MissBench protocols: `modality_shared` (each sample loses
each modality with probability r, keeping at least one) and `modality_imbalanced` (one
modality lost with probability r, one curve per modality), r ∈ --rates. Reported, mean ±
std over seeds: the complete-data test metrics, and per curve the AUILC (area under the
metric-vs-rate curve over the rate span: the curve's mean level) of Non0 Acc-2 and MAE.
The linear probe (ridge on mean-pooled features, L2 chosen on validation) is the floor
on complete data.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from msakit.data import load_dataset
from msakit.robustness.protocols import RobustnessSettings, run_protocols
from msakit.training import Trainer, evaluate, load_checkpoint, train_config_from

PROTOCOLS = ("modality_shared", "modality_imbalanced")


def probe_row(data: str) -> dict[str, float]:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from unlearning import probe_metrics  # the same ridge probe as the unlearning benchmark

    dataset = load_dataset(data)
    return probe_metrics(dataset, dataset.info.modalities)


def run(args: argparse.Namespace, model: str, seed: int) -> dict[str, Any]:
    dataset = load_dataset(args.data)
    cfg = {"seeds": (seed,), "epochs": args.epochs, "progress": False, "tensorboard": False}
    cfg["modality_dropout"] = args.modality_dropout
    out = args.out / model
    trainer = Trainer(
        model,
        dataset,
        model_overrides={"hidden_dim": args.hidden_dim},
        train_config=train_config_from(cfg),
        out_dir=out,
    )
    trainer.fit()
    best, _ = load_checkpoint(out / f"seed{seed}" / "best")
    settings = RobustnessSettings(rates=tuple(args.rates), seed=seed)
    report = run_protocols(best, dataset, PROTOCOLS, settings)
    curves = {
        name: {k: curve["metrics"][k]["auilc"] for k in ("Non0_acc_2", "MAE")}
        for name, curve in report.summaries["curves"].items()
    }
    return {"clean": evaluate(best, dataset.split("test"), dataset.info.metric_set), "auilc": curves}


def fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values) * scale:.{digits}f} ± {sd * scale:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--models", nargs="+", default=["promma", "late_fusion"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--modality-dropout", type=float, default=0.3)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in args.models}
    for model in args.models:
        for seed in args.seeds:
            results[model].append(run(args, model, seed))
            print(json.dumps({"model": model, "seed": seed, **results[model][-1]}), flush=True)
    probe = probe_row(args.data)
    curves = sorted(results[args.models[0]][0]["auilc"])
    head = ["model", "MAE", "Corr", "Acc-2 (Non0)", "Acc-7"] + [f"AUILC Acc-2 {c}" for c in curves]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cells = [f"{probe['MAE']:.3f}", f"{probe['Corr']:.3f}", f"{100 * probe['Non0_acc_2']:.1f}"]
    cells += [f"{100 * probe['Mult_acc_7']:.1f}", *["–"] * len(curves)]
    lines.append("| linear probe (complete data) | " + " | ".join(cells) + " |")
    for model, rows in results.items():
        clean = lambda k, rows=rows: [r["clean"][k] for r in rows]  # noqa: E731
        cells = [fmt(clean("MAE"), digits=3), fmt(clean("Corr"), digits=3), fmt(clean("Non0_acc_2"), 100)]
        cells.append(fmt(clean("Mult_acc_7"), 100))
        cells += [fmt([r["auilc"][c]["Non0_acc_2"] for r in rows], 100) for c in curves]
        lines.append(f"| {model} (modality_dropout={args.modality_dropout}) | " + " | ".join(cells) + " |")
    mae = ["", "| MAE AUILC (lower is better) | " + " | ".join(curves) + " |", "|" + "---|" * (len(curves) + 1)]
    for model, rows in results.items():
        cells = [fmt([r["auilc"][c]["MAE"] for r in rows], digits=3) for c in curves]
        mae.append(f"| {model} | " + " | ".join(cells) + " |")
    text = "\n".join(lines + mae)
    print(f"\n{args.data}, rates {args.rates}, seeds {args.seeds}\n{text}")
    (args.out / "results.json").write_text(json.dumps({"results": results, "probe": probe, "table": text}, indent=2))


if __name__ == "__main__":
    main()
