"""The text-LSTM-alone micro-benchmark (profile_epoch.py --micro text_lstm) and its section of docs/compare_mmsa.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmark_module import load_benchmark

ROOT = Path(__file__).parents[1]


def test_micro_counts_the_segments_work_and_mmsa_s_full_length_work() -> None:
    """Both models' batches; the segments compute every valid step and less than MMSA's every padded step."""
    from msakit.data import load_dataset

    pytest.importorskip("torch")
    train = load_dataset("synthetic").split("train")
    text = train.modalities["text"]
    res = load_benchmark("profile_epoch").micro_text_lstm("synthetic", repeats=2)
    assert [r["model"] for r in res["rows"]] == ["lmf", "lf_dnn"]
    for row in res["rows"]:
        steps = row["lstm_steps_per_epoch"]
        assert steps["mmsa"] == text.values.shape[0] * text.values.shape[1]
        assert int(sum(text.lengths)) <= steps["segments"] < steps["mmsa"]
        assert row["calls_per_epoch"]["mmsa"] == -(-len(train) // row["batch"])
        assert row["calls_per_epoch"]["segments"] >= row["calls_per_epoch"]["mmsa"]  # one call per batch at least
        cpu = row["cpu_s_per_epoch"]
        assert row["ratio_segments_to_mmsa"] == pytest.approx(cpu["segments"] / cpu["mmsa"], abs=2e-3)
        assert all(v > 0 for v in cpu.values())


def _run(msakit: float, mmsa: float) -> dict[str, Any]:
    return {"msakit": {"cpu_seconds_per_epoch": msakit}, "mmsa": {"cpu_seconds_per_epoch": mmsa}}


def test_section_is_computed_from_the_micro_and_the_pairs_it_names() -> None:
    bench = load_benchmark("compare_mmsa")
    row = {
        "model": "lmf",
        "batch": 64,
        "cpu_s_per_epoch": {"segments": 0.4, "bare_calls": 0.39, "mmsa": 1.5},
        "calls_per_epoch": {"segments": 28, "mmsa": 21},
        "lstm_steps_per_epoch": {"segments": 20000, "mmsa": 64200},
        "us_per_step": {"segments": 20.0, "bare_calls": 19.5, "mmsa": 23.36},
        "ratio_segments_to_mmsa": 0.267,
    }
    micro = {"repeats": 3, "load_avg_1min": 2.0, "command": "CMD", "rows": [row]}
    timing = {"lmf": {"1": _run(0.6, 1.9), "2": _run(0.7, 1.8), "3": _run(0.5, 2.0)}}
    pairs = {"label": "P", "timing_meta": {"epochs": 6}, "timing": timing}
    other = {"label": "Q", "timing": {"lmf": {"1": _run(9.0, 9.0)}}}
    text = bench.text_lstm_section({"label": "L", "pairs": "P", "micro": micro}, [other, pairs])
    assert "### The text LSTM alone: L" in text and "Command: `CMD`" in text
    assert "| lmf | 64 | 28 / 21 | 20,000 / 64,200 | 0.400 | 0.390 | 1.500 | 20.0 / 23.4 | 0.267 |" in text
    assert "is lmf 0.32 (msakit" in text  # median of the ratios 0.316, 0.389, 0.25: pairs P, not Q
    assert "| lmf | 21 | 0.60 / 1.90 | 0.20 / 0.40 | 0.50 |" in text  # the medians less the LSTM: 0.6-0.4, 1.9-1.5
    assert "10 ms (lmf)" in text


def test_compare_mmsa_doc_is_the_latest_stop_json_rendered() -> None:
    """docs/compare_mmsa.md, the text-LSTM section included, is what compare_mmsa.py renders from its JSON."""
    bench = load_benchmark("compare_mmsa")
    runs = json.loads((ROOT / "docs/bench/compare_mmsa_s10.json").read_text())
    rendered = bench.render(runs)
    assert "### The text LSTM alone" in rendered
    assert (ROOT / "docs/compare_mmsa.md").read_text() == rendered
