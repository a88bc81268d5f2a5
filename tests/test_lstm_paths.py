"""The "valid" LSTM path (msakit.layers.valid_lstm): nn.LSTM's values and weight gradients on valid steps only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from msakit.layers.encoders import SequenceEncoder, lstm_path
from msakit.layers.valid_lstm import valid_steps_lstm


def _batch(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    torch.manual_seed(0)
    lengths = torch.tensor([9, 3, 0, 6, 6, 1, 9, 2, 5])  # unsorted, ties, a sample with no valid step
    mask = torch.arange(9)[None, :] < lengths[:, None]
    x = torch.randn(len(lengths), 9, 7, dtype=dtype)
    x[~mask] = 1e3  # garbage behind the valid steps: it must reach nothing
    return x, mask


def _grads(lstm: nn.LSTM, out: Tensor, weight: Tensor) -> list[Tensor]:
    lstm.zero_grad()
    (out * weight).sum().backward()
    return [p.grad.clone() for p in lstm.parameters()]  # type: ignore[union-attr]


def test_valid_path_is_the_plain_lstm_on_each_samples_valid_steps_in_values_and_gradients() -> None:
    x, mask = _batch()
    lstm = nn.LSTM(7, 5, batch_first=True).double()
    weight = torch.randn(*mask.shape, 5, dtype=torch.float64) * mask.unsqueeze(-1)  # a loss on valid steps only
    out = valid_steps_lstm(lstm, x, mask)
    assert not out[~mask].any()  # padded steps are exactly 0, a sample with no valid step too
    ref = torch.zeros_like(out)
    for i, n in enumerate(mask.sum(1).tolist()):
        if n:
            ref[i, :n] = lstm(x[i : i + 1, :n])[0][0]  # the plain LSTM over this sample's valid steps alone
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grads = _grads(lstm, out, weight)
    for a, b in zip(grads, _grads(lstm, ref, weight), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_valid_path_matches_the_padded_fused_lstm_in_float32_within_1e_6() -> None:
    x, mask = _batch(torch.float32)
    x = x * mask.unsqueeze(-1)
    lstm = nn.LSTM(7, 5, batch_first=True)
    weight = torch.randn(*mask.shape, 5) * mask.unsqueeze(-1)
    out = valid_steps_lstm(lstm, x, mask)
    ref = lstm(x)[0] * mask.unsqueeze(-1)  # one fused call over the padded batch: exact on the valid steps
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    for a, b in zip(_grads(lstm, out, weight), _grads(lstm, ref, weight), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_valid_path_gives_the_input_a_gradient_only_when_it_asks() -> None:
    x, mask = _batch()
    lstm = nn.LSTM(7, 5, batch_first=True).double()
    x = (x * mask.unsqueeze(-1)).requires_grad_(True)
    (valid_steps_lstm(lstm, x, mask) * mask.unsqueeze(-1)).square().sum().backward()
    grad = x.grad.clone()  # type: ignore[union-attr]
    x.grad = None
    (lstm(x)[0] * mask.unsqueeze(-1)).square().sum().backward()
    torch.testing.assert_close(grad, x.grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="one-layer unidirectional"):
        valid_steps_lstm(nn.LSTM(7, 5, batch_first=True, bidirectional=True), x, mask)


def test_encoder_takes_the_valid_path_in_training_and_segments_in_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    from msakit.layers import encoders

    x, mask = _batch(torch.float32)
    enc = SequenceEncoder(7, 5, kind="unilstm", dropout=0.0)
    calls: list[str] = []
    monkeypatch.setattr(encoders, "valid_steps_lstm", lambda *a: calls.append("valid") or valid_steps_lstm(*a))
    with lstm_path("auto"):
        seq, pooled = enc(x, mask)
    with lstm_path("valid"):
        v_seq, v_pooled = enc(x, mask)
        assert calls == ["valid"]
        with torch.no_grad():
            e_seq, _ = enc(x, mask)
        assert calls == ["valid"]  # evaluation: the segments path
    torch.testing.assert_close(v_seq, seq, rtol=0, atol=1e-6)
    torch.testing.assert_close(v_pooled, pooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(e_seq, seq, rtol=0, atol=1e-6)
    lstm = SequenceEncoder(7, 6, kind="lstm", dropout=0.0)  # bidirectional: "valid" packs, as "packed" does
    with lstm_path("valid"):
        valid_bi = lstm(x, mask)[0]
    with lstm_path("packed"):
        torch.testing.assert_close(valid_bi, lstm(x, mask)[0], rtol=0, atol=0)


def test_trainer_with_the_valid_path_reproduces_the_fused_paths_metrics(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from msakit.training import Trainer, train_config_from

    runs = {}
    for path in ("auto", "valid"):
        cfg = {"epochs": 3, "seeds": [1], "progress": False, "tensorboard": False, "lstm": path, "sampler": "bucket"}
        trainer = Trainer(
            "lf_dnn",
            tiny_dataset,
            model_overrides={"text_encoder": "unilstm", "hidden_dim": 16},
            train_config=train_config_from(cfg),
            out_dir=tmp_path / path,
        )
        runs[path] = trainer.fit().seeds[0]
    assert runs["valid"].best_epoch == runs["auto"].best_epoch
    for split in ("valid", "test"):
        a, b = runs["valid"].__dict__[split], runs["auto"].__dict__[split]
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-4), (split, key)
