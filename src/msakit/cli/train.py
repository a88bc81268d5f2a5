"""`msakit train`: train a registered model on a dataset over several seeds."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from msakit.cli.common import FORMATTER, add_training_options, overrides_from, print_result


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on a dataset (several seeds, validation-based selection)",
        description=(
            "Train MODEL on DATA for each seed: select the epoch on the validation split, stop early on it, "
            "then evaluate that checkpoint once on the test split. Prints mean ± std over seeds and writes "
            "OUT/results.json, OUT/seed<N>/best (safetensors + config.json), log.csv and TensorBoard logs. "
            "With --seal-test the test split is not evaluated: compare runs on validation, then open it with "
            "`msakit test OUT`."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("--model", required=True, help="registered model name (see `msakit models`)")
    p.add_argument(
        "--data",
        required=True,
        help="dataset: 'synthetic[:preset]', a folder from `msakit data prepare`, or an MMSA/MulT .pkl",
    )
    p.add_argument("--out", type=Path, help="output folder (default: runs/<model>-<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue each seed from OUT/seed<N>/last if present")
    p.add_argument(
        "--seal-test",
        action="store_true",
        help="train, select and stop early exactly as without it (the same checkpoints) but never evaluate the "
        "test split: nothing about test is printed or written; results.json holds the validation metrics and "
        "says the split is sealed. Make the choice on validation, then open it with `msakit test OUT`",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="train with N local processes (DistributedDataParallel: gloo on CPU, NCCL on CUDA; the global batch "
        "is batch_size, split across them). For several machines use `torchrun --nnodes ... -m msakit train`",
    )
    add_training_options(p)
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from msakit.errors import ConfigError

    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from msakit.training.distributed import launch

        return launch(_rank_argv(args), args.nproc)
    from msakit.data import load_dataset
    from msakit.training import Trainer
    from msakit.training.sealed import Seal

    model_overrides, train_config = overrides_from(args)
    dataset = load_dataset(args.data)
    out = args.out or Path("runs") / f"{args.model}-{dataset.info.name.replace(':', '-').replace('/', '-')}"
    seal = Seal(data=args.data) if args.seal_test else None
    trainer = Trainer(
        args.model, dataset, model_overrides=model_overrides, train_config=train_config, out_dir=out, seal=seal
    )
    try:
        result = trainer.fit(resume=args.resume)
    finally:
        _leave_process_group()
    if trainer.runtime.is_main:
        print_result(result, out)
    return 0


def _rank_argv(args: argparse.Namespace) -> list[str]:
    """The `msakit train` arguments each rank of `--nproc` runs with (everything but --nproc)."""
    argv = ["--debug"] if args.debug else []
    argv += ["train", "--model", args.model, "--data", args.data]
    if args.out is not None:
        argv += ["--out", str(args.out)]
    if args.resume:
        argv.append("--resume")
    if args.seal_test:
        argv.append("--seal-test")
    if args.preset:
        argv += ["--preset", args.preset]
    for opt in args.model_opt:
        argv += ["-m", opt]
    for opt in args.train_opt:
        argv += ["-t", opt]
    if args.seeds:
        argv += ["--seeds", *map(str, args.seeds)]
    if args.epochs is not None:
        argv += ["--epochs", str(args.epochs)]
    if args.device:
        argv += ["--device", args.device]
    if args.no_progress:
        argv.append("--no-progress")
    return argv


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
