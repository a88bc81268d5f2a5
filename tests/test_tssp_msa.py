"""TSSP-MSA: stage-1 objectives (s_mlm, ecam, fmr), their hand-over to stage 2, and the UEMF weights."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit import create_model
from msakit.data import ModalityArrays, MSADataset, SyntheticConfig, make_synthetic
from msakit.data.stats import dataset_stats
from msakit.errors import ConfigError, TrainingError
from msakit.models.tssp_msa import TSSPMSAConfig
from msakit.pretrain import create_objective
from msakit.pretrain.ecam import ECAMNet, salience, salient_mask
from msakit.pretrain.s_mlm import is_sentiment_word, sop_pairs


def _utterance_level_audio(ds: MSADataset) -> MSADataset:
    """The tiny dataset with one audio vector per sample, as MOSI's."""
    splits = {}
    for name, split in ds.splits.items():
        a = split.modalities["audio"]
        one = ModalityArrays(values=np.asarray(a.values[:, :1]), lengths=np.minimum(a.lengths, 1), present=a.present)
        splits[name] = replace(split, modalities={**split.modalities, "audio": one})
    return MSADataset(ds.info, splits, source="utterance-audio")


def test_objectives_refuse_data_without_their_modality(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match=r"'ecam'.*frame-level 'audio'.*field 'audio'"):
        create_objective("ecam").check(_utterance_level_audio(tiny_dataset))
    no_visual = make_synthetic(SyntheticConfig(sizes=(8, 4, 4), modalities=("text", "audio"), seed=1))
    with pytest.raises(ConfigError, match=r"'fmr'.*'visual'"):
        create_objective("fmr").check(no_visual)
    with pytest.raises(ConfigError, match=r"'s_mlm'.*raw transcripts.*field 'text'"):
        create_objective("s_mlm").check(tiny_dataset)  # synthetic data has no transcripts


def test_salient_masking_prefers_high_energy_frames() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 20, 6) * 0.3
    x[:, 5:8] *= 6.0  # loud, fast-changing frames
    valid = torch.ones(64, 20, dtype=torch.bool)
    masked = salient_mask(salience(x, valid), valid, 0.2, 0.5, torch.Generator().manual_seed(0))
    assert masked.sum(1).eq(4).all()  # ratio·length frames per utterance
    assert masked[:, 5:8].float().mean() > 3 * masked[:, 12:].float().mean()


def test_lexicon_and_sentence_pairs() -> None:
    assert is_sentiment_word("Heartbreaking,") and is_sentiment_word("good")
    assert not is_sentiment_word("table")
    pairs = sop_pairs(["v_2", "v_1", "w_1"], ["second part", "first part", "one two three four"])
    assert ("first part", "second part") in pairs and ("one two", "three four") in pairs


def _with_transcripts(ds: MSADataset) -> MSADataset:
    words = ["good", "bad", "movie", "the", "plot", "was", "awful", "great", "acting", "boring"]
    splits = {
        name: replace(split, raw_text=[" ".join(words[(i + k) % 10] for k in range(6)) for i in range(len(split.ids))])
        for name, split in ds.splits.items()
    }
    return MSADataset(ds.info, splits, source="with-transcripts")


def test_s_mlm_warms_up_heads_then_adapts_only_the_top_layers(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    from msakit.pretrain._loop import load_weights
    from msakit.text_encoder import load_minilm

    _, base = load_minilm()
    original = {k: v.clone() for k, v in base.state_dict().items()}
    data = _with_transcripts(tiny_dataset)

    def changed_after(steps: int) -> set[str]:
        cfg = {"max_steps": steps, "batch_size": 4, "head_warmup_steps": 2, "train_layers": 1}
        summary = create_objective("s_mlm", **cfg).fit(data, tmp_path / "smlm", progress=False)
        assert summary["steps"] == steps and summary["transcripts"] == 24 and np.isfinite(summary["mean_mlm"])
        tensors, _ = load_weights(tmp_path / "smlm")
        adapted = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
        return {k for k, v in adapted.items() if not torch.equal(v, original[k])}

    assert changed_after(2) == set()  # heads' warm-up: the encoder is untouched
    changed = changed_after(3)
    assert changed and all(k.startswith("encoder.layer.5.") for k in changed)  # then only the top layer moves
    out = tmp_path / "refused"
    with pytest.raises(ConfigError, match=r"'s_mlm'.*train_layers"):
        create_objective("s_mlm", train_layers=7).fit(_with_transcripts(tiny_dataset), out, progress=False)
    with pytest.raises(ConfigError, match=r"'s_mlm'.*extra_data 'synthetic'.*field 'text'"):
        create_objective("s_mlm", extra_data=("synthetic",)).fit(_with_transcripts(tiny_dataset), out, progress=False)


@pytest.mark.parametrize("objective", ["ecam", "fmr"])
def test_stage1_weights_load_into_stage2(objective: str, tiny_dataset: MSADataset, tmp_path: Path) -> None:
    modality = "audio" if objective == "ecam" else "visual"
    obj = create_objective(objective, epochs=1, batch_size=8, hidden_dim=16)
    summary = obj.fit(tiny_dataset, tmp_path / objective, progress=False)
    assert summary["steps"] == 3 and np.isfinite(summary["mean_loss"])
    overrides = {**tiny_dataset.info.model_overrides(), "hidden_dim": 16}
    model = create_model("tssp_msa", **overrides, **{f"pretrained_{modality}": str(tmp_path / objective)})
    fresh = create_model("tssp_msa", **overrides)
    from msakit.pretrain._loop import load_weights

    saved, _ = load_weights(tmp_path / objective)
    before = model.encoders[modality].proj.weight.detach().clone()
    assert not torch.equal(before, saved["net.encoder.proj.weight"])  # __init__ reads no file
    model.load_pretrained()  # the one explicit step the trainer calls
    torch.testing.assert_close(model.encoders[modality].proj.weight, saved["net.encoder.proj.weight"])
    assert not torch.equal(fresh.encoders[modality].proj.weight, saved["net.encoder.proj.weight"])
    with pytest.raises(ConfigError, match="hidden_dim"):
        create_model(
            "tssp_msa", **{**overrides, "hidden_dim": 32}, **{f"pretrained_{modality}": str(tmp_path / objective)}
        ).load_pretrained()


def test_checkpoint_predicts_with_stage1_folders_deleted(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    """The checkpoint holds everything: stage-1 weights (ECAM, and S-MLM's re-encoding MiniLM) included."""
    import shutil

    from msakit.config import TrainConfig
    from msakit.training.checkpoint import load_checkpoint
    from msakit.training.trainer import Trainer

    data = _with_transcripts(make_synthetic(SyntheticConfig(sizes=(16, 6, 6), dims=(384, 6, 5))))
    create_objective("ecam", epochs=1, batch_size=8, hidden_dim=16).fit(data, tmp_path / "ecam", progress=False)
    create_objective("s_mlm", max_steps=1, batch_size=4, head_warmup_steps=0, train_layers=1).fit(
        data, tmp_path / "smlm", progress=False
    )
    overrides = {
        **data.info.model_overrides(),
        "hidden_dim": 16,
        "pretrained_audio": str(tmp_path / "ecam"),
        "pretrained_text": str(tmp_path / "smlm"),
    }
    run = Trainer(
        "tssp_msa",
        data,
        model_overrides=overrides,
        train_config=TrainConfig(epochs=1, seeds=(1,), progress=False, tensorboard=False),
        out_dir=tmp_path / "run",
    ).fit()
    trained, _ = load_checkpoint(run.seeds[0].checkpoint)
    assert trained.declared_capabilities.reads_raw_text
    batch = data.split("test").batch(range(6))
    with torch.no_grad():
        expected = trained(batch).prediction
    from msakit.layers.pretrained import load_weights

    adapted, _ = load_weights(tmp_path / "smlm")
    shutil.rmtree(tmp_path / "ecam")
    shutil.rmtree(tmp_path / "smlm")
    reloaded, _ = load_checkpoint(run.seeds[0].checkpoint)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(batch).prediction, expected)
    # the adapted MiniLM came from the checkpoint: its top layer is S-MLM's, not a fresh build's
    assert reloaded.text_encoder is not None
    top = "encoder.layer.5.attention.self.query.weight"
    torch.testing.assert_close(reloaded.text_encoder.model.state_dict()[top], adapted[f"encoder.{top}"])


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(
    tiny_dataset: MSADataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ECAMNet.losses
    calls = {"n": 0}

    def diverging(self, x, valid, gen=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss, parts = real(self, x, valid, gen)
        return (loss * float("nan"), parts) if calls["n"] == 3 else (loss, parts)

    monkeypatch.setattr(ECAMNet, "losses", diverging)
    out = tmp_path / "ecam"
    with pytest.raises(TrainingError, match=r"'ecam'.*at step 3.*step 2\).*intact"):
        create_objective("ecam", epochs=2, batch_size=8, hidden_dim=16, save_every=1).fit(
            tiny_dataset, out, progress=False
        )
    assert json.loads((out / "meta.json").read_text())["step"] == 2
    from msakit.pretrain._loop import load_weights

    tensors, _ = load_weights(out)
    assert all(torch.isfinite(t).all() for t in tensors.values())


def _model(ds: MSADataset, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model("tssp_msa", **{**ds.info.model_overrides(), "hidden_dim": 16, **overrides})


@pytest.mark.parametrize("space", ["modality", "fused"])
def test_hooks_rotate_teacher_grow_curriculum_and_assign_anchors(tiny_dataset: MSADataset, space: str) -> None:
    model = _model(tiny_dataset, num_anchors=3, curriculum_start=0.5, curriculum_epochs=4, anchor_space=space)
    train = tiny_dataset.split("train")
    model.on_fit_start(dataset_stats(train))
    seen = []
    for epoch in (1, 2, 3, 4, 5):
        model.train()
        model.on_epoch_start(epoch, 5)
        seen.append((model._teacher, model._curriculum))
        for start in range(0, len(train), 8):  # one epoch of batches: representations collected by id
            batch = train.batch(range(start, min(start + 8, len(train))))
            model.on_train_batch_end(batch, model(batch), epoch)
    assert [t for t, _ in seen] == [0, 1, 2, 0, 1]
    assert seen[0][1] == 0.5 and seen[-1][1] == 1.0
    spaces = ("text", "audio", "visual") if space == "modality" else ("fused",)
    assert set(model._pseudo) == set(spaces)
    for s in spaces:  # every training sample that has the modality got a cluster
        present = train.modalities[s].present if s != "fused" else np.ones(len(train), bool)
        assert set(model._pseudo[s]) == {i for i, p in zip(train.ids, present, strict=True) if p}
        assert set(model._pseudo[s].values()) <= {0, 1, 2}
    out = model(train.batch(range(16)))
    assert {"experts", "c3r", "distill_kl", "distill_align", "orth", "teac"} <= set(out.aux_losses)


def test_curriculum_ranks_only_samples_that_have_a_modality(tiny_dataset: MSADataset) -> None:
    """Empty samples (YouTube: 125 of 173 training clips) have no uncertainty to be confident about."""
    batch = tiny_dataset.split("train").batch(range(16))
    empty = torch.arange(16) < 12
    batch = replace(
        batch,
        present=batch.present & ~empty[:, None],
        masks={m: v & ~empty[:, None] for m, v in batch.masks.items()},
    )
    model = _model(tiny_dataset, curriculum_start=0.5)
    model.on_epoch_start(1, 5)
    model.train()
    c3r = model(batch).aux_losses["c3r"]
    assert c3r.item() > 0  # the 4 full samples are contrasted, not crowded out by the 12 empty ones
    c3r.backward()
    assert model.contrast["audio"][0].weight.grad.abs().sum() > 0


def test_expert_weights_follow_uncertainty_and_ablations(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("test").batch(range(12))
    model = _model(tiny_dataset).eval()
    with torch.no_grad():
        out = model(batch)
    w, u = out.modality_weights, out.uncertainty
    assert w is not None and u is not None
    torch.testing.assert_close(w.sum(1), torch.ones(12))
    # α = softmax(−u/τ) over present modalities: lower uncertainty, higher weight
    expected = torch.softmax((-u / model.config.tau).masked_fill(~batch.present, float("-inf")), dim=1)
    torch.testing.assert_close(w, expected)
    with torch.no_grad():
        mean = _model(tiny_dataset, fusion="mean").eval()(batch).modality_weights
        concat = _model(tiny_dataset, fusion="concat").eval()(batch)
    assert mean is not None
    torch.testing.assert_close(mean, batch.present.float() / batch.present.sum(1, keepdim=True))
    assert concat.modality_weights is None and torch.isfinite(concat.prediction).all()
    for label, row in TSSPMSAConfig.ABLATIONS.items():
        if row.get("text_adaptation") == "plain_mlm":  # the control row names the folder it needs
            with pytest.raises(ConfigError, match="pretrained_text_plain"):
                _model(tiny_dataset, **row)
        else:
            assert isinstance(_model(tiny_dataset, **row), torch.nn.Module), label  # every Table-4 row builds


def test_default_eval_mc_masks_are_the_old_per_sample_draw_and_training_ignores_the_field(
    tiny_dataset: MSADataset,
) -> None:
    """mc_masks off ("per_sample") is bit-identical to the draw every documented number used;
    "shared" changes only the eval draw: in training both settings draw the same per-sample masks."""
    import math

    model = _model(tiny_dataset).eval()
    c = model.config
    assert c.mc_masks == "per_sample" and not model.declared_capabilities.padding_invariant
    zt = torch.randn(12, 16)
    with torch.no_grad():
        u, _ = model._uncertainty("text", zt)
        keep = torch.rand((c.mc_samples, 12, 16), generator=torch.Generator().manual_seed(0)) >= c.mc_dropout
        samples = model.experts["text"](zt * keep / (1 - c.mc_dropout))  # the (T, B, H) draw before the field
        var = samples[..., 1].clamp(-6, 6).exp().mean(0) + samples[..., 0].var(0, unbiased=False)
    assert torch.equal(u, 0.5 * torch.log(2 * math.pi * math.e * var))
    shared = _model(tiny_dataset, mc_masks="shared").train()
    batch = tiny_dataset.split("train").batch(range(12))
    outs = []
    for m in (model.train(), shared):
        torch.manual_seed(7)
        outs.append(m(batch))
    torch.testing.assert_close(outs[0].prediction, outs[1].prediction, rtol=0, atol=0)
    torch.testing.assert_close(outs[0].uncertainty, outs[1].uncertainty, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="mc_masks"):
        _model(tiny_dataset, mc_masks="per_batch")


def test_shared_eval_mc_masks_make_tssp_padding_invariant_and_predict_orders_it_by_length(
    tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    """With one (T, 1, H) mask set a sample's eval output (prediction, u, α) is the one it has alone;
    per-sample masks are not, so only "shared" declares padding_invariant and is batched by length."""
    from msakit import service
    from msakit.training.checkpoint import save_checkpoint

    split = tiny_dataset.split("test")
    n = len(split)
    per_sample, shared = _model(tiny_dataset).eval(), _model(tiny_dataset, mc_masks="shared").eval()
    for model in (per_sample, shared):
        with torch.no_grad():
            together = model(split.batch(list(range(n))))
            alone = [model(split.batch([i])) for i in range(n)]
        gap = (together.prediction - torch.cat([a.prediction for a in alone])).abs().max().item()
        if model is per_sample:
            assert gap > 1e-4  # the masks follow the batch position: not invariant, and it says so
            assert service.inference_order(model, split) == list(range(n))
            continue
        assert model.declared_capabilities.padding_invariant and gap < 1e-5
        for field in ("uncertainty", "modality_weights"):
            torch.testing.assert_close(
                getattr(together, field), torch.cat([getattr(a, field) for a in alone]), rtol=1e-4, atol=1e-5
            )
    shared.start_fit(dataset_stats(tiny_dataset.split("train")))
    loaded = service.load_model(save_checkpoint(tmp_path / "ckpt", shared.eval(), dataset=tiny_dataset.info))
    assert loaded.model.config.mc_masks == "shared" and loaded.model.declared_capabilities.padding_invariant
    order = service.inference_order(loaded.model, split)
    assert sorted(order) == list(range(n)) and order != list(range(n))
    by_length = service.predict_split(loaded, tiny_dataset, "test", batch_size=4)
    one_batch = service.predict_split(loaded, tiny_dataset, "test", batch_size=n)
    assert [s.id for s in by_length.samples] == split.ids == [s.id for s in one_batch.samples]
    for a, b in zip(by_length.samples, one_batch.samples, strict=True):
        assert a.prediction == pytest.approx(b.prediction, abs=1e-5)


def test_shared_eval_mc_masks_keep_the_re_encoding_model_padding_invariant(tmp_path: Path) -> None:
    """With a stage-1 text folder the adapted MiniLM pads each batch's transcripts; with shared
    masks a sample's output is still the one it has alone (transcripts of 2 to 20 words)."""
    data = make_synthetic(SyntheticConfig(sizes=(16, 6, 8), dims=(384, 6, 5)))
    words = ["good", "bad", "movie", "the", "plot", "was", "awful", "great", "acting", "boring"]
    splits = {
        name: replace(split, raw_text=[" ".join(words[: 2 + (3 * i) % 19]) for i in range(len(split.ids))])
        for name, split in data.splits.items()
    }
    data = MSADataset(data.info, splits, source="varied-transcripts")
    create_objective("s_mlm", max_steps=1, batch_size=4, head_warmup_steps=0, train_layers=1).fit(
        data, tmp_path / "smlm", progress=False
    )
    model = _model(data, pretrained_text=str(tmp_path / "smlm"), mc_masks="shared")
    model.load_pretrained()
    model.eval()
    assert model.declared_capabilities.reads_raw_text and model.declared_capabilities.padding_invariant
    assert model.text_encoder is not None
    split = data.split("test")
    with torch.no_grad():
        alone = torch.cat([model(split.batch([i])).prediction for i in range(len(split))])
        model.text_encoder.clear_cache()  # re-encode in one padded batch, not from the per-sample cache
        together = model(split.batch(list(range(len(split))))).prediction
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_noisy_modality_gets_lower_expert_weight(tmp_path: Path) -> None:
    """synthetic:noisy: each modality is pure noise for 30 % of samples (role 1)."""
    from msakit.config import TrainConfig
    from msakit.data import load_dataset
    from msakit.training.trainer import Trainer, predict_split

    ds = load_dataset("synthetic:noisy")
    trainer = Trainer(
        "tssp_msa",
        ds,
        model_overrides={"hidden_dim": 32},
        train_config=TrainConfig(epochs=5, seeds=(1,), progress=False, tensorboard=False),
        out_dir=tmp_path,
    )
    from msakit.training.checkpoint import load_checkpoint

    model, _ = load_checkpoint(trainer.fit().seeds[0].checkpoint)
    outs = predict_split(model, ds.split("test"))
    weights = torch.cat([o.modality_weights for o, _ in outs])  # type: ignore[misc]
    for i, m in enumerate(("text", "audio", "visual")):
        role = torch.cat([b.targets[f"role_{m}"] for _, b in outs])
        assert weights[role == 1, i].mean() < weights[role == 0, i].mean(), m


def test_raw_text_encoder_is_deterministic_frozen_and_its_cache_bounded() -> None:
    from msakit.layers.text_reencoder import RawTextEncoder

    torch.manual_seed(0)
    enc = RawTextEncoder(max_tokens=12, cache_size=2)
    present = torch.ones(3, dtype=torch.bool)
    texts = ["what a great film", "awful, boring", "it was fine"]
    a, mask = enc(texts, present)
    enc._cache.clear()
    b, _ = enc(texts, present)  # no dropout even though nobody called eval()
    torch.testing.assert_close(a, b)
    assert len(enc._cache) == 2  # bounded: the oldest transcript was evicted
    assert not any(p.requires_grad for p in enc.parameters())
    assert mask.sum(1).tolist() == [6, 5, 5]  # [CLS] … [SEP]
    absent, m2 = enc(texts, torch.tensor([True, False, True]))
    assert not m2[1].any() and (absent[1] == 0).all()
    enc.load_state_dict(enc.state_dict())
    assert not enc._cache  # new weights, no stale states


def test_loss_weights_and_tau_are_searched_by_tune() -> None:
    from msakit.config import SearchRange
    from msakit.models.tssp_msa import TSSPMSAConfig
    from msakit.tuning import search_space

    space = search_space("tssp_msa")
    assert space["model.tau"].range == SearchRange(low=0.1, high=2.0, log=True)
    for name in ("contrastive_weight", "distill_weight", "anchor_weight"):  # 0 is the paper's "w/o" row
        assert space[f"model.{name}"].range == SearchRange(low=0.0, high=0.5)
    assert space["model.expert_weight"].range == SearchRange(low=0.0, high=1.0)
    assert TSSPMSAConfig().tau == 0.5 and TSSPMSAConfig().contrastive_weight == 0.1  # defaults unchanged
