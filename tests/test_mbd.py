"""MBD: property-aware embeddings, generator reconstruction, missing-by-design training, explanations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from msakit import create_model
from msakit.batch import MODALITIES
from msakit.data import MSADataset, make_synthetic
from msakit.data.synthetic import PRESETS
from msakit.models.mbd import MBDConfig
from msakit.training import Trainer, load_checkpoint, train_config_from


def _model(dataset: MSADataset, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model("mbd", **{**dataset.info.model_overrides(), "hidden_dim": 16, "property_dim": 8, **overrides})


def test_generator_reconstructs_absent_modalities_and_reports_its_error(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("test").batch(range(12))
    half = torch.arange(batch.size) % 2 == 0
    dropped = batch.drop_modalities(["audio"], half)
    a = MODALITIES.index("audio")
    with torch.no_grad():
        out = _model(tiny_dataset).eval()(dropped)
        off = _model(tiny_dataset, generator=False).eval()(dropped)
    # where audio is absent the head reads G_audio's reconstruction, not zeros
    assert out.explanations["reconstructed"][half, a].eq(1).all()
    assert out.features["audio"][half].abs().sum(-1).gt(0).all()
    assert off.explanations["reconstructed"].eq(0).all() and off.features["audio"][half].eq(0).all()
    # reconstruction error: measured where the modality and another exist, 0 where it is absent
    error = out.explanations["reconstruction_error"]
    assert error.shape == (batch.size, len(MODALITIES))
    assert error[~half, a].gt(0).all() and error[half, a].eq(0).all()
    assert (out.modality_weights[half, a] == 0).all()


def test_property_aware_embeddings_have_their_losses(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(16))
    out = _model(tiny_dataset).train()(batch)
    assert {"align", "orthogonality", "property", "reconstruction"} <= set(out.aux_losses)
    plain = _model(tiny_dataset, properties=False).train()(batch)
    assert not {"align", "orthogonality", "property"} & set(plain.aux_losses)
    # the modality property alone reconstructs the pooled input: its decoder gets a gradient from it
    model = _model(tiny_dataset).train()
    model(batch).aux_losses["property"].backward()
    assert model.decoders["visual"].weight.grad is not None and model.decoders["visual"].weight.grad.abs().sum() > 0


def test_missing_by_design_hides_modalities_only_in_training(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(24))
    full = batch.present.clone()
    torch.manual_seed(1)
    trained = _model(tiny_dataset, missing_rate=0.5).train()(batch)
    hidden = trained.explanations["reconstructed"].bool() & full
    assert hidden.any(), "training must hide some present modalities and reconstruct them"
    assert (hidden.sum(1) < full.sum(1)).all(), "every sample keeps at least one modality"
    model = _model(tiny_dataset, missing_rate=0.5).eval()
    with torch.no_grad():
        evaluated = model(batch)
    assert not (evaluated.explanations["reconstructed"].bool() & full).any()
    off = _model(tiny_dataset, missing_rate=0.0).train()(batch)
    assert not (off.explanations["reconstructed"].bool() & full).any()


def test_training_lowers_reconstruction_error_and_beats_the_mean(tmp_path: Path) -> None:
    """Trained, MBD beats the label mean; its generators reconstruct z_m better (relative to the
    embeddings' size, which training changes too) than untrained ones and than those of the
    same training without the reconstruction loss (the knockout: recon_weight 0)."""
    cfg = dataclasses.replace(PRESETS["clean"], sizes=(96, 32, 32), dims=(10, 6, 8), lengths=(4, 4, 3), seed=2)
    data = make_synthetic(cfg)
    train = train_config_from({"seeds": (1,), "epochs": 4, "progress": False, "tensorboard": False, "lr": 3e-3})
    test = data.split("test")
    batch = test.batch(range(len(test)))
    with torch.no_grad():
        out = _model(data, hidden_dim=16, property_dim=8).eval()(batch)
    errors = {-1.0: float(out.explanations["reconstruction_error"].sum() / out.features["fused"].pow(2).sum())}
    for recon in (0.5, 0.0):
        overrides = {"hidden_dim": 16, "property_dim": 8, "recon_weight": recon}
        torch.manual_seed(0)
        out_dir = tmp_path / str(recon)
        result = Trainer("mbd", data, model_overrides=overrides, train_config=train, out_dir=out_dir).fit()
        if recon:
            baseline = float((torch.from_numpy(test.labels) - float(data.split("train").labels.mean())).abs().mean())
            assert result.summary()["MAE"][0] < 0.8 * baseline, (result.summary()["MAE"], baseline)
        trained = load_checkpoint(tmp_path / str(recon) / "seed1" / "best")[0]
        with torch.no_grad():
            out = trained(batch)
        z = out.features["fused"].pow(2).sum()
        errors[recon] = float(out.explanations["reconstruction_error"].sum() / z)
    assert errors[0.5] < min(errors[0.0], errors[-1.0]), errors  # -1: untrained


def test_ablation_rows_build_and_run(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("test").batch(range(6))
    for name, overrides in MBDConfig.ABLATIONS.items():
        with torch.no_grad():
            out = _model(tiny_dataset, **overrides).eval()(batch)
        assert torch.isfinite(out.prediction).all(), name


@pytest.mark.parametrize("kept", [("text",), ("audio", "visual")])
def test_fewer_modalities_build_the_head_to_fit(tiny_dataset: MSADataset, kept: tuple[str, ...]) -> None:
    model = _model(tiny_dataset, modalities=kept)
    assert model.head.in_features == 2 * 8 * len(kept)
    assert hasattr(model, "generators") == (len(kept) > 1)
