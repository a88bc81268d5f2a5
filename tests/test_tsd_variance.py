"""benchmarks/seed_variance.py: the seeds' mean metric against the metric of their mean prediction."""

from __future__ import annotations

import numpy as np

from benchmark_module import load_benchmark


def test_independent_seed_noise_averages_out_and_shared_error_does_not() -> None:
    bench = load_benchmark("seed_variance")
    rng = np.random.default_rng(0)
    y = np.round(rng.normal(0, 1.5, 500), 1)
    noisy = y + rng.normal(0, 1.0, (5, 500))  # each seed its own error: variance
    out = bench.summarise(noisy, y)
    assert out["Corr"]["ensemble"] > out["Corr"]["seeds_mean"] + 0.03
    assert out["MAE"]["ensemble"] < out["MAE"]["seeds_mean"] - 0.1
    assert out["Corr"]["seeds_std"] > 0
    shared = np.repeat((y + rng.normal(0, 1.0, 500))[None], 5, 0)  # one error for every seed: bias
    same = bench.summarise(shared, y)
    for key in ("Corr", "MAE", "Non0_acc_2"):
        assert abs(same[key]["ensemble"] - same[key]["seeds_mean"]) < 1e-12
        assert same[key]["seeds_std"] < 1e-12


def test_reading_names_a_run_only_when_its_mean_prediction_reaches_the_probe() -> None:
    bench = load_benchmark("seed_variance")
    probe = {
        "valid": {"Corr": 0.8, "MAE": 0.8, "Non0_acc_2": 0.84},
        "test": {"Corr": 0.775, "MAE": 0.82, "Non0_acc_2": 0.84},
    }

    def row(seeds: float, ensemble: float) -> dict:  # type: ignore[type-arg]
        m = {"seeds_mean": seeds, "seeds_std": 0.01, "ensemble": ensemble}
        return {"seeds": 5, "valid": dict.fromkeys(("Corr", "MAE", "Non0_acc_2"), m),
                "test": dict.fromkeys(("Corr", "MAE", "Non0_acc_2"), m)}  # fmt: skip

    text = bench.markdown("cmd", probe, {"run a": row(0.765, 0.778), "run b": row(0.765, 0.770)})
    assert text.rstrip().endswith("(the gap is run-to-run variance): run a.")  # b's mean prediction is under
    assert "| run a | 5 | 0.765 ± 0.010 | 0.778 |" in text


def test_size_rows_average_each_seeds_first_k_members() -> None:
    bench = load_benchmark("seed_variance")
    rng = np.random.default_rng(1)
    y = np.round(rng.normal(0, 1.5, 300), 1)
    members = y + rng.normal(0, 1.0, (3, 4, 300))  # (seeds, members, clips), independent member errors
    rows = bench.size_rows(members, y, [1, 2, 4])
    single = np.abs(members[:, 0] - y).mean(-1)
    assert abs(rows[1]["MAE"]["mean"] - single.mean()) < 1e-12  # K = 1 is member 0 alone
    assert abs(rows[1]["MAE"]["std"] - single.std(ddof=1)) < 1e-12
    pair = np.abs(members[:, :2].mean(1) - y).mean(-1).mean()
    assert abs(rows[2]["MAE"]["mean"] - pair) < 1e-12  # the first two members, not any two
    assert rows[4]["MAE"]["mean"] < rows[2]["MAE"]["mean"] < rows[1]["MAE"]["mean"]
    assert rows[4]["Corr"]["mean"] > rows[1]["Corr"]["mean"]


def test_chosen_size_needs_a_larger_k_to_win_by_the_margin() -> None:
    bench = load_benchmark("seed_variance")
    assert bench.chosen_size({1: 0.9737, 3: 0.9731, 5: 0.9796}, 0.001) == 1  # 0.0006 lower: a tie, keep the cheaper
    assert bench.chosen_size({1: 0.8039, 3: 0.7703, 5: 0.7692}, 0.001) == 5  # 0.0011 lower than K = 3
    assert bench.chosen_size({1: 0.8039, 3: 0.7703, 5: 0.7698}, 0.001) == 3
    assert bench.chosen_size({1: 0.80, 3: 0.81, 5: 0.78}, 0.001) == 5  # compared with the best so far
