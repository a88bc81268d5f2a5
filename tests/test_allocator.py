"""TrainConfig.malloc / msakit.allocator: glibc's thresholds are set when asked, and only then."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmark_module import load_benchmark
from msakit import allocator
from msakit.errors import ConfigError
from msakit.training import Trainer, train_config_from


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    allocator.reset_for_tests()
    yield
    allocator.reset_for_tests()


def test_keep_sets_both_thresholds_once_and_default_sets_nothing() -> None:
    libc = FakeLibc()
    assert allocator.apply_allocator("default", libc=libc) is False
    assert libc.calls == []
    assert allocator.apply_allocator("keep", libc=libc) is True
    assert libc.calls == [(-3, 1 << 30), (-1, (1 << 31) - 1)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert allocator.apply_allocator("keep", libc=libc) is False  # once per process
    assert len(libc.calls) == 2


def test_no_glibc_is_a_no_op_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(allocator, "glibc", lambda: None)
    assert allocator.apply_allocator("keep") is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "glibc" in err[0] and "malloc=keep" in err[0]


def test_a_refused_threshold_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert allocator.apply_allocator("keep", libc=FakeLibc(answer=0)) is False
    assert "refused" in capsys.readouterr().err


def test_trainer_applies_its_malloc_field(tiny_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    libc = FakeLibc()
    monkeypatch.setattr(allocator, "glibc", lambda: libc)
    cfg = {"epochs": 1, "seeds": [1], "progress": False, "tensorboard": False}
    Trainer("late_fusion", tiny_dataset, train_config=train_config_from(cfg), out_dir=tmp_path)
    assert libc.calls == []  # default: the allocator is left alone
    Trainer("late_fusion", tiny_dataset, train_config=train_config_from({**cfg, "malloc": "keep"}), out_dir=tmp_path)
    assert libc.calls == list(allocator.KEEP)
    with pytest.raises(ConfigError, match="malloc must be one of default, keep"):
        Trainer("late_fusion", tiny_dataset, train_config=train_config_from({**cfg, "malloc": "jemalloc"}))


_FAULTS = """
import resource, sys
import numpy as np
from msakit.allocator import apply_allocator
print(apply_allocator(sys.argv[1]))
np.ones(8 << 20)  # 64 MiB, above glibc's 32 MiB dynamic mmap ceiling: mmapped unless kept
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    np.ones(8 << 20)  # allocated, written, freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")
def test_keep_stops_the_page_faults_of_a_reallocated_buffer() -> None:
    """The real effect, in fresh processes: a freed 64 MiB buffer is reused instead of unmapped and faulted in."""
    faults = {}
    for mode in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        applied, n = out.stdout.split()
        assert applied == str(mode == "keep")
        faults[mode] = int(n)
    huge_pages = (64 << 20) // (2 << 20)  # numpy asks for transparent huge pages: at least one fault per 2 MiB
    assert faults["default"] >= 8 * huge_pages  # every reallocation faults its pages in again
    assert faults["keep"] * 10 <= faults["default"]  # reused heap memory: next to none


def test_compare_mmsa_splits_the_first_epoch_from_the_later_ones() -> None:
    """The variants table of benchmarks/compare_mmsa.py: whole-loop ratio, first epoch, later-epoch ratio."""
    bench = load_benchmark("compare_mmsa")

    def run(first: float, later: float) -> dict[str, Any]:
        return {"cpu_seconds_per_epoch": (first + later) / 2, "epoch_cpu": [first, later], "params": 1}

    timing = {"lf_dnn": {"1": {"mmsa": run(2.2, 2.0), "msakit": run(1.0, 0.5)}}}
    variant = {"label": "keep", "timing": timing, "timing_meta": {"models": ["lf_dnn"], "seeds": [1], "epochs": 2}}
    row = bench.variants_table([variant]).splitlines()[2]
    assert row == "| keep | lf_dnn | 2.10 | 0.75 | 0.36 [0.36, 0.36] | 1.00 | 0.50 | 0.25 | 1 |"
    del timing["lf_dnn"]["1"]["msakit"]["epoch_cpu"]  # an earlier stop's pairs: no per-epoch times
    assert bench.variants_table([variant]).splitlines()[2].endswith("| — | — | — | 1 |")
    keep = {**variant, "timing_meta": {**variant["timing_meta"], "malloc": "keep"}}
    section = bench.variants_section([keep], "x.pkl")
    assert "--malloc keep" in section
