"""Held-out measurements behind two claims: AlignMamba-2 aligns modalities, TSD's subspaces are distinct.

    # OT / MMD between modalities on the test split, one row per run folder (every seed's best checkpoint)
    OMP_NUM_THREADS=1 python benchmarks/subspace_alignment.py alignment --data data/mosi \
        runs/am2-mosi runs/am2-mosi-noalign
    # how well a ridge probe recovers each private code from the common code (test R², fit on train)
    OMP_NUM_THREADS=1 python benchmarks/subspace_alignment.py distinct --data data/mosi runs/tsd-mosi

alignment: `AlignMamba2.alignment_distances` (the same debiased Sinkhorn divergence and
Gaussian MMD as the training losses) on the encoded tokens of the whole test split, in
batches of 64, averaged; mean ± std over the seeds of each run folder.

distinct: codes of the train and test splits from each seed's best checkpoint (eval mode,
samples with every modality); for each private code q_m a ridge regression (α = 1,
standardised inputs) from the common code c is fitted on train and scored on test as R²
averaged over q_m's dimensions. As a control the same probe predicts the modality's
*pairwise* code p_{m,·} from c, and the same probe fitted on train pairs shuffled across
samples gives the chance level (≈ 0 or below). A private code the common code cannot predict (R² near the chance
level) is a distinct subspace. Two controls that a code has not simply collapsed (a code
constant over samples is trivially unpredictable): each code's standard deviation over
the test samples (mean over its dimensions), and the R² of the same ridge probe from each
code to the label.
"""

from __future__ import annotations

import argparse
import json
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


def distinct(args: argparse.Namespace) -> None:
    data = load_dataset(args.data)
    rows: dict[str, list[float]] = {}
    rng = np.random.default_rng(0)
    for ckpt in _seeds(Path(args.run)):
        model, _ = load_checkpoint(ckpt)
        model.eval()
        train, test = _codes(model, data.split("train")), _codes(model, data.split("test"))
        common = train["common"], test["common"]
        for name in [n for n in train if n != "label"]:  # a collapsed code would be trivially "distinct"
            rows.setdefault(f"{name}: std over test samples (mean over dims)", []).append(
                float(test[name].std(0).mean())
            )
            rows.setdefault(f"{name} → label", []).append(
                _probe_r2(train[name], train["label"], test[name], test["label"])
            )
        for name in train:
            if name in ("common", "label"):
                continue
            rows.setdefault(f"common → {name}", []).append(_probe_r2(common[0], train[name], common[1], test[name]))
        for name in [n for n in train if n.startswith("private_")]:  # chance: fit on train pairs shuffled
            shuffled = rng.permutation(len(common[0]))
            rows.setdefault(f"chance: common → {name}, train pairs shuffled", []).append(
                _probe_r2(common[0], train[name][shuffled], common[1], test[name])
            )
    print("| probe (ridge, fit on train, R² on test) or code statistic | mean ± std over seeds |\n|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f} |")
    _write(args.json, {"data": args.data, "run": args.run, "per_seed": rows})


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
    d.add_argument("run")
    d.add_argument("--json", type=Path, help="also write the per-seed values")
    d.set_defaults(func=distinct)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.func(args)


if __name__ == "__main__":
    main()
