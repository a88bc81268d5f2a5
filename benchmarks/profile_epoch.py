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


def profile(model: str, data: str, epochs: int, batch_size: int, overrides: dict[str, Any]) -> dict[str, Any]:
    import torch

    from msakit.data import load_dataset
    from msakit.training import Trainer, train_config_from

    torch.set_num_threads(1)
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
        }
    )
    timer = PhaseTimer()
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(model, dataset, model_overrides=overrides, train_config=cfg, out_dir=Path(tmp), callbacks=[timer]).fit()
    later = timer.epochs[1:] or timer.epochs
    out = {p: statistics.median(e.get(p, 0.0) for e in later) for p in PHASES}
    return {"seconds_cpu": out, "best_writes": timer.best_writes, "epochs": len(timer.epochs)}


def _spawn(args: argparse.Namespace, model: str, src: str | None, opts: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--models", model, "--data", args.data, "--epochs", str(args.epochs)]
    cmd += ["--batch-size", str(args.batch_size)] + [x for o in opts for x in ("-m", o)]
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
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--micro", choices=("optimizer", "lstm"), help="a micro-benchmark instead of epochs")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.micro:
        res = micro_optimizer(args.models) if args.micro == "optimizer" else micro_lstm(args.data)
        res["load_avg_1min"] = os.getloadavg()[0]
        print(json.dumps(res, indent=1))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=1))
        return
    if args.worker:
        from msakit.config import parse_override

        overrides = dict(parse_override(o) for o in args.model_opt)
        print("RESULT " + json.dumps(profile(args.models[0], args.data, args.epochs, args.batch_size, overrides)))
        return
    result: dict[str, Any] = {"argv": sys.argv[1:], "load_avg_start": os.getloadavg()[0], "models": {}}
    for model in args.models:
        if not (args.ab or args.ab_model_opt):
            result["models"][model] = _spawn(args, model, None, args.model_opt)
            print(model, json.dumps(result["models"][model]), flush=True)
            continue
        sides = (
            [(args.ab[0], args.model_opt), (args.ab[1], args.model_opt)]
            if args.ab
            else [(None, [*args.model_opt, args.ab_model_opt[0]]), (None, [*args.model_opt, args.ab_model_opt[1]])]
        )
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


if __name__ == "__main__":
    main()
