"""Checkpoints: weights as safetensors, everything else as JSON. Nothing is unpickled.

A checkpoint is a folder:
    model.safetensors   the model's state dict
    config.json         {"model": name, "model_config": {...}, "train_config": {...},
                         "dataset": {...}, "metrics": {...}, "msakit_version": ...}
Writes go to a temporary sibling that is renamed into place, so an interrupted save
never leaves a half-written checkpoint and the previous one stays intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from msakit.data.core import DatasetInfo
from msakit.errors import DataError
from msakit.models.base import MSAModel
from msakit.registry import create_model

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_checkpoint(
    path: str | Path,
    model: MSAModel,
    *,
    dataset: DatasetInfo | None = None,
    train_config: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    from msakit import __version__
    from msakit.config import config_to_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(_untie(state), str(tmp / WEIGHTS))
        meta = {
            "model": model.model_name,
            "model_config": config_to_dict(model.config),
            "train_config": config_to_dict(train_config) if train_config is not None else None,
            "dataset": json.loads(json.dumps(asdict(dataset))) if dataset is not None else None,
            "msakit_version": __version__,
            **(extra or {}),
        }
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; clone tensors that alias an earlier one."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        meta = json.loads((path / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"not a readable msakit checkpoint: {exc}", path=path / CONFIG) from exc
    if not isinstance(meta, dict) or "model" not in meta or "model_config" not in meta:
        raise DataError("checkpoint config lacks 'model' / 'model_config'", path=path / CONFIG, field="model")
    return meta


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> tuple[MSAModel, dict[str, Any]]:
    """The model (in eval mode) and the checkpoint's metadata."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    model = create_model(meta["model"], **meta["model_config"])
    try:
        state = load_file(str(path / WEIGHTS), device=str(map_location))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"cannot read weights: {exc}", path=path / WEIGHTS) from exc
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(
            f"weights do not fit model {meta['model']!r}: missing {missing[:5]}, unexpected {unexpected[:5]}",
            path=path / WEIGHTS,
        )
    model.eval()
    return model, meta
