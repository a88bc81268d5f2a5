"""`msakit serve`: every endpoint, every limit and the bad inputs of issue 20, over FastAPI's TestClient."""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="msakit serve needs the [serve] extra (fastapi)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
from fastapi.testclient import TestClient

from msakit import service
from msakit.errors import ConfigError
from msakit.serve import ServeConfig, create_app

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> service.LoadedModel:
    from msakit.data import SyntheticConfig, make_synthetic
    from msakit.registry import create_model
    from msakit.training import save_checkpoint

    ds = make_synthetic(SyntheticConfig(sizes=(8, 8, 8)))
    model = create_model("late_fusion", **{**ds.info.model_overrides(), "hidden_dim": 8})
    path = tmp_path_factory.mktemp("ckpt") / "best"
    save_checkpoint(path, model, dataset=ds.info)
    valid = service.evaluate_split(service.load_model(path), ds, "valid").metrics  # measured, stored as training does
    save_checkpoint(path, model, dataset=ds.info, extra={"valid": valid, "epoch": 0, "seed": 1})
    return service.load_model(path, name="lf")


def client(loaded: service.LoadedModel, **limits: Any) -> TestClient:
    return TestClient(create_app({"lf": loaded}, ServeConfig(**limits)), raise_server_exceptions=False)


def sample(loaded: service.LoadedModel, steps: int = 2) -> dict[str, list]:
    return {m: np.ones((steps, d)).tolist() for m, d in loaded.dims.items()}


def assert_problem(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body) and body["status"] == status
    assert words in body["detail"], body["detail"]


def test_health_readiness_openapi_models(loaded: service.LoadedModel) -> None:
    c = client(loaded)
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json() == {"status": "ready", "models": ["lf"]}
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/predict", "/healthz", "/readyz", "/metrics"} <= set(paths)
    assert_problem(c.get("/docs"), 404, "Not Found")  # would load JavaScript from a CDN
    (described,) = c.get("/v1/models").json()["models"]
    assert described["name"] == "lf" and described["modalities"] == list(loaded.modalities)
    assert described["dims"] == loaded.dims and described["text_encoder"] == loaded.meta["dataset"]["features"].get(
        "text"
    )
    assert described["metrics"]["valid"] == pytest.approx(loaded.meta["valid"])
    empty = TestClient(create_app({}, ServeConfig()))
    assert_problem(empty.get("/readyz"), 503, "no model")


def test_predict_json_one_and_batch_same_as_the_service(loaded: service.LoadedModel) -> None:
    c = client(loaded)
    one = c.post("/v1/predict", json={"sample": sample(loaded)})
    assert one.status_code == 200, one.text
    (pred,) = one.json()["predictions"]
    assert set(pred["weights"]) == {"text", "audio", "visual"} and "present" in pred
    expected = service.predict_features(loaded, [sample(loaded)]).samples[0].prediction
    assert pred["prediction"] == pytest.approx(expected)  # one code path with the library
    batch = c.post(
        "/v1/predict", json={"model": "lf", "samples": [sample(loaded), sample(loaded, 5)], "ids": ["a", "b"]}
    )
    assert [p["id"] for p in batch.json()["predictions"]] == ["a", "b"]


def test_predict_npz(loaded: service.LoadedModel) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{m: np.ones((3, 2, d), np.float32) for m, d in loaded.dims.items()})
    r = client(loaded).post(
        "/v1/predict?model=lf", content=buf.getvalue(), headers={"content-type": "application/x-npz"}
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3
    evil = io.BytesIO()
    np.savez(evil, text=np.array([object()], dtype=object))
    bad = client(loaded).post("/v1/predict", content=evil.getvalue(), headers={"content-type": "application/x-npz"})
    assert_problem(bad, 422, "plain .npz")


def bad_requests(loaded: service.LoadedModel) -> list[tuple[dict[str, Any], int, str]]:
    d = loaded.dims["text"]
    nan_body = '{"sample": {"text": [NaN' + ", 0.0" * (d - 1) + "]}}"
    return [
        ({"json": {"sample": {"text": [[0.0, 1.0]]}}}, 422, "samples[0].text"),  # wrong dims
        ({"content": nan_body, "headers": {"content-type": "application/json"}}, 422, "NaN"),
        ({"json": {"samples": [{"text": [0.0] * d}] * 5}}, 422, "at most 4"),  # too many samples
        ({"json": {"model": "nope", "sample": sample(loaded)}}, 404, "unknown model 'nope'"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty"),
        ({"content": b"\x80\x04K\x01.", "headers": {"content-type": "application/python-pickle"}}, 415, "unsupported"),
        ({"content": b"PK\x03\x04oops", "headers": {"content-type": "application/x-npz"}}, 422, "not an .npz"),
        ({"json": [1, 2]}, 422, "object"),
        # orjson parses any depth without recursing; json.loads (the NaN fallback) would say "too deeply"
        ({"content": b"[" * 3000 + b"]" * 3000, "headers": {"content-type": "application/json"}}, 422, "object"),
        ({"json": {"samples": [{"smell": [1.0]}]}}, 422, "unknown modality 'smell'"),
        ({"content": b"x" * 9000, "headers": {"content-type": "application/json"}}, 413, "exceeds the limit"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_input_is_a_problem_document_never_a_500(loaded: service.LoadedModel, case: int) -> None:
    kwargs, status, words = bad_requests(loaded)[case]
    assert_problem(client(loaded, max_samples=4, max_upload_bytes=8192).post("/v1/predict", **kwargs), status, words)


def test_bad_requests_in_parallel_then_a_good_one(loaded: service.LoadedModel) -> None:
    c = client(loaded, max_samples=4, max_upload_bytes=8192)
    cases = bad_requests(loaded) * 3
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda case: c.post("/v1/predict", **case[0]), cases))
    for (_, status, words), r in zip(cases, responses, strict=True):
        assert_problem(r, status, words)
    assert c.post("/v1/predict", json={"sample": sample(loaded)}).status_code == 200


def test_unknown_route_and_method_are_problems(loaded: service.LoadedModel) -> None:
    c = client(loaded)
    assert_problem(c.get("/v2/nothing"), 404, "Not Found")
    assert_problem(c.get("/v1/predict"), 405, "Method Not Allowed")


def test_token(loaded: service.LoadedModel) -> None:
    c = client(loaded, token="s3cret")
    assert_problem(c.get("/v1/models"), 401, "API token")
    assert_problem(c.get("/v1/models", headers={"authorization": "Bearer wrong"}), 401, "API token")
    assert_problem(c.post("/v1/predict", json={}, headers={"authorization": "Basic s3cret"}), 401, "API token")
    assert c.get("/v1/models", headers={"authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # probes stay open
    with pytest.raises(ConfigError, match="requires an API token"):
        ServeConfig(host="0.0.0.0")
    assert ServeConfig(host="0.0.0.0", token="t").token == "t"


def test_cli_refuses_a_public_bind_without_token(
    loaded: service.LoadedModel, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from msakit.cli import main

    monkeypatch.delenv("MSAKIT_SERVE_TOKEN", raising=False)
    assert main(["serve", "--checkpoint", str(loaded.path), "--host", "0.0.0.0"]) == 2
    assert "requires an API token" in capsys.readouterr().err


class Blocked:
    """Stands in for the prediction: holds its worker until released."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.real = service.predict_features

    def __call__(self, *args: Any, **kwargs: Any) -> service.PredictionResult:
        self.started.set()
        self.release.wait(10)
        return self.real(*args, **kwargs)


def test_full_queue_answers_429_with_retry_after(loaded: service.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = Blocked()
    monkeypatch.setattr(service, "predict_features", blocked)
    c = client(loaded, max_concurrency=1, max_queue=0, retry_after_s=3)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(c.post, "/v1/predict", json={"sample": sample(loaded)})
        assert blocked.started.wait(10)
        busy = c.post("/v1/predict", json={"sample": sample(loaded)})
        assert_problem(busy, 429, "busy")
        assert busy.headers["retry-after"] == "3"
        assert "msakit_queue_depth 0" in c.get("/metrics").text and "msakit_in_flight 1" in c.get("/metrics").text
        blocked.release.set()
        assert first.result().status_code == 200
    assert "msakit_rejected_total 1" in c.get("/metrics").text


def test_timeout_answers_504(loaded: service.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = Blocked()
    monkeypatch.setattr(service, "predict_features", blocked)
    c = client(loaded, request_timeout_s=0.2)
    assert_problem(c.post("/v1/predict", json={"sample": sample(loaded)}), 504, "longer than 0.2 s")
    blocked.release.set()


def test_metrics_exposition(loaded: service.LoadedModel) -> None:
    c = client(loaded)
    c.post("/v1/predict", json={"sample": sample(loaded)})
    c.post("/v1/predict", json={"sample": {"text": [[1.0]]}})
    text = c.get("/metrics").text
    assert 'msakit_requests_total{method="POST",path="/v1/predict",status="200"} 1' in text
    assert 'msakit_requests_total{method="POST",path="/v1/predict",status="422"} 1' in text
    assert 'msakit_request_duration_seconds_bucket{path="/v1/predict",le="+Inf"} 2' in text
    assert "# TYPE msakit_request_duration_seconds histogram" in text
    assert json.dumps(text)  # plain text, one document


def test_a_bug_is_a_500_problem_not_html(loaded: service.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "predict_features", broken)
    assert_problem(client(loaded).post("/v1/predict", json={"sample": sample(loaded)}), 500, "internal error")


# ---- /v1/analyze jobs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 1 s mp4 (mpeg4 video + AAC audio, 12 kB) made with PyAV: it passes the service's media probe."""
    pytest.importorskip("av")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from media_factory import write_video

    return write_video(tmp_path_factory.mktemp("media") / "v.mp4", seconds=1.0, fps=5, size=(32, 24)).read_bytes()


def fake_analyze(calls: list, gate: threading.Event | None = None) -> Any:
    """Stands in for `msakit.analyze` (exercised for real by the slow test below): writes the artefacts."""
    from msakit.errors import DataError

    def run(media: Path, transcript: Path | None, out: Path, progress: Any) -> None:
        calls.append((media.name, transcript.read_text() if transcript else None))
        progress("features", 0.5)
        if gate is not None:
            gate.wait(10)
        if media.read_bytes().endswith(b"TRUNCATED"):
            raise DataError("not a readable audio/video file: moov atom not found", path=media)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("timeline.json", "timeline.csv", "timeline.png"):
            (out / name).write_text("{}" if name.endswith("json") else "x")

    return run


def wait_job(c: TestClient, job_id: str) -> dict:
    for _ in range(200):
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        threading.Event().wait(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def jobs_client(loaded: service.LoadedModel, root: Path, analyze: Any, **limits: Any) -> tuple[TestClient, Any]:
    from msakit.serve.jobs import JobStore

    store = JobStore(root, analyze, max_queue=limits.pop("job_queue", 8))
    app = create_app({"lf": loaded}, ServeConfig(**limits), store)
    return TestClient(app, raise_server_exceptions=False), store


def test_analyze_job_lifecycle_and_artifacts(loaded: service.LoadedModel, mp4: bytes, tmp_path: Path) -> None:
    calls: list = []
    c, _ = jobs_client(loaded, tmp_path / "jobs", fake_analyze(calls))
    files = {
        "media": ("../../etc/passwd.mp4", mp4),
        "transcript": ("t.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n"),
    }
    r = c.post("/v1/analyze", files=files)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    job = wait_job(c, r.json()["id"])
    assert job["status"] == "done" and job["progress"] == 1.0
    assert calls == [("media.mp4", "1\n00:00:00,000 --> 00:00:01,000\nhi\n")]  # the client's name is not a path
    assert set(job["links"]) == {"timeline.json", "timeline.csv", "timeline.png"}
    assert c.get(job["links"]["timeline.csv"]).text == "x"
    assert not (tmp_path / "jobs" / job["id"] / "input").exists()  # the upload is removed afterwards
    assert 'msakit_jobs{status="done"} 1' in c.get("/metrics").text
    assert_problem(c.get("/v1/jobs/" + "0" * 32), 404, "unknown job")
    assert_problem(c.get("/v1/jobs/../../etc"), 404, "")
    assert_problem(c.get(f"/v1/jobs/{job['id']}/artifacts/job.json"), 404, "no artefact")


def test_analyze_bad_uploads(loaded: service.LoadedModel, mp4: bytes, tmp_path: Path) -> None:
    calls: list = []
    c, _ = jobs_client(loaded, tmp_path / "jobs", fake_analyze(calls), max_upload_bytes=64 * 1024)
    cases = [
        ({"files": {"media": ("notes.mp4", b"not a video at all\n" * 5)}}, 415, "not a supported"),
        ({"files": {"media": ("empty.mp4", b"")}}, 400, "empty"),
        ({"files": {"media": ("big.mp4", mp4 + b"\x00" * 64 * 1024)}}, 413, "exceeds the limit"),
        ({"files": {"media": ("v.mp4", mp4), "transcript": ("t.srt", b"1\nnot a time\nhi\n")}}, 422, "transcript"),
        ({"files": {"media": ("v.mp4", mp4), "transcript": ("t.txt", b"\xff\xfe\x00bad")}}, 422, "UTF-8"),
        ({"files": {"other": ("v.mp4", mp4)}}, 422, "'media'"),
        ({"files": {"media": ("t.mp4", mp4[: len(mp4) // 2])}}, 422, "not a readable audio/video file"),  # truncated
        ({"json": {"media": "x"}}, 415, "multipart"),
    ]
    with ThreadPoolExecutor(4) as pool:  # in parallel, too
        responses = list(pool.map(lambda case: c.post("/v1/analyze", **case[0]), cases * 2))
    for (_, status, words), r in zip(cases * 2, responses, strict=True):
        assert_problem(r, status, words)
    assert calls == []  # nothing reached the analyser
    # one that passes the probe but that the analyser cannot use: the job fails, with its message
    undecodable = c.post("/v1/analyze", files={"media": ("t.mp4", mp4 + b"TRUNCATED")})
    job = wait_job(c, undecodable.json()["id"])
    assert job["status"] == "failed" and "moov atom" in job["error"] and str(tmp_path) not in job["error"]


@pytest.mark.parametrize(
    ("limits", "status", "words"),
    [
        ({"max_media_seconds": 0.5}, 422, "over the limit of 0.5 s (max_media_seconds)"),
        ({"media_codecs": ("h264", "aac")}, 415, "codec 'mpeg4' is not accepted"),
        ({"media_containers": ("wav", "flac")}, 415, "container 'mov,mp4,m4a,3gp,3g2,mj2' is not accepted"),
    ],
)
def test_media_limits(
    loaded: service.LoadedModel, mp4: bytes, tmp_path: Path, limits: dict, status: int, words: str
) -> None:
    calls: list = []
    c, _ = jobs_client(loaded, tmp_path / "jobs", fake_analyze(calls), **limits)
    assert_problem(c.post("/v1/analyze", files={"media": ("v.mp4", mp4)}), status, words)
    assert calls == [] and not any((tmp_path / "jobs").iterdir())  # refused before any job or file stays
    ok, _ = jobs_client(loaded, tmp_path / "ok", fake_analyze(calls))  # the defaults accept it
    assert ok.post("/v1/analyze", files={"media": ("v.mp4", mp4)}).status_code == 202


def test_media_probe_reads_duration_and_codecs(tmp_path: Path) -> None:
    pytest.importorskip("av")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from media_factory import write_wav
    from msakit.serve import media

    info = media.check(write_wav(tmp_path / "a.wav", seconds=2.0), ServeConfig())
    assert info.codecs == ("pcm_s16le",) and info.duration_s == pytest.approx(2.0, abs=0.01)
    assert "wav" in info.container


def test_full_job_queue_answers_429(loaded: service.LoadedModel, mp4: bytes, tmp_path: Path) -> None:
    gate = threading.Event()
    c, _ = jobs_client(loaded, tmp_path / "jobs", fake_analyze([], gate), job_queue=1, retry_after_s=2)
    first = c.post("/v1/analyze", files={"media": ("a.mp4", mp4)})
    second = c.post("/v1/analyze", files={"media": ("b.mp4", mp4)})
    assert first.status_code == second.status_code == 202
    busy = c.post("/v1/analyze", files={"media": ("c.mp4", mp4)})
    assert_problem(busy, 429, "queue is full")
    assert busy.headers["retry-after"] == "2"
    gate.set()
    assert wait_job(c, second.json()["id"])["status"] == "done"


def test_a_running_job_reports_its_stage_and_progress(loaded: service.LoadedModel, mp4: bytes, tmp_path: Path) -> None:
    gate = threading.Event()
    c, store = jobs_client(loaded, tmp_path / "jobs", fake_analyze([], gate))
    job_id = c.post("/v1/analyze", files={"media": ("a.mp4", mp4)}).json()["id"]
    for _ in range(200):  # the fake reports ("features", 0.5), then waits for the gate
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job.get("stage") == "features":
            break
        threading.Event().wait(0.05)
    assert job["status"] == "running" and job["progress"] == 0.5
    gate.set()
    done = wait_job(c, job_id)
    assert done["status"] == "done" and done["stage"] == "done" and done["progress"] == 1.0
    store.close()


def test_a_restart_mid_job_reports_it_failed(loaded: service.LoadedModel, mp4: bytes, tmp_path: Path) -> None:
    gate = threading.Event()
    c, store = jobs_client(loaded, tmp_path / "jobs", fake_analyze([], gate))
    running = c.post("/v1/analyze", files={"media": ("a.mp4", mp4)}).json()["id"]
    queued = c.post("/v1/analyze", files={"media": ("b.mp4", mp4)}).json()["id"]
    # a new process on the same folder while the old one is mid-job (the old one never finishes)
    c2, _ = jobs_client(loaded, tmp_path / "jobs", fake_analyze([]))
    for job_id in (running, queued):
        job = c2.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "failed" and "restarted" in job["error"]
    store.close()
    gate.set()


def test_analyze_disabled_without_a_job_store(loaded: service.LoadedModel, mp4: bytes) -> None:
    assert_problem(client(loaded).post("/v1/analyze", files={"media": ("a.mp4", mp4)}), 503, "not enabled")


@pytest.mark.slow
def test_analyze_job_gives_what_the_cli_gives(loaded: service.LoadedModel, tmp_path: Path) -> None:
    """The real `msakit analyze` path, once through the service and once through the CLI."""
    pytest.importorskip("av")
    pytest.importorskip("parselmouth")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from media_factory import write_wav
    from msakit.cli import main
    from msakit.extract.pipeline import Pipeline, PipelineConfig
    from msakit.registry import create_model
    from msakit.serve.jobs import default_analyze
    from msakit.training import save_checkpoint

    model = create_model("text_only", modalities=("text",), text_dim=384, hidden_dim=8)
    spec = Pipeline(PipelineConfig(audio=(), visual=())).spec()
    ckpt = save_checkpoint(tmp_path / "text", model, extra={"extract": spec})
    wav = write_wav(tmp_path / "a.wav", seconds=2.0)
    transcript = b"start,end,text\n0.0,1.0,what a wonderful film\n1.0,2.0,a dull and boring plot\n"
    (tmp_path / "t.csv").write_bytes(transcript)
    assert (
        main(
            [
                "analyze",
                str(wav),
                "--transcript",
                str(tmp_path / "t.csv"),
                "--model",
                str(ckpt),
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    c, _ = jobs_client(loaded, tmp_path / "jobs", default_analyze(str(ckpt)))
    r = c.post("/v1/analyze", files={"media": ("a.wav", wav.read_bytes()), "transcript": ("t.csv", transcript)})
    job = wait_job(c, r.json()["id"])
    assert job["status"] == "done", job
    served = c.get(job["links"]["timeline.json"]).json()
    cli = json.loads((tmp_path / "cli" / "timeline.json").read_text())
    assert [u["score"] for u in served["utterances"]] == pytest.approx([u["score"] for u in cli["utterances"]])
    assert [u["text"] for u in served["utterances"]] == ["what a wonderful film", "a dull and boring plot"]
    assert c.get(job["links"]["timeline.png"]).content[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the web page --------------------------------------------------------------------

PAGE_FILES = ("/", "/static/app.js", "/static/style.css")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an XML namespace name: never fetched


def test_page_is_served_and_references_no_external_url(loaded: service.LoadedModel) -> None:
    import re

    c = client(loaded, token="s3cret")  # the page holds no data: it stays open like the probes
    texts = {}
    for path in PAGE_FILES:
        r = c.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "default-src 'self'" in r.headers["content-security-policy"]  # the browser loads nothing else
        texts[path] = r.text
    assert r.headers["content-type"].startswith("text/css")
    html = texts["/"]
    assert 'id="upload-progress"' in html and 'id="timeline"' in html and 'id="utterances"' in html
    assert 'id="download-json"' in html and 'id="download-csv"' in html
    # every resource the page names is relative and served by this app
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert not re.match(r"^(?:[a-z]+:)?//", ref), ref
        if not ref.startswith(("data:", "#")):
            assert c.get("/" + ref, headers={"authorization": "Bearer s3cret"}).status_code == 200, ref
    for path, text in texts.items():  # no URL with a scheme or a protocol-relative one, anywhere
        urls = set(re.findall(r"(?:[a-z][a-z0-9+.-]*:)?//[^\s\"'`)]+", text, flags=re.I)) - {SVG_NAMESPACE}
        assert not urls, (path, urls)
        assert "@import" not in text and "url(" not in text
    auth = {"authorization": "Bearer s3cret"}
    assert_problem(c.get("/static/%2e%2e/app.py", headers=auth), 404, "")
    assert_problem(c.get("/static/jobs.py", headers=auth), 404, "no such file")
    assert_problem(c.get("/v1/models"), 401, "API token")


def test_page_script_reads_every_field_it_shows(loaded: service.LoadedModel) -> None:
    """The page draws what `msakit analyze` writes: the names it reads are fields of the timeline."""
    from msakit.analyze import Analysis, UtteranceResult

    script = client(loaded).get("/static/app.js").text
    for name in ("utterances", "duration", "fused_modalities", "transcript_source", "language", "notes", "warnings"):
        assert name in Analysis.__dataclass_fields__ and f"result.{name}" in script, name
    for name in ("start", "end", "text", "score", "polarity", "weights", "cues"):
        assert name in UtteranceResult.__dataclass_fields__ and f"u.{name}" in script, name
    assert "innerHTML" not in script  # values from the server go in as text, never as markup
    for artefact in ("timeline.json", "timeline.csv", "timeline.png"):
        assert f'links["{artefact}"]' in script


# ---- micro-batching ------------------------------------------------------------------


class Gate:
    """Wraps the prediction: records each call's sample count; the first call waits for the gate."""

    def __init__(self) -> None:
        self.started, self.release, self.calls = threading.Event(), threading.Event(), []
        self.real = service.predict_features

    def __call__(self, loaded: Any, samples: Any, **kwargs: Any) -> service.PredictionResult:
        self.calls.append(len(samples))
        self.started.set()
        self.release.wait(10)
        return self.real(loaded, samples, **kwargs)


def test_waiting_requests_are_predicted_in_one_batch(
    loaded: service.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(service, "predict_features", gate)
    c = client(loaded, max_concurrency=1, max_queue=16)
    rng = np.random.default_rng(0)
    bodies = [
        {"samples": [{m: rng.normal(size=(k + 1, d)).tolist() for m, d in loaded.dims.items()}], "ids": [f"r{k}"]}
        for k in range(6)
    ]
    bodies.append({"samples": [{"text": [[0.0, 1.0]]}]})  # a bad one among them: its own error
    bodies.append({"samples": [sample(loaded), sample(loaded, 3)]})  # no ids: its own 0, 1
    with ThreadPoolExecutor(len(bodies)) as pool:
        first = pool.submit(c.post, "/v1/predict", json=bodies[0])
        assert gate.started.wait(10)  # the first holds the only worker; the rest queue up behind it
        rest = [pool.submit(c.post, "/v1/predict", json=b) for b in bodies[1:]]
        for _ in range(200):
            if "msakit_queue_depth 7" in c.get("/metrics").text:
                break
            threading.Event().wait(0.02)
        gate.release.set()
        responses = [first.result(), *(f.result() for f in rest)]
    assert_problem(responses[6], 422, "samples[0].text")
    for body, r in zip(bodies[:6] + bodies[7:], responses[:6] + responses[7:], strict=True):
        assert r.status_code == 200, r.text
        alone = gate.real(loaded, body["samples"], ids=body.get("ids"))
        got = r.json()["predictions"]
        assert [p["id"] for p in got] == [p.id for p in alone.samples]
        assert [p["prediction"] for p in got] == pytest.approx([p.prediction for p in alone.samples], abs=1e-5)
    # one call for the first, one joint call for the 7 waiting (it fails on the bad one), then each alone
    assert gate.calls[:2] == [1, 8] and len(gate.calls) == 2 + 7, gate.calls
    gate.calls.clear()
    with ThreadPoolExecutor(6) as pool:  # all good: the waiting ones share one call
        gate.release.clear()
        gate.started.clear()
        first = pool.submit(c.post, "/v1/predict", json=bodies[0])
        assert gate.started.wait(10)
        rest = [pool.submit(c.post, "/v1/predict", json=b) for b in bodies[1:6]]
        for _ in range(200):
            if "msakit_queue_depth 5" in c.get("/metrics").text:
                break
            threading.Event().wait(0.02)
        gate.release.set()
        assert all(f.result().status_code == 200 for f in [first, *rest])
    assert gate.calls == [1, 5], gate.calls
