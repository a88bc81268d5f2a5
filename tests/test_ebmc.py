"""EBMC: two stages with a frozen teacher, energy equilibrium, trust distillation, enhancement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from msakit import create_model
from msakit.data import MSADataset
from msakit.errors import ConfigError
from msakit.layers import trust_weights
from msakit.training import Trainer, train_config_from
from msakit.training.checkpoint import save_checkpoint


def _model(dataset: MSADataset, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("ebmc", **{**dataset.info.model_overrides(), "hidden_dim": 16, "dropout": 0.0, **overrides})


def test_trust_weights_follow_the_closed_form() -> None:
    sigma = torch.tensor([[0.1, 1.0, 3.0], [0.5, 0.5, 9.0]])
    present = torch.tensor([[True, True, True], [True, True, False]])
    score = torch.exp(-sigma) / (torch.log1p(sigma**2) + 0.1)
    w = trust_weights(sigma, present)
    torch.testing.assert_close(w[0], score[0] / score[0].sum())
    torch.testing.assert_close(w[1], torch.tensor([0.5, 0.5, 0.0]))


def test_stage_two_snapshots_a_frozen_teacher_outside_the_checkpoint(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, stage1_epochs=2).train()
    batch = tiny_dataset.split("train").batch(range(16))
    keys = set(model.state_dict())
    model.on_epoch_start(2, 10)
    assert model.teacher is None and not {"emc", "imtd"} & set(model(batch).aux_losses)  # stage 1
    model.on_epoch_start(3, 10)
    teacher = model.teacher
    assert teacher is not None and not teacher.training
    assert set(model.state_dict()) == keys  # the teacher travels with no checkpoint
    assert not any(p.requires_grad for p in teacher.parameters())
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(batch)
    assert {"emc", "imtd"} <= set(out.aux_losses)  # stage 2
    (model.task_loss(out.prediction, batch.labels) + sum(out.aux_losses.values())).backward()
    opt.step()
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, frozen[k])
    model.on_epoch_start(4, 10)
    assert model.teacher is teacher  # snapshotted once


def _train_only(model: torch.nn.Module, batch: object, loss_name: str, steps: int) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    values = []
    for _ in range(steps):
        loss = model(batch).aux_losses[loss_name]
        values.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return values


def test_trust_distillation_pulls_fusion_weights_to_the_teachers_trust(tiny_dataset: MSADataset) -> None:
    """IMTD makes the student's fusion weights approach w* ∝ c·ρ from the teacher; with trust
    off the fusion weights stay uniform (the knockout)."""
    batch = tiny_dataset.split("train").batch(range(24))
    model = _model(tiny_dataset, stage1_epochs=0, imtd_weight=1.0).train()
    model.on_epoch_start(1, 10)
    with torch.no_grad():  # make the teacher's audio expert very unsure
        model.teacher.experts["audio"].log_var_layer.bias.add_(3.0)
    kl = _train_only(model, batch, "imtd", 40)
    assert kl[-1] < 0.5 * kl[0], kl[::10]
    model.eval()
    with torch.no_grad():
        trust = model(batch).explanations["trust"]
    audio = 1  # column of audio among the model's modalities
    has_all = batch.present.all(1)
    assert (trust[has_all, audio] < trust[has_all].max(1).values).all()

    off = _model(tiny_dataset, use_trust=False).eval()
    with torch.no_grad():
        w = off(batch).modality_weights
    counts = batch.present.sum(1, keepdim=True).float()
    torch.testing.assert_close(w, batch.present.float() / counts)


def _energy_gap(model: torch.nn.Module, batch: object) -> float:
    """Σ_{a<b} (E_a - E_b)², recomputed from the model's parts (E_m = ‖z̄_m‖² + ℓ_m + σ*²_m)."""
    with torch.no_grad():
        rep = model._represent(batch)
        z, valid = rep["z"], rep["present"].float()
        means = torch.stack([model.experts[m](z[:, i])[0] for i, m in enumerate(model.modalities)], 1)
        per = z.pow(2).mean(-1) + model._unimodal_errors(means, batch.labels) + model._teacher_sigma(batch).pow(2)
        energy = (per * valid).sum(0) / valid.sum(0)
    return float(sum((energy[a] - energy[b]) ** 2 for a in range(3) for b in range(a + 1, 3)))


def test_energy_equilibrium_shrinks_the_energy_gaps(tiny_dataset: MSADataset) -> None:
    """Training on EMC alone brings the modalities' energies together (not merely the
    gradient-norm penalty, switched off here, down); with `emc_weight` 0 there is no such loss."""
    batch = tiny_dataset.split("train").batch(range(24))
    model = _model(tiny_dataset, stage1_epochs=0, emc_weight=1.0, grad_penalty=0.0).train()
    model.on_epoch_start(1, 10)
    before = _energy_gap(model, batch)
    _train_only(model, batch, "emc", 30)
    assert _energy_gap(model, batch) < 0.5 * before
    assert "emc" not in _model(tiny_dataset, stage1_epochs=0, emc_weight=0.0).train()(batch).aux_losses


def test_feature_energy_reads_the_mean_square_or_the_squared_norm(tiny_dataset: MSADataset) -> None:
    """The α term of E_m is mean_h z_m² by default and ‖z_m‖² = H × that with `feature_energy=norm`
    (the same weights: the label-free per-sample energy minus its σ² part differs by H)."""
    batch = tiny_dataset.split("test").batch(range(8))
    with torch.no_grad():
        mean_out = _model(tiny_dataset).eval()(batch).explanations
        norm_out = _model(tiny_dataset, feature_energy="norm").eval()(batch).explanations
    var = mean_out["unimodal_log_var"].exp()
    torch.testing.assert_close(norm_out["energy"] - var, 16 * (mean_out["energy"] - var))
    with pytest.raises(ConfigError, match="feature_energy must be 'mean' or 'norm'"):
        _model(tiny_dataset, feature_energy="max")


def test_unimodal_mse_does_not_scale_an_unsure_experts_mean_gradient_down(tiny_dataset: MSADataset) -> None:
    """With `unimodal_loss=nll` the gradient reaching an expert's mean is divided by its σ², so an
    unsure (weak) modality learns slowly; with "mse" (the source's squared error) or "l1" it is not,
    and the variance head is still trained (by the NLL on the detached mean)."""
    batch = tiny_dataset.split("train").batch(range(24))

    def audio_grads(loss: str) -> tuple[float, float]:
        model = _model(tiny_dataset, unimodal_loss=loss).train()
        with torch.no_grad():  # an unsure audio expert: σ² = e^4
            model.experts["audio"].log_var_layer.bias.fill_(4.0)
            model.experts["audio"].log_var_layer.weight.zero_()
        model(batch).aux_losses["unimodal"].backward()
        head = model.experts["audio"]
        return float(head.mean_layer.weight.grad.norm()), float(head.log_var_layer.bias.grad.norm())

    nll_mean, nll_var = audio_grads("nll")
    for point in ("mse", "l1"):
        point_mean, point_var = audio_grads(point)
        assert point_mean > 10 * nll_mean, (point, point_mean, nll_mean)
        assert point_var > 0 and nll_var > 0
    with pytest.raises(ConfigError, match="unimodal_loss must be 'nll', 'mse' or 'l1'"):
        _model(tiny_dataset, unimodal_loss="huber")


def test_trust_grad_distill_leaves_the_fusion_weights_to_the_teacher(tiny_dataset: MSADataset) -> None:
    """With `trust_grad=distill` the task loss sends no gradient to the trust logits (the fusion
    weights are set by IMTD alone); with "task" (default) it does. IMTD trains them in both."""
    batch = tiny_dataset.split("train").batch(range(24))
    grads = {}
    for mode in ("task", "distill"):
        model = _model(tiny_dataset, stage1_epochs=0, trust_grad=mode).train()
        model.on_epoch_start(1, 10)
        out = model(batch)
        task = model.task_loss(out.prediction, batch.labels)
        (g_task,) = torch.autograd.grad(task, model.trust.weight, retain_graph=True, allow_unused=True)
        (g_imtd,) = torch.autograd.grad(out.aux_losses["imtd"], model.trust.weight)
        grads[mode] = (0.0 if g_task is None else float(g_task.norm()), float(g_imtd.norm()))
    assert grads["task"][0] > 1e-4 and grads["distill"][0] == 0.0, grads
    assert grads["task"][1] > 0 and grads["distill"][1] > 0, grads
    with pytest.raises(ConfigError, match="trust_grad must be 'task' or 'distill'"):
        _model(tiny_dataset, trust_grad="none")


def _energy_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs of `_equilibrium` for 6 samples x 3 modalities: zero encodings (no feature term), every
    modality valid, and expert errors and uncertainties rising from text to visual."""
    z = torch.zeros(6, 3, 4, requires_grad=True)
    valid = torch.ones(6, 3)
    errors = torch.tensor([0.1, 0.2, 0.4]).repeat(6, 1)
    u = torch.tensor([0.05, 0.1, 0.3]).repeat(6, 1)
    return z, valid, errors, u


def test_relative_energy_gap_is_scale_free(tiny_dataset: MSADataset) -> None:
    """`emc_gap=relative` divides the energies by their detached mean before the gaps: scaling
    every energy by k leaves the loss unchanged (the raw gap grows by k²), and the gradient on the
    energies does not shrink with their scale."""
    z, valid, errors, u = _energy_inputs()
    out = {}
    for gap in ("raw", "relative"):
        model = _model(tiny_dataset, emc_gap=gap, alpha=0.0, grad_penalty=0.0)
        for k in (1.0, 0.01):
            e = (errors * k).requires_grad_(True)
            loss = model._equilibrium(z, e, u * k, valid)
            (g,) = torch.autograd.grad(loss, e)
            out[gap, k] = (float(loss.detach()), float(g.abs().sum()))
    assert out["relative", 0.01][0] == pytest.approx(out["relative", 1.0][0], rel=1e-4)
    assert out["raw", 0.01][0] == pytest.approx(out["raw", 1.0][0] * 1e-4, rel=1e-4)
    assert out["relative", 0.01][1] > 10 * out["relative", 1.0][1]  # the pull grows as 1/k
    assert out["raw", 0.01][1] < 0.1 * out["raw", 1.0][1]
    with pytest.raises(ConfigError, match="emc_gap must be 'raw' or 'relative'"):
        _model(tiny_dataset, emc_gap="log")


def test_term_normalised_energy_ranks_the_weak_modality_highest(tiny_dataset: MSADataset) -> None:
    """The measured case on synthetic:imbalanced: the feature term (10x the others) is lowest for
    the modality whose loss and uncertainty are highest. As measured, that modality has the lowest
    energy and the equilibrium pushes its loss UP; with `energy_norm=term` each term is divided by
    its mean over the modalities, the weak modality has the highest energy and its loss is pushed
    down. Rescaling one term leaves the term-normalised loss unchanged."""
    feature = torch.tensor([1.8, 1.8, 1.0]).sqrt()  # mean z² 1.8 / 1.8 / 1.0 (text / audio / visual)
    valid = torch.ones(6, 3)
    errors = torch.tensor([0.11, 0.17, 0.22]).repeat(6, 1)
    u = torch.tensor([0.11, 0.14, 0.27]).repeat(6, 1)
    out = {}
    for norm in ("none", "term"):
        model = _model(tiny_dataset, energy_norm=norm, grad_penalty=0.0)
        for k in (1.0, 4.0):
            z = (feature * k).view(1, 3, 1).expand(6, 3, 4).clone().requires_grad_(True)
            e = errors.clone().requires_grad_(True)
            loss = model._equilibrium(z, e, u, valid)
            (g,) = torch.autograd.grad(loss, e)
            out[norm, k] = (float(loss.detach()), g.sum(0))
    assert out["none", 1.0][1][2] < 0  # as measured: descent raises the visual loss
    assert out["term", 1.0][1][2] > 0 and out["term", 1.0][1][0] < 0  # visual's loss down, text's up
    assert out["term", 4.0][0] == pytest.approx(out["term", 1.0][0], rel=1e-5)  # 16x the feature term
    assert out["none", 4.0][0] > 10 * out["none", 1.0][0]
    with pytest.raises(ConfigError, match="energy_norm must be 'none' or 'term'"):
        _model(tiny_dataset, energy_norm="log")


def test_high_pull_lowers_the_higher_energies_and_never_raises_a_loss(tiny_dataset: MSADataset) -> None:
    """`emc_pull=high`: each gap trains only its higher-energy side, so the lowest-energy modality
    (text here) gets no gradient and no modality is pushed to a higher loss; the source's two-sided
    gap raises text's loss (a negative gradient on it)."""
    z, valid, errors, u = _energy_inputs()
    grads = {}
    for pull in ("both", "high"):
        model = _model(tiny_dataset, emc_pull=pull, alpha=0.0, grad_penalty=0.0)
        e = errors.clone().requires_grad_(True)
        (grads[pull],) = torch.autograd.grad(model._equilibrium(z, e, u, valid), e)
    both, high = grads["both"].sum(0), grads["high"].sum(0)
    assert both[0] < 0 and high[0] == 0  # text: raised by the two-sided gap, left alone by "high"
    assert (high[1:] > 0).all()  # audio and visual are pulled down toward text
    assert high[2] > high[1]  # the farthest from text is pulled hardest
    with pytest.raises(ConfigError, match="emc_pull must be 'both' or 'high'"):
        _model(tiny_dataset, emc_pull="low")


def test_detached_feature_term_ranks_but_cannot_be_shrunk_to_close_a_gap(tiny_dataset: MSADataset) -> None:
    """`emc_feature=detached`: the feature term still enters the energies (the loss is the same), but
    the gap sends no gradient into z through it, so a modality cannot lower its energy by shrinking
    its representation; with the source's reading it does (a nonzero gradient on z)."""
    z0 = torch.tensor([1.3, 0.3, 0.5]).view(1, 3, 1).expand(6, 3, 4).clone()
    valid = torch.ones(6, 3)
    errors = torch.tensor([0.1, 0.4, 0.3]).repeat(6, 1)
    u = torch.tensor([0.1, 0.5, 0.3]).repeat(6, 1)
    out = {}
    for feature in ("grad", "detached"):
        model = _model(tiny_dataset, emc_feature=feature, energy_norm="term", emc_pull="high", grad_penalty=0.0)
        z = z0.clone().requires_grad_(True)
        e = errors.clone().requires_grad_(True)
        loss = model._equilibrium(z, e, u, valid)
        gz, ge = torch.autograd.grad(loss, (z, e), allow_unused=True)
        out[feature] = (float(loss.detach()), 0.0 if gz is None else float(gz.abs().sum()), ge.sum(0))
    assert out["detached"][0] == pytest.approx(out["grad"][0])  # the same energies
    assert out["grad"][1] > 0 and out["detached"][1] == 0
    assert out["detached"][2][1] > 0  # audio, the highest energy, closes its gap by lowering its loss
    with pytest.raises(ConfigError, match="emc_feature must be 'grad' or 'detached'"):
        _model(tiny_dataset, emc_feature="none")


def test_cross_modal_enhancement_lets_other_modalities_rebuild_each_one(tiny_dataset: MSADataset) -> None:
    """With CCE a modality's representation z_m carries the others' shared parts (changing
    the visual input moves z_text); without it z_text depends on the text alone."""
    batch = tiny_dataset.split("test").batch(range(12))
    visual = torch.randn_like(batch.features["visual"]) * batch.masks["visual"].unsqueeze(-1)
    changed = type(batch)(**{**batch.__dict__, "features": {**batch.features, "visual": visual}})
    for cce in (True, False):
        model = _model(tiny_dataset, use_cce=cce).eval()
        with torch.no_grad():
            moved = (model(batch).features["text"] - model(changed).features["text"]).abs().max() > 1e-5
        assert bool(moved) == cce
    loss = _model(tiny_dataset).train()(batch).aux_losses
    assert {"msd", "cce", "unimodal"} <= set(loss)


# ---- bad input -----------------------------------------------------------------------------------


def _grad_into(model: torch.nn.Module, loss: torch.Tensor, module: torch.nn.Module) -> float:
    grads = torch.autograd.grad(loss, list(module.parameters()), retain_graph=True, allow_unused=True)
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def test_own_enhance_grad_keeps_each_experts_error_and_energy_on_its_own_encoder(tiny_dataset: MSADataset) -> None:
    """`enhance_grad="own"`: the experts read the same z_m (same forward), but their loss and the
    energy gaps no longer reach the generator of the other modalities' rebuilt parts; the fused
    task loss still trains through the enhancement."""
    batch = tiny_dataset.split("train").batch(range(16))
    reach = {}
    for mode in ("all", "own"):
        model = _model(tiny_dataset, stage1_epochs=0, enhance_grad=mode, grad_penalty=0.0).train()
        model.on_epoch_start(1, 10)
        out = model(batch)
        reach[mode] = {
            "prediction": out.prediction.detach(),
            "unimodal": _grad_into(model, out.aux_losses["unimodal"], model.generator),
            "emc": _grad_into(model, out.aux_losses["emc"], model.generator),
            "task": _grad_into(model, model.task_loss(out.prediction, batch.labels), model.generator),
        }
    torch.testing.assert_close(reach["own"]["prediction"], reach["all"]["prediction"])  # same forward
    for key in ("unimodal", "emc"):
        assert reach["all"][key] > 0 and reach["own"][key] == 0, (key, reach)
    assert reach["own"]["task"] > 0 and reach["all"]["task"] > 0


def _trainer(dataset: MSADataset, out: Path, **overrides: object) -> Trainer:
    return Trainer(
        "ebmc",
        dataset,
        model_overrides={"hidden_dim": 16, "encoder": "mean", **overrides},
        train_config=train_config_from({"seeds": (1,), "epochs": 1, "progress": False, "tensorboard": False}),
        out_dir=out,
    )


def test_teacher_checkpoint_of_another_model_or_shape_is_refused(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    torch.manual_seed(0)
    other = create_model("late_fusion", **{**tiny_dataset.info.model_overrides(), "hidden_dim": 16})
    save_checkpoint(tmp_path / "lf", other)
    with pytest.raises(ConfigError, match=r"teacher_checkpoint .*'late_fusion' model, not 'ebmc'"):
        _trainer(tiny_dataset, tmp_path / "run1", teacher_checkpoint=str(tmp_path / "lf")).fit()
    assert not (tmp_path / "run1" / "results.json").exists()
    assert not (tmp_path / "run1" / "seed1" / "best").exists()

    wide = create_model("ebmc", **{**tiny_dataset.info.model_overrides(), "hidden_dim": 32, "encoder": "mean"})
    save_checkpoint(tmp_path / "wide", wide)
    with pytest.raises(ConfigError, match=r"teacher_checkpoint .* hidden_dim=32, the student has 16"):
        _trainer(tiny_dataset, tmp_path / "run2", teacher_checkpoint=str(tmp_path / "wide")).fit()

    good = create_model("ebmc", **{**tiny_dataset.info.model_overrides(), "hidden_dim": 16, "encoder": "mean"})
    save_checkpoint(tmp_path / "good", good)
    result = _trainer(tiny_dataset, tmp_path / "run3", teacher_checkpoint=str(tmp_path / "good")).fit()
    assert result.seeds[0].best_epoch == 1


def test_fewer_modalities_than_needed_is_refused(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match=r"'ebmc' needs at least 2 modalities"):
        _model(tiny_dataset, modalities=("text",))
