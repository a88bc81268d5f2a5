"""benchmarks/probe_base_rows.py: a preset against the same preset with the probe base, validation first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_module import load_benchmark
from msakit.training.sealed import SEAL_KEY


def _run(folder: Path, valid_mae: list[float], valid_corr: list[float], *, sealed: bool = False) -> str:
    folder.mkdir(parents=True)
    seeds = []
    for k, (mae, corr) in enumerate(zip(valid_mae, valid_corr, strict=True), start=1):
        valid = {"MAE": mae, "Corr": corr, "Non0_acc_2": 0.8}
        seeds.append({"seed": k, "valid": valid, "test": None if sealed else {**valid, "MAE": mae + 0.05}})
    payload = {"model": "m", "seeds": seeds, **({SEAL_KEY: {"state": "sealed"}} if sealed else {})}
    (folder / "results.json").write_text(json.dumps(payload))
    return str(folder)


def test_the_verdict_follows_the_written_rule(tmp_path: Path) -> None:
    bench = load_benchmark("probe_base_rows")
    base = _run(tmp_path / "base", [0.80, 0.82, 0.81], [0.70, 0.71, 0.72])
    lower = _run(tmp_path / "lower", [0.79, 0.81, 0.80], [0.70, 0.71, 0.72])  # MAE -0.01, Corr level
    tiny = _run(tmp_path / "tiny", [0.7999, 0.8199, 0.8099], [0.70, 0.71, 0.72])  # MAE -0.0001 < margin
    costly = _run(tmp_path / "costly", [0.79, 0.81, 0.80], [0.69, 0.70, 0.71])  # Corr -0.01 > guard
    rows = {
        name: bench.compare(base, run, margin=0.001, corr_guard=0.005, test=False)
        for name, run in (("lower", lower), ("tiny", tiny), ("costly", costly))
    }
    assert [rows[k]["ships"] for k in ("lower", "tiny", "costly")] == [True, False, False]
    assert rows["lower"]["valid"]["MAE"]["diff"]["mean"] == pytest.approx(-0.01)
    assert "test" not in rows["lower"]  # validation only unless --test


def test_test_rows_only_for_opened_candidates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark("probe_base_rows")
    base = _run(tmp_path / "base", [0.80, 0.82], [0.70, 0.71])
    sealed = _run(tmp_path / "sealed", [0.79, 0.81], [0.70, 0.71], sealed=True)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--test", f"x={base},{sealed}"])
    assert exc.value.code == 2 and "sealed" in capsys.readouterr().err
    opened = _run(tmp_path / "opened", [0.79, 0.81], [0.70, 0.71])
    out = tmp_path / "rows.json"
    assert bench.main(["--test", f"x={base},{opened}", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["rows"]["x"]["test"]["MAE"]["mean"] == pytest.approx(0.85) and "| x |" in written["markdown"]
    assert bench.main(["no-comma"]) == 2
