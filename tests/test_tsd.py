"""TSD: subspaces, the structured losses, the decoupling supervisor and SACA, each knocked out in turn."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from msakit import create_model
from msakit.data import MSADataset
from msakit.errors import ConfigError

LOSSES = {
    "align": "align_weight",
    "hsic": "hsic_weight",
    "orth": "orth_weight",
    "discriminator": "discriminator_weight",
    "decor": "decor_weight",
}


def _model(data: MSADataset, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model("tsd", **{**data.info.model_overrides(), "hidden_dim": 16, **overrides})


def test_three_kinds_of_subspace(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset)
    assert model.code_names() == ["common", "text_audio", "text_visual", "audio_visual",
                                  "private_text", "private_audio", "private_visual"]  # fmt: skip
    assert _model(tiny_dataset, use_common=False).code_names()[0] == "text_audio"
    assert all(n.startswith("private") for n in _model(tiny_dataset, use_pairwise=False).code_names()[1:])
    assert not any(n.startswith("private") for n in _model(tiny_dataset, use_private=False).code_names())
    with pytest.raises(ConfigError, match="use_common"):
        _model(tiny_dataset, use_common=False, use_pairwise=False, use_private=False)


def test_every_structured_loss_is_on_and_each_weight_knocks_it_out(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(24))
    out = _model(tiny_dataset).train()(batch)
    assert set(out.aux_losses) == set(LOSSES)
    assert all(v > 0 for v in out.aux_losses.values())
    for loss, weight in LOSSES.items():
        assert loss not in _model(tiny_dataset, **{weight: 0.0}).train()(batch).aux_losses
    assert _model(tiny_dataset).eval()(batch).aux_losses == {}


def test_pairwise_alignment_pulls_the_two_views_of_a_pair_together(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, hsic_weight=0.0, orth_weight=0.0, decor_weight=0.0, discriminator_weight=0.0).train()
    batch = tiny_dataset.split("train").batch(range(24))
    out = model(batch)
    out.aux_losses["align"].backward()
    assert model.pairwise["text_audio"][0].weight.grad.abs().sum() > 0
    assert model.common[0].weight.grad.abs().sum() > 0
    assert model.private["text"][0].weight.grad is None  # alignment never touches private codes


def test_decoupling_supervisor_learns_to_tell_subspaces_apart(tiny_dataset: MSADataset) -> None:
    model = _model(
        tiny_dataset, align_weight=0.0, hsic_weight=0.0, orth_weight=0.0, decor_weight=0.0, discriminator_weight=1.0
    )
    batch = tiny_dataset.split("train").batch(range(24))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = model.train()(batch).aux_losses["discriminator"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first  # three kinds of code, separable: cross-entropy far below log 3


def test_saca_attention_is_an_explanation_over_available_codes(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    no_audio = torch.arange(12) < 6
    batch = batch.drop_modalities(["audio"], no_audio)
    weights = model(batch).explanations["subspace_attention"]
    assert weights.shape == (12, 7)
    torch.testing.assert_close(weights.sum(1), torch.ones(12))
    names = model.code_names()
    for k, name in enumerate(names):  # codes that need audio get no attention where audio is absent
        if "audio" in name:
            assert (weights[no_audio & batch.present_mask("text"), k] == 0).all(), name
    assert weights[~no_audio].std(1).min() > 1e-4  # not uniform: SACA weighs the codes
    uniform = _model(tiny_dataset, use_saca=False).eval()(batch).explanations["subspace_attention"]
    full = ~no_audio & batch.present.all(1)
    torch.testing.assert_close(uniform[full], torch.full((int(full.sum()), 7), 1 / 7))


def test_hsic_and_orthogonality_terms_measure_the_returned_codes(tiny_dataset: MSADataset) -> None:
    from itertools import combinations

    from msakit.layers.subspace import cross_correlation, hsic, orthogonality

    split = tiny_dataset.split("train")
    full = [i for i in range(len(split)) if split.batch([i]).present.all()]
    batch = split.batch(full)
    model = _model(tiny_dataset, dropout=0.0, hsic_weight=2.0, orth_weight=3.0, decor_weight=0.5).train()
    out = model(batch)
    codes = {k.removeprefix("code_"): v for k, v in out.features.items() if k.startswith("code_")}
    private = [codes[f"private_{m}"] for m in ("text", "audio", "visual")]
    expected_hsic = sum(hsic(a, b) for a, b in combinations(private, 2))
    torch.testing.assert_close(out.aux_losses["hsic"], 2.0 * expected_hsic)
    kind = {n: "common" if n == "common" else "private" if n.startswith("private") else "pair" for n in codes}
    expected_orth = sum(orthogonality(codes[a], codes[b]) for a, b in combinations(codes, 2) if kind[a] != kind[b])
    torch.testing.assert_close(out.aux_losses["orth"], 3.0 * expected_orth)
    expected_decor = sum(cross_correlation(codes[a], codes[b]) for a, b in combinations(codes, 2) if kind[a] != kind[b])
    torch.testing.assert_close(out.aux_losses["decor"], 0.5 * expected_decor)


def _cross_cov(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)).T @ (y - y.mean(0)) / (len(x) - 1)


def test_linear_decoupler_leaves_nothing_a_linear_map_of_x_predicts() -> None:
    from msakit.layers.subspace import LinearDecoupler

    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(4, 3, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 4, generator=g) * torch.tensor([1.0, 0.5, 0.1, 2.0])
        return x, x @ mixing + 0.3 * torch.randn(n, 3, generator=g) + 1.0

    decoupler = LinearDecoupler(4, 3, momentum=0.1)
    x, y = draw(64)
    assert decoupler(x, y).equal(y)  # no statistics yet: the identity
    for _ in range(60):  # running statistics over batches of 64
        decoupler.update(*draw(64))
    x, y = draw(4000)  # held out
    out = decoupler(x, y)
    assert _cross_cov(x, y).abs().max() > 0.5
    assert _cross_cov(x, out).abs().max() < 0.05  # what x linearly predicted is gone
    torch.testing.assert_close(_cross_cov(out, out), 0.09 * torch.eye(3), atol=0.02, rtol=0)  # the noise is kept
    torch.testing.assert_close(decoupler(x[:5], y[:5]), out[:5])  # per sample, independent of the batch
    centred = decoupler(x[:64] + 3.0, y[:64], center=(x[:64] + 3.0).mean(0))  # a shifted batch, centred on itself
    torch.testing.assert_close(centred.mean(0), y[:64].mean(0))
    assert (decoupler(x[:64] + 3.0, y[:64]).mean(0) - y[:64].mean(0)).abs().max() > 1.0
    # rows marked invalid do not move the statistics
    x, y = draw(16)
    valid = torch.arange(16) < 8
    twin = LinearDecoupler(4, 3)
    twin.load_state_dict(decoupler.state_dict())
    decoupler.update(x, y, valid)
    x[8:], y[8:] = 100.0, -100.0
    twin.update(x, y, valid)
    torch.testing.assert_close(twin.weight, decoupler.weight)


@pytest.fixture(scope="module")
def larger_dataset() -> MSADataset:  # more samples than the common code is decoupled on (6 codes x 16)
    from msakit.data import SyntheticConfig, make_synthetic

    return make_synthetic(SyntheticConfig(sizes=(200, 12, 12), dims=(12, 6, 8), lengths=(7, 9, 5), seed=3))


@pytest.mark.parametrize("decouple", [True, False])
def test_structural_decoupling_makes_codes_linearly_unpredictable_from_the_common_code(
    larger_dataset: MSADataset, decouple: bool
) -> None:
    tiny_dataset = larger_dataset
    model = _model(tiny_dataset, dropout=0.5, decouple=decouple)
    split = tiny_dataset.split("train")
    batch = split.batch([i for i in range(len(split)) if split.batch([i]).present.all()])
    torch.manual_seed(1)
    out = model.train()(batch)  # first step: the statistics of this batch, from codes without dropout
    train_codes = {k: v.detach() for k, v in out.features.items() if "code_" in k}
    codes = {k.removeprefix("code_"): v.detach() for k, v in model.eval()(batch).features.items() if "code_" in k}
    assert all(not train_codes[f"code_{k}"].equal(v) for k, v in codes.items())  # dropout was on in training
    common = codes.pop("common")
    for name, code in codes.items():  # normalised cross-covariance: 0 = no linear relation at all
        leftover = (_cross_cov(common, code).norm() / code.std(0).norm() / common.std(0).norm()).item()
        assert (leftover < 0.02) if decouple else (leftover > 0.1), (name, leftover)
    assert (model.decoupler is not None) == decouple
    assert "w/o structural decoupling" in model.config.ABLATIONS


def _leftover(model, batch) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Normalised cross-covariance at eval between the common code and each other code (0 = none),
    over the samples that have the code's modalities."""
    codes = {k.removeprefix("code_"): v.detach() for k, v in model.eval()(batch).features.items() if "code_" in k}
    common, out = codes.pop("common"), {}
    for name, v in codes.items():
        ok = torch.stack([batch.present_mask(m) for m in name.removeprefix("private_").split("_")]).all(0)
        c, v = common[ok], v[ok]
        out[name] = (_cross_cov(c, v).norm() / v.std(0).norm() / c.std(0).norm()).item()
    return out


def test_epoch_end_recomputes_the_decoupling_statistics_with_the_final_weights(
    larger_dataset: MSADataset, tmp_path: Path
) -> None:
    tiny_dataset = larger_dataset
    from msakit.training import Trainer, train_config_from

    split = tiny_dataset.split("train")
    full = [i for i in range(len(split)) if split.batch([i]).present.all()]
    batch = split.batch(full)
    model = _model(tiny_dataset, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # the running statistics lag the weights they were computed with
        out = model.train()(batch)
        opt.zero_grad()
        (model.task_loss(out.prediction, batch.labels) + sum(out.aux_losses.values())).backward()
        opt.step()
    assert max(_leftover(model, batch).values()) > 0.03
    model.train().on_train_epoch_end(1, lambda: [split.batch(full[:8]), split.batch(full[8:])])
    assert max(_leftover(model, batch).values()) < 0.02
    # the one trainer calls the hook: after a fit the saved model is decoupled on its training split
    cfg = train_config_from({"epochs": 2, "seeds": (1,), "progress": False, "tensorboard": False, "lr": 0.05})
    Trainer("tsd", tiny_dataset, model_overrides={"hidden_dim": 16}, train_config=cfg, out_dir=tmp_path).fit()
    from msakit.training.checkpoint import load_checkpoint

    trained, _ = load_checkpoint(tmp_path / "seed1" / "last")
    assert max(_leftover(trained, batch).values()) < 0.02


def test_fused_vector_integrates_every_saca_token(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("test").batch(range(12))
    model = _model(tiny_dataset).eval()
    fused = model(batch).features["fused"]
    with torch.no_grad():
        assert model.integrate is not None
        model.integrate.weight.zero_()
        model.integrate.bias.zero_()
    pooled = model(batch).features["fused"]
    assert (fused - pooled).abs().max() > 1e-3  # the integration term reaches the head
    plain = _model(tiny_dataset, integrate=False)
    assert plain.integrate is None and "integrate" not in dict(plain.named_children())
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("integrate.")})
    torch.testing.assert_close(plain.eval()(batch).features["fused"], pooled)  # off = the pooled token alone
    assert "w/o token integration (pooled only)" in model.config.ABLATIONS


def test_kind_embedding_scale_rescales_the_same_draw(tiny_dataset: MSADataset) -> None:
    default, small = _model(tiny_dataset), _model(tiny_dataset, kind_init_std=0.02)
    torch.testing.assert_close(small.kind_embedding.weight, 0.02 * default.kind_embedding.weight)
    assert 0.5 < default.kind_embedding.weight.std().item() < 2.0  # PyTorch's N(0, 1) when left at 1.0
    rest = {k: v for k, v in small.state_dict().items() if not k.startswith("kind_embedding.")}
    for key, value in rest.items():  # no extra random numbers drawn: every other weight as with the default
        torch.testing.assert_close(value, default.state_dict()[key])
    batch = tiny_dataset.split("test").batch(range(8))
    assert (default.eval()(batch).prediction - small.eval()(batch).prediction).abs().max() > 1e-4  # it reaches SACA
    with pytest.raises(ConfigError, match="kind_init_std"):
        _model(tiny_dataset, kind_init_std=0.0)


def test_input_dropout_drops_input_features_in_training_only(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(16))
    plain, dropped = _model(tiny_dataset), _model(tiny_dataset, input_dropout=0.5)
    assert plain.input_dropout is None and dropped.input_dropout is not None
    dropped.load_state_dict(plain.state_dict())  # the same weights: only the dropout differs
    torch.testing.assert_close(dropped.eval()(batch).prediction, plain.eval()(batch).prediction)  # off at eval
    torch.testing.assert_close(dropped._clean_codes(batch).vectors[0], plain._clean_codes(batch).vectors[0])
    seen: list[torch.Tensor] = []
    encoder = dropped.encoders["text"]
    hook = encoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    dropped.train()(batch)
    hook.remove()
    live = batch.masks["text"].unsqueeze(-1) & (batch.features["text"] != 0)  # valid steps, nonzero features
    zeros = (seen[0] == 0)[live].float().mean().item()  # the first call is the training pass, before the clean one
    assert 0.3 < zeros < 0.7  # about half the input features dropped
    with pytest.raises(ConfigError, match="input_dropout"):
        _model(tiny_dataset, input_dropout=1.0)
