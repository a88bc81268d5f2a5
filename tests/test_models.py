"""Every registered model, one parametrised test: adding a model needs no new test code."""

from __future__ import annotations

import pytest
import torch

from msakit import Batch, ModelOutput, create_model, list_models
from msakit.batch import MODALITIES
from msakit.data import MSADataset
from msakit.registry import get_model_class

MODELS = list_models()


def _model(name: str, dataset: MSADataset, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model(name, **{**dataset.info.model_overrides(), "hidden_dim": 16, **overrides})


def _check_output(out: ModelOutput, batch: Batch, num_classes: int = 1) -> None:
    expected = (batch.size,) if num_classes == 1 else (batch.size, num_classes)
    assert out.prediction.shape == expected
    assert torch.isfinite(out.prediction).all()
    for extra in (out.modality_weights, out.uncertainty):
        if extra is not None:
            assert extra.shape == (batch.size, len(MODALITIES))
            assert torch.isfinite(extra).all()
    for name, loss in out.aux_losses.items():
        assert loss.dim() == 0 and torch.isfinite(loss), name


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_every_parameter_gets_gradient(name: str, tiny_dataset: MSADataset) -> None:
    model = _model(name, tiny_dataset)
    model.train()
    batch = tiny_dataset.split("train").batch(range(16))
    out = model(batch)
    _check_output(out, batch)
    loss = model.task_loss(out.prediction, batch.labels) + sum(out.aux_losses.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: parameters without gradient: {missing}"


@pytest.mark.parametrize("name", MODELS)
def test_eval_is_deterministic_and_weights_ignore_absent(name: str, tiny_dataset: MSADataset) -> None:
    model = _model(name, tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    with torch.no_grad():
        a, b = model(batch), model(batch)
    torch.testing.assert_close(a.prediction, b.prediction)
    if a.modality_weights is not None:
        assert (a.modality_weights[~batch.present] == 0).all(), "absent modalities must get zero weight"


@pytest.mark.parametrize("name", MODELS)
def test_modality_absent_per_sample_and_for_whole_dataset(name: str, tiny_dataset: MSADataset) -> None:
    cls = get_model_class(name)
    model = _model(name, tiny_dataset).eval()
    batch = tiny_dataset.split("test").batch(range(12))
    half = torch.arange(batch.size) % 2 == 0
    for m in MODALITIES:
        with torch.no_grad():
            out = model(batch.drop_modalities([m], half))
        _check_output(out, batch)
    # a dataset that lacks one modality entirely (keep the text, which text-centred models need)
    kept = ("text", "audio")
    if len(kept) >= cls.capabilities.min_modalities:
        overrides = {**tiny_dataset.info.model_overrides(), "modalities": kept, "hidden_dim": 16}
        torch.manual_seed(0)
        two = create_model(name, **overrides).eval()
        sub = Batch(
            features={m: batch.features[m] for m in kept},
            masks={m: batch.masks[m] for m in kept},
            present=batch.present & torch.tensor([True, True, False]),
            labels=batch.labels,
            ids=batch.ids,
        )
        with torch.no_grad():
            _check_output(two(sub), sub)


@pytest.mark.parametrize("name", MODELS)
def test_classification_head(name: str, tiny_dataset: MSADataset) -> None:
    model = _model(name, tiny_dataset, num_classes=3).train()
    batch = tiny_dataset.split("train").batch(range(8))
    batch.labels = (batch.labels > 0).long() + (batch.labels > 1).long()
    out = model(batch)
    _check_output(out, batch, num_classes=3)
    (model.task_loss(out.prediction, batch.labels) + sum(out.aux_losses.values())).backward()


def test_unknown_override_names_field_and_model() -> None:
    from msakit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model 'late_fusion'.*'hiden_dim'"):
        create_model("late_fusion", hiden_dim=3)
    with pytest.raises(ConfigError, match=r"'hidden_dim' expects int, got str"):
        create_model("late_fusion", hidden_dim="big")


@pytest.mark.parametrize("name", [m for m in MODELS if m != "ensemble"])
def test_the_probe_base_adds_to_every_model(name: str, tiny_dataset: MSADataset) -> None:
    """-m probe_base=true: the prediction is the network's (the same weights without the base) plus the
    fitted probe's part, in eval mode, for every model (msakit.layers.probe_base)."""
    model = _model(name, tiny_dataset, probe_base=True)
    model.fit_probe_base(tiny_dataset.split("train"), tiny_dataset.split("valid"), tiny_dataset.info.metric_set)
    plain = _model(name, tiny_dataset)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("probe_base.")})
    batch = tiny_dataset.split("test").batch(range(12))
    model.eval()
    plain.eval()
    with torch.no_grad():
        out, ref = model(batch), plain(batch)
    base = out.explanations["probe_base"]
    assert base.shape == (batch.size,) and base.abs().sum() > 0
    torch.testing.assert_close(out.prediction - base, ref.prediction, atol=1e-5, rtol=1e-5)
