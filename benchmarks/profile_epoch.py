"""Where one training epoch's CPU time goes, phase by phase, and before/after A/B pairs.

    # one profile: per-epoch CPU seconds of each phase (median over epochs 2..N), per model
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --models mult tfn --data synthetic --epochs 4
    # A/B: interleaved pairs of two source trees (e.g. a worktree of the commit before a change)
    git worktree add /tmp/before <commit>
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --models mult --ab /tmp/before/src src --pairs 3 \
        --json docs/bench/profile_ab.json
    # A/B of a model option instead of a source tree (e.g. the input normaliser)
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --models mult --ab-model-opt feature_norm=false \
        feature_norm=true --pairs 3
    # micro-benchmarks: optimizer step / clipping paths; packed vs masked LSTM on a dataset's lengths
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --micro optimizer --models mult tfn late_fusion
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --micro lstm --data data/mosi
    # packed vs split LSTM (-t lstm=auto) on random and length-bucketed batches; padding per sample
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --micro split --data data/mosi
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --micro buckets --data data/mosi
    # the size-matched text LSTM alone per epoch: msakit's segments vs MMSA's full-length LSTM (LMF, LF-DNN batches)
    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --micro text_lstm --data runs/speed/mosi_mmsa.pkl --repeats 13

Phases, timed with process CPU time (`time.process_time`: robust to other jobs on a shared
machine) by callbacks of the ordinary `Trainer`, so the engine under test is the real one:
- `forward_backward`: from the end of the previous step to `on_after_backward` (data, collation,
  forward, loss, backward);
- `clip_step`: from `on_after_backward` to `on_step_end` (clipping, the optimizer step, hooks);
- `validation`: from `on_epoch_end` to `on_validation_end`;
- `checkpoint`: from `on_validation_end` to the next epoch (best/ when validation improved, and
  last/ every epoch), with the count of epochs that wrote best/.
Epoch 1 is left out (allocator warm-up). Each run is its own subprocess; in A/B mode the two
sides alternate order pair by pair and the ratio B ÷ A of each phase is taken within a pair.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PHASES = ("forward_backward", "clip_step", "validation", "checkpoint", "epoch_total")


def micro_optimizer(models: list[str], repeats: int = 3, steps: int = 200) -> dict[str, Any]:
    """ms per AdamW step and per global-norm clip, for-loop vs foreach vs fused (median of `repeats`)."""
    import torch

    from msakit import create_model

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    for name in models:
        net = create_model(name, text_dim=384, audio_dim=73, visual_dim=35, modalities=("text", "audio", "visual"))
        params = list(net.parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        runs: dict[str, list[float]] = {}
        for _ in range(repeats):
            for mode, kw in (("loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
                opt = torch.optim.AdamW(params, lr=1e-3, **kw)
                opt.step()
                t = time.process_time()
                for _ in range(steps):
                    opt.step()
                runs.setdefault(f"adamw_{mode}", []).append((time.process_time() - t) / steps * 1e3)
            for mode in ("loop", "foreach"):
                t = time.process_time()
                for _ in range(steps):
                    torch.nn.utils.clip_grad_norm_(params, 1e9, foreach=mode == "foreach")
                runs.setdefault(f"clip_{mode}", []).append((time.process_time() - t) / steps * 1e3)
        out[name] = {"tensors": len(params), **{k: round(statistics.median(v), 3) for k, v in runs.items()}}
        print(name, out[name], file=sys.stderr)
    return {"ms_cpu_per_call": out}


def micro_lstm(data: str, repeats: int = 3, steps: int = 20, batch: int = 32, hidden: int = 64) -> dict[str, Any]:
    """ms per forward + backward of the shared LSTM text encoder, packed vs masked, on a dataset's text lengths."""
    import numpy as np
    import torch

    from msakit.data import load_dataset
    from msakit.layers.encoders import SequenceEncoder

    torch.set_num_threads(1)
    text = load_dataset(data).split("train").modalities["text"]
    lengths = np.asarray(text.lengths)
    enc = SequenceEncoder(int(text.values.shape[2]), hidden, kind="lstm").train()
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        for path in ("packed", "masked"):
            gen = torch.Generator().manual_seed(0)
            t = time.process_time()
            for _ in range(steps):
                idx = torch.randint(0, len(lengths), (batch,), generator=gen).numpy()
                steps_in = int(max(lengths[idx].max(), 1))  # a collated batch is trimmed to its longest
                x = torch.randn(batch, steps_in, int(text.values.shape[2]))
                mask = torch.arange(steps_in)[None, :] < torch.from_numpy(lengths[idx])[:, None]
                h = enc.proj(enc.norm(x))
                out = enc._packed_lstm(h, mask) if path == "packed" else enc._masked_lstm(h, mask)
                out.sum().backward()
            runs.setdefault(path, []).append((time.process_time() - t) / steps * 1e3)
    return {
        "data": data,
        "batch": batch,
        "hidden": hidden,
        "mean_valid_steps": float(lengths.mean()),
        "ms_cpu_forward_backward": {k: round(statistics.median(v), 2) for k, v in runs.items()},
    }


def micro_split(data: str, repeats: int = 3, steps: int = 10) -> dict[str, Any]:
    """ms per forward + backward of the bidirectional LSTM encoder, packed vs split (`-t lstm=auto`'s path),
    at three (batch, width) settings, on batches of a dataset's text lengths drawn at random or by length."""
    import numpy as np
    import torch

    from msakit.data import load_dataset
    from msakit.data.core import LengthBuckets, RandomBatches
    from msakit.layers.encoders import SequenceEncoder

    torch.set_num_threads(1)
    split = load_dataset(data).split("train")
    lengths = np.asarray(split.modalities["text"].lengths)
    rows = []
    for batch, hidden in ((128, 160), (32, 128), (16, 50)):  # size-matched LF-DNN, TFN/LMF-like, MulT-like
        enc = SequenceEncoder(hidden, hidden, kind="lstm", dropout=0.0).train()
        for order in ("random", "bucket"):
            sampler = RandomBatches() if order == "random" else LengthBuckets()
            batches = sampler.batches(split, batch, shuffle=True, seed=0)[:steps]
            shapes = [np.asarray(lengths[b]) for b in batches]
            fill = float(np.mean([s.mean() / max(s.max(), 1) for s in shapes]))
            row: dict[str, Any] = {"batch": batch, "hidden": hidden, "batches": order, "valid_fraction": round(fill, 2)}
            for path in ("packed", "split"):
                times = []
                for _ in range(repeats):
                    t = time.process_time()
                    for s in shapes:
                        n = int(max(s.max(), 1))
                        h = torch.randn(len(s), n, hidden, requires_grad=True)
                        mask = torch.arange(n)[None, :] < torch.from_numpy(s)[:, None]
                        out = enc._packed_lstm(h, mask) if path == "packed" else enc._split_lstm(h, mask)
                        (out * mask.unsqueeze(-1)).sum().backward()
                    times.append((time.process_time() - t) / len(shapes) * 1e3)
                row[f"{path}_ms"] = round(statistics.median(times), 2)
            rows.append(row)
            print(row, file=sys.stderr)
    return {"data": data, "mean_valid_steps": float(lengths.mean()), "rows": rows}


def micro_text_lstm(data: str, repeats: int = 7) -> dict[str, Any]:
    """CPU s per training epoch of the size-matched text LSTM alone (forward + backward), at LMF's and LF-DNN's
    size-matched batches: msakit's "segments" path on the epoch's length-bucketed batches, the same segments as
    bare `nn.LSTM` calls (the LSTM without the path's sorting and padding), and MMSA's TextSubNet LSTM (every
    padded step, the final state) on random batches of the padded features. One LSTM's weights for all three;
    the three alternate within each round; median of rounds 2..`repeats`."""
    import torch
    from torch import nn

    from msakit.data import load_dataset
    from msakit.data.core import LengthBuckets
    from msakit.layers.encoders import SequenceEncoder, _segment_ends, _segment_rows, lstm_path

    cmp = _load_module("compare_mmsa")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    split = load_dataset(data).split("train")
    text = split.modalities["text"]
    padded = torch.as_tensor(text.values, dtype=torch.float32)  # (N, L, D): what MMSA's LSTM reads
    hidden = cmp.SIZE_MATCHED["lmf"]["model"]["hidden_dim"]
    if cmp.SIZE_MATCHED["lf_dnn"]["model"]["hidden_dim"] != hidden:  # one LSTM serves both models' batches
        raise ValueError("micro text_lstm: the size-matched LMF and LF-DNN text LSTMs differ in width")
    enc = SequenceEncoder(padded.shape[2], hidden, kind="unilstm", dropout=0.0).train()
    lstm: nn.LSTM = enc.lstm
    out: dict[str, Any] = {"data": data, "hidden": hidden, "repeats": repeats, "rows": []}
    for model in ("lmf", "lf_dnn"):
        batch = cmp.SIZE_MATCHED[model]["train"]["batch_size"]
        times: dict[str, list[float]] = {"segments": [], "bare_calls": [], "mmsa": []}
        steps_run: list[int] = []  # LSTM sample-steps the segments compute, per round (their batches differ)
        for r in range(repeats):
            batches = [split.batch(b) for b in LengthBuckets().batches(split, batch, shuffle=True, seed=r)]
            shapes = []
            for b in batches:
                lengths, start = b.masks["text"].sum(1).tolist(), 0
                for end in _segment_ends(lengths):
                    shapes.append((_segment_rows(lengths, start), end - start))
                    start = end
            bare = [torch.randn(n, steps, padded.shape[2]) for n, steps in shapes]
            steps_run.append(sum(n * steps for n, steps in shapes))
            perm = torch.randperm(len(padded), generator=torch.Generator().manual_seed(r))
            t = time.process_time()
            with lstm_path("segments"):
                for b in batches:
                    enc(b.features["text"], b.masks["text"])[1].sum().backward()
            times["segments"].append(time.process_time() - t)
            t = time.process_time()
            for x in bare:
                lstm(x)[0].sum().backward()
            times["bare_calls"].append(time.process_time() - t)
            t = time.process_time()
            for i in range(0, len(padded), batch):
                lstm(padded[perm[i : i + batch]])[1][0].sum().backward()
            times["mmsa"].append(time.process_time() - t)
        med = {k: statistics.median(v[1:] or v) for k, v in times.items()}
        tokens = {
            "segments": round(statistics.median(steps_run[1:] or steps_run)),
            "mmsa": int(padded.numel() // padded.shape[2]),
        }
        row = {
            "model": model,
            "batch": batch,
            "cpu_s_per_epoch": {k: round(v, 4) for k, v in med.items()},
            "calls_per_epoch": {"segments": len(shapes), "mmsa": -(-len(padded) // batch)},
            "lstm_steps_per_epoch": tokens,
            "us_per_step": {
                "segments": round(1e6 * med["segments"] / tokens["segments"], 2),
                "bare_calls": round(1e6 * med["bare_calls"] / tokens["segments"], 2),
                "mmsa": round(1e6 * med["mmsa"] / tokens["mmsa"], 2),
            },
            "ratio_segments_to_mmsa": round(med["segments"] / med["mmsa"], 3),
            "ratio_bare_calls_to_mmsa": round(med["bare_calls"] / med["mmsa"], 3),
        }
        out["rows"].append(row)
        print(row, file=sys.stderr)
    return out


def micro_buckets(data: str, epochs: int = 5) -> dict[str, Any]:
    """Padded text steps per sample of an epoch's batches: random batches vs `LengthBuckets` (pools of 16)."""
    import numpy as np

    from msakit.data import load_dataset
    from msakit.data.core import LengthBuckets, RandomBatches

    split = load_dataset(data).split("train")
    lengths = np.asarray(split.modalities["text"].lengths)
    rows = []
    for batch in (16, 32, 128):
        row: dict[str, Any] = {"batch": batch}
        for name, sampler in (("random", RandomBatches()), ("bucket", LengthBuckets())):
            padded = [
                sum(int(lengths[b].max()) * len(b) for b in sampler.batches(split, batch, shuffle=True, seed=e))
                for e in range(epochs)
            ]
            row[name] = round(float(np.mean(padded)) / len(split), 1)
        rows.append(row)
    return {"data": data, "mean_valid_steps": round(float(lengths.mean()), 1), "epochs": epochs, "rows": rows}


def micro_collate(data: str, repeats: int = 7, batch: int = 128) -> dict[str, Any]:
    """CPU ms of `SplitData.batch` per epoch: the training split in `LengthBuckets` batches, the validation split
    in one evaluation pass (batch 4x, the trainer's evaluation batch); median of `repeats` epochs."""
    from msakit.data import load_dataset
    from msakit.data.core import LengthBuckets

    dataset = load_dataset(data)
    train, valid = dataset.split("train"), dataset.split("valid")
    out: dict[str, Any] = {"data": data, "batch": batch, "repeats": repeats}
    for name, split, batches in (
        ("train", train, lambda e: LengthBuckets().batches(train, batch, shuffle=True, seed=e)),
        (
            "valid",
            valid,
            lambda e: [list(range(i, min(i + 4 * batch, len(valid)))) for i in range(0, len(valid), 4 * batch)],
        ),
    ):
        times = []
        for epoch in range(repeats + 1):
            order = batches(epoch)
            start = time.process_time()
            for b in order:
                split.batch(b)
            times.append(time.process_time() - start)
        out[f"{name}_ms_per_epoch"] = round(1e3 * statistics.median(times[1:]), 2)
    return out


class PhaseTimer:
    """Engine callback: CPU seconds per phase per epoch."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.best_writes = 0
        self._mark = 0.0
        self._start = 0.0
        self._best = float("nan")

    def _lap(self, phase: str) -> None:
        now = time.process_time()
        if self.epochs:
            self.epochs[-1][phase] = self.epochs[-1].get(phase, 0.0) + now - self._mark
        self._mark = now

    def _close_epoch(self) -> None:
        if self.epochs:
            self._lap("checkpoint")
            self.epochs[-1]["epoch_total"] = time.process_time() - self._start

    def on_epoch_start(self, state: Any, epoch: int) -> None:
        self._close_epoch()
        self.epochs.append({})
        self._start = self._mark = time.process_time()

    def on_after_backward(self, state: Any, batch: Any) -> None:
        self._lap("forward_backward")

    def on_step_end(self, state: Any, parts: dict[str, float]) -> None:
        self._lap("clip_step")

    def on_epoch_end(self, state: Any, epoch: int, losses: dict[str, float]) -> None:
        self._lap("forward_backward")  # the loader's last fetch

    def on_validation_end(self, state: Any, epoch: int, metrics: dict[str, float]) -> None:
        self._lap("validation")
        self.best_writes += state.best != self._best  # the protocol writes best/ when it improved
        self._best = state.best

    def on_fit_end(self, state: Any) -> None:
        self._close_epoch()


def profile(
    model: str,
    data: str,
    epochs: int,
    batch_size: int,
    overrides: dict[str, Any],
    train: dict[str, Any] | None = None,
    size_matched: bool = False,
) -> dict[str, Any]:
    import torch

    from msakit.data import load_dataset
    from msakit.training import Trainer, train_config_from

    torch.set_num_threads(1)
    timer = PhaseTimer()
    if size_matched:  # exactly the msakit side of compare_mmsa.py's timing pairs (its config, its trainer)
        cmp = _load_module("compare_mmsa")
        cmp.EPOCH_LIMIT = epochs
        with tempfile.TemporaryDirectory() as tmp:
            trainer = cmp._msakit_trainer(model, data, 1, Path(tmp), True, train)
            trainer.callbacks.append(timer)
            trainer.fit_seed(1)
        return _phases(timer)
    dataset = load_dataset(data)
    cfg = train_config_from(
        {
            "epochs": epochs,
            "seeds": [1],
            "patience": epochs + 1,
            "batch_size": batch_size,
            "progress": False,
            "tensorboard": False,
            "device": "cpu",
            **(train or {}),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(model, dataset, model_overrides=overrides, train_config=cfg, out_dir=Path(tmp), callbacks=[timer]).fit()
    return _phases(timer)


def _phases(timer: PhaseTimer) -> dict[str, Any]:
    later = timer.epochs[1:] or timer.epochs
    out = {p: statistics.median(e.get(p, 0.0) for e in later) for p in PHASES}
    return {"seconds_cpu": out, "best_writes": timer.best_writes, "epochs": len(timer.epochs)}


def _spawn(
    args: argparse.Namespace, model: str, src: str | None, opts: list[str], train: tuple[str, ...] = ()
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--models", model, "--data", args.data, "--epochs", str(args.epochs)]
    cmd += ["--batch-size", str(args.batch_size)] + [x for o in opts for x in ("-m", o)]
    cmd += [x for o in [*args.train_opt, *train] for x in ("-t", o)] + (["--size-matched"] if args.size_matched else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mult"])
    p.add_argument("--data", default="synthetic", help="a dataset folder or 'synthetic[:preset]'")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("-m", "--model-opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--ab", nargs=2, metavar=("SRC_A", "SRC_B"), help="two source trees (their src/ folders)")
    p.add_argument("--ab-model-opt", nargs=2, metavar=("OPT_A", "OPT_B"), help="two model options KEY=VALUE")
    p.add_argument("-t", "--train-opt", action="append", default=[], metavar="KEY=VALUE", help="a TrainConfig override")
    p.add_argument("--ab-train-opt", nargs=2, metavar=("OPT_A", "OPT_B"), help="two train options KEY=VALUE")
    p.add_argument(
        "--size-matched",
        action="store_true",
        help="the size-matched configuration of benchmarks/compare_mmsa.py (its model and train overrides; "
        "--batch-size and -m are then ignored); --data is then its MMSA pickle",
    )
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7, help="rounds of --micro text_lstm (the first is left out)")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--micro",
        choices=("optimizer", "lstm", "split", "buckets", "collate", "text_lstm"),
        help="a micro-benchmark instead of epochs",
    )
    p.add_argument("--doc", type=Path, metavar="MD", help="regenerate the speed block of MD from docs/bench/*.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.doc:
        write_doc(args.doc, Path(__file__).resolve().parents[1] / "docs" / "bench")
        return
    if args.micro:
        micro = {"optimizer": lambda: micro_optimizer(args.models), "lstm": lambda: micro_lstm(args.data)}
        micro |= {"split": lambda: micro_split(args.data), "buckets": lambda: micro_buckets(args.data)}
        micro |= {
            "collate": lambda: micro_collate(args.data),
            "text_lstm": lambda: micro_text_lstm(args.data, args.repeats),
        }
        res = micro[args.micro]()
        if args.micro == "text_lstm":
            res["command"] = (
                f"OMP_NUM_THREADS=1 nice -n 10 python benchmarks/profile_epoch.py --micro text_lstm --data {args.data} "
                f"--repeats {args.repeats}" + (f" --json {args.json}" if args.json else "")
            )
        res["load_avg_1min"] = os.getloadavg()[0]
        print(json.dumps(res, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=1))
        return
    if args.worker:
        from msakit.config import parse_override

        overrides = dict(parse_override(o) for o in args.model_opt)
        train = dict(parse_override(o) for o in args.train_opt)
        res = profile(args.models[0], args.data, args.epochs, args.batch_size, overrides, train, args.size_matched)
        print("RESULT " + json.dumps(res))
        return
    result: dict[str, Any] = {"argv": sys.argv[1:], "load_avg_start": os.getloadavg()[0], "models": {}}
    for model in args.models:
        if not (args.ab or args.ab_model_opt or args.ab_train_opt):
            result["models"][model] = _spawn(args, model, None, args.model_opt)
            print(model, json.dumps(result["models"][model]), flush=True)
            continue
        sides: list[tuple[str | None, list[str], tuple[str, ...]]]
        if args.ab:
            sides = [(args.ab[0], args.model_opt, ()), (args.ab[1], args.model_opt, ())]
        elif args.ab_model_opt:
            sides = [(None, [*args.model_opt, o], ()) for o in args.ab_model_opt]
        else:
            sides = [(None, args.model_opt, (o,)) for o in args.ab_train_opt]
        pairs = []
        for i in range(args.pairs):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            runs: dict[int, dict[str, Any]] = {}
            for k in order:
                runs[k] = _spawn(args, model, *sides[k])
            pairs.append({"A": runs[0], "B": runs[1]})
            print(model, f"pair {i + 1}", json.dumps(pairs[-1]), flush=True)
        ok = [q for q in pairs if "error" not in q["A"] and "error" not in q["B"]]
        ratio = (
            {
                ph: statistics.median(q["B"]["seconds_cpu"][ph] / max(q["A"]["seconds_cpu"][ph], 1e-9) for q in ok)
                for ph in PHASES
            }
            if ok
            else {}
        )
        med = (
            {side: {ph: statistics.median(q[side]["seconds_cpu"][ph] for q in ok) for ph in PHASES} for side in "AB"}
            if ok
            else {}
        )
        result["models"][model] = {"pairs": pairs, "median_seconds_cpu": med, "median_ratio_b_over_a": ratio}
        print(model, "B/A", json.dumps({k: round(v, 3) for k, v in ratio.items()}), flush=True)
    result["load_avg_end"] = os.getloadavg()[0]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


# ---- docs/benchmarks.md: the "Training and inference speed" block, generated from docs/bench/*.json ----------
BEGIN, END = "<!-- speed:begin (benchmarks/profile_epoch.py --doc) -->", "<!-- speed:end -->"


def _ab_table(path: Path, a: str, b: str) -> list[str]:
    res = json.loads(path.read_text())
    lines = [
        f"| model | phase | {a} (CPU s / epoch) | {b} (CPU s / epoch) | {b} ÷ {a}, median of pairs |",
        "|---|---|---:|---:|---:|",
    ]
    for model, r in res["models"].items():
        if not r.get("median_ratio_b_over_a"):
            lines.append(f"| {model} | — | did not run | | |")
            continue
        for ph in PHASES:
            lines.append(
                f"| {model} | {ph} | {r['median_seconds_cpu']['A'][ph]:.3f} | {r['median_seconds_cpu']['B'][ph]:.3f} "
                f"| {r['median_ratio_b_over_a'][ph]:.2f} |"
            )
    pairs = len(next(iter(res["models"].values()))["pairs"])
    lines.append("")
    if isinstance(res.get("argv"), str):
        lines += [f"Run: `{res['argv']}`.", ""]
    load = (
        f"load average {res['load_avg_start']:.1f} at the start, {res['load_avg_end']:.1f} at the end (2 cores)"
        if res.get("load_avg_start") is not None
        else "load average not recorded (rebuilt from the run's log)"
    )
    lines.append(f"{pairs} interleaved pairs; {load}.")
    return lines


def _inference_table(bench: Path) -> list[str]:
    befores = sorted(bench.glob("inference_before_*.json"))
    afters = sorted(bench.glob("inference_after_*.json"))
    if not befores or not afters:
        return ["(no inference measurements)"]
    first = json.loads(afters[0].read_text())
    lines = [
        f"Checkpoint: {first['model']} trained one epoch on `{first['data']}`; batch 1 over the first "
        f"{first['samples_batch_1']} test samples, batch 256 over all {first['samples_batch_256']}; "
        f"{len(afters)} before/after pairs, median shown.",
        "",
        "| batch | path | before (samples / CPU s) | after (samples / CPU s) | after ÷ before |",
        "|---:|---|---:|---:|---:|",
    ]
    noise: list[float] = []
    for size in ("batch_1", "batch_256"):
        paths = json.loads(afters[0].read_text())["samples_per_cpu_second"][size]
        for path in paths:
            a = [json.loads(f.read_text())["samples_per_cpu_second"][size].get(path) for f in afters]
            b = [json.loads(f.read_text())["samples_per_cpu_second"][size].get(path) for f in befores]
            a_med = statistics.median(v for v in a if v is not None)
            b_ok = [v for v in b if v is not None]
            b_med = statistics.median(b_ok) if b_ok else None
            ratio = f"{a_med / b_med:.2f}" if b_med else "—"
            lines.append(
                f"| {size.split('_')[1]} | {path} | {f'{b_med:.0f}' if b_med else '— (new)'} | {a_med:.0f} | {ratio} |"
            )
            if path == "torch" and b_med:
                noise.append(a_med / b_med)
    if noise:
        lines += [
            "",
            f"The `torch` row times the {first['model']} model alone, which this work barely touched (its "
            "encoders are transformers; only the key-padding mask became branch-free); its after ÷ before "
            f"moved by {min(noise):.2f}-{max(noise):.2f}, so "
            "differences of that size in the other rows are the noise of this loaded machine, not a speed-up. "
            "The 2× reach for end-to-end inference is not met; onnxruntime runs the model alone "
            f"{_ort_vs_torch(afters)} the PyTorch model alone (at batch 256 it is slower: every input is padded "
            "to the export's fixed length, and its attention runs as separate ONNX ops).",
        ]
    return lines


def _ort_vs_torch(afters: list[Path]) -> str:
    parts = []
    for size in ("batch_1", "batch_256"):
        rows = [json.loads(f.read_text())["samples_per_cpu_second"][size] for f in afters]
        r = statistics.median(row["onnxruntime"] / row["torch"] for row in rows if "onnxruntime" in row)
        parts.append(f"{r:.2f}× at batch {size.split('_')[1]}")
    return " and ".join(parts) + " the speed of"


#: end-to-end samples per CPU-second the issue was filed against (third stop's "before", late_fusion, MOSI)
ISSUE_BASELINE = {"batch_1": {"predict": 345, "service": 235}, "batch_256": {"predict": 2663, "service": 1948}}


def _load_module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _median_rows(files: list[Path], size: str) -> dict[str, float]:
    return _load_module("benchdoc").median_rows(files, size)  # shared with inference_speed.py


def _tfn_before(bench: Path) -> str:
    """TFN's size-matched msakit CPU time per epoch before the slice (the third stop's pairs) and now."""
    old, new = bench / "compare_mmsa.json", bench / "compare_mmsa_s4.json"
    if not (old.exists() and new.exists()):
        return ""
    before = [r["msakit"]["cpu_seconds_per_epoch"] for r in json.loads(old.read_text())["timing"]["tfn"].values()]
    now = [
        r["msakit_default"]["cpu_seconds_per_epoch"]
        for r in json.loads(new.read_text())["timing"].get("tfn", {}).values()
        if "msakit_default" in r and "error" not in r["msakit_default"]
    ]
    if not before or not now:
        return ""
    return (
        f"TFN's default-paths run took {statistics.median(now):.2f} CPU s per epoch here, against "
        f"{statistics.median(before):.2f} in the third stop's pairs (docs/bench/compare_mmsa.json: earlier code, "
        "another run, not interleaved with these)."
    )


def _cpu_ratios(per_seed: dict[str, Any], side: str = "msakit") -> list[float]:
    pairs = [r for r in per_seed.values() if "error" not in r.get("mmsa", {"error": 1}) and side in r]
    return [
        r[side]["cpu_seconds_per_epoch"] / r["mmsa"]["cpu_seconds_per_epoch"] for r in pairs if "error" not in r[side]
    ]


def _timing_pairs_block(runs: dict, pkl: str, tail: str) -> list[str]:
    """The command, paired table, notes and reach sentence of one stop's size-matched timing pairs."""
    tm = runs["timing_meta"]
    return [
        f"    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/compare_mmsa.py {pkl} --size-matched \\",
        f"        --mmsa-path DIR --models {' '.join(tm['models'])} --seeds {' '.join(map(str, tm['seeds']))} \\",
        f"        --timing-epochs {tm['epochs']} "
        + " ".join(f"--msakit-train {o}" for o in tm.get("msakit_train", []))
        + f" {tail}",
        "",
        _load_module("compare_mmsa").timing_table(runs["timing"]),
        *[f"- {note}" for note in runs.get("timing_notes", [])],
        "",
        _reach_sentence(runs["timing"]),
        "",
    ]


def _reach_sentence(timing: dict[str, Any]) -> str:
    """Which size-matched models meet msakit ≤ 0.33× MMSA's CPU time per epoch (medians of the pairs)."""
    cells = []
    for model, per_seed in timing.items():
        ratios = _cpu_ratios(per_seed)
        if ratios:
            median = statistics.median(ratios)
            cells.append((f"{model} {median:.2f} ({len(ratios)} pairs)", median))
    return _met_sentence("The reach, msakit ≤ 0.33× MMSA's CPU time per epoch: ", cells)


def _met_sentence(lead: str, cells: list[tuple[str, float]]) -> str:
    """`lead` + which (cell, median ratio) pairs meet the reach (≤ 0.33) and which do not."""
    met = [cell for cell, ratio in cells if ratio <= 0.33]
    unmet = [cell for cell, ratio in cells if ratio > 0.33]
    return (
        lead
        + (f"met for {', '.join(met)}" if met else "met for none")
        + (f"; not met for {', '.join(unmet)}." if unmet else ".")
    )


def _fifth_stop(bench: Path) -> list[str]:
    """The fifth stop's rows: MMSA's architecture at MMSA's size, pairs against MMSA, before (s4) and after (s5)."""
    path = bench / "compare_mmsa_s5.json"
    if not path.exists():
        return []
    runs = json.loads(path.read_text())
    tm = runs["timing_meta"]
    lines = [
        "### Fifth stop: MMSA's architecture at MMSA's size",
        "",
        "What changed in the size-matched configurations (benchmarks/compare_mmsa.py `SIZE_MATCHED`; "
        "docs/compare_mmsa.md has them in full), each an option, no default changed:",
        "",
        "- LF-DNN, LMF, TFN: `text_encoder=unilstm`, MMSA's TextSubNet: one unidirectional 128-wide LSTM read "
        "straight from the features (the fourth stop's size-matched text encoder was msakit's bidirectional "
        "one behind an input LayerNorm, a projection and per-step dropout, 160-176 wide to match the parameter "
        "count); `feature_norm=false` (MMSA standardises no features).",
        "- MulT: `memory=concat` (the self-attention over each target runs on the 2·d-wide concatenation, as "
        "MMSA's `trans_*_mem`), `ffn_mult=4` (MMSA's feed-forward width), so the parameter count is MMSA's; "
        "`ffn_dropout=0` (MMSA's relu_dropout and res_dropout are 0, so dropout only on attention weights "
        "and embeddings); batch 64 (MMSA: 16) on msakit's side, for the timing and the accuracy runs alike.",
        "- MulT (not an option): a crossmodal block whose source no sample of the batch has, and a target no "
        "sample has, are skipped; the same function (tests/test_speed.py). MOSI here has no visual features, "
        "so that skips 4 of the 6 blocks; MMSA runs them on its zero array.",
        "",
        "Pairs, each MMSA then msakit (order alternating), back to back, each "
        f"{tm['epochs']} epochs in its own process; CPU time per epoch, medians over pairs:",
        "",
        *_timing_pairs_block(runs, "runs/speed/mosi_mmsa.pkl", "--json docs/bench/compare_mmsa_s5.json"),
    ]
    before_path = bench / "compare_mmsa_s4.json"
    if before_path.exists():
        before = json.loads(before_path.read_text())["timing"]
        lines += [
            "Before (the fourth stop's size-matched configurations and code, its pairs: docs/bench/"
            "compare_mmsa_s4.json) and after (this stop's, above); each ratio is within its own pairs, the two "
            "runs are not interleaved with each other:",
            "",
            "| model | msakit params, before → after | msakit CPU s / epoch, before → after "
            "| msakit ÷ MMSA, before → after |",
            "|---|---:|---:|---:|",
        ]
        for model, per_seed in runs["timing"].items():
            if model not in before or not _cpu_ratios(per_seed) or not _cpu_ratios(before[model]):
                continue

            def used(ps: dict[str, Any]) -> float:
                return statistics.median(
                    r["msakit"]["cpu_seconds_per_epoch"] for r in ps.values() if "error" not in r.get("msakit", {})
                )

            def params(ps: dict[str, Any]) -> int:
                return int(next(r["msakit"]["params"] for r in ps.values() if "params" in r.get("msakit", {})))

            lines.append(
                f"| {model} | {params(before[model]):,} → {params(per_seed):,} | {used(before[model]):.2f} → "
                f"{used(per_seed):.2f} | {statistics.median(_cpu_ratios(before[model])):.2f} → "
                f"{statistics.median(_cpu_ratios(per_seed)):.2f} |"
            )
        lines.append("")
    notes = [f"- {note}" for note in runs.get("speed_notes", []) if not note.startswith("MulT's 0.25 is a ratio")]
    mult = _mult_accuracy_sentence(bench)  # replaces the fifth stop's 2-seed note: the 5-seed result is in
    lines += [*([mult] if mult else []), *notes]  # docs/bench/compare_mmsa_s6.json
    return lines + ([""] if notes or mult else [])


def _mult_accuracy_sentence(bench: Path) -> str:
    """MulT's size-matched accuracy over its paired seeds (docs/bench/compare_mmsa_s6.json), generated."""
    path = bench / "compare_mmsa_s6.json"
    if not path.exists():
        return ""
    per_seed = json.loads(path.read_text())["results"].get("mult", {})
    pairs = [r for r in per_seed.values() if all("test" in r.get(fw, {}) for fw in ("mmsa", "msakit"))]
    if not pairs:
        return ""

    def cell(fw: str, key: str, scale: float, digits: int) -> str:
        vals = [scale * r[fw]["test"][key] for r in pairs]
        return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"

    def mean(fw: str, key: str) -> float:
        return statistics.mean(r[fw]["test"][key] for r in pairs)

    keys = (("Non0 Acc-2", "Non0_acc_2", 100.0, 1, True), ("MAE", "MAE", 1.0, 3, False))
    keys += (("Corr", "Corr", 1.0, 3, True), ("Acc-7", "Mult_acc_7", 100.0, 1, True))
    parts, behind = [], []
    for name, key, scale, digits, higher in keys:
        parts.append(f"{name} {cell('msakit', key, scale, digits)} against {cell('mmsa', key, scale, digits)}")
        if (mean("msakit", key) < mean("mmsa", key)) == higher and mean("msakit", key) != mean("mmsa", key):
            behind.append(name)
    return (
        f"- MulT's ratio is at accuracy measured over {len(pairs)} paired uncapped seeds with the same options "
        f"(docs/bench/compare_mmsa_s6.json, docs/compare_mmsa.md 'Accuracy'), msakit against MMSA: "
        + "; ".join(parts)
        + (f". msakit is behind on {', '.join(behind)} only." if behind else ". msakit is level or ahead on all four.")
    )


def _seventh_stop(bench: Path) -> list[str]:
    """The seventh stop's pairs: the allocator on both sides, with and without segments, and torch.compile."""
    path = bench / "compare_mmsa_s7.json"
    if not path.exists():
        return []
    runs = json.loads(path.read_text())
    cmp = _load_module("compare_mmsa")
    lines = [
        "### Seventh stop: the allocator (`-t malloc=keep`), the segments LSTM, torch.compile",
        "",
        *runs.get("speed_intro", []),
        "",
        cmp.variants_section(runs["timing_variants"], "runs/speed/mosi_mmsa.pkl"),
        *[f"- {note}" for note in runs.get("speed_notes", [])],
        "",
    ]
    for variant in runs["timing_variants"]:
        if variant.get("reach"):
            lines += [f"{variant['label']}: {_reach_sentence(variant['timing'])}", ""]
    return lines


def _stop_block(bench: Path, n: int, key: str) -> list[str]:
    """One stop's pairs (docs/bench/compare_mmsa_s<n>.json, key `key`, e.g. "eighth_stop"): each lever A/B
    within the pairs; a stop's phase profile A/B (`profile_ab`: benchmarks/profile_epoch.py's JSON) first."""
    path = bench / f"compare_mmsa_s{n}.json"
    if not path.exists():
        return []
    runs = json.loads(path.read_text())
    if key not in runs:  # a results file still being written by its run
        return []
    stop = runs[key]
    variants = [v for v in runs["timing_variants"] if v["label"] in stop["labels"]]
    cmp = _load_module("compare_mmsa")
    lines = [f"### {stop['title']}", "", *stop.get("intro", []), ""]
    profiles = stop.get("profile_ab") or []
    for ab in profiles if isinstance(profiles, list) else [profiles]:  # one profile_epoch.py JSON, or several
        lines += [*_profile_ab_lines(ab), ""]
    lines.append(cmp.variants_section(variants, runs["meta"]["data"]))
    lines += [*[f"- {note}" for note in stop.get("notes", [])], ""]
    for variant in variants:
        if variant.get("reach"):
            for side in ("msakit", "b") if cmp._has_b(variant) else ("msakit",):
                shown = cmp._as_side(variant, side)
                lines += [f"{shown['label']}: {_reach_sentence(shown['timing'])}", ""]
            if variant.get("reach_sides"):
                lines += [_chosen_sides_sentence(variant), ""]
    return lines


def _chosen_sides_sentence(variant: dict[str, Any]) -> str:
    """The reach on the side a written rule chose per model (`reach_sides`: model -> "msakit" (A) or "b")."""
    flags = " ".join(variant["timing_meta"].get("msakit_b", []))
    cells = []
    for model, side in variant["reach_sides"].items():
        ratios = _cpu_ratios(variant["timing"][model], "msakit_b" if side == "b" else "msakit")
        if ratios:
            which = f"B, `{flags}`" if side == "b" else "A"
            median = statistics.median(ratios)
            cells.append((f"{model} {median:.2f} ({which}; {len(ratios)} pairs)", median))
    lead = (
        "The reach, msakit ≤ 0.33× MMSA's CPU time per epoch, on the side chosen per model before the run "
        f"({variant['reach_rule']}): "
    )
    return _met_sentence(lead, cells)


def _profile_ab_lines(ab: dict[str, Any]) -> list[str]:
    """The command and per-phase table of a profile_epoch.py A/B (`--ab-train-opt`), CPU ms per epoch."""
    argv = ab["argv"]
    a, b = argv[argv.index("--ab-train-opt") + 1 :][:2]
    epochs = argv[argv.index("--epochs") + 1] if "--epochs" in argv else "4"
    pairs = min(len(res["pairs"]) for res in ab["models"].values())
    lines = [
        f"    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/profile_epoch.py {' '.join(argv)}",
        "",
        f"CPU ms per epoch (epochs 2-{epochs}, median over {pairs} interleaved pairs; load average "
        f"{ab['load_avg_start']:.1f} at the start, {ab['load_avg_end']:.1f} at the end), A = `{a}`, B = `{b}`:",
        "",
        "| model | phase | A | B | B ÷ A, median of the per-pair ratios |",
        "|---|---|---:|---:|---:|",
    ]
    for model, res in ab["models"].items():
        med, ratio = res["median_seconds_cpu"], res["median_ratio_b_over_a"]
        for phase in PHASES:
            lines.append(
                f"| {model} | {phase} | {1e3 * med['A'][phase]:.1f} | {1e3 * med['B'][phase]:.1f} | "
                f"{ratio[phase]:.3f} |"
            )
    return lines


def _fourth_stop(bench: Path) -> list[str]:
    """The fourth stop's rows: size-matched pairs against MMSA, bucketed batches, the split LSTM, inference."""
    lines = ["### Fourth stop: the same model, less work", ""]
    cmp_path = bench / "compare_mmsa_s4.json"
    if cmp_path.exists():
        runs = json.loads(cmp_path.read_text())
        tm = runs["timing_meta"]
        lines += [
            "Size-matched MMSA comparison (docs/compare_mmsa.md has the whole table and the configurations). Each "
            "pair is MMSA and msakit with `-t sampler=bucket -t lstm=auto` (in pairs run with `--with-default-paths` "
            f"also msakit on its default paths), back to back, each {tm['epochs']} epochs in its own process; CPU "
            "time per epoch, medians over pairs:",
            "",
            *_timing_pairs_block(
                runs, "/tmp/mosi_mmsa.pkl", "--with-default-paths --json docs/bench/compare_mmsa_s4.json"
            ),
        ]
    buckets = bench / "micro_buckets.json"
    if buckets.exists():
        res = json.loads(buckets.read_text())
        lines += [
            "#### Length-bucketed batches (`-t sampler=bucket`, `msakit.data.core.LengthBuckets`)",
            "",
            f"`python benchmarks/profile_epoch.py --micro buckets --data {res['data']} --json "
            f"docs/bench/micro_buckets.json`: padded text steps per training sample of an epoch (batches are trimmed "
            f"to their longest sample; mean valid steps {res['mean_valid_steps']}, mean of {res['epochs']} epochs):",
            "",
            "| batch | random batches | length-bucketed (pools of 16 batches) |",
            "|---:|---:|---:|",
            *[f"| {r['batch']} | {r['random']} | {r['bucket']} |" for r in res["rows"]],
            "",
            "Buckets change which samples share a batch (not the epoch's samples), so they are a training choice, "
            "opt-in: every configuration that does not ask for them trains as before.",
            "",
        ]
    split = bench / "micro_split.json"
    if split.exists():
        res = json.loads(split.read_text())
        lines += [
            "#### The bidirectional LSTM: packed vs split (`-t lstm=auto`)",
            "",
            f"`OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --micro split --data {res['data']} --json "
            "docs/bench/micro_split.json`: CPU ms per forward + backward of the encoder's LSTM over 10 training "
            "batches, median of 3. `split` runs each direction as one fused unpacked LSTM (the backward one over "
            "per-sample reversed steps), the packed result to float rounding (tests/test_speed.py). The packed "
            "loop slices its input per step, and each slice's backward zero-fills a full-size gradient.",
            "",
            "| batch | LSTM width | batches | valid fraction | packed ms | split ms | split ÷ packed |",
            "|---:|---:|---|---:|---:|---:|---:|",
            *[
                f"| {r['batch']} | {r['hidden']} | {r['batches']} | {r['valid_fraction']:.2f} | {r['packed_ms']:.1f} "
                f"| {r['split_ms']:.1f} | {r['split_ms'] / r['packed_ms']:.2f} |"
                for r in res["rows"]
            ],
            "",
            "`auto` takes the split path when at least a third of a batch's steps are valid and packs otherwise "
            "(the one row above where packing wins is 128 × 160 on random batches, 0.32 valid).",
            "",
            "#### TFN: a modality absent from the whole batch",
            "",
            "An absent modality's factor in TFN's fusion is [1; 0], so the fused vector is zero outside the slice "
            "where that modality's index is 0; TFN now runs its first post-fusion layer on that slice and the "
            "matching weight columns (the same function; tests/test_speed.py checks outputs and gradients and that "
            "the full-width layer does not run). In the size-matched comparison MOSI has no visual features, so "
            "this is 1/66 of the fusion layer, and msakit's default paths include it: "
            + _tfn_before(bench)
            + " With visual features present TFN's fusion costs what MMSA's does. It is not opt-in: it changes no "
            "output, but "
            "dropout then draws over the slice only, so a training run with a modality missing from whole batches "
            "is not bit-identical to one on the earlier code.",
            "",
        ]
    afters = sorted(bench.glob("inference_s4_after_*.json"))
    befores = sorted(bench.glob("inference_s4_before_*.json"))
    if afters and befores:
        first = json.loads(afters[0].read_text())
        base = {k: dict(v) for k, v in ISSUE_BASELINE.items()}
        table, medians, noise = _load_module("benchdoc").inference_table(
            afters, befores, base, {"predict_onnx": "predict"}
        )
        lines += [
            "#### Inference",
            "",
            f"Checkpoint: {first['model']} trained one epoch on `{first['data']}`; batch 1 over the first "
            f"{first['samples_batch_1']} test samples, batch 256 over all {first['samples_batch_256']}; before = "
            f"this stop's starting commit (72e5f92), after = now; {len(afters)} interleaved pairs, medians. The "
            "issue's baseline is what it was filed against (the third stop's before, not interleaved with these).",
            "",
            "    OMP_NUM_THREADS=1 [PYTHONPATH=/tmp/before/src] python benchmarks/inference_speed.py CKPT \\",
            "        --data data/mosi --samples 100 --repeats 2 --json docs/bench/inference_s4_{before,after}_N.json",
            "",
            *table,
        ]
        reach = []
        for size, a in medians.items():
            for path in ("predict", "service"):
                best = max((k for k in a if k.startswith(path)), key=lambda k: a[k])
                ratio = a[best] / ISSUE_BASELINE[size][path]
                verdict = "met" if ratio >= 2 else "not met"
                reach.append(f"{path} at batch {size.split('_')[1]} {verdict} ({best}: {ratio:.2f}×)")
        lines += [
            "",
            "`predict` now runs a padding-invariant model (`Capabilities.padding_invariant`, checked for every "
            "model that declares it) on batches of similar length, each trimmed to its longest sample and of at "
            "most 64 samples (`service.REQUEST_CHUNK`: sorted calls of 64 pad less than calls of 256), and "
            "returns split order; `predict_onnx` is `msakit predict --onnx FULL.onnx S8.onnx S16.onnx S32.onnx` "
            "(exports of the checkpoint at 50, 8, 16 and 32 text steps; each batch runs on the shortest graph it "
            "fits); `service` runs a large request of such a model by length in chunks of 64. `torch` and "
            "`onnxruntime` are the model alone on ready batches (no change expected: their ratio is this loaded "
            "machine's noise).",
            "",
            "The reach, ≥ 2× the issue's end-to-end baseline: " + "; ".join(reach) + ". The unchanged rows (`torch`, "
            f"`onnxruntime`) moved between {min(noise):.2f}× and {max(noise):.2f}× between the sides, so ratios "
            "inside that band are noise; the issue's baseline was measured at another time and load.",
            "",
        ]
    startup = bench / "startup.json"
    if startup.exists():
        res = json.loads(startup.read_text())
        lines += [
            "#### Start-up",
            "",
            f"`OMP_NUM_THREADS=1 python benchmarks/startup.py --before /tmp/before/src --pairs {res['pairs']} "
            "--checkpoint CKPT --data data/mosi --json docs/bench/startup.json` (CPU seconds of the whole process, "
            "user + system; before = 72e5f92; medians of interleaved pairs; the predict row is late_fusion on "
            "MOSI's test split):",
            "",
            "| command | before (CPU s) | after (CPU s) | after ÷ before |",
            "|---|---:|---:|---:|",
            *[
                f"| `{name}` | {r['before_cpu_s']:.2f} | {r['after_cpu_s']:.2f} | {r['after_over_before']:.2f} |"
                for name, r in res["median"].items()
            ],
            "",
            "`import msakit` resolves its public names on first use (PEP 562) and loads none of torch, pandas, "
            "scikit-learn, scipy, optuna, fastapi, mediapipe, h5py or onnxruntime (tests/test_startup.py); a "
            "command imports only the CLI module that registers it (found from the modules' `add_parser` calls "
            "without importing them); scikit-learn and pandas are imported where they are used. `msakit --help` "
            "still imports torch: `data prepare`'s and `robustness`'s option lists come from modules that need it.",
            "",
        ]
    return lines


def _not_done(bench: Path) -> list[str]:
    path = next(
        (bench / f"compare_mmsa_s{n}.json" for n in (10, 9, 8, 7, 5) if (bench / f"compare_mmsa_s{n}.json").exists()),
        None,
    )
    notes = json.loads(path.read_text()).get("not_done_notes", []) if path is not None else []
    return notes or [
        "`torch.compile` on CPU (`-t compile=true`) was not re-measured; it stays off by default (at the third "
        "stop it did not finish a text_only epoch in 500 s).",
        "Larger default batches and cheaper dropout: not changed. Every default would change published "
        "results, and no 5-seed validation run of a changed default fitted in this stop's compute; the speed "
        "paths of the fourth stop are opt-in (`-t sampler=bucket -t lstm=auto`) for the same reason.",
    ]


def write_doc(doc: Path, bench: Path) -> None:
    parts = [BEGIN, "## Training and inference speed (issue 22)", ""]
    parts += [*_stop_block(bench, 10, "tenth_stop"), *_stop_block(bench, 9, "ninth_stop")]
    parts += [*_stop_block(bench, 8, "eighth_stop"), *_seventh_stop(bench)]
    parts += _fifth_stop(bench)
    parts += _fourth_stop(bench)
    parts += ["### Third stop", ""]
    micro = bench / "micro_optimizer.json"
    if micro.exists():
        res = json.loads(micro.read_text())["ms_cpu_per_call"]
        parts += [
            "#### Optimizer step and clipping",
            "",
            "`OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --micro optimizer --models "
            f"{' '.join(res)} --json docs/bench/micro_optimizer.json` (CPU ms per call, median of 3 × 200 calls):",
            "",
            "| model | parameter tensors | AdamW for-loop | AdamW foreach | AdamW fused | clip for-loop "
            "| clip foreach |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in res.items():
            parts.append(
                f"| {name} | {r['tensors']} | {r['adamw_loop']:.2f} | {r['adamw_foreach']:.2f} "
                f"| {r['adamw_fused']:.2f} "
                f"| {r['clip_loop']:.2f} | {r['clip_foreach']:.2f} |"
            )
        parts += [
            "",
            "The trainer now builds `engine.adamw` (fused on CPU and CUDA, foreach elsewhere) and clips with "
            "`engine.clip_grad_norm` (foreach); tests/test_speed.py checks they match the for-loop path.",
            "",
        ]
    if (bench / "ab_fused.json").exists():
        parts += [
            "Per-epoch effect on real MOSI (`data/mosi`, batch 32, epochs 2-3), A = a worktree at 59049d5 "
            "(before), B = after the optimizer change:",
            "",
            "    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --models mult tfn late_fusion \\",
            "        --data data/mosi \\",
            "        --epochs 3 --ab /tmp/before/src src --pairs 3 --json docs/bench/ab_fused.json",
            "",
            *_ab_table(bench / "ab_fused.json", "before", "after"),
            "",
        ]
    lstm = bench / "micro_lstm.json"
    if lstm.exists():
        r = json.loads(lstm.read_text())
        ms = r["ms_cpu_forward_backward"]
        parts += [
            "#### The LSTM encoder: packed vs masked",
            "",
            "`OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --micro lstm --data data/mosi --json "
            "docs/bench/micro_lstm.json`: the shared bidirectional LSTM text encoder (hidden "
            f"{r['hidden']}), forward + backward, batch {r['batch']} drawn from MOSI's text lengths (mean "
            f"{r['mean_valid_steps']:.1f} valid steps, batches trimmed to their longest): packed "
            f"{ms['packed']:.1f} ms, masked {ms['masked']:.1f} ms (median of 3 × 20 batches). The masked path "
            "runs each direction over the full padded length (twice the arithmetic of packing) and is exact on "
            "valid steps (tests/test_speed.py). It was made the CPU default for a while and then reverted: in "
            "the size-matched MMSA comparison (LF-DNN, batch 128, hidden 160, MOSI text padded to 50 steps with "
            "about 15 valid) one run took 5.31 CPU s per epoch against 2.01 with packing in an earlier pair "
            "(docs/compare_mmsa.md). Packing stays the eager path; the masked one is what ONNX export traces "
            "(plain LSTM ops on fixed-length inputs; a traced packed LSTM also passed the parity check when tried).",
            "",
        ]
    if (bench / "ab_lstm.json").exists():
        parts += [
            "Per-epoch effect at msakit's defaults (batch 32), A = packed (commit e0b3c7a), B = masked (the "
            "reverted default, commit 9afd71d):",
            "",
            "    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --models tfn --data data/mosi --epochs 3 \\",
            "        --ab /tmp/e0b3c7a/src /tmp/9afd71d/src --pairs 3 --json docs/bench/ab_lstm.json",
            "",
            *_ab_table(bench / "ab_lstm.json", "packed", "masked"),
            "",
            "So the masked path pays at TFN's defaults and costs at the size-matched LF-DNN's batch and width; "
            "a rule choosing per batch was not measured, so packing stays the eager default.",
            "",
        ]
    if (bench / "ab_norm.json").exists():
        res = json.loads((bench / "ab_norm.json").read_text())["models"]["mult"]
        ratio = res.get("median_ratio_b_over_a", {})
        parts += [
            "#### mult with and without input normalisation (issue 14's leftover)",
            "",
            "    OMP_NUM_THREADS=1 python benchmarks/profile_epoch.py --models mult --data synthetic --epochs 3 \\",
            "        --ab-model-opt feature_norm=false feature_norm=true --pairs 3 --json docs/bench/ab_norm.json",
            "",
            *_ab_table(bench / "ab_norm.json", "feature_norm=false", "feature_norm=true"),
            "",
            (
                f"Measured phase by phase in interleaved pairs, normalisation on ÷ off is "
                f"{ratio.get('epoch_total', float('nan')):.2f} for the whole epoch and "
                f"{ratio.get('forward_backward', float('nan')):.2f} for the training steps. "
                if ratio
                else ""
            )
            + "The 1.36x of the earlier table came from `benchmarks/epoch_time.py`, which takes the minimum of "
            "single runs of whole fits (3 epochs minus 1 epoch) made one after the other, not interleaved; "
            "that estimator is exposed to load changes between the two sides, and nothing in the epoch loop "
            "depends on the normaliser beyond the per-step cost that the step-level check already found "
            "negligible. In interleaved pairs the difference does not reproduce, so there is nothing in msakit's "
            "code to fix for it.",
            "",
        ]
    parts += ["#### Inference throughput (third stop)", "", *_inference_table(bench), ""]
    parts += [
        "    OMP_NUM_THREADS=1 [PYTHONPATH=/tmp/before/src] python benchmarks/inference_speed.py CKPT \\",
        "        --data data/mosi \\",
        "        --samples 100 --repeats 2 --json docs/bench/inference_{before,after}_N.json",
        "",
        "`predict` is `msakit predict`'s path, `service` the REST handler's without HTTP (.npz in, JSON-ready "
        "dict out), `torch` the model alone on ready batches, `onnxruntime` the exported graph "
        "(`msakit export onnx`, one thread, inputs padded to the export's fixed lengths).",
        "",
    ]
    parts += [  # the scaling tables are benchmarks/scaling.py's own section now (`--doc`)
        "### Scaling",
        "",
        "Per-epoch cost against dataset size and sequence length, every registered model measured in the fifth "
        "stop: the section 'Scaling' below (`python benchmarks/scaling.py --doc docs/benchmarks.md`, from "
        "docs/bench/scaling_s5.json). It replaces the third and fourth stops' tables (docs/bench/scaling.json, "
        "scaling_s4.json: earlier code, kept as data).",
        "",
    ]
    parts += [
        "### Not measured or not done here",
        "",
        "- GPU: `benchmarks/gpu_bench.py` (step time, peak memory, FLOPs ÷ the device's measured matmul "
        "throughput, fp32 and bf16 autocast) and its `gpu`-marked test run only with CUDA; nothing is measured "
        "yet (no session that had a device lent ran them). `scripts/device_check.sh` runs every GPU check of the "
        "project as one prepared, time-boxed run for a lent machine (its header says how the `mambapy` and "
        "`geomloss` wheels travel, since a lent machine has no internet): the `gpu`-marked tests "
        "(tests/test_mamba.py: the mambapy scan on CUDA tensors against the sequential reference, and the "
        "`mamba_ssm` kernel against it where installed; tests/test_speed.py), `benchmarks/mamba_scaling.py "
        "--device cuda` and this benchmark, with a log and the JSON results under `$OUT`. Without CUDA it "
        "reports the machine and skips the CUDA steps in one line (tests/test_device_check.py dry-runs it so). "
        "bf16 autocast is `-t precision=bf16` (CUDA, or a CPU with native "
        "bf16: the tenth stop above); CUDA graphs are not implemented.",
        *[f"- {note}" for note in _not_done(bench)],
        END,
    ]
    text = doc.read_text()
    block = "\n".join(parts) + "\n"
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        marker = "## Engine: per-epoch CPU time of every model, before and after"
        text = text.replace(marker, block + "\n" + marker, 1) if marker in text else text + "\n" + block
    doc.write_text(text)


if __name__ == "__main__":
    main()
