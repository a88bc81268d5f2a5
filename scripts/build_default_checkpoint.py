"""Rebuild msakit's default analysis checkpoint: `text_only` on MiniLM tokens, MOSI + MOSEI transcripts.

    msakit data prepare mosi  --source ../shared/data --out data/mosi
    msakit data prepare mosei --source ../shared/data --out data/mosei
    OMP_NUM_THREADS=1 python scripts/build_default_checkpoint.py

The two prepared folders (text = all-MiniLM-L6-v2 token states, 50 steps, exactly what
`msakit.extract`'s `minilm_tokens` extractor gives) are joined into one dataset (ids
prefixed `mosi/`, `mosei/`; each keeps its standard folds), `text_only` is trained with
validation-only selection, tested on each corpus's test fold, and saved with the
extraction spec `msakit analyze` needs to rebuild its features.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from msakit.data import DatasetInfo, load_dataset, read_folder, write_folder
from msakit.extract.pipeline import Pipeline, PipelineConfig
from msakit.training import Trainer, evaluate, load_checkpoint, save_checkpoint, train_config_from

OUT = Path(__file__).resolve().parents[1] / "src" / "msakit" / "checkpoints" / "default_text"


def joined_text_dataset(sources: dict[str, Path], out: Path) -> Path:
    """One folder with the text of every source, ids prefixed by the source's name."""
    labels, values, lengths, ids = [], [], [], []
    for name, folder in sources.items():
        frame = pd.read_csv(folder / "labels.csv", dtype={"id": str}, keep_default_na=False)
        row_ids = (folder / "text.ids.txt").read_text().splitlines()
        values.append(np.load(folder / "text.npy", mmap_mode="r"))
        lengths.append(np.load(folder / "text.lengths.npy"))
        ids += [f"{name}/{i}" for i in row_ids]
        labels.append(frame.assign(id=name + "/" + frame["id"])[["id", "split", "label", "text"]])
    info = DatasetInfo(name="+".join(sources), metric_set="mosi", label_range=3.0, dims={"text": 384})
    text = (np.concatenate(values).astype(np.float32), np.concatenate(lengths), ids)
    return write_folder(out, info, pd.concat(labels, ignore_index=True), {"text": text}, overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mosi", type=Path, default=Path("data/mosi"), help="prepared MOSI folder")
    parser.add_argument("--mosei", type=Path, default=Path("data/mosei"), help="prepared MOSEI folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msakit_default_ckpt"), help="scratch folder")
    parser.add_argument("--out", type=Path, default=OUT, help="checkpoint folder to write")
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs")
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    args = parser.parse_args()

    joined = joined_text_dataset({"mosi": args.mosi, "mosei": args.mosei}, args.work / "data")
    dataset = read_folder(joined)
    train = train_config_from({"epochs": args.epochs, "patience": 6, "seeds": (args.seed,), "progress": False,
                               "tensorboard": False, "batch_size": 64})  # fmt: skip
    overrides = {"hidden_dim": 64, "encoder": "mean", "dropout": 0.1}
    result = Trainer(
        "text_only", dataset, model_overrides=overrides, train_config=train, out_dir=args.work / "run"
    ).fit()
    model, _ = load_checkpoint(result.seeds[0].checkpoint)
    tests = {"mosi+mosei": result.seeds[0].test}
    for name, folder in (("mosi", args.mosi), ("mosei", args.mosei)):
        tests[name] = evaluate(model, load_dataset(folder).split("test"), "mosi")
    pipeline = Pipeline(PipelineConfig(audio=(), visual=()))
    extra = {
        "extract": pipeline.spec(),
        "trained_on": "MOSI + MOSEI transcripts (standard train folds), text = all-MiniLM-L6-v2 tokens (50 steps)",
        "best_epoch": result.seeds[0].best_epoch,
        "metrics": {"valid": result.seeds[0].valid, "test": tests},
        "rebuild": "OMP_NUM_THREADS=1 python scripts/build_default_checkpoint.py",
    }
    save_checkpoint(args.out, model, dataset=dataset.info, train_config=train, extra=extra)
    size = (args.out / "model.safetensors").stat().st_size
    print(json.dumps({"out": str(args.out), "weights_bytes": size, "test": tests}, indent=2))


if __name__ == "__main__":
    main()
