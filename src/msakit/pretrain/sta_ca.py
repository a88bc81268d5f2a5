"""STA-CA: self-supervised text–audio contrastive alignment (SADGR, §III-C, eqs. 5–11).

Zhang, Mao, Hou, Noh, Zhang, "SADGR: Adaptive Cross-Modal Emotion Recognition via
Self-Supervised Alignment and Dynamic Gating", IEEE Access, 2025.

Two frozen encoder towers (here: the dataset's precomputed features — MiniLM token
states for text, the acoustic features for audio) are mean-pooled over their valid
steps (eqs. 5–6) and mapped by *linear* projection heads g_t, g_a into a shared space
(eqs. 7–8). A CLIP-style symmetric InfoNCE with a learnable temperature τ pulls the
matched text–audio pair of each sample together and pushes the other N−1 pairs of the
batch apart (eqs. 9–11). Only the heads (and τ) train. Labels are never read.

    msakit pretrain sta_ca --data data/mosi --out /tmp/sta_ca -o epochs=30

writes `heads.safetensors` + `heads.json` (dims, τ, retrieval before/after) to OUT;
fine-tune with `msakit train --model sadgr -m pretrained_heads=OUT`.

Interpretations (the paper leaves these open):
- Frozen features are standardised per dimension with statistics of the training
  split (valid steps only) before the linear head: openSMILE features span six orders
  of magnitude, so a cosine-similarity loss on raw values would see only the largest
  few. Standardisation is affine and frozen, so g_m stays a linear map of the frozen
  features, as in eqs. 7–8; its statistics are saved with the heads.
- The paper pretrained on LibriSpeech (~1000 h); we pretrain on the training split's own
  transcript–audio pairs, with a fixed number of epochs and no early stopping, and
  report text→audio retrieval (R@1, R@5) on the held-out valid and test pairs before
  (random heads) and after training, beside chance (k / N).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from msakit.batch import Batch, masked_mean
from msakit.data.core import MSADataset, SplitData
from msakit.errors import ConfigError, DataError
from msakit.layers import symmetric_info_nce
from msakit.pretrain import PretrainObjective, register_objective

WEIGHTS, META = "heads.safetensors", "heads.json"


@dataclass
class STACAConfig:
    shared_dim: int = 64  # d_shared of the joint embedding space
    epochs: int = 30  # fixed; the paper ran 5 epochs over LibriSpeech's ~280k pairs
    batch_size: int = 64  # N pairs per contrastive batch: N−1 in-batch negatives each
    lr: float = 1e-3
    weight_decay: float = 0.0
    init_temperature: float = 0.07  # τ at start (CLIP's value); learned in log space
    seed: int = 0


# ---- the heads, shared with the fine-tuning model (msakit.models.sadgr) -------------------------------------------
class Standardize(nn.Module):
    """Frozen per-dimension (x − μ) / σ with statistics of the training split."""

    mean: Tensor
    std: Tensor
    fitted: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def fit(self, total: Tensor, total_sq: Tensor, count: float) -> None:
        """From float64 sums over `count` steps (float64 avoids cancellation in E[x²] − E[x]²)."""
        mean = total.double() / max(count, 1.0)
        std = (total_sq.double() / max(count, 1.0) - mean**2).clamp_min(0.0).sqrt()
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)).to(self.std))  # constant dims pass through
        self.fitted.fill_(True)


class AlignmentHead(nn.Module):
    """g_m: frozen standardisation, then a linear map into the shared space (eqs. 7–8)."""

    def __init__(self, in_dim: int, shared_dim: int) -> None:
        super().__init__()
        self.norm = Standardize(in_dim)
        self.proj = nn.Linear(in_dim, shared_dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Per step: (B, L, D), (B, L) -> (B, L, S), zero on padded steps."""
        return self.proj(self.norm(x)) * mask.unsqueeze(-1).to(x.dtype)

    def pool(self, x: Tensor, mask: Tensor) -> Tensor:
        """Z_m = g_m(mean of valid steps), eqs. 5–8: (B, L, D), (B, L) -> (B, S).

        g_m is affine, so pooling first equals pooling the per-step projections.
        """
        return self.proj(self.norm(masked_mean(x, mask)))


class TextAudioHeads(nn.Module):
    """g_t, g_a and the learnable temperature τ of the audio–text contrastive loss."""

    def __init__(self, text_dim: int, audio_dim: int, shared_dim: int, *, init_temperature: float = 0.07) -> None:
        super().__init__()
        self.text = AlignmentHead(text_dim, shared_dim)
        self.audio = AlignmentHead(audio_dim, shared_dim)
        # log(1/τ), as in CLIP; clamped so τ ≥ 0.01
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @property
    def temperature(self) -> Tensor:
        return torch.exp(-self.logit_scale.clamp(max=math.log(100.0)))

    def embed(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(Z_t, Z_a, valid): (B, S), (B, S), (B,) bool where the sample has both modalities."""
        z_t = self.text.pool(batch.features["text"], batch.masks["text"])
        z_a = self.audio.pool(batch.features["audio"], batch.masks["audio"])
        valid = batch.present_mask("text") & batch.present_mask("audio")
        return z_t, z_a, valid

    def contrastive_loss(self, z_t: Tensor, z_a: Tensor, valid: Tensor) -> Tensor:
        """L_con = ½ (L_t→a + L_a→t), cosine similarity over τ (eqs. 9–11)."""
        return symmetric_info_nce(z_t, z_a, temperature=self.temperature, valid=valid)

    def fit_statistics(self, batches: Iterable[Batch]) -> None:
        fit_standardizers({"text": self.text.norm, "audio": self.audio.norm}, batches)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.state_dict().items()}


@torch.no_grad()
def fit_standardizers(norms: dict[str, Standardize], batches: Iterable[Batch]) -> None:
    """Fit each modality's `Standardize` on the valid steps of `batches` (one pass)."""
    totals = {m: torch.zeros(n.mean.shape[0], dtype=torch.float64) for m, n in norms.items()}
    squares = {m: torch.zeros(n.mean.shape[0], dtype=torch.float64) for m, n in norms.items()}
    counts = dict.fromkeys(norms, 0.0)
    for batch in batches:
        for m in norms:
            x = batch.features[m][batch.masks[m]].double().cpu()  # (valid steps, D)
            totals[m] += x.sum(0)
            squares[m] += (x**2).sum(0)
            counts[m] += float(x.shape[0])
    for m, norm in norms.items():
        norm.fit(totals[m], squares[m], counts[m])


def save_heads(out: Path, heads: TextAudioHeads, meta: dict[str, Any]) -> Path:
    """Write OUT/heads.safetensors then OUT/heads.json, each atomically (temp file + rename).

    The JSON, written last, records the weights' sha256, so a pair torn by an
    interruption between the two renames is detected by `load_heads`.
    """
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, out / WEIGHTS)
    text_dim, audio_dim = heads.text.proj.in_features, heads.audio.proj.in_features
    payload = {
        "format": "msakit-sta-ca-heads",
        "text_dim": text_dim,
        "audio_dim": audio_dim,
        "shared_dim": heads.text.proj.out_features,
        "weights_sha256": digest,
        **meta,
    }
    tmp_meta = out / f".{META}.tmp"
    tmp_meta.write_text(json.dumps(payload, indent=2))
    os.replace(tmp_meta, out / META)
    return out


def load_heads(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict, metadata) from a folder written by `save_heads` (or its heads.json)."""
    folder = Path(path)
    if folder.name == META:
        folder = folder.parent
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"not readable STA-CA heads ({exc}); run `msakit pretrain sta_ca`", path=folder / META) from exc
    weights = folder / WEIGHTS
    try:
        blob = weights.read_bytes()
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"cannot read STA-CA head weights: {exc}", path=weights) from exc
    if meta.get("weights_sha256") not in (None, hashlib.sha256(blob).hexdigest()):
        raise DataError("weights do not match heads.json (interrupted write?); pretrain again", path=weights)
    return state, meta


def load_into(heads: TextAudioHeads, path: str | Path) -> dict[str, Any]:
    """Load saved heads into `heads`; ConfigError naming both shapes when they do not fit."""
    state, meta = load_heads(path)
    expected = heads.expected_shapes()
    # the projections first: their (shared_dim, in_dim) shapes say what does not fit
    for key, shape in sorted(expected.items(), key=lambda kv: not kv[0].endswith("proj.weight")):
        if key not in state:
            raise DataError(f"STA-CA heads lack tensor {key!r}", path=path)
        got = tuple(state[key].shape)
        if got != shape:
            raise ConfigError(
                f"pretrained heads {path}: {key} has shape {got} but the model expects {shape} "
                f"(heads were trained for text_dim={meta.get('text_dim')}, audio_dim={meta.get('audio_dim')}, "
                f"shared_dim={meta.get('shared_dim')}; the model has text_dim={heads.text.proj.in_features}, "
                f"audio_dim={heads.audio.proj.in_features}, shared_dim={heads.text.proj.out_features})"
            )
    heads.load_state_dict({k: state[k] for k in expected})
    return meta


# ---- retrieval: how aligned the shared space is ------------------------------------------------------------------
@torch.no_grad()
def retrieval(heads: TextAudioHeads, split: SplitData, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Text→audio recall@k over a split's paired samples: for each transcript, is its own
    audio among the k most cosine-similar audio embeddings of the whole split?"""
    heads.eval()
    zt, za = [], []
    for batch in split.loader(256, shuffle=False):
        z_t, z_a, valid = heads.embed(batch)
        zt.append(z_t[valid])
        za.append(z_a[valid])
    text, audio = F.normalize(torch.cat(zt), dim=-1), F.normalize(torch.cat(za), dim=-1)
    n = text.shape[0]
    sim = text @ audio.T  # (N, N)
    own = sim.diagonal().unsqueeze(1)
    rank = (sim > own).sum(1)  # 0 = its own audio is the most similar
    out: dict[str, float] = {"pairs": float(n)}
    for k in ks:
        out[f"R@{k}"] = float((rank < k).float().mean()) if n else math.nan
        out[f"chance_R@{k}"] = min(k / n, 1.0) if n else math.nan
    return out


@register_objective("sta_ca")
class STACA(PretrainObjective):
    """Contrastive text–audio alignment of linear heads over frozen features."""

    config_class = STACAConfig
    config: STACAConfig
    requires = ("text", "audio")

    def fit(self, dataset: MSADataset, out: Path, *, progress: bool = True) -> dict[str, Any]:
        self.check(dataset)
        cfg = self.config
        torch.manual_seed(cfg.seed)
        dims = dataset.info.dims
        heads = TextAudioHeads(dims["text"], dims["audio"], cfg.shared_dim, init_temperature=cfg.init_temperature)
        train = dataset.split("train")
        heads.fit_statistics(train.loader(256, shuffle=False))
        held_out = {s: dataset.split(s) for s in ("valid", "test") if s in dataset.splits}
        before = {s: retrieval(heads, split) for s, split in held_out.items()}
        optimizer = torch.optim.AdamW(
            [p for p in heads.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        losses: list[float] = []
        for epoch in tqdm(range(1, cfg.epochs + 1), desc="sta_ca", disable=not progress):
            heads.train()
            total, batches = 0.0, 0
            for batch in train.loader(cfg.batch_size, shuffle=True, seed=cfg.seed * 10_007 + epoch):
                loss = heads.contrastive_loss(*heads.embed(batch))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, batches = total + float(loss.detach()), batches + 1
            losses.append(total / max(batches, 1))
        after = {s: retrieval(heads, split) for s, split in held_out.items()}
        summary = {
            "objective": self.name,
            "dataset": dataset.info.name,
            "config": asdict(cfg),
            "train_pairs": int((train.modalities["text"].present & train.modalities["audio"].present).sum()),
            "train_loss_first_last": [losses[0], losses[-1]] if losses else [],
            "temperature": float(heads.temperature.detach()),
            "retrieval_before": before,
            "retrieval_after": after,
        }
        save_heads(Path(out), heads, summary)
        return {**summary, "out": str(out)}
