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
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes

from msakit.batch import Batch
from msakit.data.core import MSADataset, SplitData
from msakit.data.stats import dataset_stats
from msakit.layers.pretrained import HEADS_META, HEADS_WEIGHTS, load_heads, load_heads_into
from msakit.layers.standardize import TextAudioHeads

__all__ = ["STACA", "TextAudioHeads", "load_heads", "load_heads_into", "retrieval", "save_heads"]
from msakit.pretrain import PretrainObjective, register_objective
from msakit.training.checkpoint import save_weights
from msakit.training.engine import Callback, FitState, fit_steps

WEIGHTS, META = HEADS_WEIGHTS, HEADS_META


@dataclass
class STACAConfig:
    shared_dim: int = 64  # d_shared of the joint embedding space
    epochs: int = 30  # fixed; the paper ran 5 epochs over LibriSpeech's ~280k pairs
    batch_size: int = 64  # N pairs per contrastive batch: N−1 in-batch negatives each
    lr: float = 1e-3
    weight_decay: float = 0.0
    init_temperature: float = 0.07  # τ at start (CLIP's value); learned in log space
    seed: int = 0


def save_heads(out: Path, heads: TextAudioHeads, meta: dict[str, Any]) -> Path:
    """Write folder OUT = heads.safetensors + heads.json in one atomic step (`save_weights`).

    heads.json records the weights' sha256, so weights edited or replaced later are
    detected by `load_heads`.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    payload = {
        "format": "msakit-sta-ca-heads",
        "text_dim": heads.text.proj.in_features,
        "audio_dim": heads.audio.proj.in_features,
        "shared_dim": heads.text.proj.out_features,
        "weights_sha256": hashlib.sha256(safetensors_bytes(state)).hexdigest(),
        **meta,
    }
    return save_weights(out, state, payload, weights_name=WEIGHTS, meta_name=META)


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
        stats = dataset_stats(train).features
        heads.text.norm.set(stats["text"].center, stats["text"].scale)
        heads.audio.norm.set(stats["audio"].center, stats["audio"].scale)
        held_out = {s: dataset.split(s) for s in ("valid", "test") if s in dataset.splits}
        before = {s: retrieval(heads, split) for s, split in held_out.items()}
        optimizer = torch.optim.AdamW(
            [p for p in heads.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        per_epoch = max(math.ceil(len(train) / cfg.batch_size), 1)

        def batches() -> Iterator[Batch]:
            for epoch in range(1, cfg.epochs + 1):
                heads.train()
                yield from train.loader(cfg.batch_size, shuffle=True, seed=cfg.seed * 10_007 + epoch)

        def loss_fn(batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
            return heads.contrastive_loss(*heads.embed(batch)), {}

        steps = _StepLosses()  # the engine's step loop, no gradient clipping (as the objective always had)
        fit_steps(self.name, batches(), loss_fn, optimizer, [steps], grad_clip=0.0, progress=progress)
        losses = [sum(chunk) / len(chunk) for chunk in _chunks(steps.losses, per_epoch)]
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


@dataclass
class _StepLosses(Callback):
    losses: list[float] = field(default_factory=list)

    def on_step_end(self, state: FitState, parts: dict[str, float]) -> None:
        self.losses.append(parts["loss"])


def _chunks(values: list[float], size: int) -> Iterator[list[float]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
