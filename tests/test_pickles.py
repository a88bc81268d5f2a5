"""Tests for msakit.data.pickles: MMSA and MulT readers, the restricted unpickler, export round trip."""

from __future__ import annotations

import collections
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from msakit.data import SyntheticConfig, load_dataset, make_synthetic
from msakit.data.pickles import read_pickle_dataset, safe_load_pickle, write_mmsa_pickle
from msakit.errors import DataError, UnsafePickleError

# Every test fails on an unexpected warning: reading a clean file must stay silent.
pytestmark = pytest.mark.filterwarnings("error")

SIZES = {"train": 6, "valid": 3, "test": 4}
LT, LA, LV, DT, DA, DV = 8, 10, 7, 12, 5, 4


def _post_padded(rng: np.random.Generator, lengths: np.ndarray, steps: int, dim: int) -> np.ndarray:
    values = rng.standard_normal((len(lengths), steps, dim)).astype(np.float32)
    values[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0
    return values


def _mmsa_split(rng: np.random.Generator, n: int, split: str, *, aligned: bool = False, sims: bool = False) -> dict:
    text_len = rng.integers(1, LT + 1, n)
    mask = (np.arange(LT)[None, :] < text_len[:, None]).astype(np.float32)
    labels = rng.uniform(-1, 1, n) if sims else rng.uniform(-3, 3, n)
    raw: dict[str, Any] = {
        "raw_text": np.array([f"sentence {split} {i}" for i in range(n)], dtype=object),
        "text": _post_padded(rng, text_len, LT, DT),
        "text_bert": np.stack([mask * 101, mask, np.zeros_like(mask)], axis=1),  # (N, 3, Lt)
        "id": np.array([f"vid{i}$_${split}" for i in range(n)], dtype=object),
        "regression_labels": labels.astype(np.float32),
        "classification_labels": (labels > 0).astype(np.float32),
    }
    if aligned:
        raw["audio"] = rng.standard_normal((n, LT, DA)).astype(np.float32)
        raw["vision"] = rng.standard_normal((n, LT, DV)).astype(np.float32)
    else:
        audio_len, vision_len = rng.integers(1, LA + 1, n), rng.integers(1, LV + 1, n)
        raw["audio"], raw["audio_lengths"] = _post_padded(rng, audio_len, LA, DA), list(audio_len)
        raw["vision"], raw["vision_lengths"] = _post_padded(rng, vision_len, LV, DV), vision_len
    if sims:
        for m in "TAV":
            raw[f"regression_labels_{m}"] = rng.uniform(-1, 1, n).astype(np.float32)
    return raw


def _mult_split(rng: np.random.Generator, n: int, split: str) -> dict:
    lengths = {key: rng.integers(1, steps + 1, n) for key, steps in (("text", 9), ("audio", 9), ("vision", 9))}
    return {
        "text": _post_padded(rng, lengths["text"], 9, 300).astype(np.float64),
        "audio": _post_padded(rng, lengths["audio"], 9, 74),
        "vision": _post_padded(rng, lengths["vision"], 9, 35),
        "labels": rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32),
        "id": np.array([[f"vid{i}".encode(), b"1.5", b"3.25"] for i in range(n)]),  # (N, 3) bytes
        "_lengths": lengths,  # for the test only; the reader ignores unknown keys
    }


def _dump(obj: object, path: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _write(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_mmsa_unaligned_all_fields(tmp_path: Path, rng: np.random.Generator, protocol: int) -> None:
    raw = {s: _mmsa_split(rng, n, s, sims=True) for s, n in SIZES.items()}
    path = _dump(raw, tmp_path / "SIMS" / "unaligned_39.pkl", protocol)
    dataset = read_pickle_dataset(path)
    assert dataset.info.name == "SIMS/unaligned_39"
    assert dataset.info.metric_set == "sims" and dataset.info.label_range == 1.0
    assert dict(dataset.info.dims) == {"text": DT, "audio": DA, "visual": DV}
    assert dataset.source == str(path)
    for name, split in dataset:
        src = raw[name]
        np.testing.assert_array_equal(split.labels, src["regression_labels"])
        assert split.ids == list(src["id"]) and split.ids[0] == f"vid0$_${name}"
        assert split.raw_text == list(src["raw_text"])
        np.testing.assert_array_equal(split.modalities["visual"].values, src["vision"])
        np.testing.assert_array_equal(split.modalities["audio"].lengths, src["audio_lengths"])
        np.testing.assert_array_equal(split.modalities["visual"].lengths, src["vision_lengths"])
        np.testing.assert_array_equal(split.modalities["text"].lengths, src["text_bert"][:, 1].sum(axis=1))
        assert split.modalities["audio"].present.all()
        assert sorted(split.targets) == ["label_A", "label_T", "label_V"]
        np.testing.assert_array_equal(split.targets["label_T"], src["regression_labels_T"])
    batch = dataset.split("train").batch([0, 1, 2])
    assert batch.features["visual"].shape[0] == 3 and batch.targets["label_A"].shape == (3,)


def test_mmsa_aligned_without_lengths(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = {s: _mmsa_split(rng, n, s, aligned=True) for s, n in SIZES.items()}
    for split in raw.values():
        split.pop("text_bert")
    dataset = read_pickle_dataset(_dump(raw, tmp_path / "MOSI" / "aligned_50.pkl"))
    assert dataset.info.name == "MOSI/aligned_50"
    assert dataset.info.metric_set == "mosi" and dataset.info.label_range == 3.0
    train = dataset.split("train")
    assert (train.modalities["audio"].lengths == LT).all() and (train.modalities["visual"].lengths == LT).all()
    # without text_bert, text lengths run to the last non-zero step
    expected = (raw["train"]["text"] != 0).any(axis=2).sum(axis=1)
    np.testing.assert_array_equal(train.modalities["text"].lengths, expected)
    assert train.targets == {}


def test_mult_style(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = {s: _mult_split(rng, n, s) for s, n in SIZES.items()}
    dataset = read_pickle_dataset(_dump(raw, tmp_path / "mosi_data_noalign.pkl"))
    assert dataset.info.metric_set == "mosi"
    assert dict(dataset.info.dims) == {"text": 300, "audio": 74, "visual": 35}
    test = dataset.split("test")
    assert test.ids[2] == "vid2_1.5_3.25"
    assert test.raw_text is None
    np.testing.assert_array_equal(test.labels, raw["test"]["labels"].reshape(-1))
    assert test.modalities["text"].values.dtype == np.float32
    for key, modality in (("text", "text"), ("audio", "audio"), ("vision", "visual")):
        np.testing.assert_array_equal(test.modalities[modality].lengths, raw["test"]["_lengths"][key])


def test_mult_nonfinite_audio_rejected_then_fixed(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = {s: _mult_split(rng, n, s) for s, n in SIZES.items()}
    raw["valid"]["audio"][1, 0, :3] = -np.inf
    path = _dump(raw, tmp_path / "mosi_data.pkl")
    with pytest.raises(DataError, match="split 'valid'") as info:
        read_pickle_dataset(path)
    assert info.value.field == "audio" and "fix_nonfinite" in str(info.value)
    with pytest.warns(UserWarning, match="zeroed 3 NaN/Inf values"):
        dataset = read_pickle_dataset(path, fix_nonfinite=True)
    assert np.isfinite(dataset.split("valid").modalities["audio"].values).all()


def test_nan_in_mmsa_audio(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = {s: _mmsa_split(rng, n, s) for s, n in SIZES.items()}
    raw["test"]["audio"][0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"split 'test'.*NaN") as info:
        read_pickle_dataset(_dump(raw, tmp_path / "unaligned_50.pkl"))
    assert info.value.field == "audio"


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    path = _dump({"train": {"text": _Evil(f"echo pwned > {marker}")}}, tmp_path / "evil.pkl")
    with pytest.raises(UnsafePickleError, match=r"\.system") as info:
        read_pickle_dataset(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "refused"),
    [
        (eval, "builtins.eval"),
        (subprocess.Popen, "subprocess.Popen"),
        (collections.Counter("ab"), "collections.Counter"),
    ],
)
def test_other_globals_are_refused(tmp_path: Path, obj: object, refused: str) -> None:
    path = _dump({"x": obj}, tmp_path / "bad.pkl")
    with pytest.raises(UnsafePickleError, match=refused):
        safe_load_pickle(path)


def test_safe_load_accepts_numpy_and_containers(tmp_path: Path) -> None:
    obj = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "s": np.float64(2.5),
        "i": [np.int64(3), (1, 2.0, "x", b"y")],
        "o": np.array(["a", "bc"], dtype=object),
        "u": np.array(["a", "bc"]),
        "od": collections.OrderedDict(k=np.bool_(True)),
        "set": {1, 2},
    }
    for protocol in (0, 2, 4, 5):
        loaded = safe_load_pickle(_dump(obj, tmp_path / f"ok{protocol}.pkl", protocol))
        assert isinstance(loaded, dict)
        np.testing.assert_array_equal(loaded["a"], obj["a"])
        assert loaded["s"] == 2.5 and loaded["i"] == obj["i"] and loaded["set"] == {1, 2}
        assert list(loaded["o"]) == ["a", "bc"] and list(loaded["u"]) == ["a", "bc"]
        assert loaded["od"] == obj["od"]


def test_numpy1_and_python2_pickles(tmp_path: Path) -> None:
    # numpy 1.x names its modules numpy.core.*; the alias must resolve without importing numpy.core
    array = np.arange(4, dtype=np.float64)
    old = pickle.dumps(array, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in old
    np.testing.assert_array_equal(safe_load_pickle(_write(old, tmp_path / "np1.pkl")), array)
    # a Python 2 pickle: array bytes as a py2 str, which needs encoding="latin1"
    data = np.array([1.0, -2.0], np.float32).tobytes()
    py2 = (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85U\x01b\x87Rq\x02"
        b"(K\x01K\x02\x85cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
        b"K\x00tb\x89U\x08" + data + b"tb."
    )
    np.testing.assert_array_equal(safe_load_pickle(_write(py2, tmp_path / "py2.pkl")), [1.0, -2.0])


def test_truncated_pickle(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _dump({s: _mmsa_split(rng, n, s) for s, n in SIZES.items()}, tmp_path / "unaligned_50.pkl")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a valid pickle") as info:
        read_pickle_dataset(path)
    assert str(path) in str(info.value) and not isinstance(info.value, UnsafePickleError)


def test_missing_file_and_unknown_structure(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        safe_load_pickle(tmp_path / "nope.pkl")
    with pytest.raises(DataError, match=r"expected a dict of split dicts.*found \['train'\]"):
        read_pickle_dataset(_dump({"train": {}}, tmp_path / "a.pkl"))
    with pytest.raises(DataError, match="found list"):
        read_pickle_dataset(_dump([1, 2], tmp_path / "b.pkl"))
    with pytest.raises(DataError, match="neither 'regression_labels'"):
        read_pickle_dataset(_dump({s: {"text": 1} for s in SIZES}, tmp_path / "c.pkl"))


def test_missing_field_is_named(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = {s: _mmsa_split(rng, n, s) for s, n in SIZES.items()}
    del raw["valid"]["audio"]
    with pytest.raises(DataError, match=r"split 'valid': missing field\(s\) \['audio'\]") as info:
        read_pickle_dataset(_dump(raw, tmp_path / "unaligned_50.pkl"))
    assert info.value.field == "audio"


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("audio", lambda a: a[:-1]),  # one row short of the labels
        ("vision", lambda a: a[:, :, 0]),  # 2-d
        ("vision_lengths", lambda a: np.asarray(a)[:-1]),
        ("id", lambda a: a[:-1]),
        ("regression_labels", lambda a: np.stack([a, a], axis=1)),
    ],
)
def test_mismatched_shapes_are_named(tmp_path: Path, rng: np.random.Generator, field: str, bad: Any) -> None:
    raw = {s: _mmsa_split(rng, n, s) for s, n in SIZES.items()}
    raw["train"][field] = bad(raw["train"][field])
    with pytest.raises(DataError, match="split 'train'") as info:
        read_pickle_dataset(_dump(raw, tmp_path / "unaligned_50.pkl"))
    assert info.value.field == field and "unaligned_50.pkl" in str(info.value)


def test_lengths_beyond_steps_are_clipped(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = {s: _mmsa_split(rng, n, s) for s, n in SIZES.items()}
    raw["train"]["audio_lengths"][0] = LA + 5
    with pytest.warns(UserWarning, match="audio_lengths clipped"):
        dataset = read_pickle_dataset(_dump(raw, tmp_path / "unaligned_50.pkl"))
    assert dataset.split("train").modalities["audio"].lengths[0] == LA


def test_round_trip_synthetic(tmp_path: Path) -> None:
    original = make_synthetic(SyntheticConfig(sizes=(20, 8, 10), dims=(6, 4, 5), lengths=(7, 9, 8)))
    out = write_mmsa_pickle(original, tmp_path / "export" / "synthetic.pkl")
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["synthetic.pkl"]  # no temp file left
    with pytest.raises(DataError, match="output exists"):
        write_mmsa_pickle(original, out)
    raw = safe_load_pickle(out)
    assert isinstance(raw, dict) and "text_bert" not in raw["train"] and "vision" in raw["train"]
    copy = read_pickle_dataset(out)
    assert copy.info.metric_set == original.info.metric_set and copy.info.dims == original.info.dims
    for name, split in original:
        other = copy.split(name)
        assert other.ids == split.ids and other.raw_text is None
        np.testing.assert_array_equal(other.labels, split.labels)
        for m, arr in split.modalities.items():
            np.testing.assert_array_equal(other.modalities[m].values, arr.values)
            np.testing.assert_array_equal(other.modalities[m].lengths, arr.lengths)
            np.testing.assert_array_equal(other.modalities[m].present, arr.present)


def test_round_trip_keeps_unimodal_labels_and_transcripts(tmp_path: Path, rng: np.random.Generator) -> None:
    raw = {s: _mmsa_split(rng, n, s, sims=True) for s, n in SIZES.items()}
    original = read_pickle_dataset(_dump(raw, tmp_path / "SIMS" / "unaligned_39.pkl"))
    copy = read_pickle_dataset(write_mmsa_pickle(original, tmp_path / "out" / "unaligned_39.pkl"))
    assert copy.info.metric_set == "sims"
    for name, split in original:
        assert copy.split(name).raw_text == split.raw_text
        for key, target in split.targets.items():
            np.testing.assert_array_equal(copy.split(name).targets[key], target)
        np.testing.assert_array_equal(copy.split(name).modalities["text"].lengths, split.modalities["text"].lengths)


def test_write_refuses_incomplete_dataset(tmp_path: Path) -> None:
    text_only = make_synthetic(SyntheticConfig(sizes=(4, 2, 2), modalities=("text",)))
    with pytest.raises(DataError, match="lacks"):
        write_mmsa_pickle(text_only, tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()


def test_load_dataset_dispatches_to_pickles(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _dump({s: _mult_split(rng, n, s) for s, n in SIZES.items()}, tmp_path / "mosi_data_noalign.pkl")
    dataset = load_dataset(path)
    assert len(dataset.split("train")) == SIZES["train"]
    assert dataset.info.name == f"{tmp_path.name}/mosi_data_noalign"
