"""Does the dialogue context carry signal a linear map can use? The probe floor with preceding turns.

    OMP_NUM_THREADS=1 python benchmarks/dialogue_context_probe.py --data data/meld-e5 --windows 0 1 2 4 8 \\
        --json docs/results/cagmamba_meld_context_probe.json

For each window K (0 = no context): the features are the current utterance's mean-pooled
vectors concatenated with the mean of the K preceding turns' (`Batch.context`, exactly
what CAGMamba reads; zeros for a first turn) and a has-context flag, standardised on
train; the same logistic / ridge regression and α grid as `msakit probe` (msakit.probe),
α chosen on the validation split's selection metric, the test split scored once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from msakit.data import load_dataset
from msakit.data.dialogue import DialogueSplit
from msakit.metrics import compute_metrics, get_metric_set
from msakit.probe import ALPHAS, _fit_predict, _standardise, pooled_features


def features(split: DialogueSplit, window: int) -> np.ndarray:
    parts = [pooled_features(split, m, "mean") for m in split.modalities]
    if window > 0:
        ctx = split.context(range(len(split)))
        turns = ctx.mask[:, -window:].numpy()  # (N, K')
        for m in split.modalities:
            x = ctx.features[m][:, -window:].numpy()  # (N, K', D)
            count = np.maximum(turns.sum(1, keepdims=True), 1)
            parts.append((x * turns[..., None]).sum(1) / count)
        parts.append(turns.any(1, keepdims=True).astype(np.float64))
    return np.concatenate(parts, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--windows", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = load_dataset(args.data)
    metric_set = get_metric_set(data.info.metric_set)
    key, higher = metric_set.select_key, metric_set.higher_is_better[metric_set.select_key]
    splits = [data.split(s) for s in ("train", "valid", "test")]
    if not all(isinstance(s, DialogueSplit) for s in splits):
        raise SystemExit(f"{args.data}: not a dialogue dataset (no dialogue / turn columns)")
    train, valid, test = splits
    rows = []
    print(f"| window | α | valid {key} | " + " | ".join(f"test {k}" for k in metric_set.higher_is_better) + " |")
    print("|---|---|---|" + "---|" * len(metric_set.higher_is_better))
    for window in args.windows:
        x_tr, x_va, x_te = _standardise(*(features(s, window) for s in splits))  # type: ignore[arg-type]
        best = None
        for alpha in ALPHAS:
            (p_va, p_te), _, _ = _fit_predict(x_tr, train.labels, [x_va, x_te], alpha, data.info.num_classes)
            val = compute_metrics(metric_set.name, p_va, valid.labels)
            if best is None or (val[key] > best[0] if higher else val[key] < best[0]):
                best = (val[key], alpha, val, compute_metrics(metric_set.name, p_te, test.labels))
        assert best is not None
        _, alpha, val, tst = best
        rows.append({"window": window, "alpha": alpha, "valid": val, "test": tst})
        cells = " | ".join(f"{100 * tst[k]:.1f}" for k in metric_set.higher_is_better)
        print(f"| {window} | {alpha:.3g} | {100 * val[key]:.1f} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "select_key": key, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
