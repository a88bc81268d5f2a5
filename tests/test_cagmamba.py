"""CAGMamba: dialogue context, the gated cross-modal path, the three-branch objective, bad input."""

from __future__ import annotations

import pytest
import torch

from msakit import create_model
from msakit.data import SyntheticConfig, make_synthetic
from msakit.data.synthetic import synthetic_preset
from msakit.errors import ConfigError
from msakit.registry import get_model_class


@pytest.fixture(scope="module")
def dialogue():  # type: ignore[no-untyped-def]
    config = synthetic_preset("dialogue")
    return make_synthetic(SyntheticConfig(**{**config.__dict__, "sizes": (48, 24, 24), "dims": (12, 6, 8), "seed": 2}))


def _model(data, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model("cagmamba", **{**data.info.model_overrides(), "hidden_dim": 16, "state_size": 4, **overrides})


def test_declares_it_reads_dialogue_context() -> None:
    assert get_model_class("cagmamba").capabilities.needs_dialogue_context


def test_context_changes_the_prediction_and_no_context_means_no_preceding_turns(dialogue) -> None:  # type: ignore[no-untyped-def]
    model = _model(dialogue, context_window=4).eval()
    batch = dialogue.split("test").batch(range(12))
    with_ctx = model(batch)
    bare = model(type(batch)(**{**batch.__dict__, "context": None}))
    first = batch.context.mask.sum(1) == 0  # first turns: nothing precedes them
    assert first.any() and (~first).any()
    torch.testing.assert_close(with_ctx.prediction[first], bare.prediction[first])
    assert (with_ctx.prediction[~first] - bare.prediction[~first]).abs().min() > 1e-6
    assert with_ctx.explanations["context_used"].tolist() == (~first).float().tolist()
    off = _model(dialogue, context_window=4, use_context=False).eval()
    torch.testing.assert_close(
        off(batch).prediction, off(type(batch)(**{**batch.__dict__, "context": None})).prediction
    )


def test_only_the_last_window_turns_are_read(dialogue) -> None:  # type: ignore[no-untyped-def]
    model = _model(dialogue, context_window=2).eval()
    batch = dialogue.split("test").batch(range(12))
    base = model(batch).prediction
    old, recent = batch.context.features["text"].clone(), batch.context.features["text"].clone()
    old[:, :-2] += torch.randn_like(old[:, :-2])
    recent[:, -1] += torch.randn_like(recent[:, -1])
    batch.context.features["text"] = old
    torch.testing.assert_close(model(batch).prediction, base)
    batch.context.features["text"] = recent
    has = batch.context.mask[:, -1]
    assert (model(batch).prediction[has] - base[has]).abs().max() > 1e-5


def test_gates_blend_the_cross_modal_path(dialogue) -> None:  # type: ignore[no-untyped-def]
    model = _model(dialogue).eval()
    batch = dialogue.split("test").batch(range(12))
    out = model(batch)
    gates = out.explanations["gates"]
    assert gates.shape == (12, 3) and ((gates > 0) & (gates < 1)).all()
    with torch.no_grad():
        model.gates["text"].bias.fill_(-30.0)  # a closed text gate: f_text = o_text only
    closed = model(batch)
    assert (closed.explanations["gates"][:, 0] < 1e-6).all()
    assert (closed.prediction - out.prediction).abs().max() > 1e-5
    assert "gates" not in _model(dialogue, use_gate=False).eval()(batch).explanations


def test_three_branch_objective(dialogue) -> None:  # type: ignore[no-untyped-def]
    model = _model(dialogue).train()
    batch = dialogue.split("train").batch(range(16))
    out = model(batch)
    assert set(out.aux_losses) == {"branch_text", "branch_audio"}
    out.aux_losses["branch_audio"].backward()
    assert model.branch_heads["audio"][0].weight.grad.abs().sum() > 0
    assert model.branch_heads["text"][0].weight.grad is None
    assert _model(dialogue, branch_weight=0.0).train()(batch).aux_losses == {}
    assert model.eval()(batch).aux_losses == {}


def test_input_dropout_masks_utterance_features_in_training_only(dialogue) -> None:  # type: ignore[no-untyped-def]
    model = _model(dialogue, input_dropout=0.5)
    x = dialogue.split("train").batch(range(16)).features["text"].mean(1)  # (B, D)
    encoder = model.encoders["text"]
    drop = encoder[1]
    assert isinstance(drop, torch.nn.Dropout) and drop.p == 0.5
    normed = encoder[0](x)
    assert (drop.train()(normed) == 0).float().mean() > 0.3
    torch.testing.assert_close(drop.eval()(normed), normed)


@pytest.mark.parametrize(("field", "value"), [("context_window", 0), ("context_window", -1), ("state_size", 5),
                                              ("expand", 0.01), ("branches", ("smell",))])  # fmt: skip
def test_bad_config_names_the_field(dialogue, field: str, value: object) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=field.rstrip("es") if field == "branches" else field):
        _model(dialogue, **{field: value})


@pytest.mark.slow
def test_learns_to_use_the_context_of_a_carry_over_dialogue() -> None:
    data = make_synthetic(SyntheticConfig(**{**synthetic_preset("dialogue").__dict__, "sizes": (240, 60, 60),
                                             "dims": (8, 4, 4), "lengths": (4, 4, 4)}))  # fmt: skip
    train, test = data.split("train").batch(range(240)), data.split("test").batch(range(60))
    maes = {}
    for use in (False, True):
        model = _model(data, context_window=1, use_context=use, dropout=0.0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(60):
            out = model.train()(train)
            loss = model.task_loss(out.prediction, train.labels) + sum(out.aux_losses.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            maes[use] = (model.eval()(test).prediction - test.labels).abs().mean().item()
    assert maes[True] < 0.95 * maes[False]
