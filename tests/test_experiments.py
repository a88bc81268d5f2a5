"""Ablation tables and sweeps: rows the data cannot run are skipped, bad rows stop early."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from msakit.data import MSADataset
from msakit.errors import ConfigError
from msakit.experiments import ablations_of, run_rows, run_sweep
from msakit.training import train_config_from

FAST = train_config_from({"epochs": 1, "seeds": [1, 2], "progress": False, "tensorboard": False})


def _text_audio(dataset: MSADataset) -> MSADataset:
    info = replace(dataset.info, dims={m: d for m, d in dataset.info.dims.items() if m != "visual"})
    return MSADataset(info, dataset.splits, source="tiny")


def test_rows_the_data_cannot_run_are_skipped_and_reported(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    rows = ablations_of("amsgfn")
    assert "v-oriented" in rows
    table = run_rows(
        "amsgfn",
        _text_audio(tiny_dataset),
        {k: rows[k] for k in ("full", "v-oriented")},
        base_overrides={"hidden_dim": 8},
        train_config=FAST,
        out_dir=tmp_path,
    )
    assert [label for label, _ in table.rows] == ["full"]
    assert "visual" in table.skipped["v-oriented"]
    assert "not run: v-oriented" in table.markdown()


def test_a_row_with_a_bad_field_stops_before_training(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"row 'bad'.*'no_such_field'"):
        run_rows(
            "late_fusion", tiny_dataset, {"ok": {}, "bad": {"no_such_field": 1}}, train_config=FAST, out_dir=tmp_path
        )
    assert not any(tmp_path.iterdir())


def test_sweep_marks_the_row_best_on_validation(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    table = run_sweep("text_only", tiny_dataset, "hidden_dim", [4, 16], train_config=FAST, out_dir=tmp_path)
    best = table.best_on_validation()
    valid = {label: r.summary("valid")["MAE"][0] for label, r in table.rows}
    assert best == min(valid, key=valid.__getitem__)
    assert f"| {best} * |" in table.markdown()
