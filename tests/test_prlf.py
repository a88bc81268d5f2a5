"""PRLF: reliability from confidence and Fisher information, the dominant modality,
progressive interaction with noise suppression."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from msakit import create_model
from msakit.batch import MODALITIES
from msakit.data import MSADataset, SyntheticConfig, make_synthetic
from msakit.errors import ConfigError
from msakit.layers.reliability import ReliabilityEstimator, fisher_trace_classifier, fisher_trace_gaussian
from msakit.training import Trainer, train_config_from
from msakit.training.checkpoint import load_checkpoint
from msakit.training.trainer import predict_split


def _model(dataset: MSADataset, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("prlf", **{**dataset.info.model_overrides(), "hidden_dim": 16, "dropout": 0.0, **overrides})


# ---- the Fisher information against autograd ----------------------------------------------------


def test_fisher_trace_classifier_matches_autograd_expectation() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(5, 4)
    h = torch.randn(5, requires_grad=True)
    probs = head(h).softmax(-1)
    ref = torch.zeros(())
    for c in range(4):  # E_{y~p} ‖∇_h log p(y | h)‖²
        (g,) = torch.autograd.grad(head(h).log_softmax(-1)[c], h)
        ref = ref + probs[c].detach() * g.pow(2).sum()
    torch.testing.assert_close(fisher_trace_classifier(probs.detach(), head.weight.detach()), ref)


def test_fisher_trace_gaussian_matches_autograd_expectation() -> None:
    torch.manual_seed(0)
    mean_l, var_l = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    h = torch.randn(3)
    log_var = var_l(h)
    samples = mean_l(h).detach() + log_var.detach().mul(0.5).exp() * torch.randn(20000, 1)
    hh = h.expand(20000, 3).clone().requires_grad_(True)
    lv = var_l(hh)
    logp = -0.5 * (lv + (samples - mean_l(hh)).pow(2) / lv.exp())
    (g,) = torch.autograd.grad(logp.sum(), hh)
    mc = g.pow(2).sum(-1).mean()  # Monte-Carlo E ‖∇_h log p‖²
    exact = fisher_trace_gaussian(log_var.detach(), mean_l.weight.detach(), var_l.weight.detach())
    assert abs(float(exact) - float(mc)) < 0.05 * float(exact)


def test_reliability_estimator_gives_absent_modalities_zero() -> None:
    est = ReliabilityEstimator(2, 3)
    present = torch.tensor([[True, False, True], [False, True, False]])
    _, w = est(torch.randn(2, 3, 2), present)
    assert (w[~present] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2))


# ---- bad input -----------------------------------------------------------------------------------


def test_fewer_modalities_than_needed_and_bad_fields_are_refused(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match=r"'prlf' needs at least 2 modalities"):
        _model(tiny_dataset, modalities=("text",))
    with pytest.raises(ConfigError, match=r"prlf.*cues"):
        _model(tiny_dataset, cues="vibes")
    with pytest.raises(ConfigError, match=r"prlf.*fixed_dominant"):
        _model(tiny_dataset, modalities=("text", "audio"), fixed_dominant="visual")


# ---- named components ------------------------------------------------------------------------------


def _dominant_match_rate(model: torch.nn.Module, data: MSADataset) -> float:
    hits = total = 0
    for out, batch in predict_split(model, data.split("test")):  # type: ignore[arg-type]
        hits += int((out.explanations["dominant"] == batch.targets["informative"]).sum())
        total += batch.size
    return hits / total


def test_dominant_choice_finds_the_informative_modality(tmp_path: Path) -> None:
    """On synthetic `dominant` (one informative modality per sample, the others noise) AMRE's
    dominant modality matches the informative one well above chance (1/3); with AMRE off the
    dominant is always text, so the rate falls to about a third (the knockout)."""
    data = make_synthetic(SyntheticConfig(one_informative=True, sizes=(300, 60, 150), seed=1), name="dominant")
    trainer = Trainer(
        "prlf",
        data,
        model_overrides={"hidden_dim": 32, "encoder": "mean", "steps": 1},
        train_config=train_config_from(
            {"seeds": (1,), "epochs": 12, "patience": 12, "lr": 3e-3, "progress": False, "tensorboard": False}
        ),
        out_dir=tmp_path,
    )
    result = trainer.fit()
    model, _ = load_checkpoint(result.seeds[0].checkpoint)
    rate = _dominant_match_rate(model, data)
    assert rate > 0.6, rate
    off = create_model("prlf", **{**data.info.model_overrides(), "use_amre": False})
    assert _dominant_match_rate(off, data) < 0.45


def test_prog_interact_aligns_to_the_dominant(tiny_dataset: MSADataset) -> None:
    """With interaction steps the other modalities' representation depends on the dominant's
    content; with `steps` = 0 it does not (the knockout)."""
    batch = tiny_dataset.split("test").batch(range(12))
    for steps in (2, 0):
        model = _model(tiny_dataset, steps=steps, fixed_dominant="text").eval()
        text = torch.randn_like(batch.features["text"]) * batch.masks["text"].unsqueeze(-1)
        changed = type(batch)(**{**batch.__dict__, "features": {**batch.features, "text": text}})
        with torch.no_grad():
            a, b = model(batch).features["aligned"], model(changed).features["aligned"]
        moved = (a - b).abs().max() > 1e-4
        assert moved == (steps > 0)


def test_noise_suppression_gates_less_reliable_modalities(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("test").batch(range(12))
    with torch.no_grad():
        on = _model(tiny_dataset).eval()(batch).explanations["suppression"]
        off = _model(tiny_dataset, suppress=False).eval()(batch).explanations["suppression"]
    assert (on <= 1 + 1e-6).all() and (on[on > 0] < 1 - 1e-3).any()
    assert ((off == 1) | (off == 0)).all()


def test_reliability_reads_the_recognisers_confidence(tiny_dataset: MSADataset) -> None:
    """Making the audio recogniser less confident changes the reliability scores for every
    cue setting; with AMRE off the scores are uniform regardless."""
    batch = tiny_dataset.split("test").batch(range(12))
    audio = MODALITIES.index("audio")
    for overrides, reacts in (
        ({"cues": "both"}, True),
        ({"cues": "confidence"}, True),
        ({"cues": "fisher"}, True),
        ({"use_amre": False}, False),
    ):
        model = _model(tiny_dataset, **overrides).eval()
        with torch.no_grad():
            before = model(batch).explanations["reliability"]
            model.experts["audio"].log_var_layer.bias.add_(4.0)
            after = model(batch).explanations["reliability"]
        has = batch.present[:, audio]
        assert ((before - after).abs()[has].max() > 1e-4) == reacts, overrides
