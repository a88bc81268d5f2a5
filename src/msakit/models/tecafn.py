"""TeCaFN: Text-centered Cross-sample Fusion Network.

Huang, Chen, Huang, Huang & Wang, "Text-centered cross-sample fusion network for
multimodal sentiment analysis", Multimedia Systems 30 (2024); authors' code:
github.com/TheShy-Dream/MSA-TeCaFN (read, not copied).

The centre modality c (text by default; audio or visual give the paper's AeCaFN /
VeCaFN of Fig. 3) queries every partner modality m:

    encoders (eqs 1-5)     positions + L-layer Transformer + 1-layer LSTM for partners,
                           the precomputed text token states (+ optional Transformer),
                           then a Conv1D to the common width H
    L_tcon (eq 6)          InfoNCE c -> m on pooled kernel-1 Conv1D embeddings
    mining (eq 7, Alg. 1)  cosine matrix S_cm; the top-`num` partners j != i per centre i
    replacement gate       training only: with prob. p the partner of sample i is swapped
    (Table 2)              for a uniform draw among its hard negatives; pseudo-target 1 =
                           paired, 0 = unpaired, independently per partner
    fusion (eqs 8-12)      L layers of centre-queried cross-modal attention over the gated
                           partner
    L_ap (eqs 13-14)       paired/unpaired prediction from the pooled fusion, cross-entropy
    L_bicon (eqs 15-16)    InfoNCE between the two fusions (c-v vs c-a), both directions
    output (eqs 17-19)     ŷ = label_range·tanh(FC(z_s)), z_s = the pooled fusions concatenated;
                           L = L_task(MAE) + γ1·(L_tcon + L_bicon) + γ2·L_ap

Interpretations (where the paper leaves a choice):
- Hard negatives exclude the sample itself (the paper says they are "not the correct
  corresponding matches"; Algorithm 1's argsort and the authors' code keep i among the
  top-num and drop it afterwards, so one of their `num` slots is often wasted) and any
  sample whose partner modality is absent. A batch smaller than num + 1, or a sample
  with no valid candidate, gets fewer (or no) hard negatives; a sample with none keeps
  its own partner and is labelled paired. The pseudo-target is computed from the chosen
  index (paired iff it is the sample's own), never from the gate's coin.
- "w/o hard negatives" (Table 5) draws the replacement uniformly from every other
  sample in the batch with that partner (the authors' code sets num = batch size).
- `replace_in` drops a partner's replacement gate *and* its L_ap term (Table 5's
  "w/o L_tap" removes "the replacement gate for audio"); `contrast_with` drops its
  L_tcon term; mining still uses the (then untrained) projections.
- Text: our data holds precomputed MiniLM token states, so BERT is not run (eq 4);
  `text_layers` > 0 adds a small Transformer with positions over them.
- Absent modalities: a sample whose partner m is absent uses the pooled centre
  for branch m; one whose centre is absent uses the pooled partner; neither, zeros.
  Such samples take no part in any contrastive or pairwise loss.
- With one partner (MOSI: text + audio) L_bicon has no second fusion and is 0.
- The paper gives no per-modality weights, so `modality_weights` is None.
- Defaults are the paper's (p = 0.7, num = 3, γ1 = γ2 = 0.1, no text Transformer, since
  its BERT is the text encoder). For msakit's MOSI, presets in src/msakit/presets/ hold the
  configurations chosen on the validation split: `tecafn/mosi` for the default e5 sentence
  vectors (`msakit tune`: hidden 32, dropout 0.08, lr 1.7e-4, weight decay 1e-3) and
  `tecafn/mosi-minilm` for frozen MiniLM states (text_layers = 1, dropout 0.3, p = 0.3,
  lr 5e-4); docs/models/tecafn.md has both searches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import MODALITIES, Batch, ModelOutput, masked_mean
from msakit.config import ModelConfig
from msakit.errors import ConfigError
from msakit.layers import MLP, CrossModalAttention, SequenceEncoder, info_nce
from msakit.models.base import MSAModel
from msakit.registry import register_model


@dataclass
class TeCaFNConfig(ModelConfig):
    centre: str = "text"  # the query modality: text = TeCaFN, audio = AeCaFN, visual = VeCaFN
    p: float = 0.7  # replacement probability of the gate (Table 6; 0.7 best on MOSI)
    num: int = 3  # hard negatives per sample (Table 7)
    gamma_con: float = 0.1  # γ1: weight of L_tcon + L_bicon (paper's grid {0.1, 0.2, 0.4})
    gamma_ap: float = 0.1  # γ2: weight of L_ap
    temperature: float = 0.1  # τ of both InfoNCE stages
    contrast_dim: int = 32  # width of the kernel-1 Conv1D embeddings f1, f2, g1, g2
    encoder_layers: int = 1  # L of the audio/visual Transformer (eqs 2-3)
    text_layers: int = 0  # optional Transformer over the precomputed text states; 0 = none
    cross_layers: int = 1  # L of the cross-modal attention (eqs 11-12)
    heads: int = 4
    conv_kernel: int = 1  # k_m of the Conv1D projection (eq 5), odd
    contrast_with: tuple[str, ...] = MODALITIES  # partners with an L_tcon term (centre ignored)
    replace_in: tuple[str, ...] = MODALITIES  # partners with a replacement gate and L_ap term
    hard_negatives_in: tuple[str, ...] = MODALITIES  # partners replaced by hard negatives, else uniformly
    use_bicon: bool = True  # L_bicon (eqs 15-16)
    ignore_modalities: tuple[str, ...] = ()  # modalities the model does not read (Table 5 "w/o V/A")

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "TeCaFN": {},
        "w/o L_ta": {"contrast_with": ("visual",)},
        "w/o L_tv": {"contrast_with": ("audio",)},
        "w/o L_ta + L_tv": {"contrast_with": ()},
        "w/o L_bicon": {"use_bicon": False},
        "w/o L_tap": {"replace_in": ("visual",)},
        "w/o L_tvp": {"replace_in": ("audio",)},
        "w/o L_tap + L_tvp": {"replace_in": ()},
        "w/o Hardneg_ta": {"hard_negatives_in": ("visual",)},
        "w/o Hardneg_tv": {"hard_negatives_in": ("audio",)},
        "w/o Hardneg_ta,tv": {"hard_negatives_in": ()},
        "w/o V": {"ignore_modalities": ("visual",)},
        "w/o A": {"ignore_modalities": ("audio",)},
        "w/o V, A": {"ignore_modalities": ("audio", "visual")},
    }


# ---- Algorithm 1 and Table 2 as pure functions ------------------------------------------


def mine_hard_negatives(similarity: Tensor, num: int, candidates: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Algorithm 1: for each centre sample i, the `num` most similar partner samples j != i.

    similarity: (B, B), S[i, j] = cos(centre_i, partner_j) (eq 7).
    candidates: (B,) bool, partners that may be drawn (e.g. present); default all.
    Returns indices (B, k) and valid (B, k) bool with k = min(num, B): a row has fewer
    than k valid entries when the batch holds fewer than num other candidates.
    """
    b = similarity.shape[0]
    allowed = ~torch.eye(b, dtype=torch.bool, device=similarity.device)  # a sample is never its own negative
    if candidates is not None:
        allowed &= candidates[None, :]
    scores = similarity.detach().masked_fill(~allowed, float("-inf"))
    top = scores.topk(min(num, b), dim=1)
    return top.indices, torch.isfinite(top.values)


def replacement_gate(indices: Tensor, valid: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Table 2 for one partner: keep the own sample with prob. 1-p, else a uniform hard negative.

    indices, valid: (B, k) from `mine_hard_negatives`. Rows without a valid entry keep
    their own sample. Returns chosen (B,) long and the pseudo-target (B,) long, 1 where
    the chosen sample is the own one (paired), 0 otherwise (unpaired).
    """
    own = torch.arange(indices.shape[0], device=indices.device)
    replace = (torch.rand(own.shape, device=indices.device) < p) & valid.any(dim=1)
    draw = torch.rand(valid.shape, device=indices.device).masked_fill(~valid, -1.0)  # uniform over valid slots
    pick = indices.gather(1, draw.argmax(dim=1, keepdim=True)).squeeze(1)
    chosen = torch.where(replace, pick, own)
    return chosen, (chosen == own).long()


# ---- blocks --------------------------------------------------------------------------


class _ConvProjection(nn.Module):
    """Eq 5: a temporal Conv1D to the common width, (B, L, Din), (B, L) -> (B, L, H)."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(-1).to(x.dtype)
        return self.conv((x * keep).transpose(1, 2)).transpose(1, 2) * keep


class _PartnerEncoder(nn.Module):
    """Eqs 1-4 for audio/visual: positions + L-layer Transformer, then a one-layer LSTM.

    Returns (sequence (B, L, H), pooled (B, H)), like `SequenceEncoder`.
    """

    def __init__(self, in_dim: int, hidden: int, *, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.transformer = SequenceEncoder(
            in_dim, hidden, kind="transformer", layers=layers, heads=heads, dropout=dropout
        )
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h, _ = self.transformer(x, mask)  # (B, L, H)
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        h = h * mask.unsqueeze(-1).to(h.dtype)
        return h, masked_mean(h, mask)


class _PairEmbedding(nn.Module):
    """f1/f2 (eq 6) or g1/g2 (eq 15): kernel-1 Conv1D mappers then masked mean pooling."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.left = nn.Conv1d(dim, out_dim, 1, bias=False)
        self.right = nn.Conv1d(dim, out_dim, 1, bias=False)

    def forward(self, x: Tensor, x_mask: Tensor, y: Tensor, y_mask: Tensor) -> tuple[Tensor, Tensor]:
        q = masked_mean(self.left(x.transpose(1, 2)).transpose(1, 2), x_mask)  # (B, E)
        k = masked_mean(self.right(y.transpose(1, 2)).transpose(1, 2), y_mask)  # (B, E)
        return q, k


# ---- the model -----------------------------------------------------------------------


@register_model("tecafn")
class TeCaFN(MSAModel):
    config_class = TeCaFNConfig
    config: TeCaFNConfig

    def __init__(self, config: TeCaFNConfig) -> None:
        super().__init__(config)
        self._validate(config)
        c, h = config.centre, config.hidden_dim
        self.active = tuple(m for m in self.modalities if m not in config.ignore_modalities)
        self.partners = tuple(m for m in self.active if m != c)
        enc: dict[str, nn.Module] = {}
        for m in self.active:
            if m == "text":
                kind = "transformer" if config.text_layers > 0 else "mean"  # "mean" = LayerNorm + Linear only
                layers = max(config.text_layers, 1)
                enc[m] = SequenceEncoder(
                    config.dim(m), h, kind=kind, layers=layers, heads=config.heads, dropout=config.dropout
                )
            else:
                enc[m] = _PartnerEncoder(
                    config.dim(m), h, layers=config.encoder_layers, heads=config.heads, dropout=config.dropout
                )
        self.encoders = nn.ModuleDict(enc)
        self.project = nn.ModuleDict({m: _ConvProjection(h, h, config.conv_kernel) for m in self.active})
        self.unimodal_embed = nn.ModuleDict({m: _PairEmbedding(h, config.contrast_dim) for m in self.partners})
        self.cross = nn.ModuleDict({m: self._cross_stack(config) for m in self.partners})
        self.pair_heads = nn.ModuleDict({m: MLP(h, 2, hidden_dim=h, dropout=config.dropout) for m in self.partners})
        self.bimodal_embed = _PairEmbedding(h, config.contrast_dim) if len(self.partners) == 2 else None
        width = h * max(len(self.partners), 1)
        self.head = MLP(width, config.num_classes, hidden_dim=h, dropout=config.dropout)

    @staticmethod
    def _cross_stack(config: TeCaFNConfig) -> nn.ModuleList:
        """Eqs 8-12: `cross_layers` centre-queried cross-modal attention blocks."""
        return nn.ModuleList(
            CrossModalAttention(config.hidden_dim, heads=config.heads, dropout=config.dropout)
            for _ in range(config.cross_layers)
        )

    def _validate(self, config: TeCaFNConfig) -> None:
        name = self.model_name
        if config.centre not in MODALITIES:
            raise ConfigError(f"model {name!r}: centre must be one of {MODALITIES}, got {config.centre!r}")
        available = [m for m in self.modalities if m not in config.ignore_modalities]
        if config.centre not in available:
            others = " or ".join(f"centre={m}" for m in available) or "a dataset with more modalities"
            raise ConfigError(
                f"model {name!r}: the centre modality {config.centre!r} is not among the modalities it reads "
                f"({', '.join(available) or 'none'}); choose {others}"
            )
        if not 0.0 <= config.p <= 1.0:
            raise ConfigError(f"model {name!r}: p must be in [0, 1], got {config.p}")
        if config.num < 1:
            raise ConfigError(f"model {name!r}: num must be >= 1, got {config.num}")
        if config.conv_kernel < 1 or config.conv_kernel % 2 == 0:
            raise ConfigError(f"model {name!r}: conv_kernel must be odd and positive, got {config.conv_kernel}")
        if config.hidden_dim % config.heads:
            raise ConfigError(f"model {name!r}: hidden_dim {config.hidden_dim} not divisible by heads {config.heads}")

    def forward(self, batch: Batch) -> ModelOutput:
        cfg, c = self.config, self.config.centre
        present = {m: batch.present_mask(m) for m in self.active}  # (B,) each
        masks = {m: batch.masks[m] & present[m][:, None] for m in self.active}  # (B, Lm)
        x: dict[str, Tensor] = {}
        for m in self.active:  # eqs 1-5
            seq, _ = self.encoders[m](batch.features[m], masks[m])  # (B, Lm, H)
            x[m] = self.project[m](seq, masks[m])  # (B, Lm, H)
        pooled_c = masked_mean(x[c], masks[c])  # (B, H)

        aux: dict[str, Tensor] = {}
        explanations: dict[str, Tensor] = {}
        tcon: list[Tensor] = []
        ap: list[Tensor] = []
        branches: list[Tensor] = []
        fused_seqs: dict[str, Tensor] = {}
        fusable: dict[str, Tensor] = {}
        for m in self.partners:
            key, key_mask, key_present = x[m], masks[m], present[m]
            paired = None
            if self.training:
                q, k = self.unimodal_embed[m](x[c], masks[c], x[m], masks[m])  # (B, E) each
                if m in cfg.contrast_with:  # eq 6, asymmetric c -> m
                    tcon.append(info_nce(q, k, temperature=cfg.temperature, valid=present[c] & present[m]))
                if m in cfg.replace_in:  # eq 7, Algorithm 1, Table 2
                    sim = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T  # (B, B)
                    num = cfg.num if m in cfg.hard_negatives_in else batch.size
                    idx, valid = mine_hard_negatives(sim, num, candidates=present[m])
                    valid &= present[c][:, None]  # only a present centre is fused across samples
                    chosen, paired = replacement_gate(idx, valid, cfg.p)
                    key, key_mask, key_present = key[chosen], key_mask[chosen], key_present[chosen]
                    explanations[f"paired_{m}"], explanations[f"partner_{m}"] = paired, chosen
            h = x[c]
            cross: nn.ModuleList = self.cross[m]  # type: ignore[assignment]
            for layer in cross:  # eqs 8-12
                h = layer(h, key, key_mask)  # (B, Lc, H)
            fused_seqs[m] = h
            fused = masked_mean(h, masks[c])  # (B, H)
            fusable[m] = ok = present[c] & key_present  # (B,)
            pair_logits = self.pair_heads[m](fused)  # (B, 2), eq 13
            if paired is not None and ok.any():  # eq 14
                ap.append(F.cross_entropy(pair_logits[ok], paired[ok]))
            if not self.training:
                explanations[f"p_paired_{m}"] = pair_logits.softmax(-1)[:, 1] * ok.to(h.dtype)
            fallback = torch.where(present[c][:, None], pooled_c, masked_mean(x[m], masks[m]))
            branches.append(torch.where(ok[:, None], fused, fallback))

        if self.training and self.bimodal_embed is not None and cfg.use_bicon:  # eqs 15-16
            first, second = self.partners  # (audio, visual) for TeCaFN: u = g2(h_ta), z = g1(h_tv)
            u, z = self.bimodal_embed(fused_seqs[first], masks[c], fused_seqs[second], masks[c])
            both = fusable[first] & fusable[second]
            bicon = info_nce(z, u, temperature=cfg.temperature, valid=both) + info_nce(
                u, z, temperature=cfg.temperature, valid=both
            )
            aux["bicon"] = cfg.gamma_con * bicon
        if tcon:
            aux["tcon"] = cfg.gamma_con * torch.stack(tcon).sum()
        if ap:
            aux["ap"] = cfg.gamma_ap * torch.stack(ap).sum()

        z_s = torch.cat(branches, dim=-1) if branches else pooled_c  # (B, H·partners)
        raw = self.head(z_s)  # (B, C)
        if not self.is_classifier:
            raw = cfg.label_range * torch.tanh(raw)  # eq 17, scaled to the label range
        return ModelOutput(
            prediction=self.bound_prediction(raw),
            aux_losses=aux,
            features={"fused": z_s, c: pooled_c},
            explanations=explanations,
        )
