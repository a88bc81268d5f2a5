"""Distribution changes nothing but speed: 1 process vs 2 gloo processes, and the failures.

Each test starts real `python -m msakit train` processes (gloo on CPU), so they are
marked slow; together they take well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msakit.data import load_dataset
from msakit.training import Trainer, train_config_from
from msakit.training.distributed import free_port

pytestmark = pytest.mark.slow

# dropout and the unimodal auxiliary loss (a mean over a per-rank subset) off: every loss term
# is then a per-sample mean, so the ranks' averaged gradient is exactly the whole batch's
ARGS = [
    "--model", "late_fusion", "--data", "synthetic", "--seeds", "1", "--epochs", "2", "--no-progress",
    "-m", "dropout=0", "-m", "unimodal_weight=0", "-t", "tensorboard=false", "-t", "batch_size=32",
]  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_CPP_LOG_LEVEL": "ERROR", **extra}


def _rank(rank: int, world: int, port: int, argv: list[str]) -> subprocess.Popen[str]:
    env = _env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")
    env["MASTER_PORT"] = str(port)
    return subprocess.Popen(
        [sys.executable, "-m", "msakit", "train", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_gloo_processes_give_the_metrics_of_one(tmp_path: Path) -> None:
    one = tmp_path / "one"
    model_opts = {"dropout": 0.0, "unimodal_weight": 0.0}
    cfg = train_config_from({"seeds": (1,), "epochs": 2, "progress": False, "tensorboard": False})
    single = Trainer(
        "late_fusion", load_dataset("synthetic"), model_overrides=model_opts, train_config=cfg, out_dir=one
    )
    single.fit()
    two = tmp_path / "two"
    done = subprocess.run(
        [sys.executable, "-m", "msakit", "train", "--nproc", "2", *ARGS, "--out", str(two)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    a = json.loads((one / "results.json").read_text())["seeds"][0]
    b = json.loads((two / "results.json").read_text())["seeds"][0]
    assert a["best_epoch"] == b["best_epoch"]
    for split in ("valid", "test"):
        assert a[split].keys() == b[split].keys()
        for key in a[split]:
            assert b[split][key] == pytest.approx(a[split][key], rel=1e-4, abs=1e-5), (split, key)
    # rank 0 alone wrote files: one log with one row per epoch
    assert len((two / "seed1" / "log.csv").read_text().splitlines()) == 3


def test_mismatched_configuration_across_ranks_is_one_clear_error(tmp_path: Path) -> None:
    port = free_port()
    base = [a for a in ARGS if a not in ("--epochs", "2")]
    procs = [
        _rank(0, 2, port, [*base, "--epochs", "2", "--out", str(tmp_path)]),
        _rank(1, 2, port, [*base, "--epochs", "3", "--out", str(tmp_path)]),
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "rank 1's configuration differs from rank 0's" in lines[0]
        assert "epochs" in lines[0]
    assert not (tmp_path / "seed1").exists()


def test_a_rank_dying_mid_epoch_stops_the_others_with_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    argv = [a if a != "2" else "200" for a in ARGS] + ["-t", "dist_timeout=60", "--out", str(tmp_path)]
    procs = [_rank(r, 2, port, argv) for r in (0, 1)]
    log = tmp_path / "seed1" / "log.csv"
    deadline = time.monotonic() + 120
    while not log.exists() and time.monotonic() < deadline:  # wait until training is under way
        time.sleep(0.2)
    assert log.exists(), procs[0].stderr.read() if procs[0].stderr else ""
    os.kill(procs[1].pid, signal.SIGKILL)
    start = time.monotonic()
    _, err = procs[0].communicate(timeout=120)
    procs[1].wait()
    assert procs[0].returncode == 1  # an environment failure, not bad input
    assert time.monotonic() - start < 90  # failed, did not hang
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "rank 0 lost contact with the other ranks" in lines[0], err
    assert (tmp_path / "seed1" / "last" / "optimizer.pt").is_file()  # the last complete checkpoint survives


def test_launcher_returns_the_failing_rank_code_and_stops_the_rest(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "msakit", "train", "--nproc", "2", *ARGS, "-m", "nonsense=1", "--out", str(tmp_path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unknown config field 'nonsense'" in done.stderr and "exited with code 2" in done.stderr
