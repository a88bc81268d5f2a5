"""A sealed test split: `msakit train --seal-test`, then `msakit test RUN` (msakit.training.sealed).

Sealed = the same training and checkpoints, byte for byte, with nothing about test printed or
written; opening = the folder a plain run writes, field for field apart from timing and the
`test_split` record (also for an ensemble run); opening twice or a plain run evaluates nothing;
resume keeps the seal; bad runs exit 2 with results.json untouched; readers that need test
numbers refuse a sealed run.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmark_module import load_benchmark
from msakit.cli import main
from msakit.cli.train import _rank_argv

ARGS = ["--model", "late_fusion", "--data", "synthetic", "-m", "hidden_dim=8", "--epochs", "2", "--no-progress"]
TIMING = ("seconds_per_epoch", "checkpoint")  # a seed's wall time, and the folder it was trained into


def _train(out: Path, *extra: str) -> int:
    return main(["train", *ARGS, "--seeds", "1", "2", "--out", str(out), *extra])


def _results(run: Path) -> dict[str, Any]:
    return json.loads((run / "results.json").read_text())


def _untimed(payload: dict[str, Any]) -> dict[str, Any]:
    """results.json without timing fields, the run folder's name, and the seal record."""
    out = {k: v for k, v in payload.items() if k != "test_split"}
    out["seeds"] = [{k: v for k, v in s.items() if k not in TIMING} for s in payload["seeds"]]
    for s in out["seeds"]:
        for m in s.get("members") or []:
            m.pop("seconds_per_epoch")
    return out


def _log_rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(path.open())]


def _same_folders(a: Path, b: Path) -> None:
    """Every file but results.json byte-identical (log.csv: apart from its seconds column)."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and "tensorboard" not in p.parts)
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and "tensorboard" not in p.parts)
    assert files_a == files_b
    for rel in files_a:
        if rel.name == "results.json":
            continue
        if rel.name == "log.csv":
            assert _log_rows(a / rel) == _log_rows(b / rel), rel
        elif rel.name == "ensemble.json":
            assert _untimed({"seeds": [json.loads((a / rel).read_text())]}) == _untimed(
                {"seeds": [json.loads((b / rel).read_text())]}
            ), rel
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sealed")
    out = {"root": root, "plain": root / "plain", "sealed": root / "sealed"}
    assert _train(out["plain"]) == 0
    assert _train(out["sealed"], "--seal-test") == 0
    return out


def test_a_sealed_run_records_validation_and_the_seal_and_nothing_about_test(runs: dict[str, Path]) -> None:
    payload = _results(runs["sealed"])
    assert all("test" not in s for s in payload["seeds"])
    assert "test_summary" not in payload and set(payload["valid_summary"]) == set(payload["seeds"][0]["valid"])
    record = payload["test_split"]
    assert record["state"] == "sealed" and record["data"] == "synthetic"
    assert record["eval_batch_size"] == 128 and record["open_with"] == f"msakit test {runs['sealed']}"
    assert record["sealed_at"] <= record["trained_at"]
    for path in runs["sealed"].rglob("*.json"):  # no file of the folder holds a test metric
        assert '"test"' not in path.read_text(), path
    assert [s["valid"] for s in payload["seeds"]] == [s["valid"] for s in _results(runs["plain"])["seeds"]]


def test_sealed_output_shows_validation_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *ARGS, "--seeds", "1", "--out", str(tmp_path / "r"), "--seal-test"]) == 0
    out = capsys.readouterr().out
    assert "VALIDATION metrics" in out and "test metrics" not in out and f"msakit test {tmp_path / 'r'}" in out


def _spy_on_predicted_splits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The splits the degenerate-training warnings predict, in call order (filled as they run)."""
    import msakit.training.diagnostics as diagnostics

    seen: list[str] = []
    real = diagnostics.seed_predictions

    def spy(checkpoint: str, dataset: Any, split: str, device: Any) -> Any:
        seen.append(split)
        return real(checkpoint, dataset, split, device)

    monkeypatch.setattr(diagnostics, "seed_predictions", spy)
    return seen


def test_the_warnings_of_a_sealed_run_read_validation_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _spy_on_predicted_splits(monkeypatch)
    assert main(["train", *ARGS, "--seeds", "1", "--out", str(tmp_path / "r"), "--seal-test"]) == 0
    assert seen == ["valid"]


def test_the_same_training_and_checkpoints_byte_for_byte(runs: dict[str, Path]) -> None:
    _same_folders(runs["plain"], runs["sealed"])


def test_opening_completes_the_folder_of_a_plain_run(runs: dict[str, Path], tmp_path: Path) -> None:
    sealed = tmp_path / "sealed"
    shutil.copytree(runs["sealed"], sealed)
    assert main(["test", str(sealed)]) == 0
    opened, plain = _results(sealed), _results(runs["plain"])
    assert _untimed(opened) == _untimed(plain)
    assert list(opened) == [*plain, "test_split"]  # the same fields, in the same order, and the record
    record = opened["test_split"]
    assert record["state"] == "opened" and "open_with" not in record
    assert record["sealed_at"] <= record["trained_at"] <= record["opened_at"]
    _same_folders(runs["plain"], sealed)


def test_opening_recomputes_the_warnings_over_both_splits(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy_on_predicted_splits(monkeypatch)
    sealed = tmp_path / "sealed"
    shutil.copytree(runs["sealed"], sealed)
    assert main(["test", str(sealed)]) == 0
    assert seen == ["valid", "test", "valid", "test"]


def test_opening_twice_or_a_plain_run_evaluates_and_writes_nothing(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import msakit.training.trainer as trainer

    sealed = tmp_path / "sealed"
    shutil.copytree(runs["sealed"], sealed)
    assert main(["test", str(sealed)]) == 0
    first = (sealed / "results.json").read_bytes()
    capsys.readouterr()

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("evaluated again")

    monkeypatch.setattr(trainer, "evaluate", refuse)
    assert main(["test", str(sealed)]) == 0
    assert "already opened at" in capsys.readouterr().out
    assert (sealed / "results.json").read_bytes() == first
    plain = (runs["plain"] / "results.json").read_bytes()
    assert main(["test", str(runs["plain"])]) == 0
    assert "was not sealed" in capsys.readouterr().out
    assert (runs["plain"] / "results.json").read_bytes() == plain


def test_an_ensemble_run_seals_and_opens_to_the_plain_ensemble_run(tmp_path: Path) -> None:
    ens = ["--seeds", "1", "-t", "ensemble=2"]
    assert main(["train", *ARGS, *ens, "--out", str(tmp_path / "plain")]) == 0
    assert main(["train", *ARGS, *ens, "--out", str(tmp_path / "sealed"), "--seal-test"]) == 0
    assert "test" not in _results(tmp_path / "sealed")["seeds"][0]
    _same_folders(tmp_path / "plain", tmp_path / "sealed")
    rows = load_benchmark("ensemble_rows")
    assert rows.main([str(tmp_path / "sealed"), "--data", "synthetic"]) == 0  # validation: allowed
    assert main(["test", str(tmp_path / "sealed")]) == 0
    assert _untimed(_results(tmp_path / "sealed")) == _untimed(_results(tmp_path / "plain"))
    _same_folders(tmp_path / "plain", tmp_path / "sealed")


def test_a_preset_run_seals_and_opens(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("model:\n  hidden_dim: 8\ntrain:\n  epochs: 2\n  seeds: [1]\n")
    base = ["--model", "late_fusion", "--data", "synthetic", "--preset", str(preset), "--no-progress"]
    assert main(["train", *base, "--out", str(tmp_path / "plain")]) == 0
    assert main(["train", *base, "--out", str(tmp_path / "sealed"), "--seal-test"]) == 0
    assert main(["test", str(tmp_path / "sealed")]) == 0
    assert _untimed(_results(tmp_path / "sealed")) == _untimed(_results(tmp_path / "plain"))


def test_resume_keeps_the_seal_and_a_seen_test_split_cannot_be_sealed(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = tmp_path / "sealed"
    shutil.copytree(runs["sealed"], sealed)
    before = _results(sealed)
    assert _train(sealed, "--seal-test", "--resume") == 0
    after = _results(sealed)
    assert (
        after["test_split"]["state"] == "sealed"
        and after["test_split"]["sealed_at"] == before["test_split"]["sealed_at"]
    )
    assert _untimed(after) == _untimed(before)
    kept = (sealed / "results.json").read_bytes()
    capsys.readouterr()
    assert _train(sealed, "--resume") == 2  # would print the test table
    err = capsys.readouterr().err.strip()
    assert "is sealed; resume it with --seal-test" in err and len(err.splitlines()) == 1
    assert (sealed / "results.json").read_bytes() == kept
    plain = tmp_path / "plain"
    shutil.copytree(runs["plain"], plain)
    kept = (plain / "results.json").read_bytes()
    assert _train(plain, "--resume", "--seal-test") == 2
    assert "already evaluated" in capsys.readouterr().err
    assert (plain / "results.json").read_bytes() == kept


def test_nproc_ranks_train_sealed_too() -> None:
    args = argparse.Namespace(
        debug=False,
        model="late_fusion",
        data="synthetic",
        out=None,
        resume=False,
        seal_test=True,
        preset=None,
        model_opt=[],
        train_opt=[],
        seeds=None,
        epochs=None,
        device=None,
        no_progress=False,
    )
    assert "--seal-test" in _rank_argv(args)
    args.seal_test = False
    assert "--seal-test" not in _rank_argv(args)


def test_bad_runs_exit_2_in_one_line_with_results_untouched(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import msakit.training.trainer as trainer

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("evaluated before every checkpoint was checked")

    monkeypatch.setattr(trainer, "evaluate", refuse)  # a bad run is refused before any evaluation
    assert main(["test", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "results.json") in err and "not a run folder" in err
    sealed = tmp_path / "sealed"
    shutil.copytree(runs["sealed"], sealed)
    shutil.rmtree(sealed / "seed2" / "best")
    kept = (sealed / "results.json").read_bytes()
    assert main(["test", str(sealed)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(sealed / "seed2" / "best") in err
    assert (sealed / "results.json").read_bytes() == kept
    partial = tmp_path / "partial"
    shutil.copytree(runs["sealed"], partial)
    payload = _results(partial)
    payload["seeds"] = payload["seeds"][:1]
    (partial / "results.json").write_text(json.dumps(payload))
    assert main(["test", str(partial)]) == 2
    assert "1 of the 2 planned seeds" in capsys.readouterr().err
    assert "test_split" in _results(partial) and _results(partial)["test_split"]["state"] == "sealed"


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("probe_gap", ["--data", "synthetic", "x=RUN"]),
        ("ensemble_rows", ["RUN", "--data", "synthetic", "--test"]),
        ("seed_variance", ["--data", "synthetic", "x=RUN"]),
        ("seed_variance", ["--data", "synthetic", "--sizes", "1", "--test", "x=RUN"]),
        ("collect_runs", ["--name", "n", "--command", "c", "--probe", "RUN/results.json", "--run", "x=RUN"]),
    ],
)
def test_readers_of_test_numbers_refuse_a_sealed_run(
    runs: dict[str, Path], name: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_benchmark(name)
    with pytest.raises(SystemExit) as exc:
        bench.main([a.replace("RUN", str(runs["sealed"])) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is sealed" in err and f"msakit test {runs['sealed']}" in err


def test_docgen_ablation_collector_refuses_a_sealed_row(runs: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(runs["sealed"], tmp_path / "00")
    with pytest.raises(SystemExit) as exc:
        load_benchmark("docgen").collect_ablation(tmp_path, "c")
    assert exc.value.code == 2


def test_an_opened_run_is_read_again(runs: dict[str, Path], tmp_path: Path) -> None:
    from msakit.training.sealed import sealed_message

    sealed = tmp_path / "sealed"
    shutil.copytree(runs["sealed"], sealed)
    assert sealed_message(sealed) is not None
    assert main(["test", str(sealed)]) == 0
    assert sealed_message(sealed) is None and sealed_message(runs["plain"]) is None


def test_other_collectors_of_test_numbers_refuse_a_sealed_run(runs: dict[str, Path], tmp_path: Path) -> None:
    sealed = runs["sealed"]
    reliability = load_benchmark("reliability_models")
    for call in (
        lambda: reliability.ablations(argparse.Namespace(full=str(sealed), rows=[])),
        lambda: load_benchmark("reference_results").run_model("late_fusion", None, sealed, {}, {}, True),
    ):
        with pytest.raises(SystemExit) as exc:
            call()
        assert exc.value.code == 2
    shutil.copytree(sealed, tmp_path / "synthetic" / "late_fusion")
    with pytest.raises(SystemExit) as exc:
        reliability.collect(argparse.Namespace(runs=str(tmp_path), probe=[]))
    assert exc.value.code == 2


@pytest.mark.parametrize("command", ["eval", "predict", "robustness"])
def test_the_checkpoint_commands_refuse_the_test_split_of_a_sealed_run(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    def args(checkpoint: Path, out: Path, *split: str) -> list[str]:
        written = ["--out", str(out)]
        extra = {"eval": [], "predict": written, "robustness": [*written, "--protocol", "modality"]}
        return [command, str(checkpoint), "--data", "synthetic", *split, *extra[command]]

    sealed, plain = runs["sealed"] / "seed1" / "best", runs["plain"] / "seed1" / "best"
    capsys.readouterr()
    assert main(args(sealed, tmp_path / "refused")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sealed" in err and f"msakit test {runs['sealed'].resolve()}" in err
    assert not (tmp_path / "refused").exists()  # refused before anything is written
    # the validation split stays open, and a plain run's checkpoint reads test as before
    assert main(args(sealed, tmp_path / "valid", "--split", "valid")) == 0
    assert main(args(plain, tmp_path / "plain")) == 0
