"""`msakit serve`: the REST service (msakit.serve) over one or more checkpoints."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from msakit.cli.common import FORMATTER
from msakit.errors import ConfigError

if TYPE_CHECKING:
    from msakit.service import LoadedModel


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve checkpoints over REST (needs the [serve] extra)",
        description=(
            "Serve CHECKPOINT folders over HTTP: GET /v1/models, POST /v1/predict, POST /v1/analyze, /healthz, "
            "/readyz, /metrics, /openapi.json, and a web page for analysing a video at / (see docs/serve.md). "
            "Binds to loopback; any other host requires an API token."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="checkpoint folder to serve (repeatable); NAME defaults to the folder's model name",
    )
    p.add_argument(
        "--onnx",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="run checkpoint NAME's predictions in onnxruntime over FILE, an export of it (`msakit export onnx "
        "CHECKPOINT --steps ...`); repeat for exports at several lengths: a request runs on the shortest graph its "
        "samples fit, a longer one in PyTorch. NAME may be left out when one checkpoint is served. Each graph is "
        "checked against its checkpoint at start-up (exit 2 for another checkpoint's graph, one without the "
        "model's explanations, or a model that reports uncertainty); needs onnxruntime (docs/serve.md)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8000, help="port to bind")
    p.add_argument("--token", help="API token (default: $MSAKIT_SERVE_TOKEN); required off loopback")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest request body")
    p.add_argument("--max-samples", type=int, default=256, help="samples per /v1/predict request")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds")
    p.add_argument("--concurrency", type=int, default=2, help="predictions run at once")
    p.add_argument("--queue", type=int, default=32, help="predictions that may wait; beyond: 429")
    p.add_argument(
        "--analyze-model",
        default="default_text",
        help="checkpoint for POST /v1/analyze: a folder or the name of a packaged one",
    )
    p.add_argument(
        "--jobs-dir",
        type=Path,
        help="where /v1/analyze jobs persist (they survive a restart as failed); default: a private temporary folder",
    )
    p.add_argument("--job-queue", type=int, default=8, help="analysis jobs that may wait; beyond: 429")
    p.add_argument("--job-workers", type=int, default=1, help="analysis jobs run at once (each is CPU-heavy)")
    p.add_argument("--max-media-seconds", type=float, default=600.0, help="longest /v1/analyze upload")
    p.set_defaults(func=run_serve)


def load_models(specs: list[Path]) -> dict[str, LoadedModel]:
    from msakit.service import load_model

    models: dict[str, LoadedModel] = {}
    for spec in specs:
        name, sep, folder = str(spec).partition("=")
        path = Path(folder) if sep else spec
        loaded = load_model(path, name=name if sep else None)
        if loaded.name in models:
            raise ConfigError(f"two checkpoints are named {loaded.name!r}; name them: --checkpoint NAME=DIR")
        models[loaded.name] = loaded
    return models


def attach_onnx(models: dict[str, LoadedModel], specs: list[str]) -> None:
    """`--onnx [NAME=]FILE ...`: each model's graphs, checked against it (`service.use_onnx`)."""
    from msakit.service import use_onnx

    graphs: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not (sep and name in models):  # FILE alone (which may itself hold a '=')
            if len(models) != 1:
                raise ConfigError(
                    f"--onnx {spec}: {len(models)} checkpoints are served ({', '.join(models)}); "
                    "name the one it belongs to: --onnx NAME=FILE",
                    field="onnx",
                )
            name, file = next(iter(models)), spec
        if not Path(file).is_file():
            raise ConfigError(f"--onnx {spec}: no such file {file}", field="onnx")
        graphs.setdefault(name, []).append(Path(file))
    for name, paths in graphs.items():
        use_onnx(models[name], paths)


def run_serve(args: argparse.Namespace) -> int:
    from msakit.serve.config import ServeConfig

    token = args.token or os.environ.get("MSAKIT_SERVE_TOKEN") or None
    config = ServeConfig(
        host=args.host,
        port=args.port,
        token=token,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_samples=args.max_samples,
        request_timeout_s=args.timeout,
        max_concurrency=args.concurrency,
        max_queue=args.queue,
        max_media_seconds=args.max_media_seconds,
        job_workers=args.job_workers,
        job_queue=args.job_queue,
    )
    try:
        import uvicorn

        from msakit.serve.app import create_app
    except ImportError as exc:
        raise ConfigError(f"msakit serve needs the [serve] extra (pip install 'msakit[serve]'): {exc}") from None
    import tempfile

    from msakit.serve.jobs import JobStore, default_analyze

    jobs_dir = args.jobs_dir or Path(tempfile.mkdtemp(prefix="msakit-serve-"))  # mkdtemp: mode 0700
    jobs = JobStore(
        jobs_dir, default_analyze(args.analyze_model), workers=config.job_workers, max_queue=config.job_queue
    )
    models = load_models(args.checkpoint)
    attach_onnx(models, args.onnx)
    app = create_app(models, config, jobs)
    shown = [f"{name} [onnxruntime]" if m.onnx is not None else name for name, m in models.items()]
    print(f"msakit serve: http://{config.host}:{config.port} ({', '.join(shown)})")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", server_header=False)
    return 0
