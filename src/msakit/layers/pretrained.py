"""Readers of pretrained parts that models load in `MSAModel.load_pretrained`.

The writers live with the objectives in `msakit.pretrain`; models import only these
readers (never `msakit.pretrain`), so a model package stays free of training code.

- Stage-1 folders (`msakit pretrain s_mlm | ecam | fmr`): `weights.safetensors` + `meta.json`.
- STA-CA heads (`msakit pretrain sta_ca`): `heads.safetensors` + `heads.json` with the
  weights' sha256, so a pair torn by an interrupted write is detected.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from msakit.errors import ConfigError, DataError

STAGE1_WEIGHTS, STAGE1_META = "weights.safetensors", "meta.json"
HEADS_WEIGHTS, HEADS_META = "heads.safetensors", "heads.json"


def load_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, meta) from a stage-1 folder (or its .safetensors file)."""
    path = Path(path)
    folder = path.parent if path.suffix == ".safetensors" else path
    if not (folder / STAGE1_WEIGHTS).is_file() or not (folder / STAGE1_META).is_file():
        raise ConfigError(f"{folder}: not a stage-1 pretraining output (needs {STAGE1_WEIGHTS} and {STAGE1_META})")
    try:
        return load_file(str(folder / STAGE1_WEIGHTS)), json.loads((folder / STAGE1_META).read_text())
    except (OSError, SafetensorError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read stage-1 weights: {exc}", path=folder) from exc


def prefixed(module: nn.Module, prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def unprefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_encoder_state(
    path: str | Path, *, modality: str, in_dim: int, hidden_dim: int, kind: str
) -> dict[str, Tensor]:
    """The stage-1 frame encoder's state dict for `modality`, checked against the stage-2 encoder."""
    tensors, meta = load_weights(path)
    expected = {"modality": modality, "in_dim": in_dim, "hidden_dim": hidden_dim, "encoder": kind}
    wrong = {k: (meta.get(k), v) for k, v in expected.items() if meta.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: pretrained {a!r} vs model {b!r}" for k, (a, b) in wrong.items())
        raise ConfigError(
            f"{path}: stage-1 {meta.get('objective')!r} weights do not fit this {modality} encoder ({detail})"
        )
    return unprefixed(tensors, "net.encoder")


def load_heads(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict, metadata) from a folder of STA-CA heads (or its heads.json)."""
    folder = Path(path)
    if folder.name == HEADS_META:
        folder = folder.parent
    try:
        meta = json.loads((folder / HEADS_META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(
            f"not readable STA-CA heads ({exc}); run `msakit pretrain sta_ca`", path=folder / HEADS_META
        ) from exc
    weights = folder / HEADS_WEIGHTS
    try:
        blob = weights.read_bytes()
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"cannot read STA-CA head weights: {exc}", path=weights) from exc
    if meta.get("weights_sha256") not in (None, hashlib.sha256(blob).hexdigest()):
        raise DataError("weights do not match heads.json (interrupted write?); pretrain again", path=weights)
    return state, meta


def load_heads_into(heads: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load saved STA-CA heads into `heads`; ConfigError naming both shapes when they do not fit."""
    state, meta = load_heads(path)
    expected = {k: tuple(v.shape) for k, v in heads.state_dict().items()}
    # the projections first: their (shared_dim, in_dim) shapes say what does not fit
    for key, shape in sorted(expected.items(), key=lambda kv: not kv[0].endswith("proj.weight")):
        if key not in state:
            raise DataError(f"STA-CA heads lack tensor {key!r}", path=path)
        got = tuple(state[key].shape)
        if got != shape:
            raise ConfigError(
                f"pretrained heads {path}: {key} has shape {got} but the model expects {shape} "
                f"(heads were trained for text_dim={meta.get('text_dim')}, audio_dim={meta.get('audio_dim')}, "
                f"shared_dim={meta.get('shared_dim')}; the model has "
                f"text_dim={expected['text.proj.weight'][1]}, audio_dim={expected['audio.proj.weight'][1]}, "
                f"shared_dim={expected['text.proj.weight'][0]})"
            )
    heads.load_state_dict({k: state[k] for k in expected})
    return meta
