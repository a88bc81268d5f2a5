"""The analysis page in a real browser: Debian's Chromium driven by Playwright for Python.

A real `msakit serve` (uvicorn on a free 127.0.0.1 port, the packaged default_text checkpoint,
the real `msakit analyze` path) gets the MOSI sample video through the page's upload form; the
test waits for the timeline and checks what a person sees: one row per utterance, a sentiment
value, the transcript, per-modality contributions, and download links that give the job's
artefacts. It saves a screenshot (``MSAKIT_SCREENSHOT=docs/serve-page.png`` writes the one the
docs embed). Slow: the analysis (Whisper ASR, face and voice cues) takes about a minute of wall
time on 2 loaded cores. Skips with a message when Chromium, Playwright or the data is absent.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED_DATA

pytest.importorskip("fastapi", reason="msakit serve needs the [serve] extra (fastapi)")
uvicorn = pytest.importorskip("uvicorn", reason="msakit serve needs the [serve] extra (uvicorn)")
playwright = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs Playwright for Python (pip install 'msakit[browser]')"
)

VIDEO = SHARED_DATA / "mosi" / "media" / "Oz06ZWiO20M_6.mp4"
CHROMIUM = os.environ.get("MSAKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no system Chromium (apt-get install chromium; or set MSAKIT_CHROMIUM)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(jobs_dir: Path, analyze: Any) -> Iterator[str]:
    """A real uvicorn server on a free loopback port (packaged default_text for /v1/predict)."""
    from msakit.analyze import resolve_checkpoint
    from msakit.serve import ServeConfig, create_app
    from msakit.serve.jobs import JobStore
    from msakit.service import load_model

    config = ServeConfig(port=free_port(), max_upload_bytes=32 * 1024 * 1024)
    app = create_app(
        {"default_text": load_model(resolve_checkpoint("default_text"))}, config, JobStore(jobs_dir, analyze)
    )
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def browser_page(server: str) -> Iterator[tuple[Any, list[str]]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1040, "height": 900}, accept_downloads=True)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(server + "/")
        try:
            yield page, requested
        finally:
            browser.close()


def upload_and_wait(page: Any, media: Path, seconds: float) -> None:
    from playwright.sync_api import expect

    expect(page.locator("h1")).to_have_text("msakit")
    page.set_input_files("#media", str(media))
    page.click("#submit")
    expect(page.locator("#upload-pct")).to_have_text("100 %", timeout=30_000)  # the upload finished
    expect(page.locator("#result")).to_be_visible(timeout=seconds * 1000)  # the analysis is done and drawn
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()


def download(page: Any, selector: str) -> tuple[str, str]:
    with page.expect_download() as dl:
        page.click(selector)
    return dl.value.suggested_filename, Path(dl.value.path()).read_text()


def scripted_analysis(media: Path, transcript: Path | None, out: Path, progress: Any = None) -> None:
    """Stands in for the analyser (fast): three utterances through msakit's own timeline writers."""
    from msakit.analyze import Analysis, UtteranceResult, write_outputs

    def utterance(k: int, text: str, score: float, polarity: str) -> UtteranceResult:
        weights = {"text": 0.6, "audio": 0.3, "visual": 0.1}
        cues = {"audio": {"fused": True, "present": True, "pitch_hz": 180.0 + k, "intensity_db": 60.0}}
        cues["visual"] = {"fused": True, "present": True, "top_emotion": "happy", "smile_width": 0.4}
        present = dict.fromkeys(weights, True)
        return UtteranceResult(2.0 * k, 2.0 * k + 1.8, text, "asr", "asr", score, polarity, weights, present, {}, cues)

    rows = [
        ("what a wonderful film", 2.1, "positive"),
        ("the plot is dull", -1.4, "negative"),
        ("it is long", 0.0, "neutral"),
    ]
    utterances = [utterance(k, *row) for k, row in enumerate(rows)]
    analysis = Analysis(
        str(media), 6.0, "scripted", "late_fusion", ["text", "audio", "visual"], [], "asr", [], utterances
    )
    write_outputs(analysis, out)


def test_page_in_a_browser_with_a_scripted_analysis(tmp_path: Path) -> None:
    """Fast (no model): the page's upload, timeline, table and downloads in Chromium."""
    pytest.importorskip("av")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from media_factory import write_video

    media = write_video(tmp_path / "clip.mp4", seconds=1.0, fps=5, size=(32, 24))
    with serving(tmp_path / "jobs", scripted_analysis) as server, browser_page(server) as (page, requested):
        upload_and_wait(page, media, seconds=60)
        rows = page.locator("#utterances tbody tr")
        assert rows.count() == 3
        cells = [rows.nth(k).locator("td").all_inner_texts() for k in range(3)]
        assert [c[2] for c in cells] == ["what a wonderful film", "the plot is dull", "it is long"]
        assert [c[3] for c in cells] == ["2.10 positive", "-1.40 negative", "0.00 neutral"]
        assert cells[0][4].startswith("text 0.60, audio 0.30, visual 0.10")
        assert "pitch 180 Hz" in cells[0][5] and "face: happy" in cells[0][5] and "fused: audio+visual" in cells[0][5]
        assert page.locator("#timeline g.utterance").count() == 3
        assert page.locator("#timeline text.score").all_text_contents() == ["2.10", "-1.40", "0.00"]
        name, text = download(page, "#download-json")
        assert name == "timeline.json" and [u["score"] for u in json.loads(text)["utterances"]] == [2.1, -1.4, 0.0]
        name, text = download(page, "#download-csv")
        assert name == "timeline.csv"
        assert [r["text"] for r in csv.DictReader(io.StringIO(text))] == [c[2] for c in cells]
        assert all(url.startswith((server, "blob:", "data:")) for url in requested), requested  # nothing external


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not VIDEO.is_file(), reason=f"the MOSI sample video is absent ({VIDEO})")
def test_upload_the_mosi_video_and_read_the_timeline(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from msakit.serve.jobs import default_analyze

    with (
        serving(tmp_path / "jobs", default_analyze("default_text")) as server,
        browser_page(server) as (page, requested),
    ):
        upload_and_wait(page, VIDEO, seconds=300)
        rows = page.locator("#utterances tbody tr")
        assert rows.count() >= 1
        first = rows.nth(0).locator("td")
        transcript = first.nth(2).inner_text()
        # Whisper's words for this clip ("... a failure, but like a really ambitious, weird ..."), as MOSI's transcript
        assert "failure" in transcript.lower() and "ambitious" in transcript.lower(), transcript
        value, polarity = first.nth(3).inner_text().split()
        assert -3.0 <= float(value) <= 3.0 and polarity in ("positive", "negative", "neutral")
        assert "text 1.00" in first.nth(4).inner_text()  # default_text fuses text only: all of the contribution
        assert "pitch" in first.nth(5).inner_text() and "not fused" in first.nth(5).inner_text()
        bars = page.locator("#timeline g.utterance")
        assert bars.count() == rows.count()
        assert page.locator("#timeline text.score").nth(0).text_content() == value
        expect(page.locator("#summary")).to_contain_text("text_only")

        # the download links give the job's artefacts, and they agree with what the page shows
        name, text = download(page, "#download-json")
        timeline = json.loads(text)
        assert name == "timeline.json"
        assert len(timeline["utterances"]) == rows.count()
        assert f"{timeline['utterances'][0]['score']:.2f}" == value
        assert timeline["utterances"][0]["text"] == transcript
        table = list(csv.DictReader(io.StringIO(download(page, "#download-csv")[1])))
        assert [r["text"] for r in table] == [u["text"] for u in timeline["utterances"]]

        assert all(url.startswith((server, "blob:", "data:")) for url in requested), requested  # nothing external
        shot = Path(os.environ.get("MSAKIT_SCREENSHOT", tmp_path / "serve-page.png"))
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
