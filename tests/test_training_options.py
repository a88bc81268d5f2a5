"""The generic training options: weight averaging (`ema_decay`), checkpoint averaging
(`average_top_k`), the CCC loss term (`ccc_weight`) and MMSA's checkpointing (`save_last`).

Each is off by default and exactly the old training when off; when on, it changes
training, and for averaging the validation scores and the best checkpoint are those of the
averaged weights (checked against an EMA, or a top-k mean, recomputed here from the live weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from benchmark_module import load_benchmark
from msakit import create_model
from msakit.cli import main
from msakit.data import MSADataset
from msakit.errors import ConfigError
from msakit.models.base import concordance_loss, sign_loss
from msakit.training import Trainer, evaluate, load_checkpoint, train_config_from
from msakit.training.engine import Callback, FitState


def _cfg(**kw: object):  # type: ignore[no-untyped-def]
    return train_config_from({"epochs": 2, "seeds": [1], "progress": False, "tensorboard": False, **kw})


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _ccc_reference(p: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC with population moments, written independently in numpy."""
    cov = np.mean((p - p.mean()) * (y - y.mean()))
    return float(2 * cov / (p.var() + y.var() + (p.mean() - y.mean()) ** 2))


# ---- CCC ----------------------------------------------------------------------------------------------
def test_concordance_loss_matches_reference_and_is_zero_for_a_perfect_prediction() -> None:
    gen = torch.Generator().manual_seed(0)
    p, y = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
    assert float(concordance_loss(p, y)) == pytest.approx(1 - _ccc_reference(p.numpy(), y.numpy()), abs=1e-6)
    assert float(concordance_loss(y, y)) == pytest.approx(0.0, abs=1e-6)
    assert float(concordance_loss(2 * y + 1, y)) > 0.1  # Pearson r is 1 here; CCC sees scale and offset


@pytest.mark.parametrize(
    "pred, y",
    [
        (torch.zeros(8), torch.linspace(-2, 2, 8)),  # constant prediction
        (torch.ones(8), torch.ones(8)),  # both constant and equal: 0/0 without the guard
        (torch.tensor([0.3]), torch.tensor([1.0])),  # a batch of one
    ],
)
def test_concordance_loss_has_a_finite_gradient_on_degenerate_batches(pred: torch.Tensor, y: torch.Tensor) -> None:
    pred = pred.clone().requires_grad_(True)
    loss = concordance_loss(pred, y)
    loss.backward()
    assert torch.isfinite(loss) and pred.grad is not None and torch.isfinite(pred.grad).all()
    if len(pred) == 1:
        assert float(loss.detach()) == 0.0


def test_ccc_weight_adds_the_term_to_the_task_loss_and_off_is_the_plain_loss(tiny_dataset: MSADataset) -> None:
    dims = {f"{m}_dim": d for m, d in tiny_dataset.info.dims.items()}
    off = create_model("late_fusion", **dims)
    on = create_model("late_fusion", **dims, ccc_weight=0.5)
    gen = torch.Generator().manual_seed(1)
    p, y = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    assert torch.equal(off.task_loss(p, y), torch.nn.functional.l1_loss(p, y))
    expected = torch.nn.functional.l1_loss(p, y) + 0.5 * (1 - _ccc_reference(p.numpy(), y.numpy()))
    assert float(on.task_loss(p, y)) == pytest.approx(float(expected), abs=1e-6)
    assert float(on.task_loss(y, y)) == pytest.approx(0.0, abs=1e-6)  # perfect: no extra loss


@pytest.mark.parametrize("term", ["ccc_weight", "sign_weight"])
def test_loss_terms_leave_classifiers_alone(term: str, tiny_dataset: MSADataset) -> None:
    dims = {f"{m}_dim": d for m, d in tiny_dataset.info.dims.items()}
    classifier = create_model("late_fusion", **dims, num_classes=3, **{term: 0.5})
    logits, labels = torch.randn(6, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.equal(classifier.task_loss(logits, labels), torch.nn.functional.cross_entropy(logits, labels))


@pytest.mark.parametrize("term", ["ccc_weight", "sign_weight"])
def test_loss_terms_change_training(term: str, tiny_dataset: MSADataset, tmp_path: Path) -> None:
    base = Trainer("late_fusion", tiny_dataset, train_config=_cfg(), out_dir=tmp_path / "a").fit()
    on = Trainer(
        "late_fusion", tiny_dataset, model_overrides={term: 1.0}, train_config=_cfg(), out_dir=tmp_path / "b"
    ).fit()
    assert on.seeds[0].valid != base.seeds[0].valid


# ---- the sign term (sign_weight) ------------------------------------------------------------------------
def test_sign_loss_is_the_logistic_margin_over_nonzero_labels() -> None:
    pred, y = torch.tensor([2.0, -1.0, 0.5, 3.0]), torch.tensor([1.5, 1.0, 0.0, -2.0])
    reference = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(1.0)), np.log1p(np.exp(3.0))])  # y = 0 dropped
    assert float(sign_loss(pred, y)) == pytest.approx(float(reference), abs=1e-6)
    zeros = torch.zeros(3)
    pred.requires_grad_(True)
    empty = sign_loss(pred[:3], zeros)
    empty.backward()  # no non-zero label: 0, and still differentiable
    assert float(empty) == 0.0 and pred.grad is not None and torch.equal(pred.grad, torch.zeros(4))
    label = torch.tensor([0.5])
    right, wrong = sign_loss(torch.tensor([1.0]), label), sign_loss(torch.tensor([-1.0]), label)
    assert float(right) < float(wrong)  # the right side of zero costs less


def test_sign_weight_adds_the_term_to_the_task_loss(tiny_dataset: MSADataset) -> None:
    dims = {f"{m}_dim": d for m, d in tiny_dataset.info.dims.items()}
    on = create_model("late_fusion", **dims, sign_weight=0.5)
    gen = torch.Generator().manual_seed(2)
    p, y = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    expected = torch.nn.functional.l1_loss(p, y) + 0.5 * sign_loss(p, y)
    assert float(on.task_loss(p, y)) == pytest.approx(float(expected), abs=1e-6)


# ---- weight averaging ----------------------------------------------------------------------------------
class _LiveWeights(Callback):
    """Records the live parameters after every optimizer step (runs after the averager's update)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_step_end(self, state: FitState, parts: dict[str, float]) -> None:
        assert state.model is not None
        self.steps.append({k: v.detach().clone() for k, v in state.model.named_parameters()})


def test_off_is_the_old_training_bit_for_bit(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    """Defaults, explicit zeros: identical; and off, the best checkpoint is the live weights."""
    a = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=1), out_dir=tmp_path / "a").fit()
    b = Trainer(
        "late_fusion",
        tiny_dataset,
        model_overrides={"ccc_weight": 0.0, "sign_weight": 0.0},
        train_config=_cfg(epochs=1, ema_decay=0.0),
        out_dir=tmp_path / "b",
    ).fit()
    assert a.seeds[0].valid == b.seeds[0].valid and a.seeds[0].test == b.seeds[0].test
    wa, wb, last = _weights(tmp_path / "a/seed1/best"), _weights(tmp_path / "b/seed1/best"), tmp_path / "b/seed1/last"
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(torch.equal(wb[k], v) for k, v in _weights(last).items())
    assert "averaged" not in torch.load(last / "optimizer.pt", weights_only=True)


def test_validation_and_best_checkpoint_use_the_averaged_weights(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    decay, live = 0.8, _LiveWeights()
    trainer = Trainer(
        "late_fusion",
        tiny_dataset,
        train_config=_cfg(epochs=1, batch_size=4, ema_decay=decay),
        out_dir=tmp_path,
        callbacks=[live],
    )
    seed = trainer.fit().seeds[0]
    assert len(live.steps) == 6
    expected = dict(live.steps[0])  # EMA recomputed from the live weights: the first step copies
    for step in live.steps[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * w for k, w in step.items()}
    best = _weights(tmp_path / "seed1/best")
    for k, v in expected.items():
        torch.testing.assert_close(best[k], v, rtol=1e-5, atol=1e-6)
    final = live.steps[-1]
    assert any(not torch.allclose(best[k], final[k]) for k in final)  # not the live weights
    model, meta = load_checkpoint(tmp_path / "seed1/best")
    assert evaluate(model, tiny_dataset.split("valid"), "mosi") == meta["valid"] == seed.valid
    assert evaluate(model, tiny_dataset.split("test"), "mosi") == seed.test
    last = _weights(tmp_path / "seed1/last")  # `last` keeps the live weights for resuming
    assert all(torch.equal(last[k], final[k]) for k in final)


def test_resume_with_weight_averaging_matches_uninterrupted_run(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    kw = {"ema_decay": 0.9, "batch_size": 8}
    full = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=4, **kw), out_dir=tmp_path / "full").fit()
    Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=2, **kw), out_dir=tmp_path / "part").fit()
    resumed = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=4, **kw), out_dir=tmp_path / "part")
    assert resumed.fit(resume=True).seeds[0].test == full.seeds[0].test


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("ebmc", {"stage1_epochs": 1}),  # stage 2 (frozen teacher snapshot) inside the run
        ("qa_moe", {}),  # self-supervised uncertainty objective
        ("tsd", {}),  # decoupling statistics recomputed at epoch end, here for the averaged weights
    ],
)
def test_weight_averaging_with_training_hooks(
    name: str, overrides: dict[str, object], tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    base = Trainer(
        name, tiny_dataset, model_overrides=overrides, train_config=_cfg(epochs=3, batch_size=8), out_dir=tmp_path / "a"
    )
    avg = Trainer(
        name,
        tiny_dataset,
        model_overrides=overrides,
        train_config=_cfg(epochs=3, batch_size=8, ema_decay=0.7),
        out_dir=tmp_path / "b",
    )
    off, on = base.fit().seeds[0], avg.fit().seeds[0]
    assert on.valid != off.valid and all(np.isfinite(v) for v in on.test.values())
    model, meta = load_checkpoint(on.checkpoint)  # the saved checkpoint scores what validation measured
    assert evaluate(model, tiny_dataset.split("valid"), "mosi") == pytest.approx(meta["valid"], abs=1e-9)


# ---- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "owner, field, value, message",
    [
        ("train", "ema_decay", 1.0, r"'ema_decay' must be in \[0, 1\)"),
        ("train", "ema_decay", -0.1, r"'ema_decay' must be in \[0, 1\)"),
        ("model", "ccc_weight", -0.5, r"'ccc_weight' must be >= 0"),
        ("model", "sign_weight", -0.5, r"'sign_weight' must be >= 0"),
        ("train", "average_top_k", -1, r"'average_top_k' must be >= 0"),
    ],
)
def test_bad_option_values_name_the_field(owner: str, field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        if owner == "train":
            train_config_from({field: value})
        else:
            create_model("late_fusion", **{field: value})


def test_bad_option_on_the_command_line_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--model", "late_fusion", "--data", "synthetic", "--out", str(tmp_path / "r")]
    assert main([*args, "-t", "ema_decay=1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ema_decay" in err[0]
    assert main([*args, "-m", "ccc_weight=-1"]) == 2
    assert "ccc_weight" in capsys.readouterr().err
    assert main([*args, "-t", "average_top_k=-2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "average_top_k" in err[0]
    assert not (tmp_path / "r").exists()


def test_epoch_end_statistics_are_those_of_the_averaged_weights(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    """TSD recomputes its decoupling statistics at epoch end; the best checkpoint holds them for its own weights."""
    cfg = _cfg(epochs=2, batch_size=8, ema_decay=0.7)
    seed = Trainer("tsd", tiny_dataset, train_config=cfg, out_dir=tmp_path).fit().seeds[0]
    model, _ = load_checkpoint(seed.checkpoint)
    assert model.decoupler is not None
    saved = model.decoupler.weight.clone()
    model.train()
    model.on_train_epoch_end(2, lambda: tiny_dataset.split("train").loader(32, shuffle=False))
    torch.testing.assert_close(model.decoupler.weight, saved, rtol=1e-4, atol=1e-6)
    assert float(saved.abs().max()) > 0


# ---- checkpoint averaging (top-k uniform average) -------------------------------------------------------
class _Validated(Callback):
    """Records (valid MAE, epoch, state dict) after every validation: the weights validation just scored."""

    def __init__(self) -> None:
        self.records: list[tuple[float, int, dict[str, torch.Tensor]]] = []

    def on_validation_end(self, state: FitState, epoch: int, metrics: dict[str, float]) -> None:
        assert state.model is not None
        weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        self.records.append((metrics["MAE"], epoch, weights))


def test_checkpoint_averaging_off_is_the_old_training_bit_for_bit(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    runs = {}
    for name, kw in {"default": {}, "zero": {"average_top_k": 0}, "one": {"average_top_k": 1}}.items():
        cfg = _cfg(epochs=3, batch_size=8, **kw)
        runs[name] = Trainer("late_fusion", tiny_dataset, train_config=cfg, out_dir=tmp_path / name).fit().seeds[0]
        assert not (tmp_path / name / "seed1/average.json").exists()
        assert "top_k" not in torch.load(tmp_path / name / "seed1/last/optimizer.pt", weights_only=True)
    base = _weights(tmp_path / "default/seed1/best")
    for name in ("zero", "one"):
        assert runs[name].valid == runs["default"].valid and runs[name].test == runs["default"].test
        other = _weights(tmp_path / name / "seed1/best")
        assert other.keys() == base.keys() and all(torch.equal(base[k], other[k]) for k in base)


@pytest.mark.parametrize(
    "epochs, batch_size, lr, average_kept",
    [(6, 4, 1e-2, True), (4, 8, 1e-3, False)],  # one run where the average validates better, one where not
)
def test_best_is_the_recomputed_top_k_average_when_it_validates_at_least_as_well(
    epochs: int, batch_size: int, lr: float, average_kept: bool, tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    k, seen = 3, _Validated()
    cfg = _cfg(epochs=epochs, batch_size=batch_size, lr=lr, average_top_k=k)
    seed = Trainer("late_fusion", tiny_dataset, train_config=cfg, out_dir=tmp_path, callbacks=[seen]).fit().seeds[0]
    top = sorted(seen.records, key=lambda r: (r[0], r[1]))[:k]  # lowest MAE first, ties to the earlier epoch
    params = {n for n, _ in create_model("late_fusion", **_dims(tiny_dataset)).named_parameters()}
    soup = {
        n: torch.stack([r[2][n] for r in top]).mean(0) if n in params else top[0][2][n] for n in top[0][2]
    }  # parameters averaged, buffers of the best checkpoint
    model, meta = load_checkpoint(tmp_path / "seed1/best")
    saved = _weights(tmp_path / "seed1/best")
    model.load_state_dict(soup)
    soup_valid = evaluate(model, tiny_dataset.split("valid"), "mosi")
    record = json.loads((tmp_path / "seed1/average.json").read_text())
    assert record["epochs"] == [r[1] for r in top] and record["scores"] == [r[0] for r in top]
    assert record["valid"]["MAE"] == pytest.approx(soup_valid["MAE"], abs=1e-6)
    assert record["kept"] == (soup_valid["MAE"] <= top[0][0]) == average_kept  # the rule, and this case's branch
    expected = soup if average_kept else top[0][2]
    for name, value in expected.items():
        torch.testing.assert_close(saved[name], value, rtol=1e-5, atol=1e-6)
    assert (meta.get("averaged_epochs") == record["epochs"]) == average_kept
    best, meta = load_checkpoint(tmp_path / "seed1/best")  # the stored valid dict is an eval of the saved best
    assert evaluate(best, tiny_dataset.split("valid"), "mosi") == meta["valid"] == seed.valid
    assert evaluate(best, tiny_dataset.split("test"), "mosi") == seed.test


def _dims(dataset: MSADataset) -> dict[str, int]:
    return {f"{m}_dim": d for m, d in dataset.info.dims.items()}


def test_resume_with_checkpoint_averaging_matches_uninterrupted_run(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    kw = {"average_top_k": 3, "batch_size": 4, "lr": 1e-2}
    full = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=6, **kw), out_dir=tmp_path / "full").fit()
    Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=3, **kw), out_dir=tmp_path / "part").fit()
    resumed = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=6, **kw), out_dir=tmp_path / "part")
    again = resumed.fit(resume=True).seeds[0]
    assert again.valid == full.seeds[0].valid and again.test == full.seeds[0].test
    assert (tmp_path / "part/seed1/average.json").read_text() == (tmp_path / "full/seed1/average.json").read_text()


@pytest.mark.parametrize(
    "name, overrides, train",
    [
        ("ebmc", {"stage1_epochs": 2}, {"lr": 1e-2}),  # stage 2 (frozen teacher snapshot) inside the averaged span
        ("qa_moe", {}, {"lr": 1e-2}),  # self-supervised uncertainty objective
        ("tsd", {}, {"lr": 3e-3}),  # decoupling statistics recomputed at epoch end, here for the (kept) average
        ("tsd", {}, {"lr": 3e-3, "ema_decay": 0.7}),  # the kept checkpoints are the EMA weights validation scored
    ],
)
def test_checkpoint_averaging_with_training_hooks(
    name: str, overrides: dict[str, object], train: dict[str, object], tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    cfg = _cfg(epochs=4, batch_size=8, average_top_k=3, **train)
    seed = Trainer(name, tiny_dataset, model_overrides=overrides, train_config=cfg, out_dir=tmp_path).fit().seeds[0]
    record = json.loads((tmp_path / "seed1/average.json").read_text())
    assert len(record["epochs"]) == 3 and all(np.isfinite(v) for v in seed.test.values())
    model, meta = load_checkpoint(seed.checkpoint)  # the saved checkpoint scores what validation measured
    assert evaluate(model, tiny_dataset.split("valid"), "mosi") == pytest.approx(meta["valid"], abs=1e-9)
    if record["kept"]:
        assert meta["valid"] == pytest.approx(record["valid"], abs=1e-12)
    if name == "tsd":  # the saved decoupling statistics are those of the saved weights
        assert model.decoupler is not None
        saved = model.decoupler.weight.clone()
        model.train()
        model.on_train_epoch_end(4, lambda: tiny_dataset.split("train").loader(32, shuffle=False))
        torch.testing.assert_close(model.decoupler.weight, saved, rtol=1e-4, atol=1e-6)


def test_with_ema_the_kept_checkpoints_are_the_averaged_weights(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    """EMA and top-k together: the k kept checkpoints are the EMA weights validation scored, not the live ones."""
    decay, live = 0.8, _LiveWeights()
    cfg = _cfg(epochs=3, batch_size=4, lr=1e-2, ema_decay=decay, average_top_k=3)
    Trainer("late_fusion", tiny_dataset, train_config=cfg, out_dir=tmp_path, callbacks=[live]).fit()
    per_epoch = len(live.steps) // 3
    ema, at_epoch = dict(live.steps[0]), {}
    for i, step in enumerate(live.steps):
        if i:
            ema = {k: decay * ema[k] + (1 - decay) * w for k, w in step.items()}
        if (i + 1) % per_epoch == 0:
            at_epoch[(i + 1) // per_epoch] = ema
    stored = torch.load(tmp_path / "seed1/last/optimizer.pt", weights_only=True)["top_k"]["kept"]
    for snap in stored:  # the kept snapshots (parameters first, in module order) are the EMA's
        for got, want in zip(snap["tensors"], at_epoch[snap["epoch"]].values(), strict=False):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    record = json.loads((tmp_path / "seed1/average.json").read_text())
    assert record["epochs"] == [snap["epoch"] for snap in stored]
    kept = [at_epoch[e] for e in record["epochs"]]
    expected = {k: torch.stack([w[k] for w in kept]).mean(0) for k in kept[0]} if record["kept"] else kept[0]
    saved = _weights(tmp_path / "seed1/best")
    for k, v in expected.items():
        torch.testing.assert_close(saved[k], v, rtol=1e-5, atol=1e-6)


def test_save_last_off_writes_only_best_and_trains_the_same(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    """save_last=false (MMSA's checkpointing): the same training, the same best/, no last/."""
    on = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=3), out_dir=tmp_path / "on").fit()
    off = Trainer(
        "late_fusion", tiny_dataset, train_config=_cfg(epochs=3, save_last=False), out_dir=tmp_path / "off"
    ).fit()
    assert (tmp_path / "on/seed1/last").is_dir()
    assert not (tmp_path / "off/seed1/last").exists()
    assert on.seeds[0].valid == off.seeds[0].valid and on.seeds[0].test == off.seeds[0].test
    assert on.seeds[0].best_epoch == off.seeds[0].best_epoch
    wa, wb = _weights(tmp_path / "on/seed1/best"), _weights(tmp_path / "off/seed1/best")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_save_last_off_refuses_resume_and_removes_an_earlier_last(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=2), out_dir=tmp_path).fit()
    before = (tmp_path / "seed1/log.csv").read_text()
    trainer = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=3, save_last=False), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="save_last=false writes no seed<N>/last"):
        trainer.fit(resume=True)
    assert (tmp_path / "seed1/last").is_dir() and (tmp_path / "seed1/log.csv").read_text() == before  # untouched
    trainer.fit()  # a fresh fit: the earlier run's last/ must not survive to be resumed as this one's state
    assert not (tmp_path / "seed1/last").exists()
    with pytest.raises(ConfigError, match="nothing to resume"):
        trainer.fit(resume=True)  # refused even where nothing could be resumed: the option, not the folder, decides


def test_cli_resume_with_save_last_off_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--model", "late_fusion", "--data", "synthetic", "--out", str(tmp_path / "r"), "--resume"]
    assert main([*args, "-t", "save_last=false", "-t", "epochs=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "save_last" in err[0]
    assert not (tmp_path / "r" / "seed1").exists()


def test_size_matched_configs_checkpoint_and_clip_as_mmsas_trainers() -> None:
    """benchmarks/compare_mmsa.py: MMSA 2.2.1's TFN, LMF and LF_DNN trainers clip nothing, and every one of its
    trainers saves only the best model; the size-matched msakit configurations do the same."""
    from msakit.config import TrainConfig, apply_overrides

    module = load_benchmark("compare_mmsa")
    for name, entry in module.SIZE_MATCHED.items():
        cfg = apply_overrides(TrainConfig(), entry["train"], owner=name)
        assert cfg.save_last is False, name
        assert cfg.grad_clip == (0.6 if name == "mult" else 0.0), name  # MMSA's MulT clips (by value, at 0.6)
