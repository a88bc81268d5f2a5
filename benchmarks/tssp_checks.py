"""Three checks docs/models/tssp_msa.md relies on.

    # re-encoding with the *un*-adapted MiniLM reproduces the dataset's precomputed text states
    OMP_NUM_THREADS=1 python benchmarks/tssp_checks.py reencode --data data/mosi --samples 4
    # mean expert weight α per modality on the test split, over the seeds of a run
    OMP_NUM_THREADS=1 python benchmarks/tssp_checks.py expert-weights runs/tssp_mosi_table4/00 --data data/mosi
    # validation MAE of one checkpoint at several evaluation batch sizes (mc_masks per_sample vs shared)
    OMP_NUM_THREADS=1 python benchmarks/tssp_checks.py batch-sizes RUN/seed1/best --data data/mosi-e5

`reencode` prints the largest absolute difference between `layers.RawTextEncoder` (packaged
all-MiniLM-L6-v2 weights) applied to the first N training transcripts and the
precomputed token states of the prepared dataset, over their valid steps. So "no text
adaptation" (precomputed features) and "S-MLM" (re-encoded with the adapted encoder)
differ only in the encoder's weights. `expert-weights` loads every RUN/seed*/best and
prints the mean α (`ModelOutput.modality_weights`) per modality over the test samples
that have it, mean ± std over seeds. `batch-sizes` evaluates one checkpoint on a split at
batch sizes 256, 128, 64, 17 and 1 and prints each MAE and their spread: with per-sample eval
MC masks the output moves with the batch, with `mc_masks: shared` it does not.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from msakit.batch import MODALITIES
from msakit.data import load_dataset


def reencode(data: str, samples: int) -> float:
    from msakit.layers.text_reencoder import RawTextEncoder

    split = load_dataset(data).split("train")
    if split.raw_text is None:
        raise SystemExit(f"{data}: no raw transcripts (labels.csv has no 'text')")
    batch = split.batch(range(samples))
    encoder = RawTextEncoder(max_tokens=int(batch.features["text"].shape[1]))
    encoder.load_base()
    states, mask = encoder(batch.raw_text or [], batch.present_mask("text"))
    n = min(states.shape[1], batch.features["text"].shape[1])
    both = mask[:, :n] & batch.masks["text"][:, :n]
    diff = (states[:, :n] - batch.features["text"][:, :n]).abs()[both]
    lengths_equal = bool(torch.equal(mask.sum(1), batch.masks["text"].sum(1)))
    print(f"{samples} transcripts, valid steps equal: {lengths_equal}, max abs diff {float(diff.max()):.2e}")
    return float(diff.max())


def expert_weights(run: Path, data: str) -> dict[str, tuple[float, float]]:
    from msakit.training.checkpoint import load_checkpoint
    from msakit.training.trainer import predict_split

    split = load_dataset(data).split("test")
    per_seed: dict[str, list[float]] = {}
    checkpoints = sorted(run.glob("seed*/best"))
    if not checkpoints:
        raise SystemExit(f"{run}: no seed*/best checkpoint")
    for path in checkpoints:
        model, _ = load_checkpoint(path)
        pairs = predict_split(model, split)
        weights = torch.cat([o.modality_weights for o, _ in pairs if o.modality_weights is not None])
        present = torch.cat([b.present for _, b in pairs])
        for i, m in enumerate(MODALITIES):
            if present[:, i].any() and weights[:, i].abs().sum() > 0:
                per_seed.setdefault(m, []).append(float(weights[present[:, i], i].mean()))
    out = {m: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for m, v in per_seed.items()}
    print(
        f"{run} on {data} test, {len(checkpoints)} seeds: "
        + ", ".join(f"α_{m} {a:.2f} ± {s:.2f}" for m, (a, s) in out.items())
    )
    return out


def batch_sizes(checkpoint: Path, data: str, split: str = "valid") -> dict[int, float]:
    from msakit.training import evaluate, load_checkpoint

    dataset = load_dataset(data)
    model, _ = load_checkpoint(checkpoint)
    maes = {
        b: float(evaluate(model, dataset.split(split), dataset.info.metric_set, batch_size=b)["MAE"])
        for b in (256, 128, 64, 17, 1)
    }
    print(
        f"{checkpoint} ({split}, mc_masks {getattr(model.config, 'mc_masks', '-')}): "
        + ", ".join(f"batch {b} MAE {v:.4f}" for b, v in maes.items())
        + f"; spread {max(maes.values()) - min(maes.values()):.1e}"
    )
    return maes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reencode")
    r.add_argument("--data", required=True)
    r.add_argument("--samples", type=int, default=4)
    e = sub.add_parser("expert-weights")
    e.add_argument("run", type=Path)
    e.add_argument("--data", required=True)
    b = sub.add_parser("batch-sizes")
    b.add_argument("checkpoint", type=Path)
    b.add_argument("--data", required=True)
    args = parser.parse_args()
    if args.cmd == "reencode":
        reencode(args.data, args.samples)
    elif args.cmd == "batch-sizes":
        batch_sizes(args.checkpoint, args.data)
    else:
        expert_weights(args.run, args.data)


if __name__ == "__main__":
    main()
