"""Shared fixtures: tiny synthetic data generated in the tests, never committed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from msakit.data import MSADataset, SyntheticConfig, make_synthetic

SHARED_DATA = Path(os.environ.get("MSAKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    torch.set_num_threads(1)  # CI has 2 cores; keep tests predictable


@pytest.fixture(scope="session")
def tiny_dataset() -> MSADataset:
    return make_synthetic(SyntheticConfig(sizes=(24, 12, 12), dims=(12, 6, 8), lengths=(7, 9, 5), seed=3))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set MSAKIT_SHARED_DATA to point at shared/data)")
    return SHARED_DATA
