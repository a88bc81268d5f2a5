"""Side-by-side: MMSA 2.2.1's own models and trainers vs msakit's, on the same data and seeds.

Usage (CPU; every run single-threaded, niced on a shared machine):

    msakit data export --format mmsa data/mosi /tmp/mosi_mmsa.pkl
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/compare_mmsa.py /tmp/mosi_mmsa.pkl --size-matched \
        --models tfn lmf lf_dnn mult --seeds 1 2 3 4 5 --json docs/results/compare_mmsa.json --out docs/compare_mmsa.md
    python benchmarks/compare_mmsa.py --doc-only docs/results/compare_mmsa.json --out docs/compare_mmsa.md

MMSA is used when importable, or from `--mmsa-path DIR` (e.g. a folder made with
`pip install --no-deps --target DIR mmsa==2.2.1 easydict nvidia-ml-py`, which leaves the main
environment alone). MMSA assumes CUDA, so its model (AMIO) and trainer (ATIO) classes are driven
here with `args.device = cpu`.

Two modes:
- default: each framework keeps its own MOSI defaults (widths, batch size, learning rate);
- `--size-matched`: each msakit baseline is configured to MMSA's MOSI defaults (its
  `config_regression.json`): the same widths and layers, the visual branch MMSA builds on the
  zero visual array, and MMSA's batch size, learning rate, weight decay and clipping. Parameter
  counts of both sides are printed and tabled side by side. Checkpointing is MMSA's too: only the
  best model, when validation improves (`save_last=False`: msakit writes no per-epoch resumable
  `last`; the training is the same, tests/test_training_options.py).

Protocol, identical for both: the exported pickle; model selection and early stopping on the
validation split (patience 6, MMSA's `early_stop`), epochs uncapped until early stopping, then one
test evaluation. Runs are interleaved: for each seed and model, one MMSA run and one msakit run
(A then B on odd seeds, B then A on even ones), each in its own subprocess, so each seed is one
A/B pair measured under the same load. Time per epoch is the epoch loop (training, the per-epoch
validation, checkpointing: MMSA's `do_train`, msakit's epochs from the first one's start to the end
of the fit) divided by the epochs run, as process CPU time and as wall time; the table reports the
median over pairs of the per-pair ratio.
MMSA's final-state models (TFN, LMF, LF-DNN, MulT, EF-LSTM) read the last step and ignore lengths,
so their copy of the data is start-padded; MISA, Self-MM and MMIM pack by length (end-padded).
MMSA always trains in fp32. msakit's bf16 rows (`--msakit-b precision=bf16`, or `--msakit-train
precision=bf16`: bf16 autocast while training, on a CPU with avx512_bf16 or AMX) are labelled as such.
"""

from __future__ import annotations

import argparse
import contextlib
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
MAX_EPOCHS = 1000  # "uncapped": early stopping ends every run long before this
EPOCH_LIMIT = 0  # --timing-epochs: train exactly this many epochs (timing pairs), 0 = until early stopping


class _EpochLimit(Exception):
    """Raised inside MMSA's trainer once it has run EPOCH_LIMIT epochs (its loop has no epoch cap)."""


# MMSA 2.2.1's MOSI defaults (config_regression.json) mapped onto msakit's config fields. msakit's
# sub-networks share one hidden width and one non-text output width, so where MMSA gives audio and
# visual different widths the msakit width is chosen to match the fused size (TFN: (32+1)(32+1)(128+1)
# vs (32+1)(65+1)(65+1)) or the parameter count (LF-DNN, LMF). The "why" column is printed in the doc.
SIZE_MATCHED: dict[str, dict[str, Any]] = {
    "tfn": {
        "model": {
            "text_encoder": "unilstm",
            "feature_norm": False,
            "hidden_dim": 128,
            "text_out": 32,
            "other_out": 65,
            "post_fusion_dim": 64,
            "dropout": 0.3,
            "post_fusion_dropout": 0.5,
        },
        "train": {"batch_size": 32, "lr": 1e-3, "grad_clip": 0.0, "save_last": False},
        "why": "MMSA hidden_dims (128, 32, 128), text_out 32, post_fusion_dim 64; one non-text width 65 gives "
        "MMSA's fused size (33·66·66 ≈ 33·33·129); text: MMSA's TextSubNet (unilstm: one unidirectional "
        "128-wide LSTM on the features), no input standardisation (MMSA has none); no gradient clipping "
        "(MMSA's TFN trainer clips none)",
    },
    "lmf": {
        "model": {
            "text_encoder": "unilstm",
            "feature_norm": False,
            "hidden_dim": 128,
            "text_out": 64,
            "other_out": 72,
            "rank": 3,
            "dropout": 0.3,
        },
        "train": {"batch_size": 64, "lr": 1e-3, "weight_decay": 0.005, "grad_clip": 0.0, "save_last": False},
        "why": "MMSA hidden_dims (128, 16, 128), text_out 64, rank 3; text: MMSA's TextSubNet (unilstm, 128 "
        "wide), no input standardisation (MMSA has none); no gradient clipping (MMSA's LMF trainer clips none)",
    },
    "lf_dnn": {
        "model": {"text_encoder": "unilstm", "feature_norm": False, "hidden_dim": 128, "dropout": 0.2},
        "train": {"batch_size": 128, "lr": 1e-3, "weight_decay": 0.01, "grad_clip": 0.0, "save_last": False},
        "why": "MMSA hidden_dims (128, 16, 128), text_out 256, post_fusion_dim 128; msakit has one width (128) "
        "for every sub-network and the head; text: MMSA's TextSubNet (unilstm, 128 wide), no input "
        "standardisation (MMSA has none); no gradient clipping (MMSA's LF-DNN trainer clips none)",
    },
    "mult": {
        "model": {
            "hidden_dim": 50,
            "heads": 10,
            "cross_layers": 4,
            "self_layers": 4,
            "memory": "concat",
            "ffn_mult": 4,
            "ffn_dropout": 0.0,
            "attn_dropout": 0.2,
            "embed_dropout": 0.2,
            "dropout": 0.0,
        },
        "train": {"batch_size": 16, "lr": 2e-3, "weight_decay": 0.005, "grad_clip": 0.6, "save_last": False},
        "why": "MMSA dst_feature_dim_nheads (50, 10), nlevels 4 (its memory transformers run max(4, 3) = 4 "
        "layers, 2·50 wide: memory=concat), feed-forward 4× wide (ffn_mult=4), relu_dropout = res_dropout = 0 "
        "(ffn_dropout=0)",
    },
}


class BenchmarkError(Exception):
    """A request this benchmark cannot honour; printed as one line, exit code 2."""


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _mem_available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def check_fits(framework: str, model: str, n_params: int, batch: int, widest: int) -> None:
    """Refuse a configuration whose training state clearly exceeds the memory available now.

    Weights, gradients and Adam's two moments are 16 bytes per parameter; the activations of one
    batch are bounded here by batch × widest activation × 4 bytes × 64 (layers, saved tensors).
    """
    need = 16 * n_params + 64 * 4 * batch * widest
    have = _mem_available_bytes()
    if need > have:
        raise BenchmarkError(
            f"{framework} {model}: the size-matched configuration needs about {need / 2**30:.1f} GiB "
            f"({n_params:,} parameters, batch {batch}) but {have / 2**30:.1f} GiB are available"
        )


# ---- msakit side ----------------------------------------------------------------------
def _msakit_trainer(
    model: str, data: str, seed: int, out: Path, size_matched: bool, train: dict[str, Any] | None = None
) -> Any:
    from msakit.config import TrainConfig, apply_overrides
    from msakit.data import load_dataset
    from msakit.training import Trainer

    dataset = load_dataset(data)
    cfg = TrainConfig(
        epochs=EPOCH_LIMIT or MAX_EPOCHS,
        patience=EPOCH_LIMIT + 1 if EPOCH_LIMIT else PATIENCE,
        seeds=(seed,),
        device="cpu",
        progress=False,
        tensorboard=False,
    )
    if size_matched:
        # MMSA builds every branch, the all-zero visual one too; so does the size-matched msakit model
        overrides: dict[str, Any] = {"modalities": tuple(dataset.info.modalities), **SIZE_MATCHED[model]["model"]}
        cfg = apply_overrides(cfg, SIZE_MATCHED[model]["train"], owner="size-matched train config")
    else:
        # a modality the export wrote as absent for every sample (MOSI's visual) is declared absent for the
        # dataset, so msakit builds no branch for it; MMSA has no such notion and runs on the zero array
        train = dataset.split("train")
        overrides = {"modalities": tuple(m for m in dataset.info.modalities if train.modalities[m].present.any())}
    cfg = apply_overrides(cfg, train or {}, owner="--msakit-train")
    return Trainer(model, dataset, model_overrides=overrides, train_config=cfg, out_dir=out / f"msakit-{model}-{seed}")


def msakit_params(model: str, data: str, size_matched: bool) -> tuple[int, int, int]:
    from msakit import create_model

    with tempfile.TemporaryDirectory() as tmp:
        trainer = _msakit_trainer(model, data, 1, Path(tmp), size_matched)
        net = create_model(model, trainer.model_config)
    widest = max(p.shape[0] for p in net.parameters())
    return sum(p.numel() for p in net.parameters()), trainer.cfg.batch_size, widest


def run_msakit(
    model: str, data: str, seed: int, out: Path, size_matched: bool, train: dict[str, Any] | None = None
) -> dict[str, Any]:
    n_params, batch, widest = msakit_params(model, data, size_matched)
    if size_matched:
        check_fits("msakit", model, n_params, batch, widest)
    clock = _EpochClock()
    trainer = _msakit_trainer(model, data, seed, out, size_matched, train)
    trainer.callbacks.append(clock)
    res = trainer.fit_seed(seed)
    wall, used = clock.spent()
    return {
        "test": res.test,
        "valid": res.valid,
        "seconds_per_epoch": wall / res.epochs_run,
        "cpu_seconds_per_epoch": used / res.epochs_run,
        "epochs": res.epochs_run,
        "params": n_params,
        "epoch_cpu": clock.epoch_cpu(),
    }


class _EpochClock:
    """msakit's epoch loop, from the first epoch's start to the end of the fit (training, validation
    and checkpoints of every epoch; not the model build, the normaliser's statistics or the test pass,
    as MMSA's do_train covers neither its data loading nor its model build)."""

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None
        self.end: tuple[float, float] = (0.0, 0.0)
        self.epoch_marks: list[float] = []  # process CPU time at each epoch's start, then at the fit's end

    def on_epoch_start(self, state: Any, epoch: int) -> None:
        if self.start is None:
            self.start = (time.perf_counter(), time.process_time())
        self.epoch_marks.append(time.process_time())

    def on_fit_end(self, state: Any) -> None:
        self.end = (time.perf_counter(), time.process_time())
        self.epoch_marks.append(self.end[1])

    def epoch_cpu(self) -> list[float]:
        """CPU seconds of each epoch (the first one includes torch.compile's compilation when it is on)."""
        return [b - a for a, b in zip(self.epoch_marks, self.epoch_marks[1:], strict=False)]

    def spent(self) -> tuple[float, float]:
        assert self.start is not None
        return self.end[0] - self.start[0], self.end[1] - self.start[1]


# ---- MMSA side ------------------------------------------------------------------------
def mmsa_copy(data: str, model: str, workdir: Path) -> Path:
    """The exported pickle as MMSA reads it: start-padded for final-state models."""
    path = workdir / f"mmsa-{model}.pkl"
    if path.exists():
        return path
    with open(data, "rb") as fh:
        raw = pickle.load(fh)  # our own export: plain numpy arrays
    for split in raw.values():
        for key in ("text", "audio", "vision"):
            lengths = np.asarray(split.get(f"{key}_lengths", np.full(len(split[key]), split[key].shape[1])))
            if key in ("vision", "audio"):  # MMSA packs by length: an absent modality is 1 zero step
                split[f"{key}_lengths"] = np.maximum(lengths, 1)
            if model in FINAL_STATE:
                values = split[key]
                shifted = np.zeros_like(values)
                for i, n in enumerate(lengths):
                    if n:
                        shifted[i, values.shape[1] - n :] = values[i, :n]
                split[key] = shifted
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(raw, fh, protocol=4)
    tmp.replace(path)
    return path


def _patch_reduce_lr_on_plateau(torch: Any) -> None:
    """MMSA's MulT passes `verbose=` to ReduceLROnPlateau, which torch >= 2.7 no longer accepts."""
    base = torch.optim.lr_scheduler.ReduceLROnPlateau

    class Compat(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, verbose: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    torch.optim.lr_scheduler.ReduceLROnPlateau = Compat


def _mmsa_args(model: str, feature_path: Path, out: Path, seed: int) -> Any:
    import torch
    from MMSA.config import get_config_regression

    args = get_config_regression(MMSA_NAMES[model], "mosi")
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
    if model == "mult":  # MOSI's audio here is one utterance-level step: MMSA's kernel-5 convolution cannot run on it
        args.update(conv1d_kernel_size_a=1, conv1d_kernel_size_v=1)
    return args


def run_mmsa(model: str, data: str, seed: int, out: Path, size_matched: bool) -> dict[str, Any]:
    import torch

    _patch_reduce_lr_on_plateau(torch)  # before MMSA's trainers import it
    from MMSA.data_loader import MMDataLoader
    from MMSA.models import AMIO
    from MMSA.trains import ATIO
    from MMSA.utils import setup_seed

    args = _mmsa_args(model, mmsa_copy(data, model, out), out, seed)
    setup_seed(seed)
    loader = MMDataLoader(args, 0)
    net = AMIO(args).to(args.device)
    n_params = sum(p.numel() for p in net.parameters())
    if size_matched:
        check_fits("MMSA", model, n_params, args.batch_size, max(p.shape[0] for p in net.parameters()))
    trainer = ATIO().getTrain(args)
    n_epochs = [0]
    test_fn = trainer.do_test
    marks: list[float] = []  # process CPU time after each epoch's validation

    def counted_test(*a: Any, _f: Any = test_fn, _n: list[int] = n_epochs, **k: Any) -> Any:
        val = k.get("mode", a[2] if len(a) > 2 else "") == "VAL"  # one validation per epoch
        _n[0] += val
        out = _f(*a, **k)
        if val:
            marks.append(time.process_time())
        if EPOCH_LIMIT and _n[0] >= EPOCH_LIMIT:
            raise _EpochLimit
        return out

    trainer.do_test = counted_test
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with contextlib.suppress(_EpochLimit):
        trainer.do_train(net, loader)
    wall, used = time.perf_counter() - wall0, time.process_time() - cpu0
    epochs = max(n_epochs[0], 1)
    if EPOCH_LIMIT:
        return {
            "seconds_per_epoch": wall / epochs,
            "cpu_seconds_per_epoch": used / epochs,
            "epochs": epochs,
            "params": n_params,
            "epoch_cpu": [b - a for a, b in zip([cpu0, *marks], marks, strict=False)],
        }
    net.load_state_dict(torch.load(args.model_save_path, map_location="cpu", weights_only=True))
    result = test_fn(net, loader["test"], mode="TEST")
    return {
        "test": {k: float(v) for k, v in result.items()},
        "seconds_per_epoch": wall / epochs,
        "cpu_seconds_per_epoch": used / epochs,
        "epochs": n_epochs[0],
        "params": n_params,
    }


def msakit_train(options: list[str], model: str) -> dict[str, Any]:
    """The --msakit-train overrides for `model`: `KEY=VALUE` for every model, `MODEL:KEY=VALUE` for one."""
    from msakit.config import parse_override

    out: dict[str, Any] = {}
    for option in options:
        scope, _, rest = option.partition(":") if ":" in option.split("=", 1)[0] else ("", "", option)
        if scope in ("", model):
            key, value = parse_override(rest)
            out[key] = value
    return out


def worker(args: argparse.Namespace) -> None:
    from msakit.allocator import apply_allocator

    if args.framework == "mmsa":  # MMSA's process gets the same glibc thresholds, set before torch loads
        apply_allocator(args.malloc)
    import torch

    global EPOCH_LIMIT
    EPOCH_LIMIT = args.timing_epochs
    torch.set_num_threads(1)
    try:
        where = (args.models[0], args.data, args.seeds[0], Path(args.workdir), args.size_matched)
        if args.framework == "mmsa":
            result = run_mmsa(*where)
        else:
            train = {}
            if args.framework in ("msakit", "msakit_b"):
                extra = args.msakit_b if args.framework == "msakit_b" else []
                train = msakit_train([*args.msakit_train, *extra], args.models[0])
            if args.malloc != "default":  # msakit's own option: the Trainer applies it (TrainConfig.malloc)
                train["malloc"] = args.malloc
            result = run_msakit(*where, train)
        result["peak_mib"] = _peak_mib()
    except BenchmarkError as exc:
        result = {"error": str(exc), "refused": True}
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "memory" not in str(exc).lower():
            raise
        what = f"{args.framework} {args.models[0]}: out of memory ({str(exc).splitlines()[0][:160]})"
        result = {"error": what, "refused": True}
    print("RESULT " + json.dumps(result))


# ---- driver ---------------------------------------------------------------------------
def spawn(framework: str, model: str, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", framework, args.data, "--models", model, "--seeds", str(seed)]
    cmd += ["--workdir", str(workdir), "--timing-epochs", str(args.timing_epochs)]
    cmd += ["--size-matched"] if args.size_matched else []
    cmd += [f"--msakit-train={o}" for o in args.msakit_train]
    cmd += [f"--msakit-b={o}" for o in args.msakit_b]
    cmd += ["--malloc", args.malloc]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if framework == "mmsa" and args.mmsa_path:
        env["PYTHONPATH"] = os.pathsep.join([str(args.mmsa_path), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _ok(run: dict[str, Any] | None) -> bool:
    return run is not None and "error" not in run


def accuracy_table(results: dict[str, Any]) -> str:
    """Test metrics per framework (mean ± std over the seeds that completed), from uncapped runs."""
    head = ["model", "framework", "params", *METRICS, "epochs", "peak MiB", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    deltas = ["| model | Δ Non0 Acc-2 (msakit − MMSA), paired seeds | Δ MAE | pairs |", "|---|---:|---:|---:|"]
    for model, per_seed in results.items():
        for fw in ("mmsa", "msakit"):
            res = [r[fw] for r in per_seed.values() if _ok(r.get(fw))]
            if not res:
                errors = [r[fw]["error"] for r in per_seed.values() if fw in r]
                lines.append(
                    f"| {model} | {fw} | not run: `{errors[0] if errors else 'no time'}` |" + " — |" * (len(head) - 3)
                )
                continue
            cells = [f"{res[0]['params']:,}"]
            for k in METRICS:
                vals = np.array([r["test"][k] for r in res], dtype=float) * (1.0 if k in ("MAE", "Corr") else 100.0)
                digits = 3 if k in ("MAE", "Corr") else 1
                std = f" ± {vals.std(ddof=1):.{digits}f}" if len(vals) > 1 else ""
                cells.append(f"{vals.mean():.{digits}f}{std}")
            cells += [
                f"{np.mean([r['epochs'] for r in res]):.1f}",
                f"{max(r['peak_mib'] for r in res):.0f}",
                str(len(res)),
            ]
            lines.append(f"| {model} | {fw} | " + " | ".join(cells) + " |")
        pairs = [r for r in per_seed.values() if _ok(r.get("mmsa")) and _ok(r.get("msakit"))]
        if pairs:
            acc = 100 * np.mean([p["msakit"]["test"]["Non0_acc_2"] - p["mmsa"]["test"]["Non0_acc_2"] for p in pairs])
            mae = np.mean([p["msakit"]["test"]["MAE"] - p["mmsa"]["test"]["MAE"] for p in pairs])
            deltas.append(f"| {model} | {acc:+.1f} | {mae:+.3f} | {len(pairs)} |")
    return "\n".join(lines) + "\n\n" + "\n".join(deltas) + "\n"


def timing_table(timing: dict[str, Any]) -> str:
    """Per-pair ratios msakit ÷ MMSA of CPU and wall time per epoch, medians over the pairs.

    When the pairs also ran msakit with its default paths ('msakit_default'), two more columns give
    that run's CPU time and ratio: the before/after of the speed options within the same pairs.
    """
    before = any(_ok(r.get("msakit_default")) for v in timing.values() for r in v.values())
    extra_head = " msakit default paths CPU s / epoch | default paths ÷ MMSA, median |" if before else ""
    lines = [
        "| model | MMSA params | msakit params | MMSA CPU s / epoch | msakit CPU s / epoch | CPU time / epoch "
        f"(msakit ÷ MMSA), median [min, max] | wall time / epoch (msakit ÷ MMSA), median |{extra_head} pairs |",
        "|---|---:|---:|---:|---:|---|---:|" + ("---:|---:|" if before else "") + "---:|",
    ]
    for model, per_seed in timing.items():
        pairs = [r for r in per_seed.values() if _ok(r.get("mmsa")) and _ok(r.get("msakit"))]
        if not pairs:
            errors = [
                r[fw]["error"] for r in per_seed.values() for fw in ("mmsa", "msakit") if fw in r and not _ok(r[fw])
            ]
            lines.append(f"| {model} | not run: `{errors[0] if errors else 'no time'}` |" + " — |" * 6)
            continue
        cpu = [p["msakit"]["cpu_seconds_per_epoch"] / p["mmsa"]["cpu_seconds_per_epoch"] for p in pairs]
        wall = [p["msakit"]["seconds_per_epoch"] / p["mmsa"]["seconds_per_epoch"] for p in pairs]
        extra = ""
        if before:
            dflt = [p for p in pairs if _ok(p.get("msakit_default"))]
            ratio = [p["msakit_default"]["cpu_seconds_per_epoch"] / p["mmsa"]["cpu_seconds_per_epoch"] for p in dflt]
            used = _median([p["msakit_default"]["cpu_seconds_per_epoch"] for p in dflt])
            extra = f" {used:.2f} | {_median(ratio):.2f} |" if dflt else " — | — |"
        lines.append(
            f"| {model} | {pairs[0]['mmsa']['params']:,} | {pairs[0]['msakit']['params']:,} | "
            f"{_median([p['mmsa']['cpu_seconds_per_epoch'] for p in pairs]):.2f} | "
            f"{_median([p['msakit']['cpu_seconds_per_epoch'] for p in pairs]):.2f} | "
            f"{_median(cpu):.2f} [{min(cpu):.2f}, {max(cpu):.2f}] | {_median(wall):.2f} |{extra} {len(pairs)} |"
        )
    return "\n".join(lines) + "\n"


def _epoch_split(run: dict[str, Any]) -> tuple[float, float]:
    """CPU seconds of a run's first epoch and the mean of its later ones (nan where not recorded)."""
    cpu = run.get("epoch_cpu") or []
    later = cpu[1:]
    return (cpu[0] if cpu else float("nan")), (float(np.mean(later)) if later else float("nan"))


def _cell(values: list[float]) -> str:
    finite = [v for v in values if np.isfinite(v)]
    return f"{_median(finite):.2f}" if finite else "—"


def variants_table(variants: list[dict[str, Any]]) -> str:
    """One row per setting and model: each setting is one invocation of interleaved pairs (--timing-epochs).

    Besides the whole-loop ratio, the first epoch (oneDNN's first calls at new shapes; torch.compile's
    compilation when it is on) is split from the later ones, on both sides.
    """
    lines = [
        "| setting | model | MMSA CPU s / epoch | msakit CPU s / epoch | CPU time / epoch (msakit ÷ MMSA), median "
        "[min, max] | msakit first epoch, CPU s | msakit later epochs, CPU s / epoch | later epochs (msakit ÷ MMSA), "
        "median | pairs |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for variant in variants:
        for model, per_seed in variant["timing"].items():
            pairs = [r for r in per_seed.values() if _ok(r.get("mmsa")) and _ok(r.get("msakit"))]
            if not pairs:
                continue
            cpu = [p["msakit"]["cpu_seconds_per_epoch"] / p["mmsa"]["cpu_seconds_per_epoch"] for p in pairs]
            first = [_epoch_split(p["msakit"])[0] for p in pairs]
            later = [_epoch_split(p["msakit"])[1] for p in pairs]
            later_ratio = [_epoch_split(p["msakit"])[1] / _epoch_split(p["mmsa"])[1] for p in pairs]
            lines.append(
                f"| {variant['label']} | {model} | "
                f"{_median([p['mmsa']['cpu_seconds_per_epoch'] for p in pairs]):.2f} | "
                f"{_median([p['msakit']['cpu_seconds_per_epoch'] for p in pairs]):.2f} | "
                f"{_median(cpu):.2f} [{min(cpu):.2f}, {max(cpu):.2f}] | {_cell(first)} | {_cell(later)} | "
                f"{_cell(later_ratio)} | {len(pairs)} |"
            )
    return "\n".join(lines) + "\n"


def _as_side(variant: dict[str, Any], side: str) -> dict[str, Any]:
    """A setting whose pairs also ran 'msakit_b' (--msakit-b), seen as its A side or its B side."""
    if side == "msakit":
        timing = {
            m: {s: {k: r[k] for k in ("mmsa", "msakit") if k in r} for s, r in ps.items()}
            for m, ps in variant["timing"].items()
        }
        return {**variant, "timing": timing}
    flags = " ".join(variant["timing_meta"].get("msakit_b", []))
    timing = {
        m: {s: {"mmsa": r["mmsa"], "msakit": r["msakit_b"]} for s, r in ps.items() if "mmsa" in r and "msakit_b" in r}
        for m, ps in variant["timing"].items()
    }
    return {**variant, "label": f"{variant['label']}, B: `{flags}`", "timing": timing}


def _has_b(variant: dict[str, Any]) -> bool:
    return any("msakit_b" in r for ps in variant["timing"].values() for r in ps.values())


def ab_table(variants: list[dict[str, Any]]) -> str:
    """Within each pair that also ran msakit_b: B ÷ A of msakit's CPU time per epoch, whole loop and later epochs."""
    lines = [
        "| setting | model | A: msakit CPU s / epoch | B: msakit CPU s / epoch | B ÷ A, median [min, max] | "
        "first epoch A / B, CPU s | later epochs B ÷ A, median | pairs |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for variant in variants:
        for model, per_seed in variant["timing"].items():
            runs = [r for r in per_seed.values() if _ok(r.get("msakit")) and _ok(r.get("msakit_b"))]
            if not runs:
                continue
            ratio = [r["msakit_b"]["cpu_seconds_per_epoch"] / r["msakit"]["cpu_seconds_per_epoch"] for r in runs]
            later = [_epoch_split(r["msakit_b"])[1] / _epoch_split(r["msakit"])[1] for r in runs]
            first = [(_epoch_split(r["msakit"])[0], _epoch_split(r["msakit_b"])[0]) for r in runs]
            lines.append(
                f"| {variant['label']}, B: `{' '.join(variant['timing_meta'].get('msakit_b', []))}` | {model} | "
                f"{_median([r['msakit']['cpu_seconds_per_epoch'] for r in runs]):.2f} | "
                f"{_median([r['msakit_b']['cpu_seconds_per_epoch'] for r in runs]):.2f} | "
                f"{_median(ratio):.3f} [{min(ratio):.3f}, {max(ratio):.3f}] | "
                f"{_cell([a for a, _ in first])} / {_cell([b for _, b in first])} | {_median(later):.3f} | "
                f"{len(runs)} |"
            )
    return "\n".join(lines) + "\n"


def variants_section(variants: list[dict[str, Any]], data: str) -> str:
    """The table above (a setting with a B side as two rows), the B ÷ A table, then each setting's command and notes."""
    rows = [side for v in variants for side in ((_as_side(v, "msakit"), _as_side(v, "b")) if _has_b(v) else (v,))]
    text = variants_table(rows) + "\n"
    if any(_has_b(v) for v in variants):
        text += (
            "A / B within the same pairs (each pair ran MMSA, msakit with the setting's flags (A) and msakit with "
            "the B flags on top (B), back to back, order alternating):\n\n"
            + ab_table([v for v in variants if _has_b(v)])
            + "\n"
        )
    for variant in variants:
        tm = variant["timing_meta"]
        text += (
            f"- {variant['label']}: `OMP_NUM_THREADS=1 nice -n 10 python benchmarks/compare_mmsa.py {data} "
            f"--size-matched --mmsa-path DIR {_train_flags(tm)}--models {' '.join(tm['models'])} "
            f"--seeds {' '.join(map(str, tm['seeds']))} --timing-epochs {tm['epochs']}"
            + "".join(f" --msakit-b {o}" for o in tm.get("msakit_b", []))
            + "`"
            + (f" ({variant['source']})" if variant.get("source") else "")
            + "".join(f"; {note}" for note in variant.get("notes", []))
            + "\n"
        )
    return text


def text_lstm_section(section: dict[str, Any], variants: list[dict[str, Any]]) -> str:
    """The text LSTM alone (profile_epoch.py --micro text_lstm) against the whole epoch of the pairs it names."""
    micro = section["micro"]
    pairs = next(v for v in variants if v["label"] == section["pairs"])
    rows = {r["model"]: r for r in micro["rows"]}
    text = (
        f"### The text LSTM alone: {section['label']}\n\n"
        "What the size-matched LMF's and LF-DNN's text LSTM costs by itself per training epoch (forward and "
        "backward, no other layer, no validation): msakit's `lstm=segments` path on the epoch's length-bucketed "
        "batches, the same segments as bare `nn.LSTM` calls (without the path's sorting and padding), and "
        "MMSA's TextSubNet LSTM over every padded step on random batches. One LSTM's weights for all three, "
        f"which alternate within each of {micro['repeats']} rounds; medians of rounds 2-{micro['repeats']}; "
        f"load average {micro['load_avg_1min']:.1f} at the end.\n\n"
        f"Command: `{micro['command']}`\n\n"
        "| model | batch | LSTM calls / epoch, msakit / MMSA | LSTM steps / epoch, msakit / MMSA | "
        "msakit segments, CPU s / epoch | bare calls | MMSA | µs per step, msakit / MMSA | "
        "LSTM alone (msakit ÷ MMSA) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    for model, r in rows.items():
        cpu, calls, steps, per = r["cpu_s_per_epoch"], r["calls_per_epoch"], r["lstm_steps_per_epoch"], r["us_per_step"]
        text += (
            f"| {model} | {r['batch']} | {calls['segments']} / {calls['mmsa']} | {steps['segments']:,} / "
            f"{steps['mmsa']:,} | {cpu['segments']:.3f} | {cpu['bare_calls']:.3f} | {cpu['mmsa']:.3f} | "
            f"{per['segments']:.1f} / {per['mmsa']:.1f} | {r['ratio_segments_to_mmsa']:.3f} |\n"
        )
    runs_of = {m: list(pairs["timing"][m].values()) for m in rows}
    whole = {
        m: {fw: _median([r[fw]["cpu_seconds_per_epoch"] for r in runs_of[m]]) for fw in ("msakit", "mmsa")}
        for m in rows
    }
    ratio = {
        m: _median([r["msakit"]["cpu_seconds_per_epoch"] / r["mmsa"]["cpu_seconds_per_epoch"] for r in runs_of[m]])
        for m in rows
    }
    rest = {
        m: {
            fw: whole[m][fw] - rows[m]["cpu_s_per_epoch"][key] for fw, key in (("msakit", "segments"), ("mmsa", "mmsa"))
        }
        for m in rows
    }
    lstm = " and ".join(f"{r['ratio_segments_to_mmsa']:.3f} ({m})" for m, r in rows.items())
    pair_ratio = ", ".join(f"{m} {ratio[m]:.2f}" for m in rows)
    wrapper = ", ".join(
        f"{1e3 * (r['cpu_s_per_epoch']['segments'] - r['cpu_s_per_epoch']['bare_calls']):.0f} ms ({m})"
        for m, r in rows.items()
    )
    text += (
        "\nThe rest of the epoch: what is left of the pairs' epoch (median CPU s, the whole "
        f"{pairs['timing_meta']['epochs']}-epoch loop) after "
        "the LSTM alone above; medians of different runs, so a rough split.\n\n"
        "| model | training steps / epoch | pairs, CPU s / epoch, msakit / MMSA | rest, msakit / MMSA | "
        "rest (msakit ÷ MMSA) |\n|---|---:|---:|---:|---:|\n"
        + "".join(
            f"| {m} | {rows[m]['calls_per_epoch']['mmsa']} | {whole[m]['msakit']:.2f} / {whole[m]['mmsa']:.2f} | "
            f"{rest[m]['msakit']:.2f} / {rest[m]['mmsa']:.2f} | {rest[m]['msakit'] / rest[m]['mmsa']:.2f} |\n"
            for m in rows
        )
    )
    text += (
        f"\n- The text LSTM alone is {lstm} of MMSA's, while the whole epoch in the pairs "
        f"({section['pairs']}) is {pair_ratio} (msakit ÷ MMSA, median of pairs): the models' LSTMs do not "
        "separate them.\n"
        f"- The segments path's own sorting, slicing and padding (segments minus bare calls): {wrapper} per epoch.\n"
        + "".join(f"- {note}\n" for note in section.get("notes", []))
        + "\n"
    )
    return text


NOTES = """
## How the two sides were run

- Data: the same exported pickle for both. MOSI here has no visual features; the export writes
  vision as a one-step zero array with length 0. MMSA runs on that zero array. In the size-matched
  mode msakit builds its visual branch too (on the same all-absent input), as MMSA does; in the
  default mode it declares the modality absent (`modalities=("text", "audio")`) and builds none.
- MMSA's final-state models read the last step and ignore lengths, so this script hands them a
  start-padded copy; msakit's models are padding-agnostic (masked pooling, packed LSTM).
- Adaptations MMSA 2.2.1 needs on this machine, made by the script and nowhere else:
  `args.device = cpu`, `use_bert = False`, `early_stop = 6`; its MulT passes `verbose=` to
  `ReduceLROnPlateau`, which torch 2.13 rejects (the script accepts and drops it); its MulT's
  kernel-5 temporal convolution cannot run on MOSI's one-step audio, so
  `conv1d_kernel_size_a = conv1d_kernel_size_v = 1`.
- Not comparable: MMSA's MISA and MMIM assert `use_bert == True` and Self-MM always builds
  `BertTextEncoder`, which downloads bert-base-uncased; none of the three can run offline on
  precomputed text features, so only msakit's versions are measured (docs/results.md, 'Baseline zoo').
- Epochs are uncapped on both sides: MMSA's trainers loop until early stopping; msakit runs with
  `epochs=1000, patience=6`.
- CPU time is the process's CPU time, which is what to compare on a shared machine; wall time
  depends on the load at the time. Each ratio is taken within one interleaved pair (same seed,
  run back to back), then the median over pairs is reported.
"""


def _train_flags(meta: dict[str, Any]) -> str:
    malloc = meta.get("malloc", "default")
    return "".join(f"--msakit-train {o} " for o in meta.get("msakit_train", [])) + (
        f"--malloc {malloc} " if malloc != "default" else ""
    )


def _has_default(section: dict[str, Any]) -> bool:
    return any("msakit_default" in r for v in section.values() for r in v.values())


def render(runs: dict[str, Any]) -> str:
    meta = runs["meta"]
    mode = "size-matched" if meta["size_matched"] else "each framework's own defaults"
    flag = "--size-matched " if meta["size_matched"] else ""
    base = f"OMP_NUM_THREADS=1 nice -n 10 python benchmarks/compare_mmsa.py {meta['data']} {flag}"
    text = (
        "# msakit vs MMSA 2.2.1 on the same data\n\n"
        "<!-- generated by benchmarks/compare_mmsa.py from its results JSON; do not edit by hand -->\n\n"
        f"Mode: **{mode}**. Data: MOSI, exported once with `msakit data export --format mmsa data/mosi "
        f"{meta['data']}`; CPU, one thread per run, niced, on 2 cores shared with other jobs (load average "
        f"{meta['load_start']:.1f} at the start, {meta.get('load_end', float('nan')):.1f} at the end).\n\n"
    )
    if runs.get("timing"):
        tm = runs["timing_meta"]
        text += (
            f"## Time per epoch: interleaved pairs\n\nEach pair is one MMSA run and one msakit run of the same "
            f"model and seed, back to back (order alternating), each training exactly {tm['epochs']} epochs in its "
            "own process; time per epoch is the epoch loop (training, validation, checkpoints; MMSA's `do_train`) "
            "divided by the epochs. Ratios are taken within a pair; the median over pairs is shown.\n\n"
            f"Command: `{base}{_train_flags(tm)}--models {' '.join(tm['models'])} "
            f"--seeds {' '.join(map(str, tm['seeds']))} --timing-epochs {tm['epochs']}"
            f"{' --with-default-paths' if _has_default(runs['timing']) else ''}`\n\n"
            + timing_table(runs["timing"])
            + "\n"
        )
        for note in runs.get("timing_notes", []):
            text += f"- {note}\n"
        text += "\n" if runs.get("timing_notes") else ""
    if runs.get("timing_variants"):
        text += (
            "### Other settings of the same pairs: the allocator, segments, torch.compile, bf16\n\n"
            + runs.get("timing_variants_intro", "")
            + ("\n\n" if runs.get("timing_variants_intro") else "")
            + variants_section(runs["timing_variants"], meta["data"])
            + "".join(f"\n- {note}" for note in runs.get("timing_variants_notes", []))
            + "\n\n"
        )
    if runs.get("text_lstm_alone"):
        text += text_lstm_section(runs["text_lstm_alone"], runs.get("timing_variants", []))
    if runs.get("timing_masked_lstm"):
        text += (
            "A pair run while msakit's CPU LSTM briefly used the masked (unpacked) path (commit 9afd71d, "
            "reverted in ec1c2fb because of this row):\n\n" + timing_table(runs["timing_masked_lstm"]) + "\n"
        )
    if runs.get("timing_old_packed_lstm"):
        text += (
            "Earlier pairs of the same command, before the brief CPU LSTM change (commit 9afd71d, reverted in "
            "ec1c2fb), same protocol. lf_dnn's msakit run had the packed "
            "LSTM; lmf's started within a minute of the change, so which path it ran is not certain:\n\n"
            + timing_table(runs["timing_old_packed_lstm"])
            + "\n"
        )
    if not runs.get("results") and runs.get("accuracy_notes"):
        text += "## Accuracy: epochs uncapped until early stopping\n\n"
        text += "".join(f"- {note}\n" for note in runs["accuracy_notes"]) + "\n"
    if runs.get("results"):
        rm = runs["results_meta"]
        seeds = rm["seeds"]
        done = {
            m: sum(_ok(r.get("mmsa")) and _ok(r.get("msakit")) for r in v.values()) for m, v in runs["results"].items()
        }
        short = [f"{m} ({n} of {len(seeds)})" for m, n in done.items() if n < len(seeds)]
        short += [f"{m} (0 of {len(seeds)})" for m in rm["models"] if m not in done]
        text += (
            "## Accuracy: epochs uncapped until early stopping\n\nTest split, selection and early stopping on "
            f"validation (patience {PATIENCE}), mean ± std over seeds; time per epoch is in the paired table "
            "above.\n\n"
            + (
                f"**Incomplete**: seeds that finished per model: {', '.join(short)}; the rest did not fit in the "
                "session's compute.\n\n"
                if short
                else ""
            )
            + f"Command: `{base}{_train_flags(rm)}--models {' '.join(rm['models'])} "
            f"--seeds {' '.join(map(str, seeds))}`\n\n" + accuracy_table(runs["results"])
        )
        text += "".join(f"\n- {note}" for note in runs.get("accuracy_notes", [])) + "\n"
    for variant in runs.get("results_variants", []):  # the same accuracy protocol under other msakit options
        vm = variant["results_meta"]
        text += (
            f"\n### Accuracy: {variant['label']}\n\n"
            + "".join(f"{line}\n" for line in variant.get("intro", []))
            + f"\nCommand: `{base}{_train_flags(vm)}--models {' '.join(vm['models'])} "
            f"--seeds {' '.join(map(str, vm['seeds']))}`\n\n"
            + accuracy_table(variant["results"])
            + "".join(f"\n- {note}" for note in variant.get("notes", []))
            + "\n"
        )
    if meta["size_matched"]:
        text += "\n## Size-matched configurations\n\n| model | msakit overrides (model; train) | why |\n|---|---|---|\n"
        for model, cfg in SIZE_MATCHED.items():
            fields = ", ".join(f"{k}={v}" for k, v in cfg["model"].items())
            train = ", ".join(f"{k}={v}" for k, v in cfg["train"].items())
            text += f"| {model} | `{fields}`; `{train}` | {cfg['why']} |\n"
        text += (
            "\n`save_last=False` in every row is MMSA's checkpointing: its trainers save the model only when "
            "validation improves, so msakit writes no per-epoch resumable `last` either (the same training: "
            "tests/test_training_options.py; such a fit cannot be resumed, and `--resume` says so).\n"
        )
    return text + NOTES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="?", help="an MMSA pickle written by `msakit data export --format mmsa`")
    p.add_argument("--models", nargs="+", default=["tfn", "lmf", "lf_dnn", "mult"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--size-matched", action="store_true", help="configure msakit's baselines to MMSA's widths")
    p.add_argument("--mmsa-path", type=Path, default=os.environ.get("MSAKIT_MMSA_PATH"), help="folder holding MMSA")
    p.add_argument("--out", type=Path, default=Path("docs/compare_mmsa.md"))
    p.add_argument("--json", type=Path, help="results JSON, written after every run (a later call resumes from it)")
    p.add_argument("--doc-only", type=Path, metavar="JSON", help="only regenerate --out from a results JSON")
    p.add_argument(
        "--timing-epochs",
        type=int,
        default=0,
        metavar="N",
        help="timing pairs only: both sides train exactly N epochs, no accuracy (stored under 'timing')",
    )
    p.add_argument("--params-only", action="store_true", help="print both sides' parameter counts and stop")
    p.add_argument(
        "--msakit-train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig override for the msakit side, e.g. sampler=bucket lstm=auto, or MODEL:KEY=VALUE for "
        "one model, e.g. mult:batch_size=64 (repeatable)",
    )
    p.add_argument(
        "--with-default-paths",
        action="store_true",
        help="also run msakit without --msakit-train in each pair (stored as 'msakit_default'): the before/after",
    )
    p.add_argument(
        "--msakit-b",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also run msakit with these overrides on top of --msakit-train in each pair (stored as 'msakit_b'): "
        "an A/B of two msakit settings under the same load as their MMSA run (repeatable)",
    )
    p.add_argument(
        "--sides",
        nargs="+",
        choices=("mmsa", "msakit"),
        default=["mmsa", "msakit"],
        help="run only these sides; the other side's runs are kept from --json (e.g. rerun msakit after a change)",
    )
    p.add_argument(
        "--malloc",
        choices=("default", "keep"),
        default="default",
        help="glibc allocator thresholds on BOTH sides (msakit.allocator): keep = freed memory stays in the "
        "process; msakit gets TrainConfig malloc=keep, MMSA's process the same mallopt calls at its start",
    )
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=("mmsa", "msakit", "msakit_default", "msakit_b"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.doc_only:
        args.out.write_text(render(json.loads(args.doc_only.read_text())))
        return
    if args.worker:
        args.framework = args.worker
        worker(args)
        return
    try:
        validate_request(args)
    except BenchmarkError as exc:
        print(f"compare_mmsa: {exc}", file=sys.stderr)
        sys.exit(2)
    runs: dict[str, Any] = {"meta": {}, "results": {}}
    if args.json and args.json.exists():
        runs = json.loads(args.json.read_text())
    key = "timing" if args.timing_epochs else "results"
    runs["meta"] = {**runs.get("meta", {}), "data": args.data, "size_matched": args.size_matched}
    runs["meta"].setdefault("load_start", os.getloadavg()[0])
    runs[f"{key}_meta"] = {
        "models": args.models,
        "seeds": args.seeds,
        "epochs": args.timing_epochs,
        "msakit_train": list(args.msakit_train),
        "msakit_b": list(args.msakit_b),
        "malloc": args.malloc,
    }
    refused: list[str] = []
    with tempfile.TemporaryDirectory(prefix="compare_mmsa-") as tmp:
        for seed in args.seeds:
            for model in args.models:
                pair = runs.setdefault(key, {}).setdefault(model, {}).setdefault(str(seed), {})
                order: tuple[str, ...] = ("mmsa", "msakit") if seed % 2 else ("msakit", "mmsa")
                if args.with_default_paths:
                    order = ("mmsa", "msakit", "msakit_default") if seed % 2 else ("msakit_default", "msakit", "mmsa")
                elif args.msakit_b:
                    order = ("mmsa", "msakit", "msakit_b") if seed % 2 else ("msakit_b", "msakit", "mmsa")
                for fw in order:
                    if fw in pair and "error" not in pair[fw]:
                        continue  # resumed
                    if fw.split("_")[0] not in args.sides:
                        continue  # this invocation runs the other side only
                    print(f"seed {seed} {model}: {fw} ...", flush=True)
                    pair[fw] = spawn(fw, model, seed, args, Path(tmp))
                    if pair[fw].get("refused"):
                        refused.append(pair[fw]["error"])
                    print(f"  {json.dumps(pair[fw])[:300]}", flush=True)
                    runs["meta"]["load_end"] = os.getloadavg()[0]
                    if args.json:
                        args.json.parent.mkdir(parents=True, exist_ok=True)
                        args.json.write_text(json.dumps(runs, indent=1))
    text = render(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    if refused:  # e.g. a size-matched configuration that does not fit in memory: the table says so too
        print(f"compare_mmsa: {refused[0]}", file=sys.stderr)
        sys.exit(2)


def validate_request(args: argparse.Namespace) -> None:
    """Bad requests fail before anything runs: no data, a model MMSA lacks, no size-matched mapping, no MMSA."""
    if not args.data:
        raise BenchmarkError("give the MMSA pickle to compare on (msakit data export --format mmsa DATA OUT.pkl)")
    for model in args.models:
        if model not in MMSA_NAMES:
            raise BenchmarkError(
                f"MMSA 2.2.1 has no model {model!r} to compare with; models both have: {', '.join(sorted(MMSA_NAMES))}"
            )
        if args.size_matched and model not in SIZE_MATCHED:
            raise BenchmarkError(
                f"--size-matched has no mapping of MMSA's widths for {model!r}; "
                f"mapped: {', '.join(sorted(SIZE_MATCHED))}"
            )
    for option in args.msakit_train:
        scope = option.split("=", 1)[0].partition(":")[0] if ":" in option.split("=", 1)[0] else ""
        if scope and scope not in MMSA_NAMES:
            known = ", ".join(sorted(MMSA_NAMES))
            raise BenchmarkError(f"--msakit-train {option}: no model {scope!r}; models: {known}")
    if not Path(args.data).is_file():
        raise BenchmarkError(f"{args.data}: no such file")
    probe = [sys.executable, "-c", "import MMSA"]
    env = {**os.environ}
    if args.mmsa_path:
        env["PYTHONPATH"] = os.pathsep.join([str(args.mmsa_path), env.get("PYTHONPATH", "")])
    if subprocess.run(probe, env=env, capture_output=True).returncode != 0:
        raise BenchmarkError(
            "MMSA is not importable: pip install --no-deps --target DIR mmsa==2.2.1 easydict nvidia-ml-py, "
            "then --mmsa-path DIR"
        )
    if args.params_only:
        for model in args.models:
            print(model, {fw: spawn_params(fw, model, args) for fw in ("mmsa", "msakit")})
        sys.exit(0)


def spawn_params(framework: str, model: str, args: argparse.Namespace) -> Any:
    if framework == "msakit":
        return msakit_params(model, args.data, args.size_matched)[0]
    code = (
        "import sys, torch; sys.argv=['x']; from MMSA.models import AMIO; import importlib.util as u; "
        f"s=u.spec_from_file_location('c', {__file__!r}); c=u.module_from_spec(s); s.loader.exec_module(c); "
        f"from pathlib import Path; a=c._mmsa_args({model!r}, Path('/nonexistent'), Path('/tmp'), 1); "
        f"c._fill_dims(a, {args.data!r}); print(sum(p.numel() for p in AMIO(a).parameters()))"
    )
    env = {**os.environ}
    if args.mmsa_path:
        env["PYTHONPATH"] = os.pathsep.join([str(args.mmsa_path), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return int(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else proc.stderr.strip()[-200:]


def _fill_dims(args: Any, data: str) -> None:
    """What MMSA's data loader would write into its config (feature dims, sequence lengths)."""
    with open(data, "rb") as fh:
        raw = pickle.load(fh)  # our own export
    train = raw["train"]
    args.update(
        feature_dims=[train[k].shape[2] for k in ("text", "audio", "vision")],
        seq_lens=[train[k].shape[1] for k in ("text", "audio", "vision")],
    )


if __name__ == "__main__":
    main()
