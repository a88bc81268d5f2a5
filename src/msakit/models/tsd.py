"""TSD: Tri-Subspace Disentanglement with Subspace-Aware Cross-Attention (SACA).

"Tri-Subspace Disentanglement for multimodal sentiment analysis", CVPR 2026 (abstract
only, ../shared/seeds/003; reported: MOSI MAE 0.691, MOSEI Acc-7 54.9). What the
abstract says, and what we chose:

- "factorizes features into three complementary subspaces: a common subspace ...,
  submodally-shared subspaces modeling pairwise cross-modal synergies, and private
  subspaces". Chosen: each modality m is encoded to an utterance vector h_m (masked
  mean of a projected sequence, or a Transformer for text when `text_layers` > 0);
  then one projector C shared by every modality gives c_m = C(h_m), one projector P_ij
  per modality pair shared by its two modalities gives p_ij^m = P_ij(h_m), and one
  private projector per modality gives q_m = Q_m(h_m). The codes are c = mean_m c_m,
  p_ij = mean(p_ij^i, p_ij^j) and q_m (each a linear map + LayerNorm + tanh, width H).
- "a decoupling supervisor together with structured regularization losses". The
  issue's secondary reading (treated as a reading, not as fact) lists: L2 alignment of
  the shared and of the pairwise codes, HSIC independence between private codes,
  orthogonality, a 3-way subspace discriminator. Chosen: L_align = Σ ‖c_i − c_j‖² +
  Σ ‖p_ij^i − p_ij^j‖² (over pairs both present); L_hsic = Σ_{i<j} HSIC(q_i, q_j); L_orth =
  soft orthogonality of (c, p_ij), (c, q_m) and (p_ij, q_m) for m in the pair; L_decor =
  XCov (`cross_correlation`: squared batch correlations between the features of two
  codes) over the same pairs, added by us because the soft orthogonality alone (MISA's
  form, a mean over H² per-sample products) left the private codes linearly
  recoverable from the common code (ridge R² 0.38-0.40 on MOSI), and "distinct
  subspaces" should mean no linear probe recovers one from another; the
  decoupling supervisor is a small MLP that classifies every code into
  {common, pairwise, private} and is trained jointly with the encoders (cross-entropy;
  codes that a classifier can tell apart are distinct subspaces; no gradient reversal,
  which would do the opposite). Each has its weight (`*_weight`).
- Structural decoupling (ours, `decouple`, default on): the losses only push towards
  distinct codes, and with `L_decor` alone 2 of 5 seeds left a private code linearly
  recoverable from the common code on MOSI (ridge R² 0.22). So the common code c is
  replaced by its residual after the least-squares linear prediction from the other
  codes side by side, o = [p_ij..., q_m...]: c − (ō − μ_o) W, W = (Σ_oo + λI)⁻¹ Σ_oc
  (`LinearDecoupler`). Then Cov(c', o) = 0: no linear probe recovers a private or
  pairwise code from the common code (nor the common code from them). The private
  codes, which carry the sentiment on MOSI, stay as they are; decoupling them from c
  instead (tried first, in a 5-seed MOSI run before the epoch-end recomputation existed)
  gave a validation MAE of 0.855 against 0.817 without decoupling. The statistics are
  running estimates, as in batch norm, over the codes computed without dropout (ō: a second,
  gradient-free pass over the encoders in training; statistics of dropped-out codes
  are attenuated by the noise), centred in training on the batch mean of ō, and
  recomputed exactly on the whole training split at every epoch end
  (`on_train_epoch_end`), so that a checkpoint holds the statistics of its own weights;
  the shift is a constant for the gradient. An absent code enters at its mean (no
  shift). Nothing is lost: (c', o) is an invertible linear map of (c, o). A block
  Gram-Schmidt step in the spirit of the abstract's "decoupling"; off when
  `use_common=False` or there is no other code.
- "a Subspace-Aware Cross-Attention (SACA) fusion module that adaptively models and
  integrates information from the three subspaces". Chosen: the available codes (c, the
  p_ij whose two modalities are present, the present q_m), each plus a learned
  subspace-type embedding (common / pairwise / private), form a token set; one
  self-attention block lets subspaces attend to each other, then a learned query
  attends over the result: its attention weights are the explanation `subspace_attention`
  (B, 1 + P + M; order common, pairs in MODALITIES order, private), zero for absent codes.
  `use_saca=False` (ablation) replaces SACA by the mean of the available codes.
  "Integrates": a convex mixture of the tokens cannot hand the head a fixed linear
  combination of them (e.g. common code + residual, which the decoupling needs), so the
  fused vector is the pooled token plus a linear map of all SACA tokens concatenated
  (zero for absent codes); `integrate=False` (ablation) keeps the pooled token only (on
  MMMO the two are level within one seed-std, docs/models/tsd.md).
- The subspace-type embedding's scale (`kind_init_std`, ours). Every SACA token is a code
  plus its kind's embedding. PyTorch draws an embedding from N(0, 1), so at initialisation
  the three random kind vectors (per-feature std 1) are larger than the codes themselves
  (LayerNorm + tanh: std 0.41-0.64 per code on 256 MOSI-e5 training clips, seeds 1 and 2),
  and the seed's draw, not the input, sets much of where SACA first attends: a candidate
  source of the seed-to-seed variance behind the MOSI Corr gap. BERT's token-type
  embeddings start at std 0.02, so the content dominates and the type only tags it.
  `kind_init_std` rescales the same draw (no extra random numbers; default 1.0, PyTorch's,
  bit for bit as before); what it did on MOSI is in docs/models/tsd.md.
- Input dropout (ours, `input_dropout`, default 0 = none): dropout on each modality's input
  features before its encoder. On a linear map it acts as an L2 penalty scaled by each
  feature's variance (Wager, Wang and Liang 2013, "Dropout training as adaptive
  regularization"), the network's counterpart of the probe's ridge penalty on the one e5
  sentence vector. Off at eval and in the dropout-free pass of the decoupling statistics;
  what it did on MOSI is in docs/models/tsd.md.
- Absent modalities: codes that depend on an absent modality are dropped from SACA and
  from every loss; with one modality present, c = c_m.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msakit.batch import Batch, ModelOutput
from msakit.config import ModelConfig, tunable
from msakit.errors import ConfigError
from msakit.layers import MLP, CrossModalAttention, SequenceEncoder, safe_key_padding_mask
from msakit.layers.subspace import LinearDecoupler, cross_correlation, hsic, l2_alignment, orthogonality
from msakit.models.base import Capabilities, MSAModel
from msakit.registry import register_model

COMMON, PAIRWISE, PRIVATE = 0, 1, 2


@dataclass
class TSDConfig(ModelConfig):
    text_layers: int = 0  # Transformer layers over the text states; 0 = projection + mean
    heads: int = 2
    align_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)
    hsic_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)
    orth_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)
    discriminator_weight: float = tunable(0.1, low=0.01, high=1.0, log=True)
    decor_weight: float = tunable(1.0, low=0.1, high=10.0, log=True)  # XCov between codes of different kinds
    use_common: bool = True
    use_pairwise: bool = True
    use_private: bool = True
    use_saca: bool = True
    decouple: bool = True  # pairwise and private codes minus their linear prediction from the common code
    integrate: bool = True  # the fused vector adds a linear map of every SACA token to the attention-pooled one
    kind_init_std: float = 1.0  # std of the subspace-type embedding at init (PyTorch's N(0, 1) draw, rescaled)
    input_dropout: float = 0.0  # dropout on each modality's input features, before its encoder (0 = none)

    ABLATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "TSD": {},
        "w/o common subspace": {"use_common": False},
        "w/o pairwise subspaces": {"use_pairwise": False},
        "w/o private subspaces": {"use_private": False},
        "w/o SACA (mean of codes)": {"use_saca": False},
        "w/o L_align": {"align_weight": 0.0},
        "w/o L_hsic": {"hsic_weight": 0.0},
        "w/o L_orth": {"orth_weight": 0.0},
        "w/o decoupling supervisor": {"discriminator_weight": 0.0},
        "w/o L_decor": {"decor_weight": 0.0},
        "w/o structural decoupling": {"decouple": False},
        "w/o token integration (pooled only)": {"integrate": False},
        "w/o regularisation": {
            "align_weight": 0.0,
            "hsic_weight": 0.0,
            "orth_weight": 0.0,
            "discriminator_weight": 0.0,
            "decor_weight": 0.0,
        },
    }


def _projector(h: int) -> nn.Module:
    return nn.Sequential(nn.Linear(h, h), nn.LayerNorm(h), nn.Tanh())


@dataclass
class _Codes:
    """Codes (B, H) with their presence (B,) and subspace kind, in SACA token order."""

    vectors: list[Tensor]
    present: list[Tensor]
    kinds: list[int]

    def add(self, vector: Tensor, present: Tensor, kind: int) -> None:
        self.vectors.append(vector)
        self.present.append(present)
        self.kinds.append(kind)


@register_model("tsd")
class TSD(MSAModel):
    config_class = TSDConfig
    config: TSDConfig
    capabilities = Capabilities()

    def __init__(self, config: TSDConfig) -> None:
        super().__init__(config)
        name, h = self.model_name, config.hidden_dim
        if not (config.use_common or config.use_pairwise or config.use_private):
            raise ConfigError(f"model {name!r}: at least one of use_common, use_pairwise, use_private must be on")
        if h % config.heads:
            raise ConfigError(f"model {name!r}: hidden_dim {h} not divisible by heads {config.heads}")
        self.pairs = list(combinations(self.modalities, 2)) if config.use_pairwise else []
        self.encoders = nn.ModuleDict(
            {
                m: SequenceEncoder(
                    config.dim(m),
                    h,
                    dropout=config.dropout,
                    heads=config.heads,
                    kind="transformer" if m == "text" and config.text_layers > 0 else "mean",
                    layers=max(config.text_layers, 1),
                )
                for m in self.modalities
            }
        )
        if not 0.0 <= config.input_dropout < 1.0:
            raise ConfigError(f"model {name!r}: input_dropout must be in [0, 1), got {config.input_dropout}")
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout > 0 else None
        self.common = _projector(h) if config.use_common else None
        self.pairwise = nn.ModuleDict({f"{a}_{b}": _projector(h) for a, b in self.pairs})
        self.private = nn.ModuleDict({m: _projector(h) for m in self.modalities} if config.use_private else {})
        others = len(self.pairs) + len(self.private)  # the codes the common code is decoupled from
        self.decoupler = LinearDecoupler(others * h, h) if config.decouple and config.use_common and others else None
        self.kind_embedding = nn.Embedding(3, h)
        if config.kind_init_std <= 0:
            raise ConfigError(f"model {name!r}: kind_init_std must be positive, got {config.kind_init_std}")
        if config.kind_init_std != 1.0:  # the same N(0, 1) draw, rescaled: no extra random numbers
            with torch.no_grad():
                self.kind_embedding.weight.mul_(config.kind_init_std)
        self.saca = CrossModalAttention(h, heads=config.heads, dropout=config.dropout) if config.use_saca else None
        self.query = nn.Parameter(torch.randn(1, 1, h) * 0.02)
        self.pool = nn.MultiheadAttention(h, config.heads, dropout=config.dropout, batch_first=True)
        tokens = len(self.code_names())
        self.integrate = nn.Linear(tokens * h, h) if config.integrate and config.use_saca else None
        self.discriminator = MLP(h, 3, hidden_dim=h, dropout=config.dropout)
        self.head = MLP(h, config.num_classes, hidden_dim=h, dropout=config.dropout)

    def codes(self, batch: Batch, *, decouple: bool = True) -> tuple[_Codes, dict[str, Any]]:
        """The subspace codes and, per modality, the pieces the regularisers need."""
        present = {m: batch.present_mask(m) for m in self.modalities}
        drop = self.input_dropout if self.input_dropout is not None else nn.Identity()
        hidden = {
            m: self.encoders[m](drop(batch.features[m]), batch.masks[m] & present[m][:, None])[1]
            for m in self.modalities
        }
        codes = _Codes([], [], [])
        parts: dict[str, Any] = {"c": {}, "p": {}, "q": {}, "present": present}
        if self.common is not None:
            per = {m: self.common(hidden[m]) for m in self.modalities}  # c_m
            w = torch.stack([present[m].float() for m in self.modalities], 1).unsqueeze(-1)  # (B, M, 1)
            c = (torch.stack([per[m] for m in self.modalities], 1) * w).sum(1) / w.sum(1).clamp_min(1)
            codes.add(c, w.squeeze(-1).sum(1) > 0, COMMON)
            parts["c"] = per
        for a, b in self.pairs:
            proj = self.pairwise[f"{a}_{b}"]
            pa, pb = proj(hidden[a]), proj(hidden[b])
            codes.add((pa + pb) / 2, present[a] & present[b], PAIRWISE)
            parts["p"][(a, b)] = (pa, pb)
        for m in self.private:
            parts["q"][m] = self.private[m](hidden[m])
            codes.add(parts["q"][m], present[m], PRIVATE)
        if decouple and self.decoupler is not None:
            self._decouple(codes, self._clean_codes(batch) if self.training else None)
        return codes, parts

    @torch.no_grad()
    def _clean_codes(self, batch: Batch) -> _Codes:
        """The codes before decoupling, as at eval (no dropout), without gradient."""
        parts = (self.input_dropout, self.encoders, self.common, self.pairwise, self.private)
        coders = [m for m in parts if m is not None]
        modes = [m.training for m in coders]
        for module in coders:
            module.eval()
        try:
            return self.codes(batch, decouple=False)[0]
        finally:
            for module, mode in zip(coders, modes, strict=True):
                module.train(mode)

    def _others(self, codes: _Codes) -> tuple[Tensor, Tensor]:
        """The non-common codes side by side (B, (P+M)·H), an absent one at its mean; rows with all present."""
        assert self.decoupler is not None
        means = self.decoupler.mean.view(len(codes.vectors) - 1, -1)
        others = zip(codes.vectors[1:], codes.present[1:], means, strict=True)
        filled = [torch.where(ok[:, None], v, mu) for v, ok, mu in others]
        return torch.cat(filled, 1), torch.stack(codes.present, 1).all(1)

    def on_train_epoch_end(self, epoch: int, train_batches: Callable[[], Iterable[Batch]]) -> None:
        """Decoupling statistics recomputed exactly on the training split with the final weights.

        The running estimates lag the weights (ridge R² 0.10 from the common code to a
        private code at eval in a trial run, −0.02 after this pass), and the checkpoint
        that validation selects should hold the statistics of its own weights.
        """
        if self.decoupler is None:
            return
        parts = [self._clean_codes(b if self.input_norm is None else self.input_norm(b)) for b in train_batches()]
        if parts:
            joined = _Codes(
                [torch.cat(v) for v in zip(*(p.vectors for p in parts), strict=True)],
                [torch.cat(v) for v in zip(*(p.present for p in parts), strict=True)],
                parts[0].kinds,
            )
            x, full = self._others(joined)
            self.decoupler.update(x, joined.vectors[0], full, exact=True)

    def _decouple(self, codes: _Codes, clean: _Codes | None = None) -> None:
        """The common code minus its linear prediction from the other codes, in place."""
        assert self.decoupler is not None
        if self.training:  # statistics from the dropout-free codes, as the model is probed at eval
            assert clean is not None
            x, full = self._others(clean)
            self.decoupler.update(x, clean.vectors[0], full)
            center = x[full].mean(0) if full.any() else None  # centred on the batch: no drift of the mean
            codes.vectors[0] = self.decoupler(x, codes.vectors[0], center)
        else:
            codes.vectors[0] = self.decoupler(self._others(codes)[0], codes.vectors[0])

    def _losses(self, codes: _Codes, parts: dict[str, Any]) -> dict[str, Tensor]:
        cfg, present, aux = self.config, parts["present"], {}
        if cfg.align_weight > 0:
            terms = [
                l2_alignment(parts["c"][a][ok], parts["c"][b][ok])
                for a, b in combinations(parts["c"], 2)
                if (ok := present[a] & present[b]).any()
            ]
            terms += [
                l2_alignment(pa[ok], pb[ok])
                for (a, b), (pa, pb) in parts["p"].items()
                if (ok := present[a] & present[b]).any()
            ]
            if terms:
                aux["align"] = cfg.align_weight * torch.stack(terms).sum()
        if cfg.hsic_weight > 0 and len(parts["q"]) > 1:
            terms = [
                hsic(parts["q"][a][ok], parts["q"][b][ok])
                for a, b in combinations(parts["q"], 2)
                if (ok := present[a] & present[b]).sum() > 1
            ]
            if terms:
                aux["hsic"] = cfg.hsic_weight * torch.stack(terms).sum()
        for key, weight, loss in (
            ("orth", cfg.orth_weight, orthogonality),
            ("decor", cfg.decor_weight, cross_correlation),
        ):
            if weight <= 0:
                continue
            terms = []
            for i, j in combinations(range(len(codes.vectors)), 2):  # codes of different kinds
                ok = codes.present[i] & codes.present[j]
                if codes.kinds[i] != codes.kinds[j] and ok.sum() > 1:
                    terms.append(loss(codes.vectors[i][ok], codes.vectors[j][ok]))
            if terms:
                aux[key] = weight * torch.stack(terms).sum()
        if cfg.discriminator_weight > 0 and len(set(codes.kinds)) > 1:  # the decoupling supervisor
            x = torch.cat([v[p] for v, p in zip(codes.vectors, codes.present, strict=True)])
            y = torch.cat(
                [
                    torch.full((int(p.sum()),), k, device=x.device)
                    for k, p in zip(codes.kinds, codes.present, strict=True)
                ]
            )
            if len(y):
                aux["discriminator"] = cfg.discriminator_weight * F.cross_entropy(self.discriminator(x), y)
        return aux

    def forward(self, batch: Batch) -> ModelOutput:
        codes, parts = self.codes(batch)
        tokens = torch.stack(codes.vectors, 1) + self.kind_embedding.weight[codes.kinds]  # (B, T, H)
        valid = torch.stack(codes.present, 1)  # (B, T)
        if self.saca is not None:  # subspaces attend to each other, then a query pools them
            tokens = self.saca(tokens, tokens, valid)
            query = self.query.expand(batch.size, -1, -1)
            fused, weights = self.pool(query, tokens, tokens, key_padding_mask=safe_key_padding_mask(valid))
            fused, weights = fused.squeeze(1), weights.squeeze(1) * valid  # (B, H), (B, T)
            if self.integrate is not None:  # every subspace token reaches the head, not only their mixture
                fused = fused + self.integrate((tokens * valid.unsqueeze(-1)).flatten(1))
        else:
            weights = valid.float() / valid.sum(1, keepdim=True).clamp_min(1)
            fused = (tokens * weights.unsqueeze(-1)).sum(1)
        aux = self._losses(codes, parts) if self.training else {}
        raw = self.head(fused)
        if not self.is_classifier:
            raw = self.config.label_range * torch.tanh(raw)
        features = {"fused": fused, **{f"code_{k}": v for k, v in zip(self.code_names(), codes.vectors, strict=True)}}
        return ModelOutput(
            prediction=self.bound_prediction(raw),
            aux_losses=aux,
            features=features,
            explanations={"subspace_attention": weights},
        )

    def code_names(self) -> list[str]:
        """Names of the codes in SACA token order: common, <a>_<b> pairs, private_<m>."""
        names = ["common"] if self.common is not None else []
        return names + [f"{a}_{b}" for a, b in self.pairs] + [f"private_{m}" for m in self.private]


__all__ = ["TSD", "TSDConfig"]
