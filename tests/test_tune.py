"""`tunable` search ranges and `msakit tune`: validation-only Optuna search, pruning, resume, sharing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from msakit.config import ModelConfig, SearchRange, TrainConfig, load_yaml_overrides, search_ranges, tunable
from msakit.data import MSADataset
from msakit.errors import ConfigError
from msakit.registry import build_config
from msakit.training.trainer import train_config_from
from msakit.tuning import (
    PRUNERS,
    PruningCallback,
    load_space_file,
    make_pruner,
    parse_space_option,
    search_space,
    tune,
)


def test_tunable_keeps_default_and_declares_range() -> None:
    @dataclasses.dataclass
    class Cfg(ModelConfig):
        rank: int = tunable(4, choices=(2, 4, 8))
        plain: float = 0.5

    ranges = search_ranges(Cfg)
    assert Cfg().rank == 4
    assert ranges["rank"] == SearchRange(choices=(2, 4, 8))
    assert "plain" not in ranges
    assert {"hidden_dim", "dropout"} <= set(ranges)  # inherited from ModelConfig
    assert {"lr", "weight_decay", "batch_size", "modality_dropout"} <= set(search_ranges(TrainConfig))


def test_redefined_field_keeps_base_range_unless_it_declares_its_own() -> None:
    @dataclasses.dataclass
    class Plain(ModelConfig):
        dropout: float = 0.3

    @dataclasses.dataclass
    class Own(ModelConfig):
        dropout: float = tunable(0.3, low=0.1, high=0.2)

    assert Plain().dropout == 0.3
    assert search_ranges(Plain)["dropout"] == search_ranges(ModelConfig)["dropout"]
    assert search_ranges(Own)["dropout"] == SearchRange(low=0.1, high=0.2)


@pytest.mark.parametrize(
    "kwargs",
    [{"low": 1.0, "high": 1.0}, {"low": 0.0, "high": 1.0, "log": True}, {"choices": ()}, {"low": 1.0}],
)
def test_bad_search_range_is_a_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="search range"):
        tunable(1.0, **kwargs)


# ---- the search space -------------------------------------------------------------------------


def test_search_space_reads_declared_ranges_and_overrides() -> None:
    space = search_space("late_fusion")
    assert {"model.hidden_dim", "model.dropout", "model.encoder", "train.lr", "train.batch_size"} <= set(space)
    assert space["train.lr"].range.log and space["model.hidden_dim"].kind is int
    changed = search_space(
        "late_fusion",
        {"lr": SearchRange(low=1e-3, high=3e-3), "model.encoder": None, "train.patience": SearchRange(low=2, high=6)},
        fixed={"model": {"hidden_dim": 32}},
    )
    assert changed["train.lr"].range == SearchRange(low=1e-3, high=3e-3)
    assert "model.encoder" not in changed and "model.hidden_dim" not in changed  # dropped, fixed
    assert changed["train.patience"].kind is int  # a field without a declared range can be added


def test_an_explicit_range_searches_a_field_the_preset_fixes() -> None:
    fixed = {"model": {"hidden_dim": 32, "dropout": 0.2}, "train": {"lr": 1e-3}}
    space = search_space("late_fusion", {"lr": SearchRange(low=1e-4, high=3e-3, log=True)}, fixed=fixed)
    assert space["train.lr"].range == SearchRange(low=1e-4, high=3e-3, log=True)  # named: searched
    assert "model.hidden_dim" not in space and "model.dropout" not in space  # fixed, not named: kept


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"nonsense": SearchRange(low=0, high=1)}, "unknown field 'nonsense'"),
        ({"model.lr": SearchRange(low=0.1, high=1)}, "unknown model field 'lr'"),
        ({"hidden_dim": SearchRange(low=1.5, high=3)}, "integer bounds"),
        ({"encoder": SearchRange(choices=("mean", 3))}, "encoder"),
        ({"seeds": SearchRange(choices=(1, 2))}, "cannot search train.seeds"),
    ],
)
def test_bad_search_space_is_one_config_error(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        search_space("late_fusion", overrides)


def test_space_options_and_file(tmp_path: Path) -> None:
    assert parse_space_option("lr=1e-4:1e-2:log") == ("lr", SearchRange(low=1e-4, high=1e-2, log=True))
    assert parse_space_option("encoder=mean,lstm") == ("encoder", SearchRange(choices=("mean", "lstm")))
    assert parse_space_option("dropout=none") == ("dropout", None)
    with pytest.raises(ConfigError, match="key=low:high"):
        parse_space_option("lr")
    path = tmp_path / "space.yaml"
    path.write_text(
        "model:\n  hidden_dim: {choices: [16, 32]}\n  dropout: null\ntrain:\n  lr: {low: 0.001, high: 0.01}\n"
    )
    assert load_space_file(path) == {
        "model.hidden_dim": SearchRange(choices=(16, 32)),
        "model.dropout": None,
        "train.lr": SearchRange(low=0.001, high=0.01),
    }
    path.write_text("model:\n  hidden_dim: [16, 32]\n")
    with pytest.raises(ConfigError, match="must be null or a mapping"):
        load_space_file(path)


# ---- the search ---------------------------------------------------------------------------------

SMALL = {"hidden_dim": 16, "encoder": "mean"}
SPACE = {"model.dropout": SearchRange(low=0.0, high=0.3), "train.lr": SearchRange(low=1e-3, high=1e-2, log=True)}


def _tune(dataset: MSADataset, out: Path, trials: int, **kwargs: Any) -> Any:
    kwargs.setdefault("space_overrides", {**{k: None for k in search_space("late_fusion")}, **SPACE})
    return tune(
        "late_fusion",
        dataset,
        out_dir=out,
        trials=trials,
        model_overrides=SMALL,
        train_overrides={"epochs": 3, "patience": 3},
        sampler_seed=0,
        progress=False,
        **kwargs,
    )


def test_tune_writes_a_preset_train_reads_and_never_tests(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _tune(tiny_dataset, out, trials=3)
    assert result.n_complete == 3 and result.direction == "minimize" and result.select_key == "MAE"
    assert (out / "study.db").is_file()
    preset = load_yaml_overrides(out / "best.yaml")
    assert preset["model"] == {**SMALL, "dropout": result.best_params["model.dropout"]}
    assert preset["train"] == {"epochs": 3, "patience": 3, "lr": result.best_params["train.lr"]}
    build_config("late_fusion", preset["model"])
    train_config_from(preset["train"])
    runs = sorted((out / "trials").glob("*/results.json"))
    assert len(runs) == 3
    for path in runs:  # every trial trained without a test split: nothing of test was evaluated
        seeds = json.loads(path.read_text())["seeds"]
        assert seeds and all(s["test"] == {} for s in seeds)
    best = min(json.loads(p.read_text())["seeds"][0]["valid"]["MAE"] for p in runs)
    assert result.best_value == pytest.approx(best)  # the objective is the validation selection metric
    first = json.loads((out / "trials" / "0000" / "seed1" / "best" / "config.json").read_text())
    assert first["model_config"]["dropout"] == 0.1 and first["train_config"]["lr"] == 1e-3  # the defaults first


def test_interrupted_study_resumes(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    import optuna

    out = tmp_path / "run"
    _tune(tiny_dataset, out, trials=2)
    again = _tune(tiny_dataset, out, trials=4)
    study = optuna.load_study(study_name=again.study_name, storage=again.storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert again.n_complete + again.n_pruned == 4
    with pytest.raises(ConfigError, match="tunes model 'late_fusion', not 'text_only'"):
        tune("text_only", tiny_dataset, out_dir=out, trials=5, study_name=again.study_name, progress=False)


class _PruneOddTrials:
    """A pruner that stops every odd-numbered trial at its first report."""

    def prune(self, study: Any, trial: Any) -> bool:
        return trial.number % 2 == 1


def test_weak_trials_are_pruned_through_the_validation_metric(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    result = _tune(tiny_dataset, tmp_path / "run", trials=4, pruner=_PruneOddTrials())
    assert (result.n_complete, result.n_pruned) == (2, 2)
    logs = sorted((tmp_path / "run" / "trials").glob("*/seed1/log.csv"))
    epochs = [len(p.read_text().splitlines()) - 1 for p in logs]
    assert epochs == [3, 1, 3, 1]  # pruned trials stop at their first validation


def test_pruning_callback_reports_each_epoch(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    import optuna

    from msakit.training import Trainer

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    cb = PruningCallback(trial, "MAE", seeds=(1, 2), epochs=3)
    cfg = train_config_from({"epochs": 3, "patience": 9, "seeds": (1, 2), "progress": False, "tensorboard": False})
    Trainer(
        "late_fusion", tiny_dataset, model_overrides=SMALL, train_config=cfg, out_dir=tmp_path, callbacks=[cb]
    ).fit()
    frozen = study.trials[0]
    assert sorted(frozen.intermediate_values) == [1, 2, 3, 4, 5, 6]  # seed 2's epoch e is step 3 + e


def _rung_decision(pruner: Any) -> bool:
    """Would `pruner` stop a trial whose first epoch is far worse than three finished trials'?"""
    import optuna

    # a fixed name: Hyperband puts a trial in a bracket by a hash of the study name and trial
    # number and compares it only within that bracket, so an anonymous study would be random
    study = optuna.create_study(direction="minimize", pruner=pruner, study_name="msakit-rungs")
    for good in (0.50, 0.52, 0.55):
        trial = study.ask()
        for step in range(1, 10):
            trial.report(good - 0.01 * step, step)
            trial.should_prune()  # as PruningCallback does after every report (the halving pruners record rungs here)
        study.tell(trial, good - 0.09)
    weak = study.ask()
    weak.report(2.0, 1)
    return bool(weak.should_prune())


def test_named_pruners_stop_weak_trials_as_documented() -> None:
    """Successive halving / Hyperband stop a clearly weak trial after its first epoch; the median
    pruner waits for 5 startup trials and 2 warm-up epochs; none never stops one."""
    assert set(PRUNERS) == {"median", "hyperband", "sha", "none"}
    decisions = {name: _rung_decision(make_pruner(name, steps=9)) for name in PRUNERS}
    assert decisions == {"median": False, "hyperband": True, "sha": True, "none": False}
    with pytest.raises(ConfigError, match="unknown pruner 'bogus'"):
        make_pruner("bogus", steps=9)


def test_tune_with_a_named_pruner_and_bad_jobs(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    result = _tune(tiny_dataset, tmp_path / "run", trials=3, pruner="sha")
    assert result.n_complete + result.n_pruned == 3
    with pytest.raises(ConfigError, match="--jobs must be at least 1"):
        _tune(tiny_dataset, tmp_path / "bad", trials=2, jobs=0)
    with pytest.raises(ConfigError, match="needs the dataset as a path"):
        _tune(tiny_dataset, tmp_path / "bad2", trials=2, jobs=2)
    with pytest.raises(ConfigError, match="takes the pruner by name"):
        _tune(tiny_dataset, tmp_path / "bad3", trials=2, jobs=2, data_spec="synthetic", pruner=_PruneOddTrials())


def test_degenerate_warnings_print_once_per_study(
    tiny_dataset: MSADataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each trial keeps its own warnings (study and trials/N/results.json); stderr gets one line per kind."""
    import optuna

    from msakit.cli import main

    counter = iter(range(100))

    def diagnose(result: Any, dataset: Any, device: Any = "cpu") -> list[str]:  # numbers differ per trial
        k = next(counter)
        return [
            f"seed 1: near-constant prediction on valid: prediction std 0.0{k} is under 0.05 x the label std 1.{k}",
            f"the best validation epoch is <= 2 in every seed (seed 1: {k % 2 + 1}/2)",
        ]

    monkeypatch.setattr("msakit.training.diagnostics.diagnose_run", diagnose)
    monkeypatch.setattr("msakit.data.load_dataset", lambda spec: tiny_dataset)
    drop = [f"--space={k}=none" for k in search_space("late_fusion") if k not in SPACE]
    out = tmp_path / "run"
    argv = ["tune", "--model", "late_fusion", "--data", "tiny", "--out", str(out), "--trials", "3", "--pruner", "none"]
    argv += ["--epochs", "2", "-m", "hidden_dim=16", "-m", "encoder=mean", "--sampler-seed", "0", *drop]
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 2, lines  # two kinds over three trials, not six lines
    assert all(line.startswith("msakit: warning: in 3 of 3 complete trials (0, 1, 2; the best trial") for line in lines)
    study = optuna.load_study(study_name="late_fusion-synthetic", storage=f"sqlite:///{out / 'study.db'}")
    assert [len(t.user_attrs["warnings"]) for t in study.trials] == [2, 2, 2]
    for path in sorted((out / "trials").glob("*/results.json")):  # each trial's run still records its own
        assert len(json.loads(path.read_text())["warnings"]) == 2


def test_summarise_warnings_counts_trials_per_kind() -> None:
    from types import SimpleNamespace

    from msakit.tuning import summarise_warnings

    def trial(number: int, state: str, warnings: list[str]) -> Any:
        return SimpleNamespace(number=number, state=SimpleNamespace(name=state), user_attrs={"warnings": warnings})

    flat = "seed {}: near-constant prediction on valid: prediction std 0.00{} is under 0.05 x the label std 1.1"
    trials = [
        trial(0, "COMPLETE", [flat.format(1, 1), flat.format(2, 4)]),  # two seeds, one kind: one trial counted
        trial(1, "COMPLETE", []),
        trial(2, "PRUNED", [flat.format(1, 9)]),  # pruned trials ran no diagnosis; not counted
        trial(3, "COMPLETE", [flat.format(1, 3)]),
    ]
    lines = summarise_warnings(trials, best_number=1)
    assert lines == [f"in 2 of 3 complete trials (0, 3; not the best trial), e.g. trial 0: {flat.format(1, 1)}"]
    assert "the best trial among them), e.g. trial 3: " in summarise_warnings(trials, best_number=3)[0]
    assert summarise_warnings(trials[1:2]) == []


@pytest.mark.slow  # spawns a second interpreter that imports torch
def test_jobs_start_workers_that_share_the_study(tmp_path: Path) -> None:
    import optuna

    from msakit.data import load_dataset

    spec = "synthetic"
    space = {**{k: None for k in search_space("late_fusion")}, "train.lr": SearchRange(low=1e-3, high=1e-2, log=True)}
    result = tune(
        "late_fusion",
        load_dataset(spec),
        out_dir=tmp_path / "run",
        trials=12,  # enough work that the worker (a fresh interpreter importing torch) joins before the end
        model_overrides={"hidden_dim": 32},
        train_overrides={"epochs": 3},
        space_overrides=space,
        sampler_seed=0,
        progress=False,
        jobs=2,
        data_spec=spec,
        pruner="none",
    )
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 12 <= len(finished) <= 13
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # this process and one worker


# ---- the command line -----------------------------------------------------------------------------


def test_unknown_pruner_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from msakit.cli import main

    argv = ["tune", "--model", "late_fusion", "--data", "synthetic", "--out", str(tmp_path), "--pruner", "bogus"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus" in err[0] and "hyperband" in err[0]


@pytest.mark.parametrize(
    "storage", ["sqlite:////nonexistent-dir/deeper/study.db", "postgresql://nobody@127.0.0.1:9/none", "nosuch://x"]
)
def test_unreachable_storage_exits_2_with_one_line(
    storage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from msakit.cli import main

    argv = ["tune", "--model", "late_fusion", "--data", "synthetic", "--out", str(tmp_path), "--storage", storage]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot open study storage" in err[0]
    assert not (tmp_path / "best.yaml").exists()


def test_unknown_space_field_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from msakit.cli import main

    argv = ["tune", "--model", "late_fusion", "--data", "synthetic", "--out", str(tmp_path), "--space", "bogus=1:2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus" in err[0]


WORKER = """
import sys, time
from pathlib import Path
from msakit.config import SearchRange
from msakit.data import SyntheticConfig, make_synthetic
from msakit.tuning import search_space, tune

data = make_synthetic(SyntheticConfig(sizes=(24, 12, 12), dims=(12, 6, 8), lengths=(7, 9, 5), seed=3))
space = {**{k: None for k in search_space("late_fusion")}, "train.lr": SearchRange(low=1e-3, high=1e-2, log=True)}
Path(sys.argv[1] + ".ready").touch()  # start together, so that neither finishes the study alone while importing
while len(list(Path(sys.argv[1]).parent.glob("*.ready"))) < 2:
    time.sleep(0.05)
tune("late_fusion", data, out_dir=sys.argv[1], trials=6, storage=sys.argv[2], study_name="shared", progress=False,
     model_overrides={"hidden_dim": 16, "encoder": "mean"}, train_overrides={"epochs": 2}, space_overrides=space)
"""


@pytest.mark.slow  # two fresh interpreters importing torch: about 15 s idle, a minute on a loaded 2-core machine
def test_two_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / f"w{i}"), url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=240)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=url)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 6 <= len(finished) <= 7  # the count is shared; each process may finish one trial in flight
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both processes contributed
    assert len({t.number for t in study.trials}) == len(study.trials)


def _first_pruned_step(name: str) -> int | None:
    """The first epoch at which `name` stops a trial far worse than five finished ones (None: never)."""
    import optuna

    study = optuna.create_study(direction="minimize", pruner=make_pruner(name, steps=9))
    for good in (0.50, 0.51, 0.52, 0.53, 0.55):  # the median pruner's 5 startup trials
        trial = study.ask()
        for step in range(1, 10):
            trial.report(good - 0.01 * step, step)
        study.tell(trial, good - 0.09)
    weak = study.ask()
    for step in range(1, 10):
        weak.report(2.0, step)
        if weak.should_prune():
            return step
    return None


def test_the_median_pruner_takes_its_warm_up_by_name() -> None:
    """`median:W` may stop a trial from its W-th report on (`median` = `median:2`); the name travels to
    --jobs workers as is, so every process builds the same pruner."""
    assert _first_pruned_step("median") == _first_pruned_step("median:2") == 2
    assert _first_pruned_step("median:6") == 6
    assert _first_pruned_step("median:0") == 1
    for bad, message in (("median:x", "integer >= 0"), ("median:-1", "integer >= 0"), ("sha:3", "only median")):
        with pytest.raises(ConfigError, match=message):
            make_pruner(bad, steps=9)


@pytest.mark.parametrize("pruner", ["median:x", "hyperband:4"])
def test_a_bad_pruner_warm_up_exits_2_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pruner: str
) -> None:
    from msakit.cli import main

    out = tmp_path / "run"
    argv = ["tune", "--model", "late_fusion", "--data", "synthetic", "--out", str(out), "--pruner", pruner]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pruner in err[0]
    assert not out.exists()
