"""TeCaFN: hard-negative mining (Algorithm 1), the replacement gate (Table 2), centre choice."""

from __future__ import annotations

import pytest
import torch

from msakit import Batch, create_model
from msakit.data import MSADataset
from msakit.errors import ConfigError
from msakit.models.tecafn import TeCaFNConfig, mine_hard_negatives, replacement_gate


def _model(dataset: MSADataset, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model("tecafn", **{**dataset.info.model_overrides(), "hidden_dim": 16, **overrides})


# ---- Algorithm 1 ------------------------------------------------------------------------


def test_mining_picks_the_most_similar_other_samples() -> None:
    sim = torch.tensor(
        [
            [1.0, 0.2, 0.9, 0.5],
            [0.1, 1.0, 0.3, 0.8],
            [0.7, 0.6, 1.0, 0.0],
            [0.4, 0.9, 0.95, 1.0],
        ]
    )
    idx, valid = mine_hard_negatives(sim, num=2)
    assert valid.all()
    assert [set(r) for r in idx.tolist()] == [{2, 3}, {3, 2}, {0, 1}, {2, 1}]
    assert idx[0, 0] == 2 and idx[3, 0] == 2  # ordered by similarity, highest first


def test_batch_smaller_than_num_plus_one_never_returns_self() -> None:
    sim = torch.randn(3, 3)
    idx, valid = mine_hard_negatives(sim, num=5)
    assert idx.shape == (3, 3)
    assert valid.sum(1).tolist() == [2, 2, 2]  # only the two other samples are valid
    own = torch.arange(3)[:, None].expand_as(idx)
    assert not (valid & (idx == own)).any()
    # a batch of one has no hard negative at all, and the gate keeps the sample
    idx1, valid1 = mine_hard_negatives(torch.ones(1, 1), num=3)
    assert not valid1.any()
    chosen, paired = replacement_gate(idx1, valid1, p=1.0)
    assert chosen.tolist() == [0] and paired.tolist() == [1]


def test_sample_with_no_valid_hard_negative_stays_paired() -> None:
    # only sample 0 has the partner modality: sample 0 has no candidate but itself
    sim = torch.rand(4, 4)
    idx, valid = mine_hard_negatives(sim, num=3, candidates=torch.tensor([True, False, False, False]))
    assert not valid[0].any()
    assert valid[1:].sum(1).tolist() == [1, 1, 1]
    chosen, paired = replacement_gate(idx, valid, p=1.0)
    assert chosen.tolist() == [0, 0, 0, 0]
    assert paired.tolist() == [1, 0, 0, 0]


def test_replacement_with_the_same_sample_is_labelled_paired() -> None:
    own = torch.arange(5)
    idx = torch.stack([own, (own + 1) % 5], dim=1)  # slot 0 is the sample itself
    valid = torch.tensor([[True, False]] * 5)  # ... and is the only valid slot
    chosen, paired = replacement_gate(idx, valid, p=1.0)
    assert torch.equal(chosen, own)
    assert paired.tolist() == [1] * 5


def test_table2_pseudo_targets() -> None:
    torch.manual_seed(0)
    b, p = 20_000, 0.3
    own = torch.arange(b)[:, None]
    idx = (own + torch.randint(1, b, (b, 3))) % b  # three hard negatives per sample, never itself
    valid = torch.ones(b, 3, dtype=torch.bool)
    _, visual = replacement_gate(idx, valid, p)
    _, audio = replacement_gate(idx, valid, p)
    expected = {(1, 1): (1 - p) ** 2, (0, 1): p * (1 - p), (1, 0): (1 - p) * p, (0, 0): p**2}
    for (v, a), prob in expected.items():
        freq = ((visual == v) & (audio == a)).float().mean().item()
        assert abs(freq - prob) < 0.015, ((v, a), freq, prob)
    # p = 0 never replaces; p = 1 always replaces when a hard negative exists
    assert replacement_gate(idx[:50], valid[:50], 0.0)[1].eq(1).all()
    assert replacement_gate(idx[:50], valid[:50], 1.0)[1].eq(0).all()


# ---- the model --------------------------------------------------------------------------


def test_training_forward_exposes_consistent_pseudo_targets(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, p=1.0, num=2).train()
    batch = tiny_dataset.split("train").batch(range(16))
    out = model(batch)
    for m in ("audio", "visual"):
        partner, paired = out.explanations[f"partner_{m}"], out.explanations[f"paired_{m}"]
        assert torch.equal(paired, (partner == torch.arange(batch.size)).long())
        can_swap = batch.present_mask("text") & (batch.present_mask(m).sum() > 1)
        assert (paired[can_swap] == 0).all()  # p = 1: every sample with a candidate is swapped
        assert batch.present_mask(m)[partner[~paired.bool()]].all()  # never swapped for an absent partner
    assert set(out.aux_losses) == {"tcon", "ap", "bicon"}


def test_only_one_sample_has_audio(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, p=1.0).train()
    batch = tiny_dataset.split("train").batch(range(6))
    batch = batch.drop_modalities(["audio"], torch.arange(6) != 0)
    out = model(batch)
    assert torch.isfinite(out.prediction).all()
    assert all(torch.isfinite(v) for v in out.aux_losses.values())
    assert out.explanations["paired_audio"][0] == 1  # nobody to swap with
    text = batch.present_mask("text")
    assert (out.explanations["partner_audio"][1:][text[1:]] == 0).all()


def test_batch_of_one_in_training(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, p=1.0).train()
    out = model(tiny_dataset.split("train").batch([0]))
    assert torch.isfinite(out.prediction).all()
    assert out.explanations["paired_audio"].tolist() == [1]
    (out.prediction.sum() + sum(out.aux_losses.values())).backward()


def test_eval_has_no_gate_and_output_is_bounded(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, p=1.0).eval()
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(1000.0)
    batch = tiny_dataset.split("test").batch(range(12))
    with torch.no_grad():
        out = model(batch)
    assert not out.aux_losses
    assert not any(k.startswith("paired_") for k in out.explanations)
    assert out.prediction.abs().max() <= model.config.label_range
    assert out.prediction.abs().max() > 2.5  # saturated tanh: the bound is the label range


def test_missing_centre_is_a_clear_config_error(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match=r"centre=audio or centre=visual"):
        _model(tiny_dataset, modalities=("audio", "visual"))
    with pytest.raises(ConfigError, match=r"centre=text or centre=audio"):
        _model(tiny_dataset, centre="visual", modalities=("text", "audio"))
    with pytest.raises(ConfigError, match=r"centre must be one of"):
        _model(tiny_dataset, centre="speech")


@pytest.mark.parametrize("centre", ["audio", "visual"])
def test_audio_and_vision_centred_variants(tiny_dataset: MSADataset, centre: str) -> None:
    model = _model(tiny_dataset, centre=centre).train()
    batch = tiny_dataset.split("train").batch(range(16))
    out = model(batch)
    assert set(model.partners) == {"text", "audio", "visual"} - {centre}
    assert centre in out.features and torch.isfinite(out.prediction).all()
    # no text at all: a vision-centred model on audio + visual data
    sub = Batch(
        features={m: batch.features[m] for m in ("audio", "visual")},
        masks={m: batch.masks[m] for m in ("audio", "visual")},
        present=batch.present & torch.tensor([False, True, True]),
        labels=batch.labels,
        ids=batch.ids,
    )
    two = _model(tiny_dataset, centre=centre, modalities=("audio", "visual")).train()
    assert torch.isfinite(two(sub).prediction).all()


def test_every_ablation_row_builds_and_switches_its_losses(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(16))
    for label, overrides in TeCaFNConfig.ABLATIONS.items():
        model = _model(tiny_dataset, **overrides).train()
        out = model(batch)
        assert torch.isfinite(out.prediction).all(), label
        has_two = len(model.partners) == 2
        assert ("bicon" in out.aux_losses) == (has_two and model.config.use_bicon), label
        assert ("tcon" in out.aux_losses) == any(m in model.config.contrast_with for m in model.partners), label
        assert ("ap" in out.aux_losses) == any(m in model.config.replace_in for m in model.partners), label
    assert _model(tiny_dataset, ignore_modalities=("audio", "visual")).partners == ()
