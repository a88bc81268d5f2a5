"""The FastAPI app: versioned endpoints over `msakit.service`, the same code path as the CLI.

GET /v1/models, POST /v1/predict, POST /v1/analyze + GET /v1/jobs/{id}, GET /healthz, GET /readyz,
GET /metrics, GET /openapi.json, and the analysis page at GET / (static files from the package,
nothing from a CDN; it holds no data, so it stays open like the probes).
Every error is an RFC 9457 problem document (``application/problem+json``: type, title,
status, detail, instance), never HTML; bad input is a 4xx, never a 500. Predictions run in a
bounded worker pool; when `max_concurrency` run and `max_queue` wait, a request gets 429
with ``Retry-After``. Waiting requests for the same model are predicted together
(`msakit.serve.batching`). With a token configured, every endpoint but /healthz and /readyz
needs ``Authorization: Bearer <token>``, compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from msakit import service
from msakit.errors import MsakitError
from msakit.serve import media as media_limits
from msakit.serve.batching import Batcher
from msakit.serve.config import ServeConfig
from msakit.serve.jobs import TRANSCRIPT_SUFFIXES, JobStore, media_suffix
from msakit.serve.metrics import CONTENT_TYPE, Metrics

PROBLEM = "application/problem+json"
NPZ_TYPES = ("application/x-npz", "application/octet-stream", "application/zip")
PAGE = {"/": ("index.html", "text/html; charset=utf-8"), "/static/app.js": ("app.js", "text/javascript"),
        "/static/style.css": ("style.css", "text/css")}  # fmt: skip
OPEN_PATHS = ("/healthz", "/readyz", *PAGE)
# the page may load only what this service sends: no CDN, no inline script, no other origin
PAGE_CSP = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, dict(headers or {})


def problem_response(status: int, detail: str, instance: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": instance}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=dict(headers or {}))


class Pool:
    """A bounded worker pool: `max_concurrency` running, `max_queue` waiting, then 429."""

    def __init__(self, config: ServeConfig, metrics: Metrics) -> None:
        self.config, self.metrics = config, metrics
        self.executor = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="msakit-serve")
        self.active = 0  # submitted and not finished (touched on the event loop only)

    def _update(self) -> None:
        self.metrics.in_flight = min(self.active, self.config.max_concurrency)
        self.metrics.queue_depth = max(0, self.active - self.config.max_concurrency)

    async def run(self, fn: Callable[[], Any]) -> Any:
        cfg = self.config
        if self.active >= cfg.max_concurrency + cfg.max_queue:
            self.metrics.rejected += 1
            raise Problem(429, "the service is busy; retry later", headers={"Retry-After": str(cfg.retry_after_s)})
        self.active += 1
        self._update()
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn)

        def done(_: Any) -> None:  # the slot stays taken until the work really ends, even after a 504
            self.active -= 1
            self._update()

        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), cfg.request_timeout_s)
        except asyncio.TimeoutError:
            raise Problem(504, f"the prediction took longer than {cfg.request_timeout_s:g} s") from None


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _strict_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Problem(400, "request body is not valid JSON: nested too deeply") from None


def parse_predict_body(body: bytes, content_type: str, limit: int) -> tuple[str | None, list[Any], list[str] | None]:
    """(model name or None, samples, ids) from a JSON or .npz body (at most 8 x `limit` bytes unpacked)."""
    kind = content_type.split(";")[0].strip().lower()
    if not body:
        raise Problem(400, "empty request body")
    if kind in NPZ_TYPES:
        npz_samples, ids = service.samples_from_npz(body, max_bytes=8 * limit)
        return None, list(npz_samples), ids
    if kind != "application/json":
        raise Problem(415, f"unsupported content type {kind or '(none)'!r}; send application/json or application/x-npz")
    try:
        payload = orjson.loads(body)  # several times cheaper than json.loads on a (50, 384) sample
    except orjson.JSONDecodeError:
        payload = _strict_json(body)  # NaN / Infinity parse here and are refused with the field named
    if not isinstance(payload, dict):
        raise Problem(422, "the JSON body must be an object with 'samples' (a list) or 'sample' (an object)")
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise Problem(422, "'model' must be a string")
    if "sample" in payload:
        samples = [payload["sample"]]
    elif isinstance(payload.get("samples"), list):
        samples = payload["samples"]
    else:
        raise Problem(422, "the JSON body needs 'samples' (a list of objects) or 'sample' (an object)")
    ids = payload.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, (str, int)) for i in ids)):
        raise Problem(422, "'ids' must be a list of strings")
    return model, samples, [str(i) for i in ids] if ids is not None else None


KNOWN_ROUTES = frozenset(
    {"/v1/models", "/v1/predict", "/v1/analyze", "/healthz", "/readyz", "/metrics", "/openapi.json"}
)


def route_label(path: str) -> str:
    """The route a path belongs to (a bounded label set for the metrics)."""
    if path.startswith("/v1/jobs/"):
        return "/v1/jobs/{id}/artifacts/{name}" if "/artifacts/" in path else "/v1/jobs/{id}"
    if path in PAGE:
        return "page"
    return path if path in KNOWN_ROUTES else "other"


class Guard:
    """The token check and the request metrics, as plain ASGI middleware (Starlette's
    `BaseHTTPMiddleware` costs a task and a body copy per request)."""

    def __init__(self, app: ASGIApp, *, config: ServeConfig, metrics: Metrics) -> None:
        self.app, self.config, self.metrics = app, config, metrics
        self.token = config.token.encode() if config.token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, path, status = time.perf_counter(), scope["path"], 500
        try:
            if self.token is not None and path not in OPEN_PATHS:
                given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
                scheme, _, token = given.partition(b" ")
                if scheme.lower() != b"bearer" or not hmac.compare_digest(token, self.token):
                    status = 401
                    response = problem_response(401, "missing or wrong API token", path, {"WWW-Authenticate": "Bearer"})
                    await response(scope, receive, send)
                    return

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(scope["method"], route_label(path), status, time.perf_counter() - start)


def create_app(
    models: Mapping[str, service.LoadedModel], config: ServeConfig | None = None, jobs: JobStore | None = None
) -> FastAPI:
    """The app serving `models` (name -> loaded checkpoint) under `config`'s limits; `jobs` runs
    /v1/analyze (without it, /v1/analyze answers 503)."""
    cfg = config or ServeConfig()
    metrics = Metrics()
    metrics.job_counts = jobs.counts if jobs is not None else None
    pool = Pool(cfg, metrics)
    batcher = Batcher(max_samples=cfg.max_samples, max_steps=cfg.max_steps)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.executor.shutdown(wait=False, cancel_futures=True)
        if jobs is not None:
            jobs.close()

    app = FastAPI(
        title="msakit",
        version="1",
        description="Multimodal sentiment analysis over trained checkpoints.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's /docs and /redoc pages load their JavaScript from a CDN
        redoc_url=None,
    )
    app.state.config, app.state.metrics, app.state.models = cfg, metrics, dict(models)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, request.url.path, exc.headers)

    @app.exception_handler(MsakitError)
    async def _bad_input(request: Request, exc: MsakitError) -> JSONResponse:
        status = exc.status if isinstance(exc, media_limits.MediaRefused) else 422
        return problem_response(status, " ".join(str(exc).split()), request.url.path)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), request.url.path, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(422, "; ".join(str(e.get("msg")) for e in exc.errors()), request.url.path)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(500, f"internal error: {type(exc).__name__}", request.url.path)

    app.add_middleware(Guard, config=cfg, metrics=metrics)
    static = resources.files("msakit.serve").joinpath("static")
    page = {path: static.joinpath(name).read_bytes() for path, (name, _) in PAGE.items()}

    @app.get("/", include_in_schema=False)
    @app.get("/static/{name}", include_in_schema=False)
    async def web_page(request: Request) -> Response:
        path = request.url.path
        if path not in page:
            raise Problem(404, f"no such file {path[:60]!r}")
        headers = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"}
        return Response(page[path], media_type=PAGE[path][1], headers=headers)

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Models are loaded and the service accepts predictions")
    async def readyz() -> JSONResponse:
        if not app.state.models:
            return problem_response(503, "no model loaded", "/readyz")
        return JSONResponse({"status": "ready", "models": sorted(app.state.models)})

    @app.get("/metrics", summary="Prometheus text format", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", summary="The loaded checkpoints: modalities, widths, text encoder, metrics")
    async def list_models() -> dict[str, Any]:
        return {"models": [m.describe() for m in app.state.models.values()]}

    @app.post(
        "/v1/predict",
        summary="Predict from feature arrays (JSON or .npz), one sample or a batch",
        description=(
            "JSON: {'model': NAME?, 'samples': [{'text': [[...]], 'audio': [...]}], 'ids': [...]?} or "
            "{'sample': {...}}; per modality a (D,) vector or an (L, D) sequence, a missing modality is absent. "
            ".npz (Content-Type application/x-npz, ?model=NAME): arrays text/audio/visual (B, L, D), optional "
            "<modality>_mask (B, L) and ids (B,); never unpickled. Returns prediction, per-modality weights, "
            "uncertainty and explanations per sample."
        ),
    )
    async def predict(request: Request, model: str | None = None) -> dict[str, Any]:
        body = await read_body(request, cfg.max_upload_bytes)
        named, samples, ids = parse_predict_body(body, request.headers.get("content-type", ""), cfg.max_upload_bytes)
        loaded = _pick(named or model)
        pending = batcher.add(loaded, samples, ids)  # joined with others waiting for the same model
        try:
            result = await pool.run(lambda: batcher.run(pending))
        except Problem:
            batcher.discard(pending)
            raise
        return service.prediction_json(result)

    def _pick(name: str | None) -> service.LoadedModel:
        loaded = app.state.models
        if name is None:
            if len(loaded) == 1:
                return next(iter(loaded.values()))
            raise Problem(422, f"several models are loaded; name one of {sorted(loaded)} ('model')")
        if name not in loaded:
            raise Problem(404, f"unknown model {name!r}; loaded: {sorted(loaded)}")
        return loaded[name]

    @app.post(
        "/v1/analyze",
        status_code=202,
        summary="Analyse an uploaded video or audio file (multipart: media, optional transcript) as a job",
        description=(
            "multipart/form-data with a file field 'media' (mp4/mov, mkv/webm, avi, wav, mp3, flac, ogg: checked "
            "by content, then probed with PyAV: containers, codecs and duration within the service's limits, "
            "415/422 otherwise) and an optional 'transcript' (.srt, .vtt, .csv, .txt, parsed before the job is "
            "accepted). Returns the job (id, status); poll GET /v1/jobs/{id}."
        ),
    )
    async def analyze(request: Request) -> JSONResponse:
        if jobs is None:
            raise Problem(503, "analysis is not enabled on this service")
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            raise Problem(411, "an upload needs a Content-Length header")
        if int(declared) > cfg.max_upload_bytes:
            raise Problem(413, f"upload of {declared} bytes exceeds the limit of {cfg.max_upload_bytes} bytes")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise Problem(415, "send multipart/form-data with a file field 'media'")
        form = await request.form(max_files=2, max_fields=2)
        media, transcript = form.get("media"), form.get("transcript")
        if media is None or isinstance(media, str):
            raise Problem(422, "the form needs a file field 'media'")
        data = await media.read()
        if not data:
            raise Problem(400, "the media upload is empty (0 bytes)")
        suffix = media_suffix(data[:16])
        if suffix is None:
            raise Problem(415, "the media upload is not a supported audio/video container")
        text: bytes | None = None
        text_suffix = ".txt"
        if transcript is not None:
            text = transcript.encode() if isinstance(transcript, str) else await transcript.read()
            name = "" if isinstance(transcript, str) else (transcript.filename or "")
            # the client's file name only picks one of the fixed suffixes; it is never a path
            text_suffix = next((s for s in TRANSCRIPT_SUFFIXES if name.lower().endswith(s)), ".txt")

        def check(path: Path) -> None:  # this service's media limits, before the job is accepted
            media_limits.check(path, cfg)

        loop = asyncio.get_running_loop()
        job = await loop.run_in_executor(None, jobs.submit, data, suffix, text, text_suffix, check)
        if job is None:
            raise Problem(429, "the job queue is full; retry later", headers={"Retry-After": str(cfg.retry_after_s)})
        return JSONResponse(job, status_code=202, headers={"Location": f"/v1/jobs/{job['id']}"})

    @app.get("/v1/jobs/{job_id}", summary="A job's status, progress, error and artefacts")
    async def job_status(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id) if jobs is not None else None
        if job is None:
            raise Problem(404, f"unknown job {job_id[:40]!r}")
        job["links"] = {name: f"/v1/jobs/{job_id}/artifacts/{name}" for name in job.get("artifacts", [])}
        return job

    @app.get("/v1/jobs/{job_id}/artifacts/{name}", summary="timeline.json, timeline.csv or timeline.png of a job")
    async def job_artifact(job_id: str, name: str) -> FileResponse:
        path = jobs.artifact(job_id, name) if jobs is not None else None
        if path is None:
            raise Problem(404, f"no artefact {name[:40]!r} for job {job_id[:40]!r}: unknown, not done or no such file")
        return FileResponse(path, filename=name)

    return app
