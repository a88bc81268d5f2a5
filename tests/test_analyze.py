"""`msakit analyze`: real videos end to end (realdata) and every bad input with its message (fast)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("parselmouth")

sys.path.insert(0, str(Path(__file__).parent))
from media_factory import write_video, write_wav
from msakit.analyze import Analyzer, _batch, packaged_checkpoints, resolve_checkpoint
from msakit.cli import main
from msakit.errors import DataError
from msakit.extract.pipeline import Pipeline, PipelineConfig
from msakit.extract.registry import Features
from msakit.registry import create_model
from msakit.training import save_checkpoint

TEXT_ONLY = PipelineConfig(audio=(), visual=())


def _text_checkpoint(path: Path, text_dim: int = 384) -> Path:
    model = create_model("text_only", modalities=("text",), text_dim=text_dim, hidden_dim=8)
    return save_checkpoint(path, model, extra={"extract": Pipeline(TEXT_ONLY).spec()})


def test_default_checkpoint_is_packaged_small_and_text_only() -> None:
    assert "default_text" in packaged_checkpoints()
    path = resolve_checkpoint(None)
    assert (path / "model.safetensors").stat().st_size < 2 * 2**20
    meta = json.loads((path / "config.json").read_text())
    assert meta["model"] == "text_only" and meta["model_config"]["modalities"] == ["text"]
    assert meta["extract"]["dims"]["text"] == 384 and meta["extract"]["pipeline"]["text"] == "minilm_tokens"


def test_unknown_model_and_foreign_features(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a checkpoint folder nor a packaged checkpoint"):
        Analyzer(tmp_path / "nothing")
    with pytest.raises(DataError, match=r"reads 300-d text features .* it was not trained on them"):
        Analyzer(_text_checkpoint(tmp_path / "glove", text_dim=300))


def test_bad_media_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all\n" * 20)
    model = str(_text_checkpoint(tmp_path / "c"))
    assert main(["analyze", str(notes), "--model", model, "--out", str(tmp_path / "o")]) == 2
    assert "not a readable audio/video file" in capsys.readouterr().err
    big = write_video(tmp_path / "v.mp4")
    assert main(["analyze", str(big), "--model", model, "--max-mb", "0.001", "--out", str(tmp_path / "o")]) == 2
    assert "over the limit" in capsys.readouterr().err


def test_no_transcript_and_nothing_to_transcribe(tmp_path: Path) -> None:
    analyzer = Analyzer(_text_checkpoint(tmp_path / "c"))
    with pytest.raises(DataError, match=r"no --transcript given and no speech to transcribe .*silent"):
        analyzer.analyze(write_wav(tmp_path / "quiet.wav", amplitude=0.0))
    with pytest.raises(DataError, match="no audio track"):
        analyzer.analyze(write_video(tmp_path / "mute.mp4", audio=False, seconds=0.5))
    transcript = tmp_path / "t.csv"
    transcript.write_text("start,end,text\n5.0,6.0,too late\n")
    with pytest.raises(DataError, match="start after the media ends"):
        analyzer.analyze(write_wav(tmp_path / "a.wav"), transcript)


def test_progress_reports_every_stage_in_order(tmp_path: Path) -> None:
    from msakit.analyze import STAGES

    analyzer = Analyzer(_text_checkpoint(tmp_path / "c"), aspects=False, scenes=False)
    transcript = tmp_path / "t.csv"
    transcript.write_text("start,end,text\n0.0,0.9,a fine day\n1.0,1.9,a dull one\n")
    seen: list[tuple[str, float]] = []
    analyzer.analyze(write_wav(tmp_path / "a.wav", seconds=2.0), transcript, progress=lambda s, f: seen.append((s, f)))
    stages = [s for s, _ in seen]
    assert [s for k, s in enumerate(stages) if k == 0 or stages[k - 1] != s] == list(STAGES)
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and seen[-1] == ("aspects", STAGES["aspects"])
    # one step per utterance, up to where the scenes start
    assert [f for s, f in seen if s == "features"][1:] == pytest.approx([0.6, 0.8])


def test_missing_modality_is_absent_in_the_batch() -> None:
    blocks = {
        "text": Features(values=np.ones((4, 384), np.float32)),
        "audio": Features(values=np.zeros((0, 28), np.float32), missing="the file has no audio track"),
    }
    batch = _batch(blocks, ["text", "audio"])
    assert batch.present.tolist() == [[True, False, False]]
    assert batch.masks["audio"].sum() == 0 and batch.masks["text"].sum() == 4
    assert torch.count_nonzero(batch.features["audio"]) == 0


@pytest.mark.realdata
def test_moud_video_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("mediapipe")
    out = tmp_path / "out"
    video, transcript = shared_data / "moud" / "101_movies.mp4", shared_data / "moud" / "101_movies.csv"
    assert main(["analyze", str(video), "--transcript", str(transcript), "--out", str(out)]) == 0
    timeline = json.loads((out / "timeline.json").read_text())
    assert timeline["fused_modalities"] == ["text"] and timeline["cue_modalities"] == ["audio", "visual"]
    utterances = timeline["utterances"]
    assert len(utterances) == 5 and utterances[0]["start"] == 0.0 and utterances[-1]["end"] == pytest.approx(33.367)
    for u in utterances:
        assert u["weights"] == {"text": 1.0}  # weights cover fused modalities only
        assert -3.0 <= u["score"] <= 3.0 and u["polarity"] in ("positive", "negative")
        assert u["present"] == {"text": True, "audio": True, "visual": True}
        visual = u["cues"]["visual"]
        assert visual["fused"] is False and visual["frames_with_face"] >= 0.9 * visual["frames"]
        assert sum(visual["emotions"].values()) == pytest.approx(1.0, abs=0.01)
        assert u["cues"]["audio"]["fused"] is False and 100 < u["cues"]["audio"]["pitch_hz"] < 500
    rows = list(csv.DictReader((out / "timeline.csv").open()))
    assert len(rows) == 5 and rows[0]["cues_fused"] == "none" and rows[0]["weight_audio"] == ""
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.realdata
def test_mosi_segments(shared_data: Path, tmp_path: Path) -> None:
    """The MOSI video with its transcript as plain text, and the MOSI wav through ASR."""
    pytest.importorskip("mediapipe")
    pytest.importorskip("pocketsphinx")
    analyzer = Analyzer()
    transcript = tmp_path / "t.txt"
    transcript.write_text("and i really enjoyed it\n")
    video = analyzer.analyze(shared_data / "mosi" / "media" / "Oz06ZWiO20M_6.mp4", transcript)
    (u,) = video.utterances
    assert (u.start, u.end, u.quality) == (0.0, 7.5, "given") and u.present["visual"] and u.score is not None
    wav = analyzer.analyze(shared_data / "mosi" / "media" / "03bSnISJMiM_1.wav", asr="pocketsphinx")  # the fallback
    assert wav.transcript_source == "asr" and all(x.quality == "low" for x in wav.utterances)
    assert any("low quality" in n for n in wav.notes)
    assert all(x.missing["visual"] == "the file has no video track" for x in wav.utterances)
    assert all(not x.present["visual"] and x.present["audio"] for x in wav.utterances)
