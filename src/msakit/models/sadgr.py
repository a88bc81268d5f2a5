"""SADGR: self-supervised text–audio alignment, audio-guided visual gating, late MLP fusion.

Zhang, Mao, Hou, Noh, Zhang, "SADGR: Adaptive Cross-Modal Emotion Recognition via
Self-Supervised Alignment and Dynamic Gating", IEEE Access, 2025 (§III, eqs. 5–21).

"Align first, modulate second, fuse later":
1. STA-CA (`msakit pretrain sta_ca`, eqs. 5–11) trains linear heads g_t, g_a that map
   the frozen text and audio features into a shared space; this model loads them from
   `pretrained_heads` and keeps training them with λ·L_con (eq. 21).
2. Text and audio, aligned step by step by g_t, g_a, go through a Conv1D to d_model
   (eqs. 12–13); then, "following [34]" (RAVEN, Wang et al. 2019), masked multimodal
   attention fuses them: each text step attends over the valid audio steps and is
   shifted by what it reads (`text_audio_fusion="masked_attention"`, the default).
   Both sequences are mean-pooled.
3. AG-VR (eqs. 14–18): single-head self-attention over the video frames; the mean of
   the audio frames drives a ReLU MLP with a sigmoid, a gate g ∈ [0, 1]^{Dv} over the
   visual feature dimensions, broadcast over time: F'_v = F̃_v ⊙ g.
4. Mean pooling, concatenation, fusion MLP, output head (eqs. 19–20).

Without visual (MOSI) the AG-VR branch is not built: the gate has nothing to gate, the
model is text + audio fusion with L_con, the visual modality weight is 0 and
`explanations` has no "visual_gate". Without text (YouTube's training split) the
model is audio + AG-VR visual; L_con needs text–audio pairs and is off, and
`pretrained_heads` must be empty (STA-CA heads align text with audio).

Interpretations (the paper leaves these open):
- Masked multimodal text–audio attention (§III-C names it and cites [34], no equation):
  a pre-norm multi-head cross-attention block (`layers.CrossModalAttention`) with the
  Conv1D text sequence as queries and the Conv1D audio sequence as keys/values, padded
  audio steps masked out, residual onto the text (RAVEN's "words shift" by nonverbal
  context). A sample without audio keeps its text sequence unshifted.
  `text_audio_fusion="none"` removes it (the seed implementation before issue 16).
- Fine-tuning optimiser: the paper fine-tunes with AdamW, lr 1e-5, batch 32. AdamW is
  the trainer's optimiser; lr 1e-5 with our small, randomly initialised fusion layers
  needs far more epochs than a CPU budget allows, so the trainer default stays 1e-3 and
  `--preset sadgr/paper` sets the paper's lr 1e-5 / batch 32 (docs/models/sadgr.md).
- The pretrained heads are used, not only initialised: each step of the frozen text
  and audio sequences is mapped by g_t / g_a (affine, so the mean of the aligned steps
  is exactly the Z of eqs. 7–8), then the Conv1D of eqs. 12–13 maps d_shared → d_model.
  "w/o pre-train" is the same model with randomly initialised heads.
- Frozen features are standardised per dimension with training-split statistics (fit
  in `on_fit_start`, or taken from the pretrained heads); the gate reads the mean of
  the standardised audio frames (eq. 15, W_1 ∈ R^{dh×da} as in eq. 16).
- A sample without audio gets g = 1 (no guidance, the video passes unmodulated);
  a sample without video contributes f_v = 0 and reports a zero gate.
- "w/o A-V gated" removes the whole AG-VR module (no frame self-attention, no gate);
  "use attention" keeps the frame self-attention and replaces the gate by a standard
  multi-head cross-attention block (`layers.CrossModalAttention`) of the frames over
  the Conv1D audio sequence.
- `modality_weights` is each modality's share of the fusion MLP's first pre-activation
  (‖W_m f_m‖ over the sum), an attribution, not a learned weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from msakit.batch import MODALITIES, Batch, ModelOutput, masked_mean, modality_index
from msakit.config import ModelConfig
from msakit.data.stats import DatasetStats
from msakit.errors import ConfigError
from msakit.layers import MLP, CrossModalAttention, safe_key_padding_mask
from msakit.layers.pretrained import load_heads_into
from msakit.layers.standardize import AlignmentHead, Standardize, TextAudioHeads
from msakit.models.base import MSAModel
from msakit.registry import register_model

VISUAL_REFINE = ("gate", "attention", "none")
TEXT_AUDIO_FUSION = ("masked_attention", "none")


@dataclass
class SADGRConfig(ModelConfig):
    shared_dim: int = 64  # d_shared of the STA-CA space; must match the pretrained heads
    pretrained_heads: str = ""  # folder written by `msakit pretrain sta_ca`; "" = random heads
    conv_kernel: int = 3  # Conv1D width of the dimension matching (eqs. 12–13)
    con_weight: float = 0.1  # λ of L_con in eq. 21; the paper picks it from {0.1, 0.3, 0.5} on validation
    visual_refine: str = "gate"  # "gate" (AG-VR) | "attention" (gate → cross-attention) | "none" (no AG-VR)
    gate_depth: int = 2  # Linear layers of the gate MLP (eqs. 16–17 = 2; Figure 6 sweeps 1–4)
    key_dim: int = 0  # d_k of the frame self-attention (eq. 14); 0 = hidden_dim
    text_audio_fusion: str = "masked_attention"  # §III-C "following [34]" | "none"

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {  # Table 4
        "SADGR": {},
        "w/o pre-train": {"pretrained_heads": ""},
        "w/o T-A contrastive": {"con_weight": 0.0},
        "w/o A-V gated": {"visual_refine": "none"},
        "gate -> cross-attention": {"visual_refine": "attention"},
        "w/o T-A masked attention": {"text_audio_fusion": "none"},
    }


class FrameSelfAttention(nn.Module):
    """Single-head self-attention over video frames, eq. 14: (B, Lv, Dv) -> (B, Lv, Dv)."""

    def __init__(self, visual_dim: int, key_dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(visual_dim, key_dim)
        self.k = nn.Linear(visual_dim, key_dim)
        self.v = nn.Linear(visual_dim, visual_dim)
        self.scale = key_dim**-0.5

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        scores = self.q(x) @ self.k(x).transpose(1, 2) * self.scale  # (B, Lv, Lv)
        scores = scores.masked_fill(safe_key_padding_mask(mask)[:, None, :], float("-inf"))
        return scores.softmax(-1) @ self.v(x)  # (B, Lv, Dv)


class AudioGate(nn.Module):
    """g = σ(W_2 ReLU(W_1 f_a,global + b_1) + b_2) ∈ [0, 1]^{Dv}, eqs. 16–17 (depth 2)."""

    def __init__(self, audio_dim: int, visual_dim: int, *, hidden_dim: int, depth: int) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"model 'sadgr': gate_depth must be ≥ 1, got {depth}")
        self.mlp = MLP(audio_dim, visual_dim, hidden_dim=hidden_dim, depth=depth - 1)

    def forward(self, audio_global: Tensor) -> Tensor:
        return torch.sigmoid(self.mlp(audio_global))  # (B, Dv)


@register_model("sadgr")
class SADGR(MSAModel):
    config_class = SADGRConfig
    config: SADGRConfig

    def __init__(self, config: SADGRConfig) -> None:
        super().__init__(config)
        if config.visual_refine not in VISUAL_REFINE:
            raise ConfigError(
                f"model 'sadgr': visual_refine must be one of {VISUAL_REFINE}, got {config.visual_refine!r}"
            )
        h, s = config.hidden_dim, config.shared_dim
        mods = self.modalities
        self.paired = "text" in mods and "audio" in mods
        if config.pretrained_heads and not self.paired:
            raise ConfigError(
                f"model 'sadgr': pretrained_heads align text with audio, the data has only {list(mods)}; "
                "leave pretrained_heads empty"
            )
        # STA-CA heads g_t, g_a (+ τ) when both exist; a lone text or audio gets its own linear head
        self.heads = TextAudioHeads(config.text_dim, config.audio_dim, s) if self.paired else None
        self.solo = nn.ModuleDict(
            {m: AlignmentHead(config.dim(m), s) for m in ("text", "audio") if m in mods and not self.paired}
        )
        # Conv1D dimension matching d_shared -> d_model, eqs. 12–13
        self.conv = nn.ModuleDict(
            {
                m: nn.Conv1d(s, h, config.conv_kernel, padding=config.conv_kernel // 2)
                for m in ("text", "audio")
                if m in mods
            }
        )
        if config.text_audio_fusion not in TEXT_AUDIO_FUSION:
            raise ConfigError(
                f"model 'sadgr': text_audio_fusion must be one of {TEXT_AUDIO_FUSION}, got {config.text_audio_fusion!r}"
            )
        self.text_audio = (
            CrossModalAttention(h, heads=next(n for n in (4, 2, 1) if h % n == 0), dropout=config.dropout)
            if self.paired and config.text_audio_fusion == "masked_attention"
            else None
        )
        self.dropout = nn.Dropout(config.dropout)
        widths = {m: h for m in self.conv}
        if "visual" in mods:
            dv = config.visual_dim
            self.visual_norm = Standardize(dv)
            refine = config.visual_refine if "audio" in mods else ("none" if config.visual_refine == "none" else "self")
            self.refine = refine  # "self": AG-VR without audio to guide it keeps only eq. 14
            if refine != "none":
                self.frame_attention = FrameSelfAttention(dv, config.key_dim or h)
            if refine == "gate":
                self.gate = AudioGate(config.audio_dim, dv, hidden_dim=h, depth=config.gate_depth)
            elif refine == "attention":
                heads = next(n for n in (4, 2, 1) if dv % n == 0)
                self.audio_to_visual = nn.Linear(h, dv)
                self.cross_attention = CrossModalAttention(dv, heads=heads, dropout=config.dropout)
            widths["visual"] = dv
        self.widths = widths
        self.fusion = MLP(sum(widths.values()), h, hidden_dim=h, depth=1, dropout=config.dropout)  # eq. 19
        self.classifier = nn.Sequential(nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, config.num_classes))
        self._raw_head_stats = False  # set by load_pretrained: head statistics still describe raw features

    def align(self, modality: str) -> AlignmentHead:
        head = getattr(self.heads, modality) if self.heads is not None else self.solo[modality]
        assert isinstance(head, AlignmentHead)
        return head

    # ---- forward, top-down as in the paper ---------------------------------------------------------------------
    def forward(self, batch: Batch) -> ModelOutput:
        seq: dict[str, Tensor] = {}
        pooled: dict[str, Tensor] = {}
        for m in self.conv:  # text, audio: align (eqs. 7–8 per step), Conv1D (eqs. 12–13), pool
            x, mask = batch.features[m], batch.masks[m]
            aligned = self.dropout(self.align(m)(x, mask))  # (B, L, S)
            seq[m] = self.conv[m](aligned.transpose(1, 2)).transpose(1, 2) * mask.unsqueeze(-1)  # (B, L, H)
        if self.text_audio is not None:  # masked multimodal attention, text shifted by audio ([34])
            shifted = self.text_audio(seq["text"], seq["audio"], batch.masks["audio"])  # (B, Lt, H)
            has_audio = batch.present_mask("audio")[:, None, None]
            seq["text"] = torch.where(has_audio, shifted, seq["text"]) * batch.masks["text"].unsqueeze(-1)
        for m in self.conv:
            pooled[m] = masked_mean(seq[m], batch.masks[m])  # (B, H)
        explanations: dict[str, Tensor] = {}
        if "visual" in self.widths:
            pooled["visual"], gate = self._visual(batch, seq.get("audio"))
            if gate is not None:
                explanations["visual_gate"] = gate
        fused = self.fusion(torch.cat([pooled[m] for m in self.widths], dim=-1))  # (B, H), eq. 19
        prediction = self.bound_prediction(self.classifier(fused))  # eq. 20
        aux: dict[str, Tensor] = {}
        features = {**pooled, "fused": fused}
        if self.heads is not None:
            z_t, z_a, valid = self.heads.embed(batch)  # (B, S) each
            features.update(z_text=z_t, z_audio=z_a)
            if self.training and self.config.con_weight > 0:
                aux["con"] = self.config.con_weight * self.heads.contrastive_loss(z_t, z_a, valid)  # λ·L_con, eq. 21
        return ModelOutput(
            prediction=prediction,
            modality_weights=self._contributions(pooled, batch),
            aux_losses=aux,
            features=features,
            explanations=explanations,
        )

    def _visual(self, batch: Batch, audio_seq: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """AG-VR, eqs. 14–18: f_v (B, Dv) and the per-sample gate (B, Dv) (None without a gate)."""
        mask = batch.masks["visual"]
        frames = self.visual_norm(batch.features["visual"]) * mask.unsqueeze(-1)  # (B, Lv, Dv)
        if self.refine == "none":
            return masked_mean(frames, mask), None
        refined = self.frame_attention(frames, mask)  # F̃_v, eq. 14
        gate = None
        if self.refine == "gate":
            a_mask = batch.masks["audio"]
            audio_global = masked_mean(self.align("audio").norm(batch.features["audio"]), a_mask)  # eq. 15
            has_audio = batch.present_mask("audio").unsqueeze(-1)
            gate = torch.where(has_audio, self.gate(audio_global), torch.ones_like(refined[:, 0]))  # (B, Dv)
            refined = refined * gate.unsqueeze(1)  # F'_v = F̃_v ⊙ g, broadcast over time, eq. 18
            gate = gate * batch.present_mask("visual").unsqueeze(-1)  # nothing gated where there is no video
        elif self.refine == "attention":
            assert audio_seq is not None
            keys = self.audio_to_visual(audio_seq)  # (B, La, Dv)
            attended = self.cross_attention(refined, keys, batch.masks["audio"])
            refined = torch.where(batch.present_mask("audio")[:, None, None], attended, refined)
        return masked_mean(refined, mask), gate

    def _contributions(self, pooled: dict[str, Tensor], batch: Batch) -> Tensor:
        """(B, M): share of ‖W_m f_m‖ in the fusion MLP's first layer; 0 for absent modalities."""
        first = self.fusion[0]
        assert isinstance(first, nn.Linear)
        weights = torch.zeros(batch.size, len(MODALITIES), device=first.weight.device)
        start = 0
        for m, width in self.widths.items():
            part = pooled[m].detach() @ first.weight[:, start : start + width].detach().T  # (B, H)
            weights[:, modality_index(m)] = part.norm(dim=-1) * batch.present_mask(m)
            start += width
        return weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)

    # ---- training hooks -------------------------------------------------------------------------------------------
    def load_pretrained(self) -> None:
        """The STA-CA heads named by `pretrained_heads` (their standardisation included)."""
        if self.config.pretrained_heads:
            self.load_pretrained_heads(self.config.pretrained_heads)
            self._raw_head_stats = True  # the heads' statistics describe raw, unnormalised features

    def on_fit_start(self, stats: DatasetStats) -> None:
        """Standardisation statistics from the training split, where no pretrained heads set them.

        With the base class's input normalisation on, `stats` already describe normalised
        inputs (centre 0, scale 1), and pretrained heads' raw-feature statistics (μ, σ) are
        re-expressed for them: (x − μ)/σ = (x_n − (μ − c)/s) / (σ/s) for x_n = (x − c)/s.
        """
        norms: dict[str, Standardize] = {m: self.align(m).norm for m in self.conv}
        if "visual" in self.widths:
            norms["visual"] = self.visual_norm
        inputs = getattr(self, "input_norm", None)
        for m, norm in norms.items():
            if not bool(norm.fitted) and m in stats.features:
                norm.set(stats.features[m].center, stats.features[m].scale)
            elif self._raw_head_stats and inputs is not None and m in ("text", "audio"):
                center, scale = inputs.stats_of(m)
                norm.set(((norm.mean - center) / scale).detach(), (norm.std / scale).detach())
        self._raw_head_stats = False

    def load_pretrained_heads(self, path: str) -> dict[str, Any]:
        """Load STA-CA heads; ConfigError naming both shapes when they do not fit this model."""
        if self.heads is None:
            raise ConfigError("model 'sadgr': pretrained_heads need both text and audio in the data")
        return load_heads_into(self.heads, path)
