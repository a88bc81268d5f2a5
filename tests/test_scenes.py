"""Scene labels (`msakit.extract.scenes`): every label from a real photo or a drawn frame, each cue's
knockout, bad input (no frames, no faces, no video track) in `analyze`, and the labelled frames
made from the real videos (realdata)."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

from msakit.extract import scenes as scenes_module  # noqa: E402
from msakit.extract.scenes import (  # noqa: E402
    SCENE_LABELS,
    SceneClassifier,
    SceneConfig,
    SceneFrame,
    majority_scene,
    sample_scene_frames,
    text_model_path,
)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
needs_text = pytest.mark.skipif(
    text_model_path() is None, reason="rapidocr-onnxruntime (the text detector's model) is not installed"
)


@pytest.fixture(scope="module")
def classifier() -> SceneClassifier:
    return SceneClassifier()


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """Grace Hopper's portrait, a real photo that ships inside matplotlib."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def card(text_lines: tuple[str, ...] = ("BREAKING NEWS", "Reviews are in", "Subscribe")) -> np.ndarray:
    frame = np.full((288, 352, 3), (20, 30, 90), np.uint8)
    for i, line in enumerate(text_lines):
        cv2.putText(frame, line, (15, 80 + 60 * i), cv2.FONT_HERSHEY_DUPLEX, 1.0, (255, 255, 255), 2)
    return frame


def outdoor() -> np.ndarray:
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:120] = (90, 150, 230)  # sky
    frame[120:] = (40, 140, 40)  # grass
    return frame


def label(classifier: SceneClassifier, rgb: np.ndarray) -> str:
    return classifier.classify([(0.0, rgb)])[0].label


def test_people_labels_from_a_real_photo(classifier: SceneClassifier, portrait: np.ndarray) -> None:
    canvas = np.full((720, 960, 3), 60, np.uint8)
    canvas[200:500, 350:606] = cv2.resize(portrait, (256, 300))
    assert label(classifier, canvas) == "talking_head"  # one face, 0.19 of the frame height
    assert label(classifier, portrait[40:360, 96:416]) == "close_up"  # the face fills the crop
    tile = cv2.resize(portrait, (160, 188))
    assert label(classifier, np.vstack([np.hstack([tile] * 3)] * 3)) == "crowd"  # nine faces
    frame = classifier.classify([(2.0, portrait)])[0]
    assert frame.time == 2.0 and 0.5 <= frame.confidence <= 1.0 and frame.cues["faces"] == 1.0


def test_scene_labels_without_people(classifier: SceneClassifier) -> None:
    assert label(classifier, outdoor()) == "outdoor"
    grey = classifier.classify([(0.0, np.full((240, 320, 3), 128, np.uint8))])[0]
    assert grey.label == "other" and grey.cues["faces"] == 0.0  # no face: still a label


@needs_text
def test_on_screen_text(classifier: SceneClassifier) -> None:
    assert label(classifier, card()) == "text_graphic"
    assert classifier.cues(np.full((240, 320, 3), 128, np.uint8))["text_area"] == 0.0


@needs_text
def test_text_detector_knockout(classifier: SceneClassifier) -> None:
    plain = SceneClassifier(SceneConfig(text=False))
    assert plain.text_session is None and plain.missing == ""
    assert label(plain, card()) == "other"  # the title card has no other cue


def test_face_and_colour_knockouts(classifier: SceneClassifier, portrait: np.ndarray) -> None:
    with mock.patch.object(SceneClassifier, "faces", lambda self, rgb: []):
        assert label(classifier, portrait[40:360, 96:416]) != "close_up"
    with mock.patch.object(SceneClassifier, "colour", staticmethod(lambda rgb: (0.0, 0.0))):
        assert label(classifier, outdoor()) == "other"


def test_decide_rules_in_order(classifier: SceneClassifier) -> None:
    def cues(**kw: float) -> dict[str, float]:
        return {"faces": 0.0, "largest_face": 0.0, "text_area": 0.0, "sky": 0.0, "green": 0.0, **kw}

    decide = classifier.decide
    assert decide(cues(faces=1, largest_face=0.2, text_area=0.1))[0] == "text_graphic"  # text before faces
    assert decide(cues(faces=1, largest_face=0.2, text_area=0.03))[0] == "talking_head"  # a caption, not a card
    assert decide(cues(text_area=0.03))[0] == "text_graphic"  # the lower bound without a face
    assert decide(cues(faces=3, largest_face=0.5))[0] == "crowd"
    assert decide(cues(faces=1, largest_face=0.45))[0] == "close_up"
    assert decide(cues(faces=1, largest_face=0.3, sky=0.9))[0] == "talking_head"  # a reporter outdoors
    assert decide(cues(green=0.3))[0] == "outdoor"
    label_, confidence = decide(cues())
    assert label_ == "other" and confidence == 1.0
    assert decide(cues(faces=1, largest_face=0.45))[1] == 0.5  # on the threshold
    assert {decide(c)[0] for c in (cues(), cues(green=1))} <= set(SCENE_LABELS)


def test_sampling_and_majority() -> None:
    frames = [(k / 5, np.zeros((2, 2, 3), np.uint8)) for k in range(14)]  # 5 frames/s for 2.8 s
    assert [t for t, _ in sample_scene_frames(frames, 1.0)] == [0.0, 1.0, 2.0]
    assert sample_scene_frames([], 1.0) == []
    s = [SceneFrame(0.0, "talking_head", 0.6), SceneFrame(1.0, "talking_head", 0.6), SceneFrame(2.0, "other", 0.9)]
    assert majority_scene(s, 0.0, 3.0) == "talking_head"
    assert majority_scene(s, 0.5, 2.5) == "other"  # tie 1-1: the higher confidence, not the first seen
    assert majority_scene(s, 5.0, 6.0) == ""  # no frame inside
    assert SceneClassifier.__init__ is not None and SceneClassifier(SceneConfig(text=False)).classify([]) == []


def test_analyze_scenes_without_faces_and_without_video(tmp_path: Path) -> None:
    """A video with no face still gets scene labels; an audio file gets none and says why."""
    pytest.importorskip("av")
    sys.path.insert(0, str(Path(__file__).parent))
    from media_factory import write_video, write_wav
    from msakit.analyze import Analyzer, write_outputs
    from test_analyze import _text_checkpoint

    transcript = tmp_path / "t.csv"
    transcript.write_text("start,end,text\n0.0,1.5,the acting was great\n1.5,2.5,and then we left\n")
    analyzer = Analyzer(_text_checkpoint(tmp_path / "c"), aspects=False)
    analysis = analyzer.analyze(write_video(tmp_path / "v.mp4", seconds=2.5), transcript, language="en")
    assert [s.time for s in analysis.scenes] == [0.0, 1.0, 2.0]
    assert {s.label for s in analysis.scenes} == {"other"} and all(s.cues["faces"] == 0 for s in analysis.scenes)
    assert [u.scene for u in analysis.utterances] == ["other", "other"]
    assert any("no face found" in n for n in analysis.notes)  # the visual cue says why it is missing
    text = write_outputs(analysis, tmp_path / "out")["json"].read_text()
    assert '"scenes": [' in text and '"label": "other"' in text
    audio = analyzer.analyze(write_wav(tmp_path / "a.wav", seconds=2.5), transcript, language="en")
    assert audio.scenes == [] and "scenes: none (the file has no video track)" in audio.notes
    assert all(u.scene == "" for u in audio.utterances)
    with mock.patch.object(scenes_module, "text_model_path", lambda: None):
        analyzer._scene_classifier = None
        quiet = analyzer.analyze(write_video(tmp_path / "v.mp4", seconds=1.0), transcript, language="en")
    assert scenes_module.TEXT_MISSING in quiet.notes and quiet.scenes  # no text cue, still scenes
    assert (
        not Analyzer(_text_checkpoint(tmp_path / "d"), scenes=False)
        .analyze(write_video(tmp_path / "v.mp4", seconds=1.0), transcript, language="en")
        .scenes
    )


def test_analyze_goes_on_without_mediapipe_or_parselmouth(tmp_path: Path) -> None:
    """[extract] parts removed by hand: one note each, no face or pitch cue, no scenes, no crash."""
    pytest.importorskip("av")
    sys.path.insert(0, str(Path(__file__).parent))
    from media_factory import write_video
    from msakit.analyze import Analyzer
    from msakit.extract.pipeline import Pipeline
    from test_analyze import _text_checkpoint

    transcript = tmp_path / "t.csv"
    transcript.write_text("start,end,text\n0.0,1.0,the acting was great\n")
    analyzer = Analyzer(_text_checkpoint(tmp_path / "c"), aspects=False)
    original = Pipeline.extractor

    def no_praat(self: Pipeline, name: str) -> object:
        if name == "prosody":
            raise ImportError("No module named 'parselmouth'", name="parselmouth")
        return original(self, name)

    with (
        mock.patch("msakit.extract.pipeline.track_faces", side_effect=ImportError("x", name="mediapipe")),
        mock.patch.object(Pipeline, "extractor", no_praat),
    ):
        analysis = analyzer.analyze(write_video(tmp_path / "v.mp4", seconds=1.0), transcript, language="en")
    assert analysis.scenes == [] and analysis.utterances[0].score is not None
    assert any(n.startswith("scenes: none (mediapipe is not installed") for n in analysis.notes)
    assert "parselmouth is not installed: no prosody cue" in analysis.notes
    cues = analysis.utterances[0].cues
    assert not cues["audio"]["present"] and "parselmouth" in cues["audio"]["missing"]
    assert not cues["visual"]["present"] and "mediapipe" in cues["visual"]["missing"]


@pytest.mark.realdata
@needs_text
def test_labelled_frames_from_the_real_videos(shared_data: Path) -> None:
    """The agreement docs/pipeline.md reports, and that the text detector is what finds title cards."""
    sys.path.insert(0, str(BENCH))
    import scene_eval

    frames = scene_eval.labelled_frames(shared_data)
    full = scene_eval.evaluate(SceneClassifier(), frames)
    assert full["accuracy"] >= 0.9 and full["recall"]["talking_head"] >= 0.9
    plain = scene_eval.evaluate(SceneClassifier(SceneConfig(text=False)), frames)
    assert plain["recall"]["text_graphic"] < full["recall"]["text_graphic"]
