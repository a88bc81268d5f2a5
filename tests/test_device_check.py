"""scripts/device_check.sh, the one prepared run for a lent GPU machine, dry-run on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_check.sh"


def test_device_check_reports_and_skips_the_cuda_steps_without_a_device(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the script would run the real checks (run it directly)")
    if shutil.which("timeout") is None:
        pytest.skip("needs coreutils' timeout")
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "out" / "log").read_text()
    assert "available False" in log
    assert "mambapy installed" in log  # the [mamba] extra this project installs
    assert "no CUDA device: the CUDA steps are skipped" in log
    assert "== gpu tests" not in log and not (tmp_path / "out" / "gpu.json").exists()
