"""Held-out measurements behind two claims: AlignMamba-2 aligns modalities, TSD's subspaces are distinct.

    # OT / MMD between modalities on the test split, one row per run folder (every seed's best checkpoint)
    OMP_NUM_THREADS=1 python benchmarks/subspace_alignment.py alignment --data data/mosi \
        runs/am2-mosi runs/am2-mosi-noalign
    # how well a ridge probe recovers each code from the common code (test R², fit on train), per seed,
    # against a margin; --json also writes the markdown block docgen shows (docs/results/NAME.json)
    OMP_NUM_THREADS=1 python benchmarks/subspace_alignment.py distinct --data data/mosi-e5 \
        "TSD=runs/tsd-mosi" "w/o decoupling=runs/tsd-mosi-nodec" --margin 0.1 --json docs/results/tsd_mosi_distinct.json

alignment: `AlignMamba2.alignment_distances` (the same debiased Sinkhorn divergence and
Gaussian MMD as the training losses) on the encoded tokens of the whole test split, in
batches of 64, averaged; mean ± std over the seeds of each run folder.

distinct: codes of the train and test splits from each seed's best checkpoint (eval mode,
samples with every modality); for each code other than the common code c (pairwise p and
private q_m) a ridge regression (α = 1, standardised inputs) from c is fitted on train
and scored on test as R² averaged over the code's dimensions. Chance is the R² of
predicting the train mean (no information; slightly below 0 when the test mean differs);
a private code is distinct when its R² stays below chance + the margin in every seed (not
on the mean). For reference, the same probe fitted on train pairs shuffled across samples
scores lower still (it fits noise). Two
controls that a code has not simply collapsed (a code constant over samples is trivially
unpredictable): each code's standard deviation over the test samples (mean over its
dimensions), and the R² of the same ridge probe from each code to the label.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from msakit.data import load_dataset
from msakit.training.checkpoint import load_checkpoint


def _seeds(run: Path) -> list[Path]:
    found = sorted(p / "best" for p in run.glob("seed*") if (p / "best").exists())
    if not found:
        raise SystemExit(f"{run}: no seed*/best checkpoints")
    return found


def _batches(split, size: int = 64):  # type: ignore[no-untyped-def]
    for start in range(0, len(split), size):
        yield split.batch(range(start, min(start + size, len(split))))


def _write(path: Path | None, payload: dict) -> None:  # type: ignore[type-arg]
    if path is not None:
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def alignment(args: argparse.Namespace) -> None:
    data = load_dataset(args.data)
    print("| run | OT (Sinkhorn) | MMD |\n|---|---|---|")
    found = {}
    for run in args.runs:
        ot, mmd = [], []
        for ckpt in _seeds(Path(run)):
            model, _ = load_checkpoint(ckpt)
            model.eval()
            with torch.no_grad():
                d = [model.alignment_distances(b) for b in _batches(data.split("test"))]
            ot.append(float(np.mean([x["ot"].item() for x in d])))
            mmd.append(float(np.mean([x["mmd"].item() for x in d])))
        print(f"| {run} | {statistics.mean(ot):.4f} ± {statistics.stdev(ot) if len(ot) > 1 else 0:.4f} "
              f"| {statistics.mean(mmd):.4f} ± {statistics.stdev(mmd) if len(mmd) > 1 else 0:.4f} |")  # fmt: skip
        found[run] = {"ot": ot, "mmd": mmd}
    _write(args.json, {"data": args.data, "split": "test", "per_seed": found})


def _codes(model, split) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Codes of the samples with every modality, and their labels under the key "label"."""
    out: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for b in _batches(split):
            full = b.present[:, [i for i, m in enumerate(("text", "audio", "visual")) if m in b.features]].all(1)
            feats = model(b).features
            for k, v in feats.items():
                if k.startswith("code_"):
                    out.setdefault(k.removeprefix("code_"), []).append(v[full].numpy())
            out.setdefault("label", []).append(b.labels[full].float().reshape(-1, 1).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _probe_r2(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    scaler = StandardScaler().fit(x_train)
    ridge = Ridge(alpha=1.0).fit(scaler.transform(x_train), y_train)
    return float(r2_score(y_test, ridge.predict(scaler.transform(x_test)), multioutput="uniform_average"))


def _distinct_run(data, run: Path, rng: np.random.Generator) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    rows: dict[str, list[float]] = {}
    for ckpt in _seeds(run):
        model, _ = load_checkpoint(ckpt)
        model.eval()
        train, test = _codes(model, data.split("train")), _codes(model, data.split("test"))
        common = train["common"], test["common"]
        for name in [n for n in train if n not in ("common", "label")]:
            rows.setdefault(f"common → {name}", []).append(_probe_r2(common[0], train[name], common[1], test[name]))
        for name in [n for n in train if n.startswith("private_")]:
            constant = np.broadcast_to(train[name].mean(0), test[name].shape)  # no information: the train mean
            rows.setdefault(f"chance: common → {name}, train mean", []).append(
                float(r2_score(test[name], constant, multioutput="uniform_average"))
            )
            shuffled = rng.permutation(len(common[0]))  # a probe fitted on pairs shuffled across samples
            rows.setdefault(f"shuffled: common → {name}, train pairs shuffled", []).append(
                _probe_r2(common[0], train[name][shuffled], common[1], test[name])
            )
        for name in [n for n in train if n != "label"]:  # a collapsed code would be trivially "distinct"
            rows.setdefault(f"{name}: std over test samples", []).append(float(test[name].std(0).mean()))
            rows.setdefault(f"{name} → label", []).append(
                _probe_r2(train[name], train["label"], test[name], test["label"])
            )
    return rows


def _pm(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}"


def distinct_markdown(runs: dict[str, dict[str, list[float]]], margin: float, command: str) -> str:
    """Per-seed R² table, the per-seed verdict against `margin`, then the collapse controls."""
    seeds = max(len(v) for rows in runs.values() for v in rows.values())
    out = ["```bash", command, "```", ""]
    out += ["| run | probe (ridge, R² on test) | " + " | ".join(f"seed {i + 1}" for i in range(seeds))]
    out[-1] += " | mean ± std | every seed < margin |"
    out += ["|---|---|" + "---|" * (seeds + 2)]
    verdicts = []
    for label, rows in runs.items():
        for name, values in rows.items():
            if not name.startswith(("common →", "chance:", "shuffled:")) or name.endswith("→ label"):
                continue
            cells = [f"{v:.3f}" for v in values] + ["–"] * (seeds - len(values))
            chance = rows.get(f"chance: {name}, train mean")
            limits = [c + margin for c in chance] if chance else [margin] * len(values)
            below = all(v < lim for v, lim in zip(values, limits, strict=True))
            ok = "" if name.startswith(("chance", "shuffled")) else ("yes" if below else "no")
            out.append(f"| {label} | {name} | " + " | ".join(cells) + f" | {_pm(values)} | {ok} |")
            if name.startswith("common → private_"):
                gap = max(v - c for v, c in zip(values, chance or [0.0] * len(values), strict=True))
                verdicts.append((label, name.removeprefix("common → "), max(values), gap, ok == "yes", len(values)))
    out += ["", "Controls (mean ± std over seeds): a code's std over the test samples (mean over its dimensions),"]
    out += ["and the ridge R² from the code to the label.", ""]
    names = [n.removesuffix(": std over test samples") for n in next(iter(runs.values())) if n.endswith("samples")]
    out += ["| run | " + " | ".join(f"{n}: std | {n} → label" for n in names) + " |"]
    out += ["|---|" + "---|---|" * len(names)]
    for label, rows in runs.items():
        cells = [f"{_pm(rows[f'{n}: std over test samples'])} | {_pm(rows[f'{n} → label'])}" for n in names]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", f"Margin: in every seed, R² below that seed's chance level (the train-mean row) + {margin}", ""]
    out += ['("every seed < margin" above; for the pairwise code, below the margin itself):', ""]
    for label, code, worst, gap, ok, n in verdicts:
        verdict = "distinct in every seed" if ok else "not distinct in every seed"
        out.append(
            f"- {label}, {code}: largest R² over the {n} seeds {worst:.3f}, largest excess over chance "
            f"{gap:.3f}; {verdict}."
        )
    return "\n".join(out) + "\n"


def distinct(args: argparse.Namespace) -> None:
    data = load_dataset(args.data)
    runs = {}
    for spec in args.runs:
        label, _, folder = spec.rpartition("=")
        runs[label or folder] = _distinct_run(data, Path(folder), np.random.default_rng(0))
    command = args.command or (
        "OMP_NUM_THREADS=1 python benchmarks/subspace_alignment.py distinct "
        f"--data {args.data} --margin {args.margin} " + " ".join(shlex.quote(r) for r in args.runs)
    )
    markdown = distinct_markdown(runs, args.margin, command)
    print(markdown)
    _write(args.json, {"data": args.data, "margin": args.margin, "per_seed": runs, "markdown": markdown})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    a = sub.add_parser("alignment")
    a.add_argument("--data", required=True)
    a.add_argument("runs", nargs="+")
    a.add_argument("--json", type=Path, help="also write the per-seed values")
    a.set_defaults(func=alignment)
    d = sub.add_parser("distinct")
    d.add_argument("--data", required=True)
    d.add_argument("runs", nargs="+", metavar="[LABEL=]RUN")
    d.add_argument("--margin", type=float, default=0.1, help="R² a private code must stay below in every seed")
    d.add_argument("--command", help="the command line shown in the markdown (default: rebuilt from the arguments)")
    d.add_argument("--json", type=Path, help="also write the per-seed values and the markdown block")
    d.set_defaults(func=distinct)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.func(args)


if __name__ == "__main__":
    main()
