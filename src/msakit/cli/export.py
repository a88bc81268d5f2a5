"""`msakit export onnx CKPT --out FILE`: a trained checkpoint as an ONNX graph (msakit.export)."""

from __future__ import annotations

import argparse
from pathlib import Path

from msakit.cli.common import FORMATTER
from msakit.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained checkpoint as an ONNX graph (checked against PyTorch with onnxruntime)",
        description=(
            "Write checkpoint CKPT as ONNX. Graph inputs: per modality the (B, L, D) features and their (B, L) "
            "mask, then `present` (B, 3); outputs `prediction` and, where the model reports them, "
            "`modality_weights`. The batch axis is dynamic; each modality's length L is fixed (from --data, "
            "else --steps, else 64) and shorter inputs are padded (msakit.export.feeds_from_batch). The file is "
            "kept only if onnxruntime reproduces PyTorch within --tolerance on probe batches; a model that "
            "reads raw text, dialogue context or frames, or whose operators or control flow ONNX cannot express, "
            "is refused with the reason (exit code 2). Needs onnxruntime (the [export] extra); not the onnx package."
        ),
        formatter_class=FORMATTER,
    )
    p.add_argument("format", choices=("onnx",), help="output format")
    p.add_argument("checkpoint", help="a checkpoint folder (e.g. runs/x/seed1/best)")
    p.add_argument("--out", required=True, type=Path, help="output .onnx file")
    p.add_argument("--data", help="take each modality's fixed length from this dataset's padded arrays")
    p.add_argument("--steps", action="append", default=[], metavar="MODALITY=N", help="a modality's fixed length")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed in the parity check")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run_export)


def _steps(args: argparse.Namespace, reads: tuple[str, ...]) -> dict[str, int]:
    """Fixed lengths: the dataset's padded length for each modality the model reads, then --steps."""
    steps: dict[str, int] = {}
    if args.data:
        from msakit.data import load_dataset

        dataset = load_dataset(args.data)
        for split in dataset.splits.values():
            for m, arrays in split.modalities.items():
                if m in reads:
                    steps[m] = max(steps.get(m, 1), int(arrays.values.shape[1]))
    for item in args.steps:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ConfigError(f"--steps {item!r}: expected MODALITY=N with N a positive integer", field="steps")
        steps[name.strip()] = int(value)
    return steps


def run_export(args: argparse.Namespace) -> int:
    from msakit.export import export_onnx
    from msakit.service import load_model

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("msakit export onnx needs onnxruntime: pip install 'msakit[export]'") from None
    loaded = load_model(args.checkpoint)
    info = export_onnx(loaded, args.out, steps=_steps(args, loaded.modalities), tolerance=args.tolerance)
    shown = ", ".join(f"{m} {n}" for m, n in info["steps"].items())
    print(
        f"wrote {args.out}: {loaded.meta['model']} (steps: {shown}); onnxruntime matches PyTorch to "
        f"{info['max_abs_diff']:.2g} (tolerance {args.tolerance:g})"
    )
    return 0
