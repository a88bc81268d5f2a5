"""benchmarks/cv_decision.py: the twelfth stop's rule over a cross-validated study, from the study alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmark_module import load_benchmark

cv_decision = load_benchmark("cv_decision")


def _study(tmp_path: Path, trials: list[tuple[float, float, float]], state: str = "COMPLETE") -> Path:
    """A study in tmp_path/study.db whose trial i has cross-validated means (Non0 Acc-2, MAE, Corr) = trials[i]."""
    import optuna

    folder = tmp_path / "study"
    folder.mkdir()
    storage = f"sqlite:///{folder / 'study.db'}"
    study = optuna.create_study(study_name="m-mmmo", storage=storage, direction="maximize")
    study.set_user_attr("select_key", "Non0_acc_2")
    study.set_user_attr("scored_on", "5-fold cross-validation over train + valid")
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for i, (non0, mae, corr) in enumerate(trials):
        study.add_trial(
            optuna.trial.create_trial(
                params={"train.lr": 1e-3 * (i + 1)},
                distributions=dist,
                value=non0,
                user_attrs={"mean_valid": {"Non0_acc_2": non0, "MAE": mae, "Corr": corr}},
                state=getattr(optuna.trial.TrialState, state) if i else optuna.trial.TrialState.COMPLETE,
            )
        )
    return folder


def _decide(folder: Path) -> dict[str, Any]:
    return cv_decision.decide(cv_decision.load_study(folder), margin=0.01, mae_guard=0.02, corr_guard=0.02)


def test_the_best_guarded_trial_is_adopted_when_it_clears_the_margin(tmp_path: Path) -> None:
    # trial 1 has the highest objective but breaks the MAE guard; trial 2 breaks the Corr guard; trial 3 wins
    row = _decide(_study(tmp_path, [(0.80, 0.90, 0.50), (0.86, 0.93, 0.50), (0.85, 0.90, 0.47), (0.82, 0.91, 0.49)]))
    assert row["candidate"]["number"] == 3 and row["adopted"] and row["qualified"] == 2
    assert row["trial0"] == {"Non0_acc_2": 0.80, "MAE": 0.90, "Corr": 0.50}


def test_a_gain_under_the_margin_keeps_the_preset(tmp_path: Path) -> None:
    row = _decide(_study(tmp_path, [(0.80, 0.90, 0.50), (0.809, 0.90, 0.50)]))
    assert row["candidate"]["number"] == 1 and not row["adopted"]


def test_trial_0_best_is_not_an_adoption(tmp_path: Path) -> None:
    row = _decide(_study(tmp_path, [(0.80, 0.90, 0.50), (0.70, 0.90, 0.50)]))
    assert row["candidate"]["number"] == 0 and not row["adopted"]


def test_pruned_trials_are_not_candidates(tmp_path: Path) -> None:
    row = _decide(_study(tmp_path, [(0.80, 0.90, 0.50), (0.95, 0.80, 0.60)], state="PRUNED"))
    assert row["candidate"]["number"] == 0 and row["trials_pruned"] == 1


def test_a_final_run_for_a_preset_the_rule_kept_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _study(tmp_path, [(0.80, 0.90, 0.50), (0.70, 0.90, 0.50)])
    assert cv_decision.main([f"m/mmmo={folder},{tmp_path / 'run'}"]) == 2
    assert "did not adopt" in capsys.readouterr().err


def test_the_table_says_what_was_adopted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _study(tmp_path, [(0.80, 0.90, 0.50), (0.82, 0.91, 0.49)])
    assert cv_decision.main([f"m/mmmo={folder}", "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "| m/mmmo | 2 + 0 | 80.0 / 0.900 / 0.500 | 82.0 / 0.910 / 0.490 (trial 1) | yes |" in out
    assert "adopted for m/mmmo." in out and (tmp_path / "out.json").is_file()


def test_the_probe_row_uses_the_studies_folds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from msakit.data import load_dataset
    from msakit.probe import cross_validated_probe

    folder = _study(tmp_path, [(0.80, 0.90, 0.50)])
    assert cv_decision.main([f"m/mmmo={folder}", "--probe", "synthetic:noisy"]) == 0
    best = cross_validated_probe(load_dataset("synthetic:noisy"), 5).best()
    row = f"| probe: {best.name} ({best.pooling}), same folds | – | {cv_decision.cells(best.valid)} | – | – |"
    out = capsys.readouterr().out
    assert row in out
    v = best.valid
    ahead = v["Non0_acc_2"] <= 0.80 and v["MAE"] >= 0.90 and v["Corr"] <= 0.50
    assert f"most) for {int(ahead)} of 1 presets" in out


def test_the_probe_row_needs_cross_validated_studies(tmp_path: Path) -> None:
    folder = _study(tmp_path, [(0.80, 0.90, 0.50)])
    cv_decision.load_study(folder).set_user_attr("scored_on", "the validation split")
    with pytest.raises(SystemExit, match="scored on one K-fold split"):
        cv_decision.main([f"m/mmmo={folder}", "--probe", "synthetic:noisy"])


def test_evaluate_prints_each_trial_0_beside_the_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _study(tmp_path, [(0.80, 0.90, 0.50), (0.95, 0.80, 0.60)])
    assert cv_decision.main([f"m/mmmo={folder}", "--evaluate"]) == 0
    out = capsys.readouterr().out
    assert "| m/mmmo | 80.0 / 0.900 / 0.500 |" in out and "95.0" not in out and "adopted" not in out
