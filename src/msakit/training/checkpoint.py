"""Checkpoints: weights as safetensors, everything else as JSON; one format, one writer.

A weights folder (model checkpoints, and the stage-1 pretraining outputs under their
own file names) is written by `save_weights` through `msakit.io.atomic_dir`: it
becomes visible only once every file in it is complete and fsynced.

A model checkpoint (`seed<N>/best`, `seed<N>/last`) is a folder:
    model.safetensors   the model's state dict
    config.json         {"format": 2, "model": name, "model_config": {...},
                         "train_config": {...}, "dataset": {...}, "msakit_version": ...,
                         and e.g. "epoch", "seed", "valid", "fit_state"}
    optimizer.pt        (`last` only) optimizer state and RNG state, tensors only: read
                        with `torch.load(weights_only=True)`, so nothing is unpickled
Checkpoints written before the format field (format 1: the same files) load as they
are; a newer format is refused with a message naming the version.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from msakit.checkpoint_io import (  # the read side lives below training; re-exported here with the writers
    CONFIG,
    FORMAT,
    OPTIMIZER,
    WEIGHTS,
    load_checkpoint,
    load_weights,
    read_checkpoint_meta,
)
from msakit.checkpoint_io import first_line as _first_line
from msakit.data.core import DatasetInfo
from msakit.errors import DataError
from msakit.io import atomic_dir, recover_dir
from msakit.models.base import MSAModel

__all__ = [
    "CONFIG",
    "FORMAT",
    "OPTIMIZER",
    "WEIGHTS",
    "latest_resumable",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint_meta",
    "read_fit_state",
    "read_optimizer_state",
    "save_checkpoint",
    "save_weights",
]


def save_weights(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    weights_name: str = WEIGHTS,
    meta_name: str = CONFIG,
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """Write folder `path` = safetensors weights + JSON metadata (+ `extra_files`), atomically.

    extra_files: file name -> an object saved with `torch.save` (tensors, numbers, dicts
    of those only, so `torch.load(weights_only=True)` reads it back).
    """
    path = Path(path)
    with atomic_dir(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(_untie(state), str(tmp / weights_name))
        (tmp / meta_name).write_text(json.dumps({"format": FORMAT, **meta}, indent=2))
        for name, obj in (extra_files or {}).items():
            torch.save(obj, tmp / name)
    return path


def save_checkpoint(
    path: str | Path,
    model: MSAModel,
    *,
    dataset: DatasetInfo | None = None,
    train_config: Any = None,
    extra: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """A model checkpoint folder; with `optimizer_state`, a resumable one (`optimizer.pt`)."""
    from msakit import __version__
    from msakit.config import config_to_dict

    meta = {
        "model": model.model_name,
        "model_config": config_to_dict(model.config),
        "train_config": config_to_dict(train_config) if train_config is not None else None,
        "dataset": json.loads(json.dumps(asdict(dataset))) if dataset is not None else None,
        "msakit_version": __version__,
        **(extra or {}),
    }
    files = {OPTIMIZER: optimizer_state} if optimizer_state is not None else None
    return save_weights(path, model.state_dict(), meta, extra_files=files)


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; clone tensors that alias an earlier one."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def latest_resumable(run_dir: str | Path, name: str = "last") -> Path | None:
    """The newest complete resumable checkpoint of a run folder, or None.

    A save interrupted between its two renames leaves only `.last.old` (complete,
    the epoch before), which is put back; temporary folders of interrupted saves are
    removed. A `last` folder from before atomic saves that lacks `optimizer.pt` is
    reported by `read_optimizer_state`.
    """
    recover_dir(Path(run_dir) / "best")  # swapped the same way: a kill mid-swap must not lose it
    return recover_dir(Path(run_dir) / name)


def read_fit_state(path: Path) -> dict[str, Any]:
    """The `fit_state` of a resumable checkpoint's config.json; DataError when it has none."""
    meta = read_checkpoint_meta(path)
    if not isinstance(meta.get("fit_state"), dict):
        raise DataError(
            "this checkpoint has no training state, so it cannot be resumed (only seed<N>/last can); "
            "train again without --resume",
            path=path / CONFIG,
            field="fit_state",
        )
    return meta["fit_state"]


def read_optimizer_state(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """`optimizer.pt` of a resumable checkpoint, tensors only; one clear DataError otherwise."""
    file = path / OPTIMIZER
    if not file.is_file():
        raise DataError(
            f"missing; {path} is incomplete (written by an msakit before atomic checkpoints, or damaged). "
            f"Delete {path} to restart this seed, or train again without --resume",
            path=file,
        )
    try:
        data = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise DataError(
                "refused: it holds objects other than tensors and plain values, which msakit never unpickles",
                path=file,
            ) from None
        raise DataError(f"damaged or truncated ({_first_line(exc)})", path=file) from None
    except Exception as exc:  # torch's parsers fail on damaged bytes with any of a dozen types (fuzzed)
        raise DataError(f"damaged or truncated ({type(exc).__name__}: {_first_line(exc)})", path=file) from None
    if not isinstance(data, dict) or "optimizer" not in data or not isinstance(data["optimizer"], dict):
        raise DataError("not an msakit optimizer state (needs an 'optimizer' entry)", path=file, field="optimizer")
    rng = data.get("torch_rng")
    if rng is not None and not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8):
        raise DataError("'torch_rng' must be a uint8 tensor", path=file, field="torch_rng")
    return data
