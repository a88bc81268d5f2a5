"""bf16 autocast on CPU (`-t precision=bf16`): allowed where the CPU computes bf16 natively.

On a CPU with avx512_bf16 or AMX, oneDNN runs matmuls and the LSTM in bf16 and the
size-matched LF-DNN epoch takes about 0.7x its fp32 CPU time (docs/compare_mmsa.md); without
them bf16 is emulated and slower, so the trainer refuses it in one line. What bf16 touches:
the training forward pass (and so its backward) runs under `torch.autocast("cpu", bfloat16)`;
the task loss (l1, mse, cross-entropy) runs in fp32 (autocast's fp32 list); weights, gradients,
the optimizer state and the checkpoint stay fp32; validation, test, `msakit eval` and `predict`
run in fp32.
"""

from __future__ import annotations

import csv as csvlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from benchmark_module import load_benchmark
from msakit.cli import main
from msakit.config import TrainConfig
from msakit.data import MSADataset
from msakit.errors import ConfigError
from msakit.training import Callback, FitState, Trainer, distributed, train_config_from
from msakit.training.distributed import cpu_has_native_bf16, init_runtime

ROOT = Path(__file__).parents[1]
needs_native_bf16 = pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="this CPU has neither avx512_bf16 nor AMX: bf16 on CPU is refused here"
)
# the size-matched text path: one unidirectional LSTM in length segments (compare_mmsa's lf_dnn)
LSTM_MODEL = {"text_encoder": "unilstm", "hidden_dim": 16}


def _cfg(**kw: object) -> TrainConfig:
    base = {"epochs": 4, "seeds": [1], "progress": False, "tensorboard": False, "device": "cpu"}
    return train_config_from({**base, "lstm": "segments", "sampler": "bucket", **kw})


class Forwards(Callback):
    """Records, for every forward pass of the model, whether CPU autocast was on and the prediction's dtype."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, bool, torch.dtype]] = []  # (training, autocast on, prediction dtype)
        self.losses: list[float] = []

    def on_fit_start(self, state: FitState) -> None:
        assert state.model is not None

        def hook(module: torch.nn.Module, args: Any, out: Any) -> None:
            self.seen.append((module.training, torch.is_autocast_enabled("cpu"), out.prediction.dtype))

        state.model.register_forward_hook(hook)

    def on_epoch_end(self, state: FitState, epoch: int, train_losses: dict[str, float]) -> None:
        self.losses.append(train_losses["total"])


def test_bf16_on_a_cpu_without_native_bf16_is_refused_in_one_line(
    tiny_dataset: MSADataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"precision 'bf16' on CPU needs native bf16 instructions \(avx512_bf16"):
        Trainer("lf_dnn", tiny_dataset, train_config=_cfg(precision="bf16"), out_dir=tmp_path / "t")
    assert not (tmp_path / "t").exists()
    out = tmp_path / "r"
    args = ["train", "--model", "late_fusion", "--data", "synthetic", "--out", str(out)]
    assert main([*args, "-t", "precision=bf16", "-t", "device=cpu", "-t", "epochs=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision" in err[0] and "avx512_bf16" in err[0], err
    assert not out.exists()  # refused before anything is written
    init_runtime("cpu", precision="fp32")  # fp32 is never refused


def test_bf16_is_allowed_on_a_cpu_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: True)
    assert init_runtime("cpu", precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match=r"precision must be one of"):
        init_runtime("cpu", precision="fp16")


def test_the_probe_reads_torchs_cpu_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    for avx, amx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert cpu_has_native_bf16() is (avx or amx)


def test_fp32_is_the_default_and_trains_without_autocast(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    assert TrainConfig().precision == "fp32"
    rec = Forwards()
    Trainer(
        "lf_dnn", tiny_dataset, model_overrides=LSTM_MODEL, train_config=_cfg(), out_dir=tmp_path, callbacks=[rec]
    ).fit()
    assert rec.seen and all(not on and dtype == torch.float32 for _, on, dtype in rec.seen)


@pytest.mark.parametrize("task_loss", ["l1", "mse"])
@pytest.mark.parametrize(
    ("name", "overrides"),
    # oneDNN has no bf16 LSTM primitive on a CPU without native bf16 (an AMD EPYC without AVX-512 here):
    # the LSTM model runs where bf16 training is allowed; the dtype contract is checked everywhere
    [("late_fusion", {}), pytest.param("lf_dnn", LSTM_MODEL, marks=needs_native_bf16)],
)
def test_under_bf16_autocast_the_prediction_is_bf16_and_the_task_loss_fp32(
    tiny_dataset: MSADataset, task_loss: str, name: str, overrides: dict[str, object]
) -> None:
    from msakit import create_model
    from msakit.training.distributed import Runtime
    from msakit.training.engine import supervised_loss

    dims = {f"{m}_dim": d for m, d in tiny_dataset.info.dims.items()}
    model = create_model(name, **overrides, task_loss=task_loss, **dims)
    batch = next(iter(tiny_dataset.split("train").loader(8, shuffle=False)))
    with Runtime(precision="bf16").autocast():
        out = model(batch)
        loss, _ = supervised_loss(model, out, batch)
    assert out.prediction.dtype == torch.bfloat16 and loss.dtype == torch.float32


@needs_native_bf16
def test_a_bf16_cpu_fit_trains_under_autocast_and_keeps_fp32_weights_and_evaluation(
    tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    rec = Forwards()
    cfg = _cfg(precision="bf16", epochs=6)
    bf16 = Trainer(
        "lf_dnn", tiny_dataset, model_overrides=LSTM_MODEL, train_config=cfg, out_dir=tmp_path / "b", callbacks=[rec]
    ).fit()
    fp32 = Trainer(
        "lf_dnn", tiny_dataset, model_overrides=LSTM_MODEL, train_config=_cfg(epochs=6), out_dir=tmp_path / "f"
    ).fit()
    train = [(on, dtype) for training, on, dtype in rec.seen if training]
    evals = [(on, dtype) for training, on, dtype in rec.seen if not training]
    assert train and all(on and dtype == torch.bfloat16 for on, dtype in train)  # the forward ran in bf16
    assert evals and all(not on and dtype == torch.float32 for on, dtype in evals)  # validation in fp32
    assert rec.losses[-1] < rec.losses[0]  # it trains
    seed = bf16.seeds[0]
    assert all(torch.isfinite(torch.tensor(v)) for v in seed.valid.values())
    assert seed.valid != fp32.seeds[0].valid  # bf16 really changed the arithmetic
    weights = load_file(str(tmp_path / "b/seed1/best/model.safetensors"))
    assert weights and all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())


@needs_native_bf16
def test_eval_and_predict_of_a_bf16_checkpoint_run_in_fp32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`msakit eval` gives the trainer's own (fp32) validation numbers; `predict` agrees with it."""
    run = tmp_path / "r"
    train = ["train", "--model", "lf_dnn", "--data", "synthetic", "--out", str(run), "-m", "text_encoder=unilstm"]
    opts = ["precision=bf16", "device=cpu", "epochs=2", "seeds=[1]", "lstm=segments", "progress=false"]
    assert main([*train, *(a for o in opts for a in ("-t", o)), "-t", "tensorboard=false"]) == 0
    valid = json.loads((run / "results.json").read_text())["seeds"][0]["valid"]
    ckpt, report, csv = str(run / "seed1/best"), tmp_path / "eval.json", tmp_path / "pred.csv"
    assert main(["eval", ckpt, "--data", "synthetic", "--split", "valid", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["metrics"] == valid  # exactly: both are fp32 forwards of best/
    assert main(["predict", ckpt, "--data", "synthetic", "--split", "valid", "--out", str(csv)]) == 0
    rows = list(csvlib.DictReader(csv.open()))
    mae = sum(abs(float(r["prediction"]) - float(r["label"])) for r in rows) / len(rows)
    assert mae == pytest.approx(valid["MAE"], abs=1e-5)


# ---- the tenth stop's doc renderers (benchmarks/profile_epoch.py) -------------------------------------


def _pair(mmsa: float, a: float, b: float) -> dict[str, Any]:
    return {
        fw: {"cpu_seconds_per_epoch": v, "epoch_cpu": [v, v]}
        for fw, v in (("mmsa", mmsa), ("msakit", a), ("msakit_b", b))
    }


def test_the_reach_is_read_on_the_side_chosen_per_model() -> None:
    """bf16 (B) where the rule chose it, fp32 (A) elsewhere: the sentence reads each model's own side."""
    pe = load_benchmark("profile_epoch")
    variant = {
        "timing_meta": {"msakit_b": ["precision=bf16"]},
        "timing": {
            "lmf": {"1": _pair(1.0, 0.36, 0.30), "2": _pair(1.0, 0.34, 0.28), "3": _pair(1.0, 0.35, 0.26)},
            "tfn": {"1": _pair(10.0, 2.0, 2.6), "2": _pair(10.0, 4.0, 1.0), "3": _pair(10.0, 2.2, 2.4)},
        },
        "reach_sides": {"lmf": "b", "tfn": "msakit"},
        "reach_rule": "RULE",
    }
    text = pe._chosen_sides_sentence(variant)
    assert "(RULE)" in text
    assert "met for lmf 0.28 (B, `precision=bf16`; 3 pairs), tfn 0.22 (A; 3 pairs)." in text  # tfn's B median: 0.24
    variant["reach_sides"] = {"lmf": "msakit", "tfn": "msakit"}
    assert "not met for lmf 0.35 (A; 3 pairs)" in pe._chosen_sides_sentence(variant)


def test_a_stop_block_renders_each_of_several_phase_profiles(tmp_path: Path) -> None:
    pe = load_benchmark("profile_epoch")
    phases = {p: 0.5 for p in pe.PHASES}

    def profile(model: str, argv_tail: list[str]) -> dict[str, Any]:
        res = {"pairs": [{"A": {}, "B": {}}], "median_seconds_cpu": {"A": phases, "B": phases}}
        res["median_ratio_b_over_a"] = {p: 1.0 for p in pe.PHASES}
        argv = ["--epochs", "6", "--ab-train-opt", "precision=fp32", "precision=bf16", *argv_tail]
        return {"argv": argv, "load_avg_start": 1.0, "load_avg_end": 2.0, "models": {model: res}}

    runs = {
        "meta": {"data": "D"},
        "timing_variants": [],
        "tenth_stop": {"title": "T", "labels": [], "profile_ab": [profile("lf_dnn", []), profile("mult", ["-t", "x"])]},
    }
    (tmp_path / "compare_mmsa_s10.json").write_text(json.dumps(runs))
    text = "\n".join(pe._stop_block(tmp_path, 10, "tenth_stop"))
    assert "### T" in text and "| lf_dnn | epoch_total | 500.0 | 500.0 | 1.000 |" in text
    assert "| mult | epoch_total | 500.0 | 500.0 | 1.000 |" in text and "precision=bf16 -t x" in text


def test_the_speed_block_of_docs_benchmarks_md_is_its_json_rendered(tmp_path: Path) -> None:
    """docs/benchmarks.md's speed block is exactly what `profile_epoch.py --doc` renders from docs/bench."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text((ROOT / "docs/benchmarks.md").read_text())
    load_benchmark("profile_epoch").write_doc(doc, ROOT / "docs/bench")
    assert doc.read_text() == (ROOT / "docs/benchmarks.md").read_text()


def test_the_bf16_rows_are_labelled_beside_the_fp32_rows() -> None:
    """docs/compare_mmsa.md keeps the fp32 rows and shows bf16 as labelled B rows, saying MMSA runs fp32."""
    doc = (ROOT / "docs/compare_mmsa.md").read_text()
    s10 = json.loads((ROOT / "docs/bench/compare_mmsa_s10.json").read_text())
    label = s10["tenth_stop"]["labels"][0]
    assert "MMSA fp32" in label and "bf16" in label
    for model in ("lf_dnn", "lmf", "tfn", "mult"):
        assert f"| {label} | {model} |" in doc  # A: fp32
        assert f"| {label}, B: `precision=bf16` | {model} |" in doc  # B: bf16
    assert "### Accuracy: msakit with bf16 autocast" in doc
    assert "--msakit-train precision=bf16 --models lf_dnn lmf mult --seeds 1 2 3 4 5" in doc
