"""TSD: subspaces, the structured losses, the decoupling supervisor and SACA, each knocked out in turn."""

from __future__ import annotations

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
