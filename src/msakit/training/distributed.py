"""The runtime: which device, which process of how many, which precision.

One process (the default) needs nothing. Several processes are started either by
`torchrun --nproc-per-node N -m msakit train ...` (multi-node: `torchrun --nnodes M
--node-rank R --rdzv-endpoint HOST:PORT ...`, nothing else changes) or by
`msakit train --nproc N`, which starts N local copies of itself (`launch`). Each
process reads RANK / WORLD_SIZE / LOCAL_RANK from the environment, joins a process
group (gloo on CPU, NCCL on CUDA, with `TrainConfig.dist_timeout` so that a rank that
died makes the others fail instead of hang), and wraps the model in
DistributedDataParallel. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from msakit.errors import ConfigError, EnvironmentFailure, TrainingError

PRECISIONS = ("fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX tiles), so that CPU autocast pays.

    Without them oneDNN emulates bf16 and autocast is slower than fp32, which is why `init_runtime`
    refuses precision=bf16 on such a CPU.
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer: device {name!r} is not a device name (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer: device {name!r} requested but CUDA is not available")
    return device


@dataclass
class Runtime:
    """This process's device, rank and precision, and the collectives the engine needs."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    precision: str = "fp32"
    compile: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the engine calls forward on: DDP across ranks, then compiled if asked."""
        net: nn.Module = model
        if self.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # a modality absent from a whole batch leaves its encoder without gradient
            net = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
        if self.compile:
            net = torch.compile(net, dynamic=True)  # type: ignore[assignment]  # batches vary in length
        return net

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.precision == "bf16":
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds on every rank (one tiny all-reduce when distributed)."""
        if not self.is_distributed:
            return flag
        t = torch.tensor([int(flag)], device=self._collective_device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """`obj` from every rank, in rank order (just `[obj]` in one process)."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def check_same(self, what: str, payload: Any) -> None:
        """ConfigError on every rank when `payload` (JSON-able) differs between ranks."""
        mine = json.dumps(payload, sort_keys=True, default=str)
        every = self.gather(mine)
        for rank, other in enumerate(every):
            if other != every[0]:
                first, theirs = _flat(json.loads(every[0])), _flat(json.loads(other))
                keys = sorted(k for k in set(first) | set(theirs) if first.get(k) != theirs.get(k))
                raise ConfigError(
                    f"distributed: rank {rank}'s {what} differs from rank 0's (fields {keys[:5]}); "
                    "every rank must be started with the same arguments"
                )

    @property
    def _collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def init_runtime(
    device: str = "auto", *, precision: str = "fp32", compile: bool = False, timeout: float = 300.0
) -> Runtime:
    """The runtime of this process; joins the process group when started by a launcher."""
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer: precision must be one of {PRECISIONS}, got {precision!r}")
    dev = resolve_device(device)
    if precision == "bf16" and dev.type == "cpu" and not cpu_has_native_bf16():
        raise ConfigError(
            "trainer: precision 'bf16' on CPU needs native bf16 instructions (avx512_bf16 or AMX), which this "
            "CPU lacks (emulated bf16 autocast is slower than fp32); use precision=fp32"
        )
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Runtime(device=dev, precision=precision, compile=compile)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                backend="nccl" if dev.type == "cuda" else "gloo",
                rank=rank,
                world_size=world,
                timeout=timedelta(seconds=timeout),
            )
        except (RuntimeError, ValueError) as exc:
            raise TrainingError(
                f"distributed: rank {rank} could not join the process group: {_first_line(exc)}"
            ) from None
    return Runtime(device=dev, rank=rank, world_size=world, precision=precision, compile=compile)


def _flat(payload: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, so a mismatch names the field itself."""
    if not isinstance(payload, dict):
        return {prefix: payload}
    out: dict[str, Any] = {}
    for k, v in payload.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"distributed: environment variable {name}={raw!r} is not an integer") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_collective_failure(exc: BaseException) -> bool:
    """Whether `exc` is a failed collective (a peer died, stopped or timed out), not a bug."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return any(s in text for s in ("gloo", "Connection closed by peer", "NCCL", "timed out", "Timed out"))


def lost_rank_error(exc: BaseException, rank: int) -> EnvironmentFailure:
    """The one-line error (exit code 1) a rank raises when a collective fails because another rank is gone."""
    return EnvironmentFailure(
        f"distributed: rank {rank} lost contact with the other ranks (one died or stopped): {_first_line(exc)}"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(argv: Sequence[str], nproc: int, *, poll: float = 0.2, grace: float = 10.0) -> int:
    """Run `python -m msakit ARGV` as `nproc` local ranks; the exit code of the first to fail, else 0.

    When one rank exits with an error the others are stopped (SIGTERM, then SIGKILL
    after `grace` seconds), so a dead rank never leaves the rest waiting.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    for rank in range(nproc):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        # DDP's C++ advice about find_unused_parameters is noise here (see Runtime.wrap)
        env.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
        procs.append(subprocess.Popen([sys.executable, "-m", "msakit", *argv], env=env))
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, code = failed[0]
                _stop(procs, grace)
                others = sum(1 for r, c in enumerate(codes) if c is None and r != rank)
                print(
                    f"msakit: rank {rank} exited with code {code}; stopped {others} other rank(s)",
                    file=sys.stderr,
                )
                return code if code > 0 else 1
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll)
    except KeyboardInterrupt:
        _stop(procs, grace)
        raise


def _stop(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        if p.poll() is None:
            p.kill()
            p.wait()


__all__ = ["Runtime", "init_runtime", "is_collective_failure", "launch", "lost_rank_error", "resolve_device"]
