"""Dialogue structure: context on the batch, the dialogue-ordered sampler, readers and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from msakit.data import SyntheticConfig, make_synthetic
from msakit.data.dialogue import DialogueBatches, DialogueIndex, DialogueSplit, with_dialogue
from msakit.data.folder import read_folder, write_folder
from msakit.data.synthetic import synthetic_preset
from msakit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def dialogue_data():  # type: ignore[no-untyped-def]
    config = synthetic_preset("dialogue")
    return make_synthetic(SyntheticConfig(**{**config.__dict__, "sizes": (60, 24, 24), "seed": 1}))


def test_batch_carries_preceding_turns_newest_last(dialogue_data) -> None:  # type: ignore[no-untyped-def]
    split = dialogue_data.split("train")
    assert isinstance(split, DialogueSplit)
    batch = split.batch([3, 0, 7])  # turn 3 of dialogue 0, its first turn, turn 1 of dialogue 1
    ctx = batch.context
    assert ctx is not None and ctx.window == 8
    assert ctx.turns.tolist() == [3, 0, 1]
    assert ctx.mask.sum(1).tolist() == [3, 0, 1]  # a first turn has no preceding turn
    assert ctx.mask[0, -3:].all() and not ctx.mask[0, :-3].any()  # right-aligned
    pooled = split.pooled("text")
    torch.testing.assert_close(ctx.features["text"][0, -1], torch.from_numpy(pooled[2]))  # newest = turn 2
    torch.testing.assert_close(ctx.features["text"][0, -3], torch.from_numpy(pooled[0]))
    first = split.batch([0]).features["text"][0]
    length = int(split.batch([0]).masks["text"][0].sum())
    torch.testing.assert_close(torch.from_numpy(pooled[0]), first[:length].mean(0))
    assert (ctx.features["text"][1] == 0).all()
    assert ctx.same_speaker[0, -1].item() is False and ctx.same_speaker[0, -2].item() is True  # speakers alternate


def test_context_survives_to_and_drop_modalities(dialogue_data) -> None:  # type: ignore[no-untyped-def]
    batch = dialogue_data.split("valid").batch(range(8))
    assert batch.to("cpu").context is not None
    half = torch.arange(8) % 2 == 0
    dropped = batch.drop_modalities(["audio"], half)
    assert dropped.context is not None
    assert (dropped.context.features["audio"][half] == 0).all()
    assert not dropped.context.present[half][..., 1].any()
    torch.testing.assert_close(dropped.context.features["audio"][~half], batch.context.features["audio"][~half])  # type: ignore[union-attr]
    torch.testing.assert_close(dropped.context.features["text"], batch.context.features["text"])  # type: ignore[union-attr]


def test_sentiment_carries_over_between_turns(dialogue_data) -> None:  # type: ignore[no-untyped-def]
    y = make_synthetic(synthetic_preset("dialogue")).split("train").labels
    same_dialogue = np.arange(1, len(y)) % 6 != 0
    r = np.corrcoef(y[1:][same_dialogue], y[:-1][same_dialogue])[0, 1]
    assert r > 0.6
    plain = make_synthetic(synthetic_preset("noisy")).split("train").labels
    assert abs(np.corrcoef(plain[1:], plain[:-1])[0, 1]) < 0.15


def test_dialogue_sampler_keeps_dialogues_whole_and_in_order(dialogue_data) -> None:  # type: ignore[no-untyped-def]
    split = dialogue_data.split("train")
    batches = DialogueBatches().batches(split, 8, shuffle=True, seed=3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(split))) and max(len(b) for b in batches) == 8
    index = split.dialogue
    starts = [k for k, i in enumerate(flat) if k == 0 or index.dialogue_ids[flat[k - 1]] != index.dialogue_ids[i]]
    assert len(starts) == len(set(index.dialogue_ids))  # each dialogue is one contiguous run
    assert all(
        np.all(np.diff(index.turns[flat[a:b]]) > 0) for a, b in zip(starts, [*starts[1:], len(flat)], strict=True)
    )
    assert batches != DialogueBatches().batches(split, 8, shuffle=True, seed=4)
    assert flat == DialogueBatches().batches(split, 8, shuffle=True, seed=3)[0] + flat[8:]
    with pytest.raises(DataError, match="dialogue"):
        DialogueBatches().batches(
            make_synthetic(SyntheticConfig(sizes=(8, 4, 4))).split("train"), 4, shuffle=False, seed=0
        )


def test_out_of_order_turns_and_bad_window_name_the_field() -> None:
    with pytest.raises(DataError, match=r"field 'turn'.*out of order in dialogue 'a'.*turn 1 \(id 'u2'\)"):
        DialogueIndex.build(["a", "a", "a"], [0, 2, 1], ids=["u0", "u1", "u2"])
    with pytest.raises(DataError, match="turn"):
        DialogueIndex.build(["a", "a"], [0, 0])  # a repeated turn
    for window in (0, -2):
        with pytest.raises(ConfigError, match="context_window"):
            DialogueIndex.build(["a"], [0], window=window)


def test_single_turn_dialogues_simply_work() -> None:
    data = make_synthetic(SyntheticConfig(sizes=(6, 3, 3)))
    split = data.split("train")
    lone = with_dialogue(split, DialogueIndex.build([f"d{i}" for i in range(6)], [0] * 6, window=2))
    ctx = lone.batch(range(6)).context
    assert (
        ctx is not None
        and not ctx.mask.any()
        and ctx.features["text"].shape == (6, 2, split.modalities["text"].values.shape[2])
    )


def test_folder_round_trip_keeps_dialogue_and_rejects_disorder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    ids = [f"{s}{i}" for s in ("tr", "va", "te") for i in range(4)]
    labels = pd.DataFrame({
        "id": ids, "split": ["train"] * 4 + ["valid"] * 4 + ["test"] * 4, "label": rng.normal(size=12),
        "dialogue": ["x", "x", "y", "y"] * 3, "turn": [0, 1, 0, 5] * 3, "speaker": ["A", "B", "A", "A"] * 3,
    })  # fmt: skip
    text = (rng.normal(size=(12, 3, 4)).astype(np.float32), np.full(12, 3), ids)
    from msakit.data.core import DatasetInfo

    info = DatasetInfo(name="dlg", metric_set="mosi", dims={"text": 4})
    data = read_folder(write_folder(tmp_path / "ok", info, labels, {"text": text}))
    split = data.split("train")
    assert isinstance(split, DialogueSplit)
    ctx = split.batch([1, 3]).context
    assert ctx is not None and ctx.mask.sum(1).tolist() == [1, 1] and ctx.same_speaker[:, -1].tolist() == [False, True]
    bad = labels.assign(turn=[0, 1, 3, 2] * 3)
    with pytest.raises(DataError, match=r"labels\.csv.*'turn'.*out of order"):
        read_folder(write_folder(tmp_path / "bad", info, bad, {"text": text}))
    with pytest.raises(DataError, match="'turn'"):
        read_folder(write_folder(tmp_path / "bad2", info, labels.assign(turn=["a", 1, 0, 1] * 3), {"text": text}))


def test_plugs_into_the_data_module(dialogue_data) -> None:  # type: ignore[no-untyped-def]
    from msakit.data.core import DataModule

    module = DataModule(dialogue_data, batch_size=12, sampler=DialogueBatches())
    loader, weights = module.train_batches(seed=1)
    batches = list(loader)
    assert len(batches) == len(weights) == 5 and all(b.context is not None for b in batches)
    first = batches[0].context
    assert first is not None and first.turns[:6].tolist() == [0, 1, 2, 3, 4, 5]  # a whole dialogue, in order
    assert len(set(first.dialogue_ids[:6])) == 1


def test_feature_normaliser_treats_context_like_the_current_turn(dialogue_data) -> None:  # type: ignore[no-untyped-def]
    from msakit.layers.normalize import FeatureNormalizer

    norm = FeatureNormalizer({m: dialogue_data.info.dims[m] for m in dialogue_data.info.modalities})
    center, scale = norm.stats_of("text")
    center.fill_(0.5)
    scale.fill_(2.0)
    norm.fitted.fill_(True)
    batch = dialogue_data.split("train").batch([2, 3])
    out = norm(batch)
    assert out.context is not None and batch.context is not None
    has = batch.context.present[:, :, 0]
    expected = (batch.context.features["text"] - 0.5) / 2.0 * has.unsqueeze(-1)
    torch.testing.assert_close(out.context.features["text"], expected)  # affine: the mean of normalised steps
