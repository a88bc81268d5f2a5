"""AMSGFN-specific behaviour; the registry-wide contract is in test_models.py."""

from __future__ import annotations

import pytest
import torch

from benchmark_module import load_benchmark
from msakit import create_model
from msakit.batch import MODALITIES, Batch
from msakit.data import MSADataset, SyntheticConfig, make_synthetic
from msakit.errors import ConfigError
from msakit.experiments import ablations_of
from msakit.models.amsgfn import AMSGFN


def _model(dataset: MSADataset, **overrides: object) -> AMSGFN:
    torch.manual_seed(0)
    model = create_model("amsgfn", **{**dataset.info.model_overrides(), "hidden_dim": 16, **overrides})
    assert isinstance(model, AMSGFN)
    return model


def test_fewer_than_two_modalities_is_a_config_error(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match=r"amsgfn.*at least 2 modalities.*\['text'\]"):
        _model(tiny_dataset, modalities=("text",))


def test_fixed_dominant_must_be_a_data_modality(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match="fixed_dominant='visual'"):
        _model(tiny_dataset, modalities=("text", "audio"), fixed_dominant="visual")


def test_explanations_scores_and_dominant(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    batch = batch.drop_modalities(["text"], torch.arange(12) < 4)  # text absent for 4 samples
    with torch.no_grad():
        out = model(batch)
    s, dom = out.modality_weights, out.explanations["dominant"]
    assert s is not None and dom.shape == (12,) and dom.dtype == torch.long
    torch.testing.assert_close(s.sum(-1), torch.ones(12))
    assert (s[~batch.present] == 0).all()
    torch.testing.assert_close(dom, s.argmax(-1))  # p = argmax s (eq. 4)
    assert batch.present[torch.arange(12), dom].all(), "an absent modality was chosen as dominant"
    assert out.aux_losses == {}  # eval mode: no contrastive losses


def test_fixed_dominant_overrides_argmax_where_present(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, fixed_dominant="audio").eval()
    batch = tiny_dataset.split("test").batch(range(12))
    batch = batch.drop_modalities(["audio"], torch.arange(12) < 3)
    with torch.no_grad():
        dom = model(batch).explanations["dominant"]
    has_audio = batch.present_mask("audio")
    assert (dom[has_audio] == MODALITIES.index("audio")).all()
    assert (dom[~has_audio] != MODALITIES.index("audio")).all()


def test_batched_fusion_equals_per_sample_forward(tiny_dataset: MSADataset) -> None:
    """Gathering the dominant/auxiliaries by index must not mix samples (no loop, same result)."""
    model = _model(tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(8))
    with torch.no_grad():
        full = model(batch)
        for i in range(8):
            one = model(tiny_dataset.split("test").batch([i]))
            torch.testing.assert_close(one.prediction, full.prediction[i : i + 1], atol=1e-5, rtol=1e-4)
            assert one.explanations["dominant"].item() == full.explanations["dominant"][i].item()


def test_training_losses_and_every_ablation_row_builds(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(16))
    rows = ablations_of("amsgfn")
    assert {"full", "w/o CCAM", "t-oriented", "v-oriented", "a-oriented", "w/o DMGF", "w/o TB", "w/o Cor"} <= set(rows)
    for label, overrides in rows.items():
        model = _model(tiny_dataset, **overrides).train()
        out = model(batch)
        expected = (
            {"align", "cor"}
            - ({"align"} if label == "w/o CCAM" else set())
            - ({"cor"} if label == "w/o Cor" else set())
        )
        assert set(out.aux_losses) == expected, label
        loss = model.task_loss(out.prediction, batch.labels) + sum(out.aux_losses.values())
        loss.backward()
        unused = [n for n, p in model.named_parameters() if p.grad is None]
        assert not unused, f"{label}: parameters without gradient {unused}"
        if label.endswith("-oriented"):
            fixed = MODALITIES.index(overrides["fixed_dominant"])  # type: ignore[arg-type]
            present = batch.present[:, fixed]
            assert (out.explanations["dominant"][present] == fixed).all()


def test_alignment_loss_falls_when_modalities_agree() -> None:
    """NT-Xent (eq. 1) is low when the modalities are the same signal, high when unrelated."""
    data = make_synthetic(SyntheticConfig(sizes=(32, 4, 4), dims=(8, 8, 8), lengths=(4, 4, 4), seed=1))
    model = _model(data, alpha=1.0, dropout=0.0).train()
    for enc in list(model.encoders.values())[1:]:  # all encoders identical
        enc.load_state_dict(model.encoders["text"].state_dict())
    for head in list(model.shared.values())[1:]:
        head.load_state_dict(model.shared["text"].state_dict())
    batch = data.split("train").batch(range(32))
    x, full = torch.randn(32, 4, 8), torch.ones(32, 4, dtype=torch.bool)
    everywhere = torch.ones(32, 3, dtype=torch.bool)
    same = Batch(dict.fromkeys(MODALITIES, x), dict.fromkeys(MODALITIES, full), everywhere, batch.labels, batch.ids)
    perm = {"text": x, "audio": x[torch.randperm(32)], "visual": x[torch.randperm(32)]}
    shuffled = Batch(perm, dict.fromkeys(MODALITIES, full), everywhere, batch.labels, batch.ids)
    assert model(same).aux_losses["align"] < 0.75 * model(shuffled).aux_losses["align"]


def test_dominance_report_counts_and_match_rate(tiny_dataset: MSADataset) -> None:
    bench = load_benchmark("amsgfn_dominance")
    model = _model(tiny_dataset)
    split = tiny_dataset.split("test")
    report = bench.dominance_report(model, split)
    assert report.n == len(split) and sum(report.counts.values()) == len(split)
    assert report.match_rate is None  # the tiny data has no single informative modality
    text = bench.format_report(report, regression=True)
    assert "Non0 Acc-2" in text and "text" in text


@pytest.mark.slow
def test_dominant_choice_matches_informative_modality() -> None:
    """On synthetic:dominant the chosen dominant modality is the informative one well above chance (1/3)."""
    bench = load_benchmark("amsgfn_dominance")
    data = make_synthetic(SyntheticConfig(one_informative=True, sizes=(600, 150, 250)), name="synthetic:dominant")
    model = bench.train_fresh(data, epochs=8, seed=1, patience=3, overrides={"hidden_dim": 32, "fusion_layers": 1})
    report = bench.dominance_report(model, data.split("test"))
    assert report.match_rate is not None and report.match_rate > 0.6, report


def test_loss_weights_and_depth_are_searched_by_tune() -> None:
    from msakit.config import SearchRange
    from msakit.tuning import search_space

    space = search_space("amsgfn")
    assert space["model.alpha"].range == SearchRange(low=0.0, high=0.5)  # α, β of eq. 19: 0 is "w/o" the loss
    assert space["model.beta"].range == SearchRange(low=0.0, high=0.5)
    assert space["model.fusion_layers"].range == SearchRange(low=1, high=3)
    assert AMSGFN.config_class().alpha == 0.1 and AMSGFN.config_class().fusion_layers == 2  # defaults unchanged
