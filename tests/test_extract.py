"""Extractors, the clip pipeline and `msakit extract`: tiny media made here, plus real clips (realdata)."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("opensmile")
pytest.importorskip("parselmouth")

sys.path.insert(0, str(Path(__file__).parent))
from media_factory import write_video, write_wav
from msakit.cli import main
from msakit.data import read_folder
from msakit.errors import ConfigError, DataError
from msakit.extract import create_extractor, list_extractors
from msakit.extract import text as text_module
from msakit.extract.media import load_audio, probe
from msakit.extract.pipeline import Pipeline, PipelineConfig, _cap, _to_grid
from msakit.extract.registry import Features
from msakit.extract.speech import read_transcript

AUDIO_ONLY = PipelineConfig(visual=())


class StubEncoder:
    """Stands in for MiniLM in fast tests: token count = word count + 2, values = word lengths."""

    name, dim = "stub", 384

    def encode_tokens(self, texts, max_len=50, batch_size=64, progress=True, *, ids=None):  # type: ignore[no-untyped-def]
        values = np.zeros((len(texts), max_len, 384), np.float32)
        lengths = np.array([min(len(t.split()) + 2, max_len) for t in texts])
        for i, n in enumerate(lengths):
            values[i, :n] = float(n)
        return values, lengths


@pytest.fixture
def stub_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_module, "_ENCODER", StubEncoder())


# ----------------------------------------------------------------------------- registry


def test_registry_lists_every_extractor_with_a_stable_width() -> None:
    assert set(list_extractors()) >= {
        "minilm_tokens", "minilm_sentence", "egemaps_lld", "egemaps_functionals", "prosody", "face_geometry",
        "fer_emotions",
    }  # fmt: skip
    dims = {n: create_extractor(n).output_dim for n in list_extractors()}
    assert dims["egemaps_lld"] == 25 and dims["egemaps_functionals"] == 88 and dims["prosody"] == 3
    assert dims["face_geometry"] == 10 and dims["fer_emotions"] == 7 and dims["minilm_tokens"] == 384
    assert list_extractors("visual") == ["face_geometry", "fer_emotions"]
    meta = create_extractor("prosody", {"pitch_ceiling": 500.0}).metadata()
    assert meta == {
        "extractor": "prosody",
        "dim": 3,
        "config": {"time_step": 0.01, "pitch_floor": 75.0, "pitch_ceiling": 500.0},
    }


def test_registry_rejects_unknown_names_and_fields() -> None:
    with pytest.raises(ConfigError, match="unknown extractor 'nope'"):
        create_extractor("nope")
    with pytest.raises(ConfigError, match="unknown config field 'speed'"):
        create_extractor("prosody", {"speed": 2})
    with pytest.raises(ConfigError, match="not a audio extractor"):
        Pipeline(PipelineConfig(audio=("face_geometry",)))


# ----------------------------------------------------------------------------- bad input


def test_missing_empty_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        probe(tmp_path / "absent.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        probe(tmp_path / "empty.mp4")
    video = write_video(tmp_path / "v.mp4")
    with pytest.raises(DataError, match=r"over the limit of 0\.001 MB"):
        probe(video, max_mb=0.001)


def test_not_a_video_and_truncated_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(DataError, match="not a readable audio/video file"):
        probe(text)
    video = write_video(tmp_path / "v.mp4", seconds=2.0)
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: the file cannot be opened
    with pytest.raises(DataError, match="corrupt"):
        probe(cut)


def test_no_audio_track_is_marked_missing_not_zero_filled(tmp_path: Path) -> None:
    clip = Pipeline(AUDIO_ONLY).load(write_video(tmp_path / "mute.mp4", audio=False), need_video=False)
    assert clip.samples is None and clip.audio_missing == "the file has no audio track"
    block = Pipeline(AUDIO_ONLY).audio(clip.samples, clip.audio_missing)
    assert not block.present and block.values.shape == (0, 28) and "no audio track" in block.missing
    with pytest.raises(DataError, match="has no audio track"):
        load_audio(tmp_path / "mute.mp4")


def test_silence_is_marked_missing(tmp_path: Path) -> None:
    clip = Pipeline(AUDIO_ONLY).load(write_wav(tmp_path / "quiet.wav", amplitude=0.0), need_video=False)
    assert clip.audio_missing.startswith("the audio track is silent")
    assert clip.visual_missing  # a wav has no video


def test_no_face_in_any_frame(tmp_path: Path) -> None:
    pytest.importorskip("mediapipe")
    clip = Pipeline(PipelineConfig(fps=5.0)).load(write_video(tmp_path / "v.mp4", seconds=1.0))
    assert clip.faces is not None and len(clip.faces) == 5
    assert clip.visual_missing == "no face found in any of the 5 sampled frames"
    block = Pipeline().visual(clip.faces, clip.visual_missing)
    assert not block.present and block.values.shape == (0, 17)


# ----------------------------------------------------------------------------- features


def test_sine_gives_its_pitch_and_audio_blocks_align(tmp_path: Path) -> None:
    samples = load_audio(write_wav(tmp_path / "a.wav", seconds=1.0, freq=220.0))
    prosody = create_extractor("prosody")(samples)
    voiced = prosody.values[:, 1] > 0
    assert voiced.mean() > 0.8
    assert np.median(prosody.values[voiced, 0]) == pytest.approx(12 * np.log2(2.2), abs=0.2)  # 220 Hz in semitones
    block = Pipeline(AUDIO_ONLY).audio(samples)
    assert block.present and block.values.shape == (10, 28)  # 1 s at 0.1 s per step, 25 + 3 columns
    assert np.isfinite(block.values).all()
    functionals = create_extractor("egemaps_functionals")(samples)
    assert functionals.values.shape == (1, 88) and functionals.times is None


def test_too_short_audio_is_missing() -> None:
    block = create_extractor("egemaps_lld")(np.zeros(100, np.float32))
    assert not block.present and "shorter" in block.missing


def test_grid_pooling_and_cap() -> None:
    frames = Features(values=np.arange(10, dtype=np.float32)[:, None], times=np.arange(10) * 0.01 + 0.005)
    assert _to_grid(frames, 2, 0.05)[:, 0].tolist() == [2.0, 7.0]
    sparse = Features(values=np.array([[1.0], [3.0]], np.float32), times=np.array([0.05, 0.25]))
    assert _to_grid(sparse, 4, 0.1)[:, 0].tolist() == [1.0, 1.0, 3.0, 3.0]  # empty windows repeat the last value
    capped = _cap(Features(values=np.arange(6, dtype=np.float32)[:, None], times=np.arange(6.0)), 3)
    assert capped.values[:, 0].tolist() == [0.5, 2.5, 4.5] and capped.info["pooled_from"] == 6


# ----------------------------------------------------------------------------- transcripts


def test_transcript_formats(tmp_path: Path) -> None:
    srt = tmp_path / "t.srt"
    srt.write_text(
        "1\n00:00:00,500 --> 00:00:02,000\nI loved it\n\n2\n00:00:02,500 --> 00:01:03,250\nnot the end\nreally\n"
    )
    got = read_transcript(srt)
    assert [(u.start, u.end, u.text) for u in got] == [(0.5, 2.0, "I loved it"), (2.5, 63.25, "not the end really")]
    moud = tmp_path / "t.csv"
    moud.write_text(
        '"#starttime";"#endtime";"transcription";"sentimentAnnotations"\n0.000;6.6;"muy bien";"1"\n6.6;9;"x";"1"\n'
    )
    assert [(u.start, u.end, u.text) for u in read_transcript(moud)] == [(0.0, 6.6, "muy bien"), (6.6, 9.0, "x")]
    txt = tmp_path / "t.txt"
    txt.write_text("  it was\nreally good \n")
    assert [(u.start, u.end, u.text) for u in read_transcript(txt, duration=3.3)] == [(0.0, 3.3, "it was really good")]


def test_bad_transcripts(tmp_path: Path) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text("begin,words\n0,hello\n")
    with pytest.raises(DataError, match="no end column"):
        read_transcript(bad)
    backwards = tmp_path / "r.csv"
    backwards.write_text("start,end,text\n3,1,hello\n")
    with pytest.raises(DataError, match="ends"):
        read_transcript(backwards)
    empty = tmp_path / "e.txt"
    empty.write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_transcript(empty)


# ----------------------------------------------------------------------------- extract


def _layout(root: Path, rows: list[tuple[str, str, str, float, str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "label.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_id", "clip_id", "text", "label", "mode"])
        writer.writerows(rows)
    return root


def test_extract_records_errors_and_missing_and_resumes(tmp_path: Path, stub_text: None) -> None:
    root = _layout(tmp_path / "ds", [
        ("v1", "1", "it was good", 1.5, "train"),
        ("v1", "2", "bad bad", -2.0, "valid"),
        ("v2", "1", "no file here", 0.0, "test"),
        ("v2", "2", "", 0.5, "test"),
    ])  # fmt: skip
    (root / "Raw" / "v1").mkdir(parents=True)
    write_video(root / "Raw" / "v1" / "1.mp4", seconds=1.0)
    write_video(root / "Raw" / "v1" / "2.mp4", seconds=1.0, audio=False)
    (root / "Raw" / "v2").mkdir()
    (root / "Raw" / "v2" / "2.mp4").write_text("not a video")
    out = tmp_path / "out"
    code = main(["extract", str(root), "--out", str(out), "--visual", "--no-progress"])
    assert code == 0
    ds = read_folder(out)
    assert ds.info.dims == {"text": 384, "audio": 28}
    errors = list(csv.DictReader((out / "errors.csv").open()))
    assert {e["id"] for e in errors} == {"v2_1", "v2_2"}
    assert any("no such file" in e["error"] for e in errors) and any("not a readable" in e["error"] for e in errors)
    missing = {(r["id"], r["modality"]): r["reason"] for r in csv.DictReader((out / "missing.csv").open())}
    assert missing == {("v2_2", "text"): "empty transcript", ("v1_2", "audio"): "the file has no audio track"}
    train, valid = ds.split("train"), ds.split("valid")
    assert train.modalities["audio"].present.tolist() == [True] and train.modalities["audio"].lengths[0] == 11
    assert valid.modalities["audio"].present.tolist() == [False]  # absent, not a zero sequence marked present
    meta = (out / "meta.json").read_text()
    assert '"extractor": "egemaps_lld+prosody"' in meta and '"audio_hop": 0.1' in meta
    cached = sorted(p.name for p in (tmp_path / "out.work" / "clips").iterdir())
    assert cached == ["v1_1.npz", "v1_2.npz"]  # failed clips are retried on the next run
    # resume: the cached clips are not extracted again
    from msakit.extract.dataset import extract_dataset

    report = extract_dataset(root, out, config=AUDIO_ONLY, overwrite=True, progress=False)
    assert (report.cached, report.extracted, len(report.errors)) == (2, 0, 2)


def test_extract_bad_label_csv(tmp_path: Path) -> None:
    root = _layout(tmp_path / "ds", [("v", "1", "x", 1.0, "holdout")])
    assert main(["extract", str(root), "--out", str(tmp_path / "o")]) == 2
    root = _layout(tmp_path / "ds2", [("v", "1", "x", 1.0, "train")])
    with pytest.raises(DataError, match=r"no clips for split\(s\) \['valid', 'test'\]"):
        from msakit.extract.dataset import extract_dataset

        extract_dataset(root, tmp_path / "o2")


# ----------------------------------------------------------------------------- real media


@pytest.mark.realdata
def test_real_moud_video_features(shared_data: Path) -> None:
    pytest.importorskip("mediapipe")
    pipeline = Pipeline()
    clip = pipeline.load(shared_data / "moud" / "101_movies.mp4")
    assert clip.info.duration == pytest.approx(33.3, abs=0.1) and not clip.audio_missing and not clip.visual_missing
    assert clip.faces is not None
    with_face = sum(f.landmarks is not None for f in clip.faces)
    assert with_face / len(clip.faces) > 0.9 and clip.faces[0].landmarks.shape == (478, 3)  # type: ignore[union-attr]
    samples, faces = clip.window(0.0, 6.643)
    visual = pipeline.visual(faces)
    assert visual.present and visual.values.shape[1] == 17
    probs = visual.values[:, 10:]
    assert np.allclose(probs.sum(1), 1.0, atol=1e-3)
    geometry = visual.values[:, :10]
    assert 0.3 < np.median(geometry[:, 1]) < 1.0  # mouth width in inter-ocular units
    assert np.abs(np.median(geometry[:, 7:], axis=0)).max() < 0.5  # a speaker facing the camera: small angles
    audio = pipeline.audio(samples)
    assert audio.present and audio.values.shape == (67, 28)


@pytest.mark.realdata
def test_real_mosi_wav_audio(shared_data: Path) -> None:
    samples = load_audio(shared_data / "mosi" / "media" / "03bSnISJMiM_1.wav")
    assert len(samples) / 16000 == pytest.approx(3.33, abs=0.01)
    block = Pipeline(AUDIO_ONLY).audio(samples)
    assert block.present and block.values.shape == (34, 28) and np.isfinite(block.values).all()


@pytest.mark.realdata
@pytest.mark.slow  # spawns two workers that each load the face mesh, openSMILE and MiniLM: about a minute
def test_real_extract_mmsa_layout_in_parallel(shared_data: Path, tmp_path: Path) -> None:
    """A tiny MMSA-FET folder from the real MOSI segment, two workers, one broken clip."""
    pytest.importorskip("mediapipe")
    root = _layout(tmp_path / "mosi_tiny", [
        ("Oz06ZWiO20M", "6", "the real segment", 1.0, "train"),
        ("Oz06ZWiO20M", "7", "same clip again", 1.0, "valid"),
        ("Oz06ZWiO20M", "8", "a broken copy", -1.0, "test"),
    ])  # fmt: skip
    raw = root / "Raw" / "Oz06ZWiO20M"
    raw.mkdir(parents=True)
    src = shared_data / "mosi" / "media" / "Oz06ZWiO20M_6.mp4"
    shutil.copy(src, raw / "6.mp4")
    shutil.copy(src, raw / "7.mp4")
    (raw / "8.mp4").write_bytes(src.read_bytes()[:50_000])
    out = tmp_path / "out"
    assert main(["extract", str(root), "--out", str(out), "--workers", "2", "--fps", "2", "--no-progress"]) == 0
    ds = read_folder(out)
    assert ds.info.dims == {"text": 384, "audio": 28, "visual": 17}
    assert [e["id"] for e in csv.DictReader((out / "errors.csv").open())] == ["Oz06ZWiO20M_8"]
    train = ds.split("train")
    assert train.modalities["visual"].present.tolist() == [True] and train.modalities["visual"].lengths[0] >= 12
    assert train.modalities["audio"].lengths[0] == 75  # 7.5 s at 0.1 s per step
    assert np.array_equal(
        np.asarray(train.modalities["audio"].values), np.asarray(ds.split("valid").modalities["audio"].values)
    )


def test_long_speech_segments_are_split() -> None:
    from msakit.extract.speech import split_long

    parts = split_long([(0.0, 2.0), (3.0, 20.0)], 8.0)
    assert np.array(parts) == pytest.approx(
        np.array([(0, 2), (3, 3 + 17 / 3), (3 + 17 / 3, 3 + 34 / 3), (3 + 34 / 3, 20)])
    )
