"""AlignMamba-2: each named component is tested so that disabling it fails a test."""

from __future__ import annotations

import pytest
import torch

from msakit import create_model
from msakit.batch import masked_mean
from msakit.data import MSADataset
from msakit.errors import ConfigError


def _model(data: MSADataset, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model(
        "alignmamba2", **{**data.info.model_overrides(), "hidden_dim": 16, "state_size": 4, **overrides}
    )


def test_dual_alignment_losses_are_training_only_and_match_the_measured_distances(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, ot_weight=0.5, mmd_weight=0.25).train()
    batch = tiny_dataset.split("train").batch(range(16))
    out = model(batch)
    assert set(out.aux_losses) == {"ot", "mmd"}
    with torch.no_grad():
        dist = model.alignment_distances(batch)
    assert dist["ot"] > 0 and dist["mmd"] > 0
    torch.testing.assert_close(out.aux_losses["ot"], 0.5 * dist["ot"])
    torch.testing.assert_close(out.aux_losses["mmd"], 0.25 * dist["mmd"])
    out.aux_losses["ot"].backward()  # OT trains the audio encoder (aligned to text)
    assert model.encoders["audio"][1].weight.grad.abs().sum() > 0
    model.eval()
    assert model(batch).aux_losses == {}  # no inference-time cost
    for field in ("ot_weight", "mmd_weight"):
        assert field.split("_")[0] not in _model(tiny_dataset, **{field: 0.0}).train()(batch).aux_losses


def test_alignment_pairs_follow_the_anchor(tiny_dataset: MSADataset) -> None:
    assert _model(tiny_dataset)._pairs() == [("text", "audio"), ("text", "visual")]
    assert _model(tiny_dataset, anchor="")._pairs() == [("text", "audio"), ("text", "visual"), ("audio", "visual")]
    with pytest.raises(ConfigError, match="anchor"):
        _model(tiny_dataset, anchor="smell")


def test_modality_specific_and_shared_experts_are_routed(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, num_shared=3).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    out = model(batch)
    for m in ("text", "audio", "visual"):
        r = out.explanations[f"routing_{m}"]
        has = batch.present_mask(m)
        assert r.shape == (12, 4)
        torch.testing.assert_close(r[has].sum(-1), torch.ones(int(has.sum())))
    share = out.explanations["specific_share"]
    assert share.shape == (12, 3) and ((share > 0) & (share < 1))[batch.present].all()
    with torch.no_grad():  # the audio-specific expert acts on audio tokens (and, through the scan, later ones)
        model.layers[0].specific[1].weight.mul_(3.0)
    changed = model(batch)
    h = 16
    torch.testing.assert_close(changed.features["fused"][:, :h], out.features["fused"][:, :h])  # text comes first
    assert (changed.features["fused"][:, h:] - out.features["fused"][:, h:]).abs().max() > 1e-5
    shared_only = _model(tiny_dataset, experts="shared", num_shared=2).eval()(batch)
    assert (
        shared_only.explanations["routing_text"].shape == (12, 2) and "specific_share" not in shared_only.explanations
    )
    assert _model(tiny_dataset, experts="none").eval()(batch).explanations == {}


def test_the_scan_mixes_modalities_causally(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    base = model(batch).features["fused"]
    batch.features["visual"] = batch.features["visual"] + 1.0  # the last modality cannot reach earlier ones
    torch.testing.assert_close(model(batch).features["fused"][:, :32], base[:, :32])
    batch.features["text"] = batch.features["text"] * torch.rand_like(batch.features["text"])  # text reaches audio
    both = batch.present_mask("text") & batch.present_mask("audio")
    assert (model(batch).features["fused"][both, 16:32] - base[both, 16:32]).abs().max() > 1e-5


def test_state_size_must_divide_width(tiny_dataset: MSADataset) -> None:
    with pytest.raises(ConfigError, match="state_size 5"):
        _model(tiny_dataset, state_size=5)
    with pytest.raises(ConfigError, match="expand"):
        _model(tiny_dataset, expand=0.1)


def test_alignment_reduces_held_out_ot_and_mmd(tiny_dataset: MSADataset) -> None:
    """A few steps with the dual alignment bring held-out modalities closer than without it."""
    train, held_out = tiny_dataset.split("train").batch(range(24)), tiny_dataset.split("test").batch(range(12))
    measured = {}
    for weight in (0.0, 1.0):
        model = _model(tiny_dataset, ot_weight=weight, mmd_weight=weight)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(40):
            out = model.train()(train)
            loss = model.task_loss(out.prediction, train.labels) + sum(out.aux_losses.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            measured[weight] = model.eval().alignment_distances(held_out)
    assert measured[1.0]["ot"] < 0.85 * measured[0.0]["ot"]
    assert measured[1.0]["mmd"] < 0.85 * measured[0.0]["mmd"]


def _alone_and_together(model, split, key: str = "prediction"):  # type: ignore[no-untyped-def]
    n = len(split)
    pick = (lambda out: out.prediction) if key == "prediction" else (lambda out: out.explanations[key])
    with torch.no_grad():
        together = pick(model(split.batch(list(range(n)))))  # segments padded to the longest sample
        alone = torch.cat([pick(model(split.batch([i]))) for i in range(n)])
    return together, alone


def test_the_segment_layout_moves_a_sample_with_its_batch_through_the_conv_and_packing_does_not(
    tiny_dataset: MSADataset,
) -> None:
    """The cause: padding between segments reaches the next segment's first steps through the causal
    conv (a kernel-1 conv removes the difference); `pack_tokens` gives each sample its output alone,
    which is the output the segment layout gives it alone, and declares padding_invariant."""
    split = tiny_dataset.split("test")
    old = _model(tiny_dataset).eval()
    assert not old.config.pack_tokens and not old.declared_capabilities.padding_invariant
    together, alone = _alone_and_together(old, split)
    assert (together - alone).abs().max() > 1e-4  # the old layout is not padding-invariant
    for experts in ("both", "none"):
        packed = _model(tiny_dataset, pack_tokens=True, experts=experts).eval()
        assert packed.declared_capabilities.padding_invariant
        p_together, p_alone = _alone_and_together(packed, split)
        torch.testing.assert_close(p_together, p_alone, rtol=1e-5, atol=1e-6)
        if experts == "both":  # the routing explanations are scattered back to their modality's tokens
            torch.testing.assert_close(*_alone_and_together(packed, split, "specific_share"), rtol=1e-5, atol=1e-6)
        packed.load_state_dict(_model(tiny_dataset, experts=experts).state_dict())
        _, old_alone = _alone_and_together(_model(tiny_dataset, experts=experts).eval(), split)
        torch.testing.assert_close(p_alone, old_alone, rtol=1e-5, atol=1e-6)  # same function, no padding
    with torch.no_grad():
        for layer in old.layers:
            layer.mixer.conv.weight[..., :-1] = 0  # kernel 1: no step reads an earlier one before the scan
    together, alone = _alone_and_together(old, split)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_packing_is_off_by_default_and_the_default_is_the_segment_layout_bit_for_bit(
    tiny_dataset: MSADataset,
) -> None:
    """pack_tokens=False runs the layers over the segments padded in place (the layout of every
    number before stop 9), bit for bit; pack_tokens=True changes batched outputs, not the weights."""
    model = _model(tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    tokens, masks = model.encode(batch)
    mods = model.modalities
    x = torch.cat([tokens[m] + model.modality_embedding[i] for i, m in enumerate(mods)], dim=1)
    mask = torch.cat([masks[m] for m in mods], dim=1)
    ids = torch.cat([torch.full((tokens[m].shape[1],), i) for i, m in enumerate(mods)])
    with torch.no_grad():
        for layer in model.layers:
            x, _ = layer(x, ids, mask)
        x = model.norm(x)
        segments = zip(x.split([tokens[m].shape[1] for m in mods], 1), mods, strict=True)
        fused = torch.cat([masked_mean(s, masks[m]) for s, m in segments], -1)
        out = model(batch)
    assert torch.equal(out.features["fused"], fused)
    packed = _model(tiny_dataset, pack_tokens=True).eval()
    packed.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (packed(batch).features["fused"] - fused).abs().max() > 1e-4
