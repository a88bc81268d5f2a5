"""Reading msakit checkpoints and weights folders: the read side of `msakit.training.checkpoint`.

It sits below training so that anything may read a checkpoint (the CLI, the service, a
model that distils from a teacher checkpoint) without importing the trainer. The folder
layout and the format are described in `msakit.training.checkpoint`, which writes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from msakit.errors import DataError, MsakitError

if TYPE_CHECKING:
    from msakit.models.base import MSAModel

WEIGHTS, CONFIG, OPTIMIZER = "model.safetensors", "config.json", "optimizer.pt"
FORMAT = 2


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def read_meta_json(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"not a readable msakit checkpoint: {first_line(exc)}", path=path) from None
    if not isinstance(meta, dict):
        raise DataError("checkpoint metadata must be a JSON object", path=path)
    version = meta.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT:
        raise DataError(
            f"checkpoint format {version!r} is newer than this msakit reads (format {FORMAT}); upgrade msakit",
            path=path,
            field="format",
        )
    return meta


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta = read_meta_json(path / CONFIG)
    for key in ("model", "model_config"):
        if key not in meta:
            raise DataError(f"checkpoint config lacks {key!r}", path=path / CONFIG, field=key)
    if not isinstance(meta["model"], str) or not isinstance(meta["model_config"], dict):
        raise DataError("checkpoint 'model' must be a name and 'model_config' an object", path=path / CONFIG)
    return meta


def load_weights(
    path: str | Path, *, weights_name: str = WEIGHTS, meta_name: str = CONFIG, device: str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a folder written by `save_weights`; DataError naming the file at fault."""
    path = Path(path)
    meta = read_meta_json(path / meta_name)
    try:
        tensors = load_file(str(path / weights_name), device=device)
    except (OSError, SafetensorError) as exc:
        raise DataError(f"cannot read weights: {first_line(exc)}", path=path / weights_name) from None
    return tensors, meta


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> tuple[MSAModel, dict[str, Any]]:
    """The model (in eval mode) and the checkpoint's metadata."""
    from msakit.registry import create_model, get_model_class

    path = Path(path)
    meta = read_checkpoint_meta(path)
    try:
        # a checkpoint saved before input normalisation existed has no feature_norm field: it had none;
        # a model's LEGACY_DEFAULTS give the values its fields had before they existed
        legacy = {"feature_norm": False, **getattr(get_model_class(meta["model"]).config_class, "LEGACY_DEFAULTS", {})}
        model = create_model(meta["model"], **{**legacy, **meta["model_config"]})
    except MsakitError as exc:  # an unknown model or field: say it is this config.json's
        raise DataError(str(exc), path=path / CONFIG, field="model_config") from None
    try:
        state = load_file(str(path / WEIGHTS), device=str(map_location))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"cannot read weights: {first_line(exc)}", path=path / WEIGHTS) from None
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise DataError(f"{len(nonfinite)} tensor(s) hold NaN/Inf (first: {nonfinite[0]})", path=path / WEIGHTS)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes: config.json's sizes disagree with the weights
        raise DataError(
            f"weights do not fit the model config.json describes: {' '.join(str(exc).split()[:40])}",
            path=path / WEIGHTS,
        ) from None
    if missing or unexpected:
        raise DataError(
            f"weights do not fit model {meta['model']!r}: missing {missing[:5]}, unexpected {unexpected[:5]}",
            path=path / WEIGHTS,
        )
    model.eval()
    return model, meta
