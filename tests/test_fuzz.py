"""Property-based fuzzing (Hypothesis) of every reader: a typed msakit error or a correct result.

Each property builds a malformed input from a valid one (a dataset folder, an MMSA
pickle, an MFN HDF5 file, a transcript, a preset, a `key=value` override, a checkpoint,
an optimizer state, a cache entry) and asserts that reading it either raises an
`MsakitError` or returns a value that satisfies the reader's contract, never any other
exception, and that an interrupted atomic write never leaves a partial file.

The default suite runs each property at `FAST` examples; ``-m slow`` runs it at `SLOW`
(12 properties x 250 = 3,000 generated cases).
"""

from __future__ import annotations

import io
import json
import math
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from msakit.errors import MsakitError  # noqa: E402

FAST, SLOW = 8, 250
SIZES = [pytest.param(FAST, id="fast"), pytest.param(SLOW, id="slow", marks=pytest.mark.slow)]
CASES: dict[str, int] = {}  # property -> examples run (printed with -s)


def fuzz(n: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: a failure reproduces
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def count(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


@contextmanager
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="msakit-fuzz-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def expect_typed(fn: Callable[[], Any]) -> Any:
    """fn() or None when it raised an MsakitError; any other exception fails the property."""
    try:
        return fn()
    except MsakitError as exc:
        assert str(exc).strip(), "an error must say what is wrong"
        return None


# ----------------------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
dtypes = (
    hnp.scalar_dtypes()
    | hnp.array_dtypes(subtype_strategy=hnp.scalar_dtypes(), max_size=2)
    | st.sampled_from([np.dtype("f4"), np.dtype("f2"), np.dtype("i8"), np.dtype("?"), np.dtype("c8")])
)


def arrays(max_dims: int = 4) -> st.SearchStrategy[np.ndarray]:
    return dtypes.flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    )


# ----------------------------------------------------------------------------- folder format


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pandas as pd

    from msakit.data import SyntheticConfig, make_synthetic, write_folder

    ds = make_synthetic(SyntheticConfig(sizes=(6, 3, 3), dims=(4, 3, 2), lengths=(3, 4, 2), seed=1))
    rows = [(i, name, float(lab)) for name, split in ds for i, lab in zip(split.ids, split.labels, strict=True)]
    mods = {}
    for m in ds.info.dims:
        parts = [split.modalities[m] for _, split in ds]
        mods[m] = (
            np.concatenate([np.asarray(p.values, np.float32) for p in parts]),
            np.concatenate([p.lengths for p in parts]),
            [i for _, split in ds for i in split.ids],
        )
    labels = pd.DataFrame(rows, columns=["id", "split", "label"])
    return write_folder(tmp_path_factory.mktemp("fuzz") / "base", ds.info, labels, mods)


FOLDER_FILES = ["meta.json", "labels.csv", "text.npy", "text.lengths.npy", "text.ids.txt", "audio.npy"]


def _mutate_folder(data: st.DataObject, folder: Path) -> None:
    target = data.draw(st.sampled_from(FOLDER_FILES), label="file")
    path = folder / target
    how = data.draw(st.sampled_from(["bytes", "truncate", "structured"]), label="how")
    if how == "bytes":
        path.write_bytes(data.draw(st.binary(max_size=300), label="content"))
    elif how == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)), label="cut")])
    elif target == "meta.json":
        meta = json.loads(path.read_text())
        key = data.draw(st.sampled_from([*meta, "modalities.text", "modalities.text.dim"]), label="key")
        value = data.draw(json_values, label="value")
        if key.startswith("modalities.text"):
            entry = meta["modalities"]["text"]
            if key.endswith("dim"):
                entry["dim"] = value
            else:
                meta["modalities"]["text"] = value
        else:
            meta[key] = value
        path.write_text(json.dumps(meta))
    elif target.endswith(".npy"):
        np.save(path, data.draw(arrays(), label="array"))
    elif target == "labels.csv":
        lines = path.read_text().splitlines()
        k = data.draw(st.integers(1, len(lines) - 1), label="row")
        cell = data.draw(st.sampled_from([0, 1, 2]), label="cell")
        cells = lines[k].split(",")
        cells[cell] = data.draw(
            st.sampled_from(["", "nan", "inf", "-1e400", "holdout", lines[1].split(",")[0], "7", "x,y"])
            | st.text(max_size=6),
            label="value",
        )
        lines[k] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
    else:  # ids
        ids = path.read_text().splitlines()
        k = data.draw(st.integers(0, len(ids) - 1), label="row")
        ids[k] = data.draw(st.sampled_from(["", ids[0], "ghost", " "]) | st.text(max_size=5), label="id")
        path.write_text("\n".join(ids) + "\n")


def _check_dataset(ds: Any) -> None:
    """The contract of a dataset a reader accepted: float features, whole lengths, batches build."""
    for name, split in ds:
        assert len(set(split.ids)) == len(split.ids)
        for m, arr in split.modalities.items():
            assert np.dtype(arr.values.dtype).kind == "f", (name, m, arr.values.dtype)
            lengths = np.asarray(arr.lengths)
            assert np.isfinite(lengths).all() and (lengths == np.round(lengths)).all()
        if ds.info.num_classes > 1:
            assert ((split.labels >= 0) & (split.labels < ds.info.num_classes)).all()
        if len(split):
            batch = split.batch(list(range(len(split))))
            for feats in batch.features.values():
                assert bool(feats.isfinite().all())


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_folder_reader(n: int, base_folder: Path) -> None:
    from msakit.data import read_folder

    @fuzz(n)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        count("folder")
        with scratch() as tmp:
            folder = tmp / "ds"
            shutil.copytree(base_folder, folder)
            _mutate_folder(data, folder)
            ds = expect_typed(lambda: read_folder(folder))
            if ds is not None:
                _check_dataset(ds)

    run()


# ----------------------------------------------------------------------------- pickles


def _mmsa(n: int = 3) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(0)
    return {
        s: {
            "text": rng.normal(size=(n, 3, 4)).astype(np.float32),
            "audio": rng.normal(size=(n, 4, 3)).astype(np.float32),
            "vision": rng.normal(size=(n, 2, 2)).astype(np.float32),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "audio_lengths": np.full(n, 4),
            "vision_lengths": np.full(n, 2),
            "id": np.array([f"{s}{k}" for k in range(n)], dtype=object),
        }
        for s in ("train", "valid", "test")
    }


PICKLE_KEYS = ["text", "audio", "vision", "regression_labels", "audio_lengths", "vision_lengths", "id", "raw_text"]


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_pickle_reader(n: int) -> None:
    from msakit.data.pickles import read_pickle_dataset

    @fuzz(n)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        count("pickle")
        payload: Any = _mmsa()
        how = data.draw(st.sampled_from(["array", "object", "drop", "top", "bytes"]), label="how")
        split = data.draw(st.sampled_from(["train", "valid", "test"]), label="split")
        key = data.draw(st.sampled_from(PICKLE_KEYS), label="key")
        if how == "array":
            payload[split][key] = data.draw(arrays(), label="array")
        elif how == "object":
            payload[split][key] = data.draw(json_values, label="object")
        elif how == "drop":
            payload[split].pop(key, None)
        elif how == "top":
            payload = data.draw(json_values, label="payload")
        with scratch() as tmp:
            path = tmp / "d.pkl"
            raw = pickle.dumps(payload, protocol=data.draw(st.integers(2, 5), label="protocol"))
            if how == "bytes":
                raw = raw[: data.draw(st.integers(0, len(raw)), label="cut")] + data.draw(st.binary(max_size=20))
            path.write_bytes(raw)
            ds = expect_typed(lambda: read_pickle_dataset(path))
            if ds is not None:
                _check_dataset(ds)

    run()


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_restricted_unpickler_never_builds_other_objects(n: int) -> None:
    from msakit.data.pickles import safe_load_pickle

    allowed = (dict, list, tuple, str, bytes, int, float, bool, type(None), np.ndarray, np.generic, set, complex)

    def walk(obj: Any) -> None:
        assert isinstance(obj, allowed), type(obj)
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(k)
                walk(v)
        elif isinstance(obj, (list, tuple, set)):
            for v in obj:
                walk(v)

    @fuzz(n)
    @given(st.binary(max_size=200), st.sampled_from([b"", b"\x80\x04", b"\x80\x02", b"c__builtin__\neval\n"]))
    def run(raw: bytes, prefix: bytes) -> None:
        count("unpickler")
        with scratch() as tmp:
            path = tmp / "x.pkl"
            path.write_bytes(prefix + raw)
            obj = expect_typed(lambda: safe_load_pickle(path))
            if obj is not None:
                walk(obj)

    run()


# ----------------------------------------------------------------------------- HDF5


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_h5_array_reader(n: int) -> None:
    h5py = pytest.importorskip("h5py")
    from msakit.data.h5 import read_h5_array

    @fuzz(n)
    @given(arrays(max_dims=3), st.sampled_from(["d1", "data", "other"]), st.booleans(), st.binary(max_size=64))
    def run(array: np.ndarray, key: str, garbage: bool, raw: bytes) -> None:
        count("h5")
        with scratch() as tmp:
            path = tmp / "audio_train.h5"
            if garbage:
                path.write_bytes(raw)
            else:
                try:
                    with h5py.File(path, "w") as h5:
                        h5.create_dataset(key, data=array)
                except (TypeError, ValueError):
                    return  # a dtype HDF5 cannot store: nothing to read
            values = expect_typed(lambda: read_h5_array(path, ndim=(1, 2, 3)))
            if values is not None:
                assert values.dtype == np.float64 and values.ndim in (1, 2, 3)

    run()


# ----------------------------------------------------------------------------- transcripts

times = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 10**6).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "", "1,5", "abc", "0x10"]),
)
srt_time = st.builds(
    lambda h, m, s, ms: f"{h:02d}:{m:02d}:{s:02d},{ms:03d}",
    st.integers(0, 120),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 9999),
)


@st.composite
def transcripts(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from([".csv", ".srt", ".vtt", ".txt", ".tsv"]))
    if draw(st.booleans()):
        return kind, draw(st.text(max_size=200))
    rows = draw(st.lists(st.tuples(times, times, st.text(max_size=10)), min_size=0, max_size=8))
    if kind in (".csv", ".tsv"):
        sep = "," if kind == ".csv" else "\t"
        header = draw(st.sampled_from(["start,end,text", "#starttime;#endtime;transcription", "a,b,c"]))
        body = "\n".join(sep.join((a, b, t.replace("\n", " "))) for a, b, t in rows)
        return kind, header.replace(",", sep) + "\n" + body
    blocks = []
    for k, (_, _, text) in enumerate(rows):
        start, end = draw(srt_time), draw(srt_time)
        blocks.append(f"{k + 1}\n{start} --> {end}\n{text}")
    head = "WEBVTT\n\n" if kind == ".vtt" else ""
    return kind, head + "\n\n".join(blocks)


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_transcript_parsers(n: int) -> None:
    from msakit.extract.speech import read_transcript

    @fuzz(n)
    @given(transcripts(), st.booleans())
    def run(case: tuple[str, str], latin1: bool) -> None:
        count("transcript")
        suffix, text = case
        with scratch() as tmp:
            path = tmp / f"t{suffix}"
            path.write_bytes(text.encode("latin-1", "replace") if latin1 else text.encode("utf-8", "surrogatepass"))
            utterances = expect_typed(lambda: read_transcript(path, duration=5.0))
            if utterances is not None:
                assert utterances
                for u in utterances:
                    assert math.isfinite(u.start) and math.isfinite(u.end) and 0 <= u.start <= u.end
                    assert u.text.strip()

    run()


# ----------------------------------------------------------------------------- config, overrides, presets


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_overrides(n: int) -> None:
    from msakit.config import parse_override
    from msakit.training import train_config_from

    keys = st.sampled_from(["lr", "epochs", "batch_size", "seeds", "patience", "dropout", "device", "bogus", ""])
    values = st.text(max_size=12) | st.sampled_from(["nan", "-1", "0", "[]", "[1,2", "{a: 1}", "1e-3", "!!python"])

    @fuzz(n)
    @given(keys, values)
    def run(key: str, value: str) -> None:
        count("override")
        parsed = expect_typed(lambda: parse_override(f"{key}={value}"))
        if parsed is None:
            return
        cfg = expect_typed(lambda: train_config_from(dict([parsed])))
        if cfg is not None:
            assert cfg.epochs >= 1 and cfg.batch_size >= 1 and cfg.seeds and math.isfinite(cfg.lr) and cfg.lr > 0

    run()


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_presets(n: int) -> None:
    from msakit.config import load_yaml_overrides

    yamlish = st.text(
        alphabet=st.sampled_from(list("model:train{}[]-, \n\t&*!|>'\"0123456789.eax_")), max_size=80
    ) | st.binary(max_size=80).map(lambda b: b.decode("latin-1"))

    @fuzz(n)
    @given(yamlish, st.booleans())
    def run(text: str, binary: bool) -> None:
        count("preset")
        with scratch() as tmp:
            path = tmp / "p.yaml"
            path.write_bytes(text.encode("latin-1", "replace") if binary else text.encode("utf-8", "surrogatepass"))
            preset = expect_typed(lambda: load_yaml_overrides(path))
            if preset is not None:
                assert set(preset) <= {"model", "train"} and all(isinstance(v, dict) for v in preset.values())

    run()


# ----------------------------------------------------------------------------- checkpoints and optimizer state


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from msakit.registry import create_model
    from msakit.training import save_checkpoint

    model = create_model("late_fusion", text_dim=4, audio_dim=3, visual_dim=2, hidden_dim=4)
    return save_checkpoint(tmp_path_factory.mktemp("fuzz") / "ckpt", model)


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_checkpoint_loader(n: int, base_checkpoint: Path) -> None:
    from msakit.training import load_checkpoint

    @fuzz(n)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        count("checkpoint")
        with scratch() as tmp:
            ckpt = tmp / "ckpt"
            shutil.copytree(base_checkpoint, ckpt)
            how = data.draw(st.sampled_from(["config_field", "config_top", "config_bytes", "weights"]), label="how")
            meta = json.loads((ckpt / "config.json").read_text())
            if how == "config_field":
                key = data.draw(st.sampled_from([*meta["model_config"], "bogus"]), label="key")
                meta["model_config"][key] = data.draw(json_values, label="value")
                (ckpt / "config.json").write_text(json.dumps(meta))
            elif how == "config_top":
                meta[data.draw(st.sampled_from(["model", "model_config", "format"]))] = data.draw(json_values)
                (ckpt / "config.json").write_text(json.dumps(meta))
            elif how == "config_bytes":
                (ckpt / "config.json").write_bytes(data.draw(st.binary(max_size=100)))
            else:
                raw = bytearray((ckpt / "model.safetensors").read_bytes())
                cut = data.draw(st.integers(0, len(raw)), label="cut")
                flip = data.draw(st.integers(0, len(raw) - 1), label="flip")
                raw[flip] ^= 0xFF
                (ckpt / "model.safetensors").write_bytes(bytes(raw[:cut]))
            loaded = expect_typed(lambda: load_checkpoint(ckpt))
            if loaded is not None:
                model, _ = loaded
                assert all(bool(p.isfinite().all()) for p in model.state_dict().values() if p.is_floating_point())

    run()


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_optimizer_state(n: int) -> None:
    import torch

    checkpoint = pytest.importorskip("msakit.training.checkpoint")
    read_optimizer_state = getattr(checkpoint, "read_optimizer_state", None)
    if read_optimizer_state is None:
        pytest.skip("msakit.training.checkpoint.read_optimizer_state is not there yet (ENGINE)")
    buffer = io.BytesIO()
    torch.save({"optimizer": {"state": {}, "param_groups": []}, "torch_rng": torch.get_rng_state()}, buffer)
    good = buffer.getvalue()

    @fuzz(n)
    @given(st.integers(0, len(good)), st.integers(0, len(good) - 1), st.booleans(), st.binary(max_size=64))
    def run(cut: int, flip: int, garbage: bool, raw: bytes) -> None:
        count("optimizer")
        with scratch() as tmp:
            data = bytearray(good)
            data[flip] ^= 0x55
            (tmp / "optimizer.pt").write_bytes(raw if garbage else bytes(data[:cut]))
            state = expect_typed(lambda: read_optimizer_state(tmp))
            if state is not None:
                assert isinstance(state["optimizer"], dict)

    run()


# ----------------------------------------------------------------------------- caches


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_cache_entries_are_verified(n: int) -> None:
    from msakit.extract.dataset import _load_npz
    from msakit.text_encoder import _read_cache_entry

    @fuzz(n)
    @given(st.dictionaries(st.sampled_from(["values", "lengths", "audio", "__meta__"]), arrays(3), max_size=3),
           st.integers(0, 4000), st.booleans())  # fmt: skip
    def run(entries: dict[str, np.ndarray], cut: int, truncate: bool) -> None:
        count("cache")
        with scratch() as tmp:
            path = tmp / "entry.npz"
            try:
                np.savez(path, **entries)
            except (TypeError, ValueError):
                return
            if truncate:
                path.write_bytes(path.read_bytes()[:cut])
            hit = _read_cache_entry(path, 2, 3)  # never raises: None means recompute
            if hit is not None:
                values, lengths = hit
                assert values.shape[:2] == (2, 3) and lengths.shape == (2,) and values.dtype.kind == "f"
            clip = _load_npz(path)
            if clip is not None:
                arrays_, meta = clip
                assert isinstance(meta, dict) and all(a.dtype == np.float32 for a in arrays_.values())

    run()


# ----------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("n", SIZES)
def test_fuzz_atomic_writes_never_leave_partial_files(n: int) -> None:
    from msakit.io import atomic_open

    @fuzz(n)
    @given(st.binary(max_size=2000), st.integers(0, 2000), st.booleans(), st.booleans())
    def run(payload: bytes, fail_at: int, existed: bool, fail: bool) -> None:
        count("atomic")
        with scratch() as tmp:
            path = tmp / "out.bin"
            if existed:
                path.write_bytes(b"old")
            try:
                with atomic_open(path, "wb") as fh:
                    fh.write(payload[:fail_at])
                    if fail:
                        raise OSError(28, "No space left on device")
                    fh.write(payload[fail_at:])
            except OSError:
                pass
            if fail:
                assert (path.read_bytes() == b"old") if existed else not path.exists()
            else:
                assert path.read_bytes() == payload
            assert [p.name for p in tmp.iterdir()] == (["out.bin"] if path.exists() else [])

    run()


def test_fuzz_case_counts_cover_every_reader() -> None:
    """Run last in this module (pytest keeps file order): every property produced cases."""
    expected = {"folder", "pickle", "unpickler", "transcript", "override", "preset", "checkpoint", "cache", "atomic"}
    assert expected <= set(CASES), sorted(expected - set(CASES))
    print("fuzz cases:", sum(CASES.values()), dict(sorted(CASES.items())))
