"""QA-MoE and its shared blocks: label-free uncertainty, uncertainty-guided routing, the spectrum."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from msakit import create_model
from msakit.batch import masked_mean, modality_index
from msakit.data import MSADataset, make_synthetic
from msakit.data.synthetic import SyntheticConfig
from msakit.errors import ConfigError
from msakit.layers import MixtureOfExperts, gaussian_nll
from msakit.robustness.perturbations import RobustnessError, Spectrum, bind, create_perturbation


def _model(dataset: MSADataset, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("qa_moe", **{**dataset.info.model_overrides(), "hidden_dim": 16, "dropout": 0.0, **overrides})


# ---- shared blocks ----------------------------------------------------------------------------


def test_moe_top_k_gates_are_sparse_and_normalised() -> None:
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, num_experts=4, top_k=2)
    out = moe(torch.randn(5, 3, 8))
    assert out.output.shape == (5, 3, 8)
    assert ((out.gates > 0).sum(-1) == 2).all()
    torch.testing.assert_close(out.gates.sum(-1), torch.ones(5, 3))
    dense = MixtureOfExperts(8, num_experts=4, top_k=0)(torch.randn(5, 8))
    assert (dense.gates > 0).all()


def test_moe_bias_moves_routing_and_balance_loss_is_switch_definition() -> None:
    torch.manual_seed(0)
    moe = MixtureOfExperts(4, num_experts=3, top_k=1)
    x = torch.randn(64, 4)
    pushed = moe(x, bias=torch.tensor([0.0, 0.0, 50.0]).expand(64, 3))
    assert (pushed.gates.argmax(-1) == 2).all()  # a large bias routes every token to expert 2
    # all tokens on one expert with probability ~1: E·Σ f_e·P_e = 3·1·1
    assert math.isclose(float(pushed.balance_loss), 3.0, rel_tol=1e-3)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.bias.zero_()
    uniform = moe(x)  # ties pick expert 0 as top-1, P_e = 1/3 each: 3·(1·1/3) = 1
    assert math.isclose(float(uniform.balance_loss), 1.0, rel_tol=1e-5)


def test_gaussian_nll_matches_torch_reference() -> None:
    torch.manual_seed(0)
    mean, log_var, target = torch.randn(6, 3), torch.randn(6, 3), torch.randn(6, 3)
    ref = torch.nn.functional.gaussian_nll_loss(mean, target, log_var.exp(), full=False)
    torch.testing.assert_close(gaussian_nll(mean, log_var, target), ref)


# ---- the spectrum and bad input ------------------------------------------------------------------


@pytest.mark.parametrize("level", [-0.1, 1.5, float("nan")])
def test_spectrum_level_outside_unit_interval_is_refused_naming_the_field(level: float) -> None:
    with pytest.raises(RobustnessError, match=r"strength must be in \[0, 1\]"):
        create_perturbation("spectrum", strength=level)
    with pytest.raises(RobustnessError, match=r"max_strength must be in \[0, 1\]"):
        Spectrum(max_strength=level)


def test_bad_config_names_the_field(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match=r"qa_moe.*self_corrupt"):
        _model(tiny_dataset, self_corrupt=1.5)
    with pytest.raises(ConfigError, match=r"qa_moe.*guidance"):
        _model(tiny_dataset, guidance="sometimes")


# ---- the model's named components ---------------------------------------------------------------


def _train_on_ssl_alone(model: torch.nn.Module, batch: object, *, steps: int) -> None:
    """Adam on the encoders and uncertainty heads with the label-free SSL loss only; leaves eval mode."""
    params = [p for n, p in model.named_parameters() if n.startswith(("encoders", "uncertainty"))]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        loss = model(batch).aux_losses["ssl_uncertainty"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_self_supervised_uncertainty_ignores_labels_reconstructs_and_rises_with_degradation(
    tiny_dataset: MSADataset,
) -> None:
    """The SSL objective is label-free; trained on it alone, the head's mean reconstructs the
    clean view (fails when the objective's target carries no information, e.g. zeros) and
    its predicted variance is higher on a degraded view than on the clean one."""
    model = _model(tiny_dataset, ssl_weight=1.0)
    batch = tiny_dataset.split("train").batch(range(24))
    shuffled = type(batch)(**{**batch.__dict__, "labels": batch.labels.flip(0)})
    torch.manual_seed(1)
    a = model(batch).aux_losses["ssl_uncertainty"]
    torch.manual_seed(1)
    b = model(shuffled).aux_losses["ssl_uncertainty"]
    torch.testing.assert_close(a, b)

    _train_on_ssl_alone(model, batch, steps=40)
    degraded = bind(Spectrum(strength=0.9), seed=0)(batch)
    with torch.no_grad():
        clean_u = model(batch).explanations["log_uncertainty"].mean()
        out = model(degraded)
        # what the head reconstructs on the clean view, against the target the objective defines
        encoded = [model.encoders[m](batch.features[m], batch.masks[m]) for m in model.modalities]
        heads = model._uncertainty_heads(batch, encoded)
        r2 = []
        for m, (mu, _) in zip(model.modalities, heads, strict=True):
            x = batch.features[m]
            target = masked_mean(torch.nn.functional.layer_norm(x, x.shape[-1:]), batch.masks[m])
            keep = batch.present_mask(m)
            mu = mu[keep]
            t = target[keep]
            r2.append(1 - (mu - t).pow(2).sum() / (t - t.mean(0)).pow(2).sum())
    bad_u = out.explanations["log_uncertainty"].mean()
    assert bad_u > clean_u + 0.2, (float(clean_u), float(bad_u))  # untrained head: flat (about +-0.02)
    # a zero target gives mu -> 0, so R^2 = 1 - E[t^2] / Var(t) <= 0
    assert min(float(v) for v in r2) > 0.3, [float(v) for v in r2]


def test_self_supervised_uncertainty_tracks_the_spectrum_level() -> None:
    """Trained on the SSL objective alone (self-corrupted views, s ~ U(0, 1)), the predicted log σ²
    rises with the spectrum level at every step from clean to s = 0.75, by more than 0.5 overall:
    the head reads the view's quality cues (step spread, step count). Without them (`ssl_cues`
    False, the previous head) it stays flat (a rise of about 0.17 here), since mean pooling
    removes the per-step noise and the count of dropped steps before the head."""
    data = make_synthetic(SyntheticConfig(sizes=(96, 12, 12), dims=(12, 6, 8), lengths=(12, 12, 12), seed=3))
    batch = data.split("train").batch(range(96))

    def curve(cues: bool) -> list[float]:
        model = _model(data, ssl_weight=1.0, ssl_cues=cues, encoder="mean").train()
        _train_on_ssl_alone(model, batch, steps=150)
        with torch.no_grad():
            views = [batch] + [bind(Spectrum(strength=s), seed=0)(batch) for s in (0.25, 0.5, 0.75)]
            return [float(model(v).explanations["log_uncertainty"].mean()) for v in views]

    with_cues = curve(True)
    assert all(b > a for a, b in itertools.pairwise(with_cues)), with_cues
    assert with_cues[-1] - with_cues[0] > 0.5, with_cues
    pooled_only = curve(False)
    assert pooled_only[-1] - pooled_only[0] < 0.5 * (with_cues[-1] - with_cues[0]), (pooled_only, with_cues)


@pytest.mark.parametrize("guidance", ["both", "bias", "input"])
def test_uncertainty_guides_routing_and_suppresses_the_uncertain_modality(
    tiny_dataset: MSADataset, guidance: str
) -> None:
    """Raising one modality's predicted uncertainty changes its routing; with bias guidance it
    also lowers its fusion weight. With guidance 'none' nothing moves (the knockout)."""
    batch = tiny_dataset.split("test").batch(range(12))
    audio = modality_index("audio")
    for g in (guidance, "none"):
        model = _model(tiny_dataset, guidance=g).eval()
        with torch.no_grad():
            before = model(batch)
            model.uncertainty["audio"].log_var_layer.bias.add_(6.0)
            after = model(batch)
        routing_moved = (after.explanations["routing"] - before.explanations["routing"]).abs().max() > 1e-3
        weight_drop = before.modality_weights[:, audio] - after.modality_weights[:, audio]
        has_audio = batch.present[:, audio]
        if g == "none":
            assert not routing_moved
            torch.testing.assert_close(after.modality_weights, before.modality_weights)
        else:
            assert routing_moved
            if g != "input":
                assert (weight_drop[has_audio] > 0).all()


def test_self_corruption_is_training_only(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(16))
    model = _model(tiny_dataset).train()
    torch.manual_seed(0)
    a = model(batch).prediction
    torch.manual_seed(1)
    b = model(batch).prediction
    assert not torch.allclose(a, b)  # each step sees a different point of the spectrum
    off = _model(tiny_dataset, self_corrupt=0.0).train()
    torch.testing.assert_close(off(batch).prediction, off(batch).prediction)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(batch).prediction, model(batch).prediction)


def test_explanations_carry_routing_and_uncertainty(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    with torch.no_grad():
        out = model(batch)
    assert out.explanations["routing"].shape == (12, 3, 4)
    assert out.uncertainty is not None and (out.uncertainty > 0).all()
    assert set(_model(tiny_dataset).config.ABLATIONS) >= {"full", "w/o uncertainty guidance", "w/o MoE (one expert)"}


def test_prior_slot_takes_the_weight_of_unreliable_modalities(tiny_dataset: MSADataset) -> None:
    """Raising every modality's uncertainty moves fusion weight to the prior slot and the
    prediction towards Head(p_0); with no modality present the model answers Head(p_0).
    Without the slot (the ablation) the weight has nowhere to go."""
    batch = tiny_dataset.split("test").batch(range(12))
    model = _model(tiny_dataset).eval()
    with torch.no_grad():
        model.prior_token.normal_()
        alone = model.bound_prediction(model.head(model.prior_token).unsqueeze(0))
        before = model(batch)
        for m in model.modalities:
            model.uncertainty[m].log_var_layer.bias.add_(6.0)
        after = model(batch)
        empty = model(bind(Spectrum(strength=1.0), seed=0)(batch))
    assert (after.explanations["prior_weight"] > before.explanations["prior_weight"] + 0.5).all()
    assert ((after.prediction - alone).abs() < (before.prediction - alone).abs()).all()
    torch.testing.assert_close(empty.prediction, alone.expand(12))
    off = _model(tiny_dataset, prior_slot=False).eval()
    with torch.no_grad():
        out = off(batch)
    assert (out.explanations["prior_weight"] == 0).all()
    torch.testing.assert_close(out.modality_weights.sum(1), torch.ones(12))


def test_prior_fit_trains_the_answer_without_evidence(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(24))
    model = _model(tiny_dataset).train()
    aux = model(batch).aux_losses
    alone = model.bound_prediction(model.head(model.prior_token).expand(batch.size, -1))
    torch.testing.assert_close(aux["prior_fit"], model.config.prior_fit * model.task_loss(alone, batch.labels))
    assert "prior_fit" not in _model(tiny_dataset, prior_fit=0.0).train()(batch).aux_losses


def test_self_corruption_acts_on_the_raw_input_before_the_normaliser(tiny_dataset: MSADataset) -> None:
    """The spectrum is defined (and evaluated) on raw features: the training-time corruption
    must see the raw batch, and the model must receive the normalised corrupted view plus the
    normalised clean view (the SSL target)."""
    from msakit.data.stats import dataset_stats

    model = _model(tiny_dataset).train()
    model.start_fit(dataset_stats(tiny_dataset.split("train")))
    batch = tiny_dataset.split("train").batch(range(16))
    scaled = type(batch)(**{**batch.__dict__, "features": {m: 100.0 * x for m, x in batch.features.items()}})
    seen: dict[str, object] = {}
    corrupt = model._corrupt

    def spy(b):  # type: ignore[no-untyped-def]
        seen["raw"] = b
        return corrupt(b)

    model._corrupt = spy  # type: ignore[method-assign]
    received: dict[str, object] = {}
    handle = model.register_forward_pre_hook(lambda mod, args: received.update(args=args))
    try:
        model(scaled)
    finally:
        handle.remove()
    assert seen["raw"] is scaled  # the corruption read the raw batch, not a normalised copy
    view, clean = received["args"]  # type: ignore[misc]
    assert model.input_norm is not None
    torch.testing.assert_close(clean.features["text"], model.input_norm(scaled).features["text"])
    assert view.features["text"].abs().max() <= model.input_norm.clip  # the corrupted view was normalised too


def test_input_gradients_through_the_self_corruption_are_finite(tiny_dataset: MSADataset) -> None:
    """The MLI logger's input × gradient must be finite through the training-time spectrum: its
    noise scale √(P·s/(1-s)) is a constant of the data, and at s = 0 or 1 (clean or removed)
    the gradient of √ at 0 made every input gradient NaN (qa_moe's MLI read n/a)."""
    from msakit.robustness.training import GradientNormLogger
    from msakit.training.engine import FitState

    logger = GradientNormLogger(tuple(tiny_dataset.info.modalities))
    batch = logger(tiny_dataset.split("train").batch(range(16)), torch.Generator().manual_seed(0))
    model = _model(tiny_dataset, clean_share=0.5).train()
    out = model(batch)
    (model.task_loss(out.prediction, batch.labels) + sum(out.aux_losses.values())).backward()
    logger.on_after_backward(FitState(), batch)
    assert all(math.isfinite(v) and v > 0 for k, v in logger.steps[0].items() if k != "step")
    assert math.isfinite(logger.summary()["mli"])
