"""ONNX export: parity with PyTorch in onnxruntime, and clear refusals for what ONNX cannot carry."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit import create_model
from msakit.cli import main
from msakit.data.stats import dataset_stats
from msakit.training.checkpoint import save_checkpoint

pytest.importorskip("onnxruntime")
from msakit import export

REPO = Path(__file__).resolve().parents[1]


def _model(name: str, dataset):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = create_model(name, **dataset.info.model_overrides())
    model.start_fit(dataset_stats(dataset.split("train")))  # the normaliser is part of the graph
    return model.eval()


def _steps(dataset) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {m: int(a.values.shape[1]) for m, a in dataset.split("train").modalities.items()}


def _worst(model, path: Path, split, batch_size: int) -> float:  # type: ignore[no-untyped-def]
    predictor = export.OnnxPredictor(path)
    worst = 0.0
    with torch.no_grad():
        for batch in split.loader(batch_size, shuffle=False):  # collated batches, trimmed to their longest
            got = predictor.run(export.feeds_from_batch(predictor, batch))["prediction"]
            worst = max(worst, float(np.abs(got - model(batch).prediction.numpy()).max()))
    return worst


# lstm text encoder (tfn), attention with absent-key rows (mult), modality weights (late_fusion)
@pytest.mark.parametrize("name", ["tfn", "mult", "late_fusion"])
def test_onnx_matches_pytorch_on_collated_batches(name: str, tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = _model(name, tiny_dataset)
    info = export.export_onnx(
        types.SimpleNamespace(model=model, meta={"model": name}), tmp_path / "m.onnx", steps=_steps(tiny_dataset)
    )
    assert info["max_abs_diff"] <= 1e-4
    assert _worst(model, tmp_path / "m.onnx", tiny_dataset.split("test"), 5) <= 1e-4
    if name == "late_fusion":
        assert info["outputs"] == ["prediction", "modality_weights", "explain.unimodal_predictions"]


def test_export_cli_writes_a_checked_file(tiny_dataset, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ckpt = save_checkpoint(tmp_path / "ckpt", _model("lf_dnn", tiny_dataset), dataset=tiny_dataset.info)
    out = tmp_path / "lf.onnx"
    steps = [x for m, n in _steps(tiny_dataset).items() for x in ("--steps", f"{m}={n}")]
    assert main(["export", "onnx", str(ckpt), "--out", str(out), *steps]) == 0
    assert out.is_file() and "onnxruntime matches PyTorch" in capsys.readouterr().out
    assert main(["export", "onnx", str(ckpt), "--out", str(out)]) == 2  # exists, no --overwrite
    assert main(["export", "onnx", str(ckpt), "--out", str(tmp_path / "x.onnx"), "--steps", "smell=3"]) == 2
    assert "smell" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_a_graph_longer_than_exported_is_refused(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = _model("text_only", tiny_dataset)
    export.export_onnx(
        types.SimpleNamespace(model=model, meta={"model": "text_only"}), tmp_path / "t.onnx", steps={"text": 2}
    )
    predictor = export.OnnxPredictor(tmp_path / "t.onnx")
    with pytest.raises(export.ExportError, match="text: 7 steps, the graph was exported for at most 2"):
        export.feeds_from_batch(predictor, tiny_dataset.split("test").batch([0, 1, 2, 3]))


def test_dialogue_context_models_are_refused_by_name(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("mambapy")
    model = create_model("cagmamba", **tiny_dataset.info.model_overrides())
    with pytest.raises(export.ExportError, match=r"'cagmamba'.*dialogue turns"):
        export.export_onnx(types.SimpleNamespace(model=model, meta={"model": "cagmamba"}), tmp_path / "c.onnx")
    assert not (tmp_path / "c.onnx").exists()


@pytest.mark.slow
def test_the_mamba_scan_is_refused_naming_the_model_and_the_code(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("mambapy")
    model = _model("alignmamba2", tiny_dataset)
    ckpt = save_checkpoint(tmp_path / "ckpt", model, dataset=tiny_dataset.info)
    out = tmp_path / "a.onnx"
    with pytest.raises(export.ExportError, match=r"'alignmamba2' cannot be exported.*pscan\.py"):
        export.export_onnx(types.SimpleNamespace(model=model, meta={"model": "alignmamba2"}), out)
    assert main(["export", "onnx", str(ckpt), "--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["tfn", "mult", "late_fusion"])
def test_onnx_parity_on_real_mosi_batches(name: str, tmp_path: Path) -> None:
    folder = REPO / "data" / "mosi"
    if not (folder / "meta.json").is_file():
        pytest.skip(f"{folder} is absent: msakit data prepare mosi --source ../shared/data --out data/mosi")
    from msakit.data import load_dataset

    dataset = load_dataset(folder)
    model = _model(name, dataset)
    path = tmp_path / "m.onnx"
    export.export_onnx(types.SimpleNamespace(model=model, meta={"model": name}), path, steps=_steps(dataset))
    assert _worst(model, path, dataset.split("test"), 256) <= 1e-4
    assert _worst(model, path, dataset.split("valid"), 32) <= 1e-4
