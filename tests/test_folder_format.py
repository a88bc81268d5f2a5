"""msakit's folder format: round trip, memory mapping, and every bad-input path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msakit.data import DatasetInfo, load_dataset, read_folder, write_folder
from msakit.errors import DataError


def _write(tmp_path: Path, *, n: int = 9, audio_subset: bool = False, **labels_patch: object) -> Path:
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(n)]
    labels = pd.DataFrame(
        {"id": ids, "split": ["train", "valid", "test"] * (n // 3), "label": rng.uniform(-3, 3, n), "text": "ok"}
    )
    for key, value in labels_patch.items():
        labels[key] = value
    text = rng.standard_normal((n, 5, 4)).astype(np.float32)
    audio_ids = ids[:-1] if audio_subset else ids
    audio = rng.standard_normal((len(audio_ids), 1, 3)).astype(np.float32)
    info = DatasetInfo(name="toy", metric_set="mosi", dims={"text": 4, "audio": 3})
    return write_folder(
        tmp_path / "toy",
        info,
        labels,
        {"text": (text, np.full(n, 5), ids), "audio": (audio[::-1], np.ones(len(audio_ids)), audio_ids[::-1])},
    )


def test_round_trip_is_memory_mapped_and_keyed_by_id(tmp_path: Path) -> None:
    path = _write(tmp_path)
    ds = load_dataset(path)
    assert ds.info.dims == {"text": 4, "audio": 3}
    assert sorted(ds.splits) == ["test", "train", "valid"]
    raw = np.load(path / "audio.npy", mmap_mode="r")
    assert isinstance(raw, np.memmap)
    batch = ds.split("train").batch([0, 1])
    # rows were written in reverse id order; keyed by id they come back aligned
    audio_ids = (path / "audio.ids.txt").read_text().split()
    row = audio_ids.index(batch.ids[1])
    np.testing.assert_allclose(batch.features["audio"][1, 0].numpy(), raw[row, 0])
    assert batch.raw_text == ["ok", "ok"]


def test_modality_covering_a_subset_of_ids_is_absent_for_the_rest(tmp_path: Path) -> None:
    ds = read_folder(_write(tmp_path, audio_subset=True))
    test = ds.split("test")
    batch = test.batch(range(len(test)))
    last = batch.ids.index("v8")
    assert not batch.present[last, 1] and batch.present[last, 0]
    assert not batch.masks["audio"][last].any() and (batch.features["audio"][last] == 0).all()


def test_existing_output_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    path = _write(tmp_path)
    with pytest.raises(DataError, match="exists"):
        _write(tmp_path)
    assert (path / "meta.json").exists()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: (p / "meta.json").write_text("{not json"), r"meta\.json"),
        (lambda p: (p / "labels.csv").write_text("id,split\nv0,train\n"), r"labels\.csv.*'label'"),
        (lambda p: (p / "audio.npy").write_bytes(b"\x93NUMPY garbage"), r"audio\.npy"),
        (lambda p: np.save(p / "audio.npy", np.zeros((9, 1, 5), np.float32)), r"5-d.*says 3"),
        (lambda p: (p / "audio.ids.txt").write_text("\n".join(f"x{i}" for i in range(9))), r"audio\.ids\.txt.*'id'"),
        (lambda p: np.save(p / "text.npy", np.full((9, 5, 4), np.nan, np.float32)), r"toy, field 'text'.*NaN or Inf"),
    ],
    ids=["bad-meta", "no-label-column", "corrupt-array", "wrong-dim", "ids-mismatch", "nan-values"],
)
def test_bad_input_names_file_and_field(tmp_path: Path, mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path)
    mutate(path)
    with pytest.raises(DataError, match=match):
        read_folder(path)


def test_nan_label_and_missing_split_are_rejected(tmp_path: Path) -> None:
    labels = [0.5] * 8 + [float("nan")]
    with pytest.raises(DataError, match=r"labels\.csv.*'label'"):
        read_folder(_write(tmp_path / "a", label=labels))
    with pytest.raises(DataError, match=r"split.*\['test'\]"):
        read_folder(_write(tmp_path / "b", split=["train", "valid", "valid"] * 3))


def test_meta_records_format_and_dims(tmp_path: Path) -> None:
    meta = json.loads((_write(tmp_path) / "meta.json").read_text())
    assert meta["format"] == "msakit-dataset" and meta["modalities"]["text"]["dim"] == 4
