"""Side-by-side: MMSA 2.2.1's own models and trainers vs msakit's, on the same data and seeds.

Usage (CPU; every run single-threaded):

    msakit data export --format mmsa data/mosi /tmp/mosi_mmsa.pkl
    OMP_NUM_THREADS=1 python benchmarks/compare_mmsa.py /tmp/mosi_mmsa.pkl \
        --models tfn lmf mult --seeds 1 2 3 --out docs/compare_mmsa.md

MMSA is used only when installed (`pip install --no-deps mmsa==2.2.1 easydict`; it
assumes CUDA, so its model (AMIO) and trainer (ATIO) classes are driven here with
`args.device = cpu`). Each (framework, model) pair runs in its own subprocess, so its
peak resident memory (`resource.getrusage(...).ru_maxrss`) is its own.

Protocol, identical for both: the exported pickle; the seeds given; model selection
and early stopping on the validation split (patience 6; MMSA's `early_stop`), then one
test evaluation. Each framework keeps its own default hyper-parameters for MOSI
(batch size, learning rate, widths). Time per epoch is the whole fit (training, the per-epoch
validation, checkpointing; msakit's also its one test pass) divided by the epochs run, as process
CPU time (robust on a shared, oversubscribed machine) and as wall time.
MMSA's final-state models (TFN, LMF, LF-DNN, MulT, EF-LSTM) read the last step and
ignore lengths, so their copy of the data is start-padded; MISA, Self-MM and MMIM pack
sequences by length, so theirs stays end-padded.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# msakit name -> MMSA name (MMSA's `SUPPORTED_MODELS` spelling, lower-cased by its config)
MMSA_NAMES = {
    "tfn": "tfn",
    "lmf": "lmf",
    "mult": "mult",
    "misa": "misa",
    "self_mm": "self_mm",
    "mmim": "mmim",
    "lf_dnn": "lf_dnn",
    "ef_lstm": "ef_lstm",
}
FINAL_STATE = {"tfn", "lmf", "mult", "lf_dnn", "ef_lstm"}
METRICS = ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "MAE", "Corr", "Mult_acc_7")
PATIENCE = 6


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---- msakit side ----------------------------------------------------------------------
def run_msakit(model: str, data: str, seeds: list[int], out: Path) -> dict[str, Any]:
    from msakit.config import TrainConfig
    from msakit.data import load_dataset
    from msakit.training import Trainer

    dataset = load_dataset(data)
    cfg = TrainConfig(
        epochs=100, patience=PATIENCE, seeds=tuple(seeds), device="cpu", progress=False, tensorboard=False
    )
    # a modality the export wrote as absent for every sample (MOSI's visual) is declared absent for the
    # dataset, so msakit builds no branch for it; MMSA has no such notion and runs on the zero array
    train = dataset.split("train")
    kept = tuple(m for m in dataset.info.modalities if train.modalities[m].present.any())
    trainer = Trainer(
        model, dataset, model_overrides={"modalities": kept}, train_config=cfg, out_dir=out / f"msakit-{model}"
    )
    tests, spe, cpu, epochs = [], [], [], []
    for seed in seeds:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        res = trainer.fit_seed(seed)
        wall, used = time.perf_counter() - wall0, time.process_time() - cpu0
        tests.append(res.test)
        epochs.append(res.epochs_run)
        spe.append(wall / res.epochs_run)
        cpu.append(used / res.epochs_run)
    return {"test": tests, "seconds_per_epoch": spe, "cpu_seconds_per_epoch": cpu, "epochs": epochs}


# ---- MMSA side ------------------------------------------------------------------------
def mmsa_copy(data: str, model: str, workdir: Path) -> Path:
    """The exported pickle as MMSA reads it: start-padded for final-state models."""
    with open(data, "rb") as fh:
        raw = pickle.load(fh)  # our own export: plain numpy arrays
    for split in raw.values():
        for key in ("text", "audio", "vision"):
            lengths = np.asarray(split.get(f"{key}_lengths", np.full(len(split[key]), split[key].shape[1])))
            if key == "vision" or key == "audio":
                split[f"{key}_lengths"] = np.maximum(
                    lengths, 1
                )  # MMSA packs by length: an absent modality is 1 zero step
            if model in FINAL_STATE:
                values = split[key]
                shifted = np.zeros_like(values)
                for i, n in enumerate(lengths):
                    if n:
                        shifted[i, values.shape[1] - n :] = values[i, :n]
                split[key] = shifted
    path = workdir / f"mmsa-{model}.pkl"
    with open(path, "wb") as fh:
        pickle.dump(raw, fh, protocol=4)
    return path


def _patch_reduce_lr_on_plateau(torch: Any) -> None:
    """MMSA's MulT passes `verbose=` to ReduceLROnPlateau, which torch >= 2.7 no longer accepts."""
    base = torch.optim.lr_scheduler.ReduceLROnPlateau

    class Compat(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, verbose: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    torch.optim.lr_scheduler.ReduceLROnPlateau = Compat


def run_mmsa(model: str, data: str, seeds: list[int], out: Path) -> dict[str, Any]:
    import torch

    _patch_reduce_lr_on_plateau(torch)  # before MMSA's trainers import it
    from MMSA.config import get_config_regression
    from MMSA.data_loader import MMDataLoader
    from MMSA.models import AMIO
    from MMSA.trains import ATIO
    from MMSA.utils import setup_seed

    name = MMSA_NAMES[model]
    feature_path = mmsa_copy(data, model, out)
    tests, spe, cpu, epochs = [], [], [], []
    for seed in seeds:
        args = get_config_regression(name, "mosi")
        args.update(
            featurePath=str(feature_path),
            custom_feature=None,
            feature_T="",
            feature_A="",
            feature_V="",
            device=torch.device("cpu"),
            train_mode="regression",
            use_bert=False,
            early_stop=PATIENCE,
            model_save_path=out / f"mmsa-{model}-{seed}.pth",
            cur_seed=seed,
        )
        if (
            name == "mult"
        ):  # MOSI's audio here is one utterance-level step: MMSA's kernel-5 convolution cannot run on it
            args.update(conv1d_kernel_size_a=1, conv1d_kernel_size_v=1)
        setup_seed(seed)
        loader = MMDataLoader(args, 0)
        net = AMIO(args).to(args.device)
        trainer = ATIO().getTrain(args)
        n_epochs = [0]
        test_fn = trainer.do_test

        def counted_test(*a: Any, _f: Any = test_fn, _n: list[int] = n_epochs, **k: Any) -> Any:
            _n[0] += k.get("mode", a[2] if len(a) > 2 else "") == "VAL"  # one validation per epoch
            return _f(*a, **k)

        trainer.do_test = counted_test
        wall0, cpu0 = time.perf_counter(), time.process_time()
        trainer.do_train(net, loader)
        wall, used = time.perf_counter() - wall0, time.process_time() - cpu0
        epochs.append(n_epochs[0])
        spe.append(wall / max(n_epochs[0], 1))
        cpu.append(used / max(n_epochs[0], 1))
        net.load_state_dict(torch.load(args.model_save_path, map_location="cpu"))
        result = test_fn(net, loader["test"], mode="TEST")
        tests.append({k: float(v) for k, v in result.items()})
    return {"test": tests, "seconds_per_epoch": spe, "cpu_seconds_per_epoch": cpu, "epochs": epochs}


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    out = Path(args.workdir)
    run = run_mmsa if args.framework == "mmsa" else run_msakit
    try:
        result = run(args.model, args.data, args.seeds, out)
        result["peak_mib"] = _peak_mib()
    except Exception as exc:  # reported in the table, not hidden
        result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    if "error" not in result:
        cache = Path(args.cache)
        cache.mkdir(parents=True, exist_ok=True)
        (cache / _cache_name(args.framework, args.model, args.seeds)).write_text(json.dumps(result))
    print("RESULT " + json.dumps(result))


def _cache_name(framework: str, model: str, seeds: list[int]) -> str:
    return f"{framework}-{model}-seeds{'_'.join(map(str, seeds))}.json"


# ---- driver ---------------------------------------------------------------------------
def spawn(framework: str, model: str, data: str, seeds: list[int], workdir: Path, cache: Path) -> dict[str, Any]:
    cached = cache / _cache_name(framework, model, seeds)
    if cached.exists():
        return dict(json.loads(cached.read_text()))
    cmd = [sys.executable, __file__, "--worker", framework, data, "--models", model, "--seeds", *map(str, seeds)]
    cmd += ["--workdir", str(workdir), "--cache", str(cache)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def summarise(res: dict[str, Any], key: str) -> tuple[float, float]:
    vals = np.array([t[key] for t in res["test"]], dtype=float)
    scale = 1.0 if key in ("MAE", "Corr") else 100.0
    return float(vals.mean() * scale), float(vals.std(ddof=1) * scale) if len(vals) > 1 else 0.0


def table(rows: dict[str, dict[str, dict[str, Any]]], seeds: list[int]) -> str:
    head = ["model", "framework", *METRICS, "CPU s / epoch", "wall s / epoch", "epochs", "peak MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ratios = [
        "| model | Δ Non0 Acc-2 (msakit − MMSA) | CPU time / epoch (msakit ÷ MMSA) "
        "| wall time / epoch (msakit ÷ MMSA) | peak memory (msakit ÷ MMSA) |",
        "|---|---|---|---|---|",
    ]
    for model, pair in rows.items():
        for fw in ("mmsa", "msakit"):
            res = pair[fw]
            if "error" in res:
                lines.append(f"| {model} | {fw} | did not run: `{res['error']}` |" + " — |" * (len(head) - 3))
                continue
            cells = []
            for k in METRICS:
                m, s = summarise(res, k)
                digits = 3 if k in ("MAE", "Corr") else 1
                cells.append(f"{m:.{digits}f} ± {s:.{digits}f}" if len(res["test"]) > 1 else f"{m:.{digits}f}")
            cpu, spe = float(np.mean(res["cpu_seconds_per_epoch"])), float(np.mean(res["seconds_per_epoch"]))
            cells += [f"{cpu:.2f}", f"{spe:.2f}", f"{np.mean(res['epochs']):.1f}", f"{res['peak_mib']:.0f}"]
            lines.append(f"| {model} | {fw} | " + " | ".join(cells) + " |")
        a, b = pair["msakit"], pair["mmsa"]
        if "error" not in a and "error" not in b:
            d = summarise(a, "Non0_acc_2")[0] - summarise(b, "Non0_acc_2")[0]
            c = np.mean(a["cpu_seconds_per_epoch"]) / np.mean(b["cpu_seconds_per_epoch"])
            t = np.mean(a["seconds_per_epoch"]) / np.mean(b["seconds_per_epoch"])
            mem = a["peak_mib"] / b["peak_mib"]
            ratios.append(f"| {model} | {d:+.1f} | {c:.2f} | {t:.2f} | {mem:.2f} |")
    return "\n".join(lines) + "\n\n" + "\n".join(ratios) + "\n"


NOTES = """
## How the two sides were run

- Data: the same exported pickle for both. MOSI here has no visual features; the export writes
  vision as a one-step zero array with length 0. MMSA runs on that zero array; msakit declares
  the modality absent for the dataset (`modalities=("text", "audio")`), so it builds no visual
  branch.
- MMSA's final-state models read the last step and ignore lengths, so this script hands them a
  start-padded copy; msakit's models are padding-agnostic (masked pooling).
- Adaptations MMSA 2.2.1 needs on this machine, made by the script and nowhere else:
  `args.device = cpu`, `use_bert = False`, `early_stop = 6`; its MulT passes `verbose=` to
  `ReduceLROnPlateau`, which torch 2.13 rejects (the script accepts and drops it); its MulT's
  kernel-5 temporal convolution cannot run on MOSI's one-step audio, so
  `conv1d_kernel_size_a = conv1d_kernel_size_v = 1`.
- Not comparable: MMSA's MISA and MMIM assert `use_bert == True` and Self-MM always builds
  `BertTextEncoder`, which downloads bert-base-uncased; none of the three can run offline on
  precomputed text features, so only msakit's versions are measured (docs/results.md, 'Baseline zoo').
- Hyper-parameters: each framework's own MOSI defaults (MMSA: config_regression.json; msakit:
  the config dataclasses). CPU time is the process's CPU time, which is what to compare on a
  shared machine; wall time depends on the load at the time.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="an MMSA pickle written by `msakit data export --format mmsa`")
    p.add_argument("--models", nargs="+", default=["tfn", "lmf", "mult"], choices=sorted(MMSA_NAMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--out", type=Path, default=Path("docs/compare_mmsa.md"))
    p.add_argument("--json", type=Path, help="also write the raw per-seed results here")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "compare_mmsa_cache",
        help="per-run results are kept here and reused by a later call with the same model and seeds",
    )
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=("mmsa", "msakit"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.framework, args.model = args.worker, args.models[0]
        worker(args)
        return
    try:
        import MMSA  # noqa: F401
    except ImportError:
        sys.exit("MMSA is not installed: pip install --no-deps mmsa==2.2.1 easydict")
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="compare_mmsa-") as tmp:
        for model in args.models:
            rows[model] = {}
            for fw in ("mmsa", "msakit"):
                print(f"{model}: {fw} ...", flush=True)
                rows[model][fw] = spawn(fw, model, args.data, args.seeds, Path(tmp), args.cache)
                print(f"  {json.dumps(rows[model][fw])[:300]}", flush=True)
    seeds = " ".join(map(str, args.seeds))
    text = (
        f"# msakit vs MMSA 2.2.1 on the same data\n\n"
        f"Data: `{args.data}`; seeds {seeds}; CPU, one thread per run; mean ± std over seeds (test split; "
        f"selection on validation, patience {PATIENCE}).\n\n"
        + (
            "**One seed only**: a difference of about a point is within seed-to-seed spread (msakit's 5-seed "
            "std on MOSI is 0.6-1.7 points of Non0 Acc-2, docs/results.md, 'Baseline zoo').\n\n"
            if len(args.seeds) == 1
            else ""
        )
        + f"Exported with `msakit data export --format mmsa data/mosi {args.data}`.\n\n"
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/compare_mmsa.py {args.data} --models {' '.join(args.models)} "
        f"--seeds {seeds}`\n\n" + table(rows, args.seeds) + NOTES
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
