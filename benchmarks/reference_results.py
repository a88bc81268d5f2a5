"""5-seed results of the reference models on the prepared real datasets -> Markdown.

    python benchmarks/reference_results.py --data-root data --out docs/results_reference.md \
        [--models text_only late_fusion] [--datasets mosi mosei sims meld youtube] [-m key=value ...]

Each dataset folder is `<data-root>/<name>` as written by `msakit data prepare <name>`.
Every row is the same protocol as `msakit train` (validation-only selection, test
evaluated once per seed), and the file lists the equivalent `msakit train` command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from msakit.config import parse_override
from msakit.data import load_dataset
from msakit.report import metric_table
from msakit.training import Trainer, train_config_from


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["text_only", "late_fusion"])
    parser.add_argument("--datasets", nargs="+", default=["mosi", "mosei", "sims", "meld", "youtube"])
    parser.add_argument("--runs", type=Path, default=Path("runs/reference"))
    parser.add_argument("-m", "--model-opt", action="append", default=[], help="model override for every run")
    parser.add_argument("-t", "--train-opt", action="append", default=[], help="trainer override for every run")
    args = parser.parse_args()
    model_overrides = dict(parse_override(o) for o in args.model_opt)
    train_overrides = {"progress": False, "tensorboard": False, **dict(parse_override(o) for o in args.train_opt)}
    flags = " ".join([*(f"-m {o}" for o in args.model_opt), *(f"-t {o}" for o in args.train_opt)])
    sections = []
    for name in args.datasets:
        dataset = load_dataset(args.data_root / name)
        rows, ran = [], []
        for model in args.models:
            if model == "text_only" and "text" not in dataset.info.dims:
                continue
            ran.append(model)
            start = time.perf_counter()
            trainer = Trainer(
                model,
                dataset,
                model_overrides=model_overrides,
                train_config=train_config_from(train_overrides),
                out_dir=args.runs / f"{model}-{name}",
            )
            result = trainer.fit()
            spe = sum(s.seconds_per_epoch for s in result.seeds) / len(result.seeds)
            rows.append((f"{model} ({spe:.2f} s/epoch, {time.perf_counter() - start:.0f} s total)", result.summary()))
            print(name, model, {k: f"{m:.4f}" for k, (m, _) in result.summary().items()}, flush=True)
        cmds = "\n".join(f"    msakit train --model {m} --data {args.data_root / name} {flags}".rstrip() for m in ran)
        sections.append(
            f"### {dataset.info.name} ({', '.join(dataset.info.modalities)})\n\n"
            f"{metric_table(rows, dataset.info.metric_set)}\n\nReproduce:\n\n{cmds}\n"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(sections))


if __name__ == "__main__":
    main()
