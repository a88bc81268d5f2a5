"""Per-epoch CPU time of every registered model under `Trainer`, for before/after comparisons.

    OMP_NUM_THREADS=1 python benchmarks/epoch_time.py --json after.json
    # the same script against an older checkout (its src/ first on the path):
    git worktree add /tmp/before <commit>
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/before/src python benchmarks/epoch_time.py --json before.json
    python benchmarks/epoch_time.py --compare before.json after.json   # the markdown table

For each model: one seed on a seeded synthetic dataset (`--sizes` train/valid/test), one
thread, early stopping off. What is timed is the process CPU time (`time.process_time`,
so other processes on a shared machine inflate it far less than wall time) of
`Trainer.fit` with 1 epoch and with `1 + --epochs` epochs; the difference divided by
`--epochs` is the marginal CPU time of one epoch: the training steps, the validation
pass, the checkpoints and the log row, i.e. everything the trainer does per epoch, and
nothing it does once per run (building the model, the test evaluation, reports).
`--repeats` runs of each, the minimum is kept. Only the public API that both old and
new trainers share is used. A model that cannot train here (e.g. it needs a pretrained
folder) is listed with its error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def measure(
    models: list[str], sizes: tuple[int, int, int], epochs: int, repeats: int, overrides: dict[str, object]
) -> dict[str, object]:
    import torch

    from msakit import list_models
    from msakit.data import SyntheticConfig, make_synthetic
    from msakit.training import Trainer, train_config_from

    torch.set_num_threads(1)
    dataset = make_synthetic(SyntheticConfig(sizes=sizes, seed=0))
    names = models or list_models()

    def cpu_of_fit(name: str, epochs: int) -> float:
        cfg = train_config_from(
            {"epochs": epochs, "seeds": [1], "patience": epochs + 1, "progress": False, "tensorboard": False}
        )
        best = float("inf")
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(name, dataset, model_overrides=overrides, train_config=cfg, out_dir=Path(tmp))
                start = time.process_time()
                result = trainer.fit()
                best = min(best, time.process_time() - start)
            if result.seeds[0].epochs_run != epochs:
                raise RuntimeError(f"ran {result.seeds[0].epochs_run} epochs, not {epochs}")
        return best

    out: dict[str, object] = {}
    for name in names:
        try:
            out[name] = round((cpu_of_fit(name, 1 + epochs) - cpu_of_fit(name, 1)) / epochs, 4)
        except Exception as exc:  # a benchmark row, not a crash: record why the model could not run
            out[name] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        print(f"{name:>14}: {out[name]}", file=sys.stderr)
    return {
        "sizes": list(sizes),
        "epochs": epochs,
        "repeats": repeats,
        "model_overrides": overrides,
        "load_avg_1min": os.getloadavg()[0],
        "seconds_cpu_per_epoch": out,
    }


def compare(before_path: Path, after_path: Path) -> str:
    before = json.loads(before_path.read_text())["seconds_cpu_per_epoch"]
    after = json.loads(after_path.read_text())["seconds_cpu_per_epoch"]
    rows = ["| model | before (CPU s/epoch) | after (CPU s/epoch) | after / before |", "|---|---:|---:|---:|"]
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, "—"), after.get(name, "—")
        ratio = f"{a / b:.2f}" if isinstance(a, float) and isinstance(b, float) else "—"
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        rows.append(f"| {name} | {fmt(b)} | {fmt(a)} | {ratio} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[], help="default: every registered model")
    parser.add_argument("--sizes", type=int, nargs=3, default=(240, 60, 60), metavar=("TRAIN", "VALID", "TEST"))
    parser.add_argument("--epochs", type=int, default=2, help="extra epochs beyond the first")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "-m", "--model-opt", action="append", default=[], metavar="KEY=VALUE", help="a model override for every model"
    )
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"), help="print the markdown table")
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    from msakit.config import parse_override

    overrides = dict(parse_override(o) for o in args.model_opt)
    result = measure(args.models, tuple(args.sizes), args.epochs, args.repeats, overrides)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
