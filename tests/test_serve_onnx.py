"""`msakit serve --onnx`: the service's onnxruntime backend answers what PyTorch answers, refuses
graphs it cannot trust at start-up, and the .npz request body is read in place."""

from __future__ import annotations

import dataclasses
import io
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="msakit serve needs the [serve] extra (fastapi)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
pytest.importorskip("onnxruntime")
from fastapi.testclient import TestClient

from msakit import create_model, export, service
from msakit.batch import ModelOutput
from msakit.data import SyntheticConfig, make_synthetic
from msakit.data.stats import dataset_stats
from msakit.errors import DataError
from msakit.serve import create_app
from msakit.training.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
LENGTHS = (3, 6, 12)  # the synthetic samples' text/audio/visual steps at most (SyntheticConfig.lengths)


def _checkpoint(folder: Path, dataset: Any, seed: int) -> Path:
    torch.manual_seed(seed)
    model = create_model("late_fusion", **{**dataset.info.model_overrides(), "hidden_dim": 8})
    model.start_fit(dataset_stats(dataset.split("train")))  # the normaliser is part of the graph
    return save_checkpoint(folder, model.eval(), dataset=dataset.info)


def _export(ckpt: Path, out: Path, steps: dict[str, int]) -> Path:
    export.export_onnx(service.load_model(ckpt), out, steps=steps)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("serve_onnx")
    ds = make_synthetic(SyntheticConfig(sizes=(16, 8, 80), lengths=LENGTHS, seed=3))
    ckpt, other = _checkpoint(tmp / "a", ds, 0), _checkpoint(tmp / "b", ds, 1)
    full = dict(zip(("text", "audio", "visual"), LENGTHS, strict=True))
    half = {m: max(1, n // 2) for m, n in full.items()}
    return {
        "ds": ds,
        "ckpt": ckpt,
        "other": other,
        "short": _export(ckpt, tmp / "short.onnx", half),
        "full": _export(ckpt, tmp / "full.onnx", full),
        "foreign": _export(other, tmp / "foreign.onnx", full),
        "half": half,
        "steps": full,
    }


def _requests(ds: Any, sizes: tuple[int, ...]) -> list[list[dict[str, np.ndarray]]]:
    """Requests cut from the test split as a client sends them: each sample a random number of its valid
    steps (so short samples fit the short graph); a modality a sample lacks is left out."""
    test, out, start = ds.split("test"), [], 0
    rng = np.random.default_rng(0)
    for size in sizes:
        samples = []
        for i in range(start, start + size):
            sample = {}
            for m, arr in test.modalities.items():
                if arr.present[i]:
                    steps = int(rng.integers(1, max(int(arr.lengths[i]), 1) + 1))
                    sample[m] = np.asarray(arr.values[i, :steps], dtype=np.float32)
            samples.append(sample)
        out.append(samples)
        start += size
    return out


def _close(a: Any, b: Any, tol: float = 1e-4) -> None:
    """Two JSON answers equal, numbers within `tol`."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k], tol)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y, tol)
    elif isinstance(a, float) and not isinstance(b, bool):
        assert a == pytest.approx(b, abs=tol)
    else:
        assert a == b


def test_onnx_answers_equal_pytorch_and_pytorch_is_not_run(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch_model = service.load_model(setup["ckpt"], name="lf")
    onnx_model = service.use_onnx(service.load_model(setup["ckpt"], name="lf"), [setup["full"], setup["short"]])
    graphs = {
        "pytorch": TestClient(create_app({"lf": torch_model})),
        "onnx": TestClient(create_app({"lf": onnx_model})),
    }
    (described,) = graphs["onnx"].get("/v1/models").json()["models"]
    assert described["backend"] == "onnxruntime" and described["onnx_steps"] == [setup["half"], setup["steps"]]
    calls: list[int] = []
    real = onnx_model.model.forward
    monkeypatch.setattr(onnx_model.model, "forward", lambda batch: calls.append(batch.size) or real(batch))
    used: list[dict[str, int]] = []
    run = export.OnnxPredictor.output
    monkeypatch.setattr(export.OnnxPredictor, "output", lambda self, b: used.append(self.steps) or run(self, b))
    # batch 1, a small batch, and one over service.REQUEST_CHUNK (run by length in chunks)
    for samples in _requests(setup["ds"], (1, 1, 7, 70)):
        answers = {}
        for name, client in graphs.items():
            response = client.post(
                "/v1/predict", json={"samples": [{m: x.tolist() for m, x in s.items()} for s in samples]}
            )
            assert response.status_code == 200, response.text
            answers[name] = response.json()
        _close(answers["onnx"], answers["pytorch"])
        assert answers["onnx"]["predictions"][0]["explanations"]["unimodal_predictions"]  # carried by the graph
    assert calls == []  # every request fitted a graph: PyTorch never ran
    assert setup["half"] in used and setup["steps"] in used  # short chunks on the short graph


def test_a_request_longer_than_every_graph_runs_in_pytorch(setup: dict[str, Any]) -> None:
    loaded = service.use_onnx(service.load_model(setup["ckpt"]), [setup["short"]])
    reference = service.load_model(setup["ckpt"])
    long = {m: np.random.default_rng(0).normal(size=(n + 3, loaded.dims[m])) for m, n in setup["half"].items()}
    got = service.prediction_json(service.predict_features(loaded, [long]))
    want = service.prediction_json(service.predict_features(reference, [long]))
    _close(got, want, 1e-5)


def _serve(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    import uvicorn

    from msakit.cli import main

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(app))
    code = main(["serve", *argv])
    err = capsys.readouterr().err
    assert (code == 0) == bool(started)  # a refused graph never starts the server
    return code, err


def test_cli_attaches_graphs_and_refuses_bad_ones(
    setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, other = str(setup["ckpt"]), str(setup["other"])
    jobs = ["--jobs-dir", str(tmp_path / "jobs")]
    assert _serve(["--checkpoint", ckpt, "--onnx", str(setup["full"]), *jobs], monkeypatch, capsys)[0] == 0
    both = ["--checkpoint", f"a={ckpt}", "--checkpoint", f"b={other}", *jobs]
    assert _serve([*both, "--onnx", f"b={setup['foreign']}"], monkeypatch, capsys)[0] == 0
    refused = {
        "exported from another checkpoint": ["--checkpoint", ckpt, "--onnx", str(setup["foreign"])],
        "name the one it belongs to": [*both, "--onnx", str(setup["full"])],
        "no such file": ["--checkpoint", ckpt, "--onnx", str(tmp_path / "missing.onnx")],
        "cannot load it as an ONNX graph": ["--checkpoint", ckpt, "--onnx", ckpt + "/config.json"],
    }
    for words, argv in refused.items():
        code, err = _serve([*argv, *jobs], monkeypatch, capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (words, err)


def test_a_graph_without_the_models_explanations_or_an_uncertain_or_padding_dependent_model_is_refused(
    setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bare.onnx"
    with monkeypatch.context() as patch:  # an export that carries no explanations, as before this stop
        patch.setattr(export, "per_sample_explanations", lambda out, size: [])
        export.export_onnx(service.load_model(setup["ckpt"]), bare, steps=setup["steps"])
    assert export.open_for(service.load_model(setup["ckpt"]), [bare]).predictors  # `msakit predict` needs none
    with pytest.raises(export.ExportError, match=r"no explain\.unimodal_predictions output"):
        service.use_onnx(service.load_model(setup["ckpt"]), [bare])
    loaded = service.load_model(setup["ckpt"])
    real = loaded.model.forward

    def uncertain(batch: Any) -> ModelOutput:
        out = real(batch)
        return ModelOutput(
            out.prediction, out.modality_weights, torch.ones_like(out.modality_weights), out.explanations
        )

    monkeypatch.setattr(loaded.model, "forward", uncertain)
    with pytest.raises(export.ExportError, match="reports uncertainty"):
        service.use_onnx(loaded, [setup["full"]])
    variant = service.load_model(setup["ckpt"])
    caps = dataclasses.replace(variant.model.declared_capabilities, padding_invariant=False)
    monkeypatch.setattr(type(variant.model), "declared_capabilities", property(lambda self: caps))
    with pytest.raises(export.ExportError, match="depend on padding"):
        service.use_onnx(variant, [setup["full"]])


def _npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def test_npz_is_read_in_place_and_equals_numpys_reader() -> None:
    rng = np.random.default_rng(0)
    text = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]], dtype=bool)  # the last has holes
    audio = np.asfortranarray(rng.normal(size=(3, 2, 2)))  # float64, Fortran order
    arrays = {"text": text, "text_mask": mask, "audio": audio, "ids": np.array(["a", "bb", "c"])}
    stored, ids = service.samples_from_npz(_npz(**arrays))
    packed, packed_ids = service.samples_from_npz(_npz(True, **arrays))  # deflated: np.load's path
    assert ids == packed_ids == ["a", "bb", "c"]
    for s, p, i in zip(stored, packed, range(3), strict=True):
        np.testing.assert_array_equal(s["text"], text[i][mask[i]])
        np.testing.assert_array_equal(s["audio"], audio[i])
        np.testing.assert_array_equal(p["text"], s["text"])
    assert not stored[0]["text"].flags.writeable and not stored[0]["text"].flags.owndata  # a view of the body
    assert packed[0]["text"].flags.writeable  # np.load's copy
    assert stored[2]["text"].flags.owndata  # a mask with holes is gathered
    big = _npz(text=np.zeros((2, 3, 4), dtype=">f8"))  # another byte order still parses
    assert service.samples_from_npz(big)[0][1]["text"].shape == (3, 4)
    with pytest.raises(DataError, match=r"plain \.npz"):
        service.samples_from_npz(_npz(text=np.array([object()], dtype=object)))
    with pytest.raises(DataError, match="decompressed"):
        service.samples_from_npz(_npz(text=np.zeros((4, 64, 64), np.float32)), max_bytes=1000)


def test_a_request_with_inf_is_refused_and_a_large_finite_one_accepted() -> None:
    caps = types.SimpleNamespace(min_modalities=1)
    loaded: Any = types.SimpleNamespace(
        modalities=("text",), dims={"text": 2}, model=types.SimpleNamespace(declared_capabilities=caps)
    )
    for bad in ([[np.inf, -np.inf]], [[np.nan, 0.0]], [[1.0, np.inf]]):
        with pytest.raises(DataError, match="NaN or Inf"):
            service.batch_from_arrays(loaded, [{"text": bad}])
    big = service.batch_from_arrays(loaded, [{"text": [[3e38, 3e38]]}])  # its float32 sum overflows; values are finite
    assert float(big.features["text"].max()) == pytest.approx(3e38, rel=1e-6)


@pytest.mark.realdata
def test_onnx_service_equals_pytorch_on_real_mosi_requests(tmp_path: Path) -> None:
    folder = REPO / "data" / "mosi"
    if not (folder / "meta.json").is_file():
        pytest.skip(f"{folder} is absent: msakit data prepare mosi --source ../shared/data --out data/mosi")
    from msakit.data import load_dataset

    dataset = load_dataset(folder)
    torch.manual_seed(0)
    model = create_model("late_fusion", **dataset.info.model_overrides())
    model.start_fit(dataset_stats(dataset.split("train")))
    ckpt = save_checkpoint(tmp_path / "ckpt", model.eval(), dataset=dataset.info)
    test = dataset.split("test")
    full = {m: int(a.values.shape[1]) for m, a in test.modalities.items()}
    graphs = [_export(ckpt, tmp_path / f"g{n}.onnx", {m: min(n, L) for m, L in full.items()}) for n in (16, 64)]
    onnx_model = service.use_onnx(service.load_model(ckpt), graphs)
    reference = service.load_model(ckpt)
    for rows in ([0], list(range(1, 257))):  # batch 1 and batch 256, as the benchmark sends them
        batch = test.batch(rows)
        body = _npz(ids=np.asarray(batch.ids), **{k: v for m in batch.features for k, v in (
            (m, batch.features[m].numpy()), (f"{m}_mask", batch.masks[m].numpy()))})  # fmt: skip
        answers = []
        for loaded in (onnx_model, reference):
            samples, ids = service.samples_from_npz(body)
            answers.append(service.prediction_json(service.predict_features(loaded, samples, ids=ids)))
        _close(answers[0], answers[1])
