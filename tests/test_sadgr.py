"""SADGR: STA-CA pretraining objective, head loading, AG-VR gate, ablation rows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit import create_model
from msakit.data import MSADataset, SyntheticConfig, make_synthetic
from msakit.data.stats import dataset_stats
from msakit.data.synthetic import PRESETS
from msakit.errors import ConfigError, DataError
from msakit.pretrain import create_objective, list_objectives
from msakit.pretrain.sta_ca import TextAudioHeads, load_heads, retrieval


def _paired(seed: int = 0, n: int = 200) -> MSADataset:
    """Text and audio both carry the label (strongly): a pair is identifiable from either side."""
    clean = dataclasses.replace(
        PRESETS["clean"], sizes=(n, 80, 80), dims=(12, 8, 6), lengths=(6, 6, 5), signal=3.0, seed=seed
    )
    return make_synthetic(clean, name="synthetic:clean")


def test_sta_ca_is_registered_and_needs_text_and_audio(tiny_dataset: MSADataset) -> None:
    assert "sta_ca" in list_objectives()
    audio_visual = make_synthetic(SyntheticConfig(sizes=(8, 4, 4), modalities=("audio", "visual")))
    with pytest.raises(ConfigError, match=r"'sta_ca'.*'text'"):
        create_objective("sta_ca").check(audio_visual)


def test_sta_ca_trains_only_heads_improves_retrieval_and_saves(tmp_path: Path) -> None:
    data = _paired()
    summary = create_objective("sta_ca", epochs=10, shared_dim=16, batch_size=32).fit(data, tmp_path, progress=False)
    before, after = summary["retrieval_before"]["valid"], summary["retrieval_after"]["valid"]
    assert after["R@5"] > before["R@5"] and after["R@5"] > 2 * after["chance_R@5"], (before, after)
    assert summary["train_loss_first_last"][1] < summary["train_loss_first_last"][0]
    state, meta = load_heads(tmp_path)
    assert (meta["text_dim"], meta["audio_dim"], meta["shared_dim"]) == (12, 8, 16)
    assert tuple(state["text.proj.weight"].shape) == (16, 12)
    assert not list(tmp_path.glob(".*.tmp")), "temporary files must be renamed into place"
    # the saved heads reproduce the reported retrieval
    heads = TextAudioHeads(12, 8, 16)
    heads.load_state_dict(state)
    assert retrieval(heads, data.split("valid"))["R@1"] == pytest.approx(after["R@1"])


def test_torn_heads_are_detected(tmp_path: Path) -> None:
    create_objective("sta_ca", epochs=1, shared_dim=8).fit(_paired(n=40), tmp_path, progress=False)
    meta = json.loads((tmp_path / "heads.json").read_text())
    meta["weights_sha256"] = "0" * 64
    (tmp_path / "heads.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="do not match"):
        load_heads(tmp_path)


def test_fine_tuning_loads_heads_and_rejects_mismatched_dims(tmp_path: Path) -> None:
    data = _paired(n=60)
    create_objective("sta_ca", epochs=2, shared_dim=16).fit(data, tmp_path, progress=False)
    model = create_model(
        "sadgr", **data.info.model_overrides(), hidden_dim=16, shared_dim=16, pretrained_heads=str(tmp_path)
    )
    model.load_pretrained()
    model.on_fit_start(dataset_stats(data.split("train")))
    state, _ = load_heads(tmp_path)
    assert model.heads is not None
    torch.testing.assert_close(model.heads.text.proj.weight, state["text.proj.weight"])
    # heads trained for 12-d text cannot drive a model whose text is 20-d: both shapes named
    wrong = create_model(
        "sadgr", **{**data.info.model_overrides(), "text_dim": 20}, shared_dim=16, pretrained_heads=str(tmp_path)
    )
    with pytest.raises(ConfigError, match=r"\(16, 12\).*\(16, 20\)"):
        wrong.load_pretrained_heads(str(tmp_path))
    with pytest.raises(DataError, match=r"heads\.json"):
        model.load_pretrained_heads(str(tmp_path / "nowhere"))


def test_visual_gate_shape_range_and_con_loss(tiny_dataset: MSADataset) -> None:
    model = create_model("sadgr", **tiny_dataset.info.model_overrides(), hidden_dim=16).train()
    batch = tiny_dataset.split("train").batch(range(16))
    out = model(batch)
    gate = out.explanations["visual_gate"]
    assert gate.shape == (16, tiny_dataset.info.dims["visual"])
    has = batch.present_mask("visual")
    assert ((gate[has] > 0) & (gate[has] < 1)).all() and (gate[~has] == 0).all()
    assert set(out.aux_losses) == {"con"}
    off = create_model("sadgr", **tiny_dataset.info.model_overrides(), hidden_dim=16, con_weight=0.0).train()
    assert off(batch).aux_losses == {}
    assert model.eval()(batch).aux_losses == {}


def test_gate_modulates_visual_and_only_through_audio(tiny_dataset: MSADataset) -> None:
    torch.manual_seed(0)
    model = create_model("sadgr", **tiny_dataset.info.model_overrides(), hidden_dim=16, dropout=0.0).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    with torch.no_grad():
        base = model(batch)
        louder = dataclasses.replace(batch, features={**batch.features, "audio": batch.features["audio"] * 3})
        moved = model(louder)
    has = batch.present_mask("visual") & batch.present_mask("audio")
    assert not torch.allclose(base.explanations["visual_gate"][has], moved.explanations["visual_gate"][has])
    # without audio the gate is 1: visual passes unmodulated
    no_audio = batch.drop_modalities(["audio"])
    with torch.no_grad():
        gate = model(no_audio).explanations["visual_gate"]
    assert (gate[batch.present_mask("visual")] == 1).all()


def test_without_visual_the_gate_branch_is_absent(tiny_dataset: MSADataset) -> None:
    overrides = {**tiny_dataset.info.model_overrides(), "modalities": ("text", "audio")}
    model = create_model("sadgr", **overrides, hidden_dim=16)
    assert not any("gate" in n or "frame_attention" in n for n, _ in model.named_parameters())
    batch = tiny_dataset.split("test").batch(range(6)).drop_modalities(["visual"])
    batch = dataclasses.replace(
        batch,
        features={m: batch.features[m] for m in ("text", "audio")},
        masks={m: batch.masks[m] for m in ("text", "audio")},
    )
    out = model.eval()(batch)
    assert "visual_gate" not in out.explanations
    assert (out.modality_weights[:, 2] == 0).all()


def test_without_text_no_contrastive_and_no_heads_allowed(tiny_dataset: MSADataset) -> None:
    overrides = {**tiny_dataset.info.model_overrides(), "modalities": ("audio", "visual")}
    model = create_model("sadgr", **overrides, hidden_dim=16).train()
    assert model.heads is None
    batch = tiny_dataset.split("train").batch(range(8))
    batch = dataclasses.replace(
        batch,
        features={m: batch.features[m] for m in ("audio", "visual")},
        masks={m: batch.masks[m] for m in ("audio", "visual")},
    )
    assert model(batch).aux_losses == {}
    with pytest.raises(ConfigError, match="pretrained_heads"):
        create_model("sadgr", **overrides, pretrained_heads="/tmp/x")


def test_ablation_rows_build_and_differ(tiny_dataset: MSADataset) -> None:
    from msakit.experiments import ablations_of

    rows = ablations_of("sadgr")
    assert {"w/o pre-train", "w/o T-A contrastive", "w/o A-V gated", "gate -> cross-attention"} <= set(rows)
    batch = tiny_dataset.split("train").batch(range(8))
    names = {}
    for label, row in rows.items():
        model = create_model("sadgr", **tiny_dataset.info.model_overrides(), hidden_dim=16, **row).train()
        out = model(batch)
        names[label] = {n.split(".")[0] for n, _ in model.named_parameters()}
        assert torch.isfinite(out.prediction).all()
    assert "gate" not in names["w/o A-V gated"] and "frame_attention" not in names["w/o A-V gated"]
    assert "cross_attention" in names["gate -> cross-attention"] and "gate" not in names["gate -> cross-attention"]
    with pytest.raises(ConfigError, match="visual_refine"):
        create_model("sadgr", **tiny_dataset.info.model_overrides(), visual_refine="film")


@pytest.mark.slow
def test_gate_opens_more_when_audio_is_emotionally_strong(tmp_path: Path) -> None:
    """Audio and video carry the sentiment with amplitude |y| (text is noise): after a short
    training, the mean visual gate over 3 seeds is larger on |y| ≥ 2 than on |y| ≤ 0.5.

    On the `audio` preset proper, where the video is pure noise, the direction holds for
    2 of 3 seeds only (docs/models/sadgr.md), so it is not asserted there.
    """
    from msakit.training.checkpoint import load_checkpoint
    from msakit.training.trainer import Trainer, train_config_from

    roles = {"text": (0.0, 1.0, 0.0, 0.0), "audio": (1.0, 0.0, 0.0, 0.0), "visual": (1.0, 0.0, 0.0, 0.0)}
    data = make_synthetic(
        dataclasses.replace(PRESETS["audio"], sizes=(300, 100, 200), role_probs=roles), name="synthetic:audio+visual"
    )
    test = data.split("test")
    batch = test.batch(range(len(test)))
    strength = np.abs(batch.labels.numpy())
    gaps = []
    for seed in (1, 2, 3):
        trainer = Trainer(
            "sadgr",
            data,
            model_overrides={"hidden_dim": 32},
            train_config=train_config_from(
                {"epochs": 10, "patience": 100, "seeds": (seed,), "progress": False, "tensorboard": False}
            ),
            out_dir=tmp_path,
        )
        model, _ = load_checkpoint(trainer.fit_seed(seed).checkpoint)
        with torch.no_grad():
            gate = model(batch).explanations["visual_gate"].mean(-1).numpy()  # (N,)
        gaps.append(gate[strength >= 2].mean() - gate[strength <= 0.5].mean())
    assert np.mean(gaps) > 0, gaps


def test_pretrained_heads_see_raw_features_through_the_input_normaliser(tmp_path: Path) -> None:
    """STA-CA heads were fit on raw features; with input normalisation on they must act the same."""
    from msakit.data.stats import dataset_stats as stats_of

    data = _paired(n=60)
    create_objective("sta_ca", epochs=1, shared_dim=16).fit(data, tmp_path, progress=False)
    model = create_model(
        "sadgr", **data.info.model_overrides(), hidden_dim=16, shared_dim=16, pretrained_heads=str(tmp_path)
    )
    if getattr(model, "input_norm", None) is None:
        pytest.skip("this model has no input normaliser (feature_norm off)")
    model.load_pretrained()
    state, _ = load_heads(tmp_path)
    stats = stats_of(data.split("train"))
    model.input_norm.fit(stats)
    model.on_fit_start(stats.normalized())
    raw = data.split("test").batch(range(8)).features["audio"]
    center, scale = model.input_norm.stats_of("audio")
    expected = (raw - state["audio.norm.mean"]) / state["audio.norm.std"]
    torch.testing.assert_close(model.align("audio").norm((raw - center) / scale), expected, atol=1e-4, rtol=1e-4)
