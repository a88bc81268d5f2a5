"""`msakit analyze DIR_OR_GLOB --out OUT`: a folder of media made in the test, one Analyzer for all.

A good file (with a transcript from --meta), a corrupt one in the middle, one with no audio
track and one whose codec no FFmpeg knows: the bad ones are recorded in errors.csv with
their stage and reason while the batch goes on; a rerun with --resume analyses nothing
again; --meta is joined on the file name, and a bad --meta is one line with exit code 2.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("av")
pytest.importorskip("parselmouth")

sys.path.insert(0, str(Path(__file__).parent))
from media_factory import write_unknown_codec, write_video
from msakit import analyze_batch
from msakit.analyze import Analyzer
from msakit.analyze_batch import BatchSettings, collect_inputs, plan_batch, read_meta, run_batch, stage_of, table_rows
from msakit.cli import main
from msakit.errors import ConfigError, DataError, EnvironmentFailure, OutputError
from msakit.extract import media
from msakit.extract.pipeline import Pipeline, PipelineConfig
from msakit.registry import create_model
from msakit.training import save_checkpoint

TEXT = "The battery is great but the screen is awful."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = create_model("text_only", modalities=("text",), text_dim=384, hidden_dim=8)
    path = tmp_path_factory.mktemp("ckpt") / "c"
    return save_checkpoint(path, model, extra={"extract": Pipeline(PipelineConfig(audio=(), visual=())).spec()})


@pytest.fixture(scope="module")
def analyzer(checkpoint: Path) -> Analyzer:
    return Analyzer(checkpoint, aspects=False, scenes=False)


def _folder(root: Path) -> tuple[Path, Path]:
    """(media folder, meta CSV): good, corrupt (sorted in the middle), no audio track, unknown codec."""
    clips = root / "clips"
    (clips / "sub").mkdir(parents=True)
    write_video(clips / "a_good.mp4", 1.0)
    (clips / "b_corrupt.mp4").write_bytes(b"\x00\x01garbage" * 500)
    write_video(clips / "sub" / "c_mute.mp4", 1.0, audio=False)
    write_unknown_codec(clips / "d_codec.mkv")
    (clips / "notes.txt").write_text("not media: left out")
    (root / "t.txt").write_text(TEXT)
    meta = root / "meta.csv"
    meta.write_text(
        "file,outlet,date,transcript,language\n"
        "a_good.mp4,Channel A,2024-01-02,t.txt,en\nsub/c_mute.mp4,Channel B,2024-02-01,,en\n"
        "b_corrupt.mp4,Channel B,2024-03-01,,\n"
    )
    return clips, meta


def _settings(checkpoint: Path) -> BatchSettings:
    return BatchSettings(checkpoint=str(checkpoint), aspects=False, scenes=False)


def _errors(out: Path) -> dict[str, dict[str, str]]:
    with (out / "errors.csv").open() as fh:
        return {(r["file"], r["stage"]): r for r in csv.DictReader(fh)}  # type: ignore[misc]


def test_folder_goes_on_past_bad_files_joins_meta_and_resumes(
    tmp_path: Path, checkpoint: Path, analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips, meta = _folder(tmp_path)
    out = tmp_path / "out"
    plan = plan_batch(clips, out, settings=_settings(checkpoint), meta=meta)
    assert [name for _, name, _ in plan.todo] == ["a_good.mp4", "b_corrupt.mp4", "d_codec.mkv", "sub/c_mute.mp4"]
    report = run_batch(analyzer, plan, progress=False)
    assert report.analysed == 1 and len(report.failed) == 3

    errors = _errors(out)
    assert set(errors) == {
        ("a_good.mp4", "faces"), ("b_corrupt.mp4", "decode"), ("d_codec.mkv", "decode"), ("sub/c_mute.mp4", "asr"),
    }  # fmt: skip
    assert errors["b_corrupt.mp4", "decode"]["reason"].startswith("not a readable audio/video file")  # no "file X:"
    assert "codec this FFmpeg build cannot decode" in errors["d_codec.mkv", "decode"]["reason"]
    assert "no audio track" in errors["sub/c_mute.mp4", "asr"]["reason"]
    assert "transcript in --meta" in errors["sub/c_mute.mp4", "asr"]["reason"]
    assert errors["a_good.mp4", "faces"]["outcome"] == "partial"
    assert "no face found" in errors["a_good.mp4", "faces"]["reason"]
    assert {e["outcome"] for k, e in errors.items() if k[0] != "a_good.mp4"} == {"failed"}

    table = pd.read_csv(out / "table.csv", keep_default_na=False)
    assert table["file"].tolist() == ["a_good.mp4"]  # failed files have no rows
    row = table.iloc[0]
    assert (row["outlet"], row["date"], row["text"], row["quality"]) == ("Channel A", "2024-01-02", TEXT, "given")
    assert "transcript" not in table.columns  # read, not joined
    assert (out / "files" / "a_good.mp4" / "timeline.json").is_file()
    assert (out / "sentiment.png").read_bytes()[:4] == b"\x89PNG"
    if analyze_batch._has_pyarrow():
        parquet = pd.read_parquet(out / "table.parquet")
        assert parquet["file"].tolist() == ["a_good.mp4"] and parquet["outlet"].tolist() == ["Channel A"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["files"], summary["analysed"], summary["failed"]) == (4, 1, 3)
    assert summary["failed_by_stage"] == {"decode": 2, "asr": 1}

    calls: list[str] = []
    real = analyze_batch._analyze_one

    def counting(analyzer: Any, src: Path, name: str, *args: Any) -> dict[str, Any]:
        calls.append(name)
        return real(analyzer, src, name, *args)

    monkeypatch.setattr(analyze_batch, "_analyze_one", counting)
    again = run_batch(analyzer, plan_batch(clips, out, settings=_settings(checkpoint), meta=meta, resume=True))
    assert calls == [] and again.resumed == 1 and len(again.failed) == 3  # finished and failed files are skipped
    assert _errors(out) == errors
    run_batch(
        analyzer, plan_batch(clips, out, settings=_settings(checkpoint), meta=meta, resume=True, retry_errors=True)
    )
    assert calls == ["b_corrupt.mp4", "d_codec.mkv", "sub/c_mute.mp4"]  # only the failed ones again
    calls.clear()
    write_video(clips / "a_good.mp4", 1.5)  # a changed file is analysed again (its signature differs)
    (tmp_path / "t.txt").write_text("A new transcript.")
    run_batch(analyzer, plan_batch(clips, out, settings=_settings(checkpoint), meta=meta, resume=True))
    assert calls == ["a_good.mp4"]
    assert pd.read_csv(out / "table.csv")["text"].tolist() == ["A new transcript."]


def test_an_interrupted_batch_resumes_where_it_stopped(
    tmp_path: Path, checkpoint: Path, analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("one", "two"):
        write_video(clips / f"{name}.mp4", 1.0)
    (tmp_path / "t.txt").write_text(TEXT)
    meta = tmp_path / "m.csv"
    meta.write_text("file,transcript,language\none.mp4,t.txt,en\ntwo.mp4,t.txt,en\n")
    from msakit import analyze  # `_analyze_one` imports write_outputs from here per call

    original = analyze.write_outputs

    def dies_on_two(analysis: Any, folder: Path) -> Any:
        paths = original(analysis, folder)
        if Path(analysis.media).name == "two.mp4":
            raise KeyboardInterrupt  # killed after writing into the temporary folder, before it is renamed
        return paths

    monkeypatch.setattr(analyze, "write_outputs", dies_on_two)
    with pytest.raises(KeyboardInterrupt):
        run_batch(analyzer, plan_batch(clips, tmp_path / "out", settings=_settings(checkpoint), meta=meta))
    assert (tmp_path / "out" / "files" / "one.mp4" / "record.json").is_file()
    assert not (tmp_path / "out" / "files" / "two.mp4").exists()  # no half-written result
    monkeypatch.setattr(analyze, "write_outputs", original)
    plan = plan_batch(clips, tmp_path / "out", settings=_settings(checkpoint), meta=meta, resume=True)
    assert [name for _, name, _ in plan.todo] == ["two.mp4"] and plan.resumed == 1
    report = run_batch(analyzer, plan, progress=False)
    assert report.summary["analysed"] == 2 and not report.failed
    assert not list((tmp_path / "out" / "files").glob(".*"))  # the stale temporary folder is gone


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,outlet\na_good.mp4,A\n", "file meta.csv, field 'file': has no 'file' column (columns: name, outlet)"),
        ("file,outlet\na_good.mp4,A\nz_typo.mp4,B\n", "names 1 file(s) that are not in the batch: 'z_typo.mp4'"),
        ("file,date\na_good.mp4,last tuesday\n", "field 'date': line 2: 'last tuesday' is not a date"),
        ("file,outlet\na_good.mp4,A\na_good.mp4,B\n", "line 3: 'a_good.mp4' is listed twice"),
        ("file,transcript\na_good.mp4,nope.srt\n", "field 'transcript': line 2: transcript 'nope.srt': no such file"),
        ("file,score\na_good.mp4,1\n", "column 'score' is one of the table's own columns"),
    ],
)
def test_bad_meta_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    clips, _ = _folder(tmp_path)
    (tmp_path / "meta.csv").write_text(content)
    out = tmp_path / "out"
    argv = ["analyze", str(clips), "--out", str(out), "--meta", str(tmp_path / "meta.csv"), "--model", str(checkpoint)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err.replace(str(tmp_path) + "/", ""), err
    assert not out.exists()


def test_out_and_options_are_checked(tmp_path: Path, checkpoint: Path) -> None:
    clips, _ = _folder(tmp_path)
    out = tmp_path / "out"
    (out / "files").mkdir(parents=True)
    with pytest.raises(OutputError, match="holds no batch"):
        plan_batch(clips, out, settings=_settings(checkpoint))
    (out / "files").rmdir()
    plan_batch(clips, out, settings=_settings(checkpoint))
    with pytest.raises(OutputError, match="pass --resume"):
        plan_batch(clips, out, settings=_settings(checkpoint))
    with pytest.raises(ConfigError, match=r"this batch was run with fps=5.0, not 2.0") as changed:
        plan_batch(clips, out, settings=BatchSettings(checkpoint=str(checkpoint), fps=2.0), resume=True)
    assert changed.value.field == "fps"
    with pytest.raises(DataError, match="no file matches"):
        collect_inputs(str(tmp_path / "nothing" / "*.mp4"))
    root, files = collect_inputs(str(clips / "**" / "*.mp4"))  # a glob: recursive, media only
    assert root == clips.resolve() and [f.name for f in files] == ["a_good.mp4", "b_corrupt.mp4", "c_mute.mp4"]
    assert main(["analyze", str(clips), "--out", str(tmp_path / "o2"), "--transcript", "t.srt"]) == 2
    assert main(["analyze", str(clips / "a_good.mp4"), "--out", str(tmp_path / "o3"), "--resume"]) == 2


def test_an_output_failure_stops_the_batch_an_input_one_does_not(
    tmp_path: Path, checkpoint: Path, analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips, _ = _folder(tmp_path)
    out = tmp_path / "out"

    def disk_full(analyzer: Any, src: Path, name: str, out_: Path, *args: Any) -> None:
        raise EnvironmentFailure("No space left on device", path=out_ / "files" / name / "timeline.json")

    monkeypatch.setattr(analyze_batch, "_analyze_one", disk_full)
    with pytest.raises(EnvironmentFailure, match="No space left"):
        run_batch(analyzer, plan_batch(clips, out, settings=_settings(checkpoint)), progress=False)

    def unreadable(analyzer: Any, src: Path, *args: Any) -> None:
        raise EnvironmentFailure("Permission denied", path=src)

    monkeypatch.setattr(analyze_batch, "_analyze_one", unreadable)
    report = run_batch(analyzer, plan_batch(clips, out, settings=_settings(checkpoint), resume=True), progress=False)
    assert len(report.failed) == 4 and {e["reason"].split(": ")[-1] for e in report.failed} == {"Permission denied"}


def test_an_empty_folder_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no media here")
    with pytest.raises(DataError, match="no media files"):
        collect_inputs(tmp_path / "empty")


def test_meta_matches_bare_names_only_when_unique(tmp_path: Path) -> None:
    meta = tmp_path / "m.csv"
    meta.write_text("file,outlet\nx.mp4,A\n")
    assert read_meta(meta, ["a/x.mp4", "y.mp4"]) == {"a/x.mp4": {"outlet": "A"}}
    with pytest.raises(DataError, match="ambiguous"):
        read_meta(meta, ["a/x.mp4", "b/x.mp4"])


def test_stage_is_where_the_pipeline_failed(tmp_path: Path) -> None:
    with pytest.raises(DataError) as decode:
        media.probe(tmp_path / "missing.mp4")
    assert stage_of(decode.value) == "decode"
    try:
        raise ValueError("outside the pipeline")
    except ValueError as exc:
        assert stage_of(exc) == "analyze"


def test_table_has_one_row_per_utterance_and_aspect() -> None:
    aspect = {"term": "battery", "polarity": "positive", "score": 0.6, "start": 4, "end": 11, "evidence": "great"}
    timeline = {
        "language": "en",
        "utterances": [
            {"start": 0, "end": 1, "text": TEXT, "quality": "asr", "score": -0.4, "polarity": "negative",
             "scene": "close_up_face", "aspects": [aspect, {**aspect, "term": "screen", "polarity": "negative"}]},
            {"start": 1, "end": 2, "text": "Hm.", "quality": "asr", "score": None, "polarity": "unknown"},
        ],
    }  # fmt: skip
    rows = list(table_rows("f.mp4", timeline, {"media_seconds": 2.0}, {"outlet": "A"}, classifier=False))
    assert [(r["utterance"], r["aspect_term"]) for r in rows] == [(0, "battery"), (0, "screen"), (1, "")]
    assert rows[0]["scene"] == "close_up_face" and rows[0]["outlet"] == "A" and rows[0]["sentiment"] == -0.4
    classes = list(table_rows("f.mp4", timeline, {}, {}, classifier=True))
    assert [r["sentiment"] for r in classes] == [-1.0, -1.0, 0.0]  # a class probability is not a sentiment


@pytest.mark.realdata
@pytest.mark.slow
def test_real_clips_with_whisper(shared_data: Path, tmp_path: Path) -> None:
    """The MOSI wav transcribed by Whisper in a folder beside a truncated copy of the MOSI video."""
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.wav").write_bytes((shared_data / "mosi" / "media" / "03bSnISJMiM_1.wav").read_bytes())
    video = (shared_data / "mosi" / "media" / "Oz06ZWiO20M_6.mp4").read_bytes()
    (clips / "b_cut.mp4").write_bytes(video[: len(video) // 4])  # a truncated download
    out = tmp_path / "out"
    assert main(["analyze", str(clips), "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "table.csv", keep_default_na=False)
    assert "really good" in " ".join(table[table["file"] == "a.wav"]["text"]).lower()
    assert set(table["quality"]) == {"asr"}
    errors = _errors(out)  # the MOSI mp4 keeps its index at the end: the first quarter has none
    assert errors["b_cut.mp4", "decode"]["outcome"] == "failed"
