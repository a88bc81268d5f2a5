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

import pytest

from conftest import SHARED_DATA

pytest.importorskip("fastapi", reason="msakit serve needs the [serve] extra (fastapi)")
uvicorn = pytest.importorskip("uvicorn", reason="msakit serve needs the [serve] extra (uvicorn)")
playwright = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs Playwright for Python (pip install 'msakit[browser]')"
)

VIDEO = SHARED_DATA / "mosi" / "media" / "Oz06ZWiO20M_6.mp4"
CHROMIUM = os.environ.get("MSAKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium; or MSAKIT_CHROMIUM)"),
    pytest.mark.skipif(not VIDEO.is_file(), reason=f"the MOSI sample video is absent ({VIDEO})"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from msakit.analyze import resolve_checkpoint
    from msakit.serve import ServeConfig, create_app
    from msakit.serve.jobs import JobStore, default_analyze
    from msakit.service import load_model

    config = ServeConfig(port=free_port(), max_upload_bytes=32 * 1024 * 1024)
    jobs = JobStore(tmp_path_factory.mktemp("jobs"), default_analyze("default_text"))
    app = create_app({"default_text": load_model(resolve_checkpoint("default_text"))}, config, jobs)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{config.port}"
    srv.should_exit = True
    thread.join(10)


def test_upload_the_mosi_video_and_read_the_timeline(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1040, "height": 900}, accept_downloads=True)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(server + "/")
        expect(page.locator("h1")).to_have_text("msakit")
        page.set_input_files("#media", str(VIDEO))
        page.click("#submit")
        expect(page.locator("#upload-pct")).to_have_text("100 %", timeout=30_000)  # the upload finished
        expect(page.locator("#result")).to_be_visible(timeout=300_000)  # the analysis is done and drawn
        assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()

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
        with page.expect_download() as dl:
            page.click("#download-json")
        timeline = json.loads(Path(dl.value.path()).read_text())
        assert dl.value.suggested_filename == "timeline.json"
        assert len(timeline["utterances"]) == rows.count()
        assert f"{timeline['utterances'][0]['score']:.2f}" == value
        assert timeline["utterances"][0]["text"] == transcript
        with page.expect_download() as dl:
            page.click("#download-csv")
        table = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
        assert [r["text"] for r in table] == [u["text"] for u in timeline["utterances"]]

        assert all(url.startswith((server, "blob:", "data:")) for url in requested), requested  # nothing external
        shot = Path(os.environ.get("MSAKIT_SCREENSHOT", tmp_path / "serve-page.png"))
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        browser.close()
