"""Knockout tests: every named component of the four seed models changes behaviour.

`COMPONENTS` lists, as data, each component a seed paper names (module, loss term, gate,
curriculum, teacher, mining step, pretrained hand-over) with the patch that disables it
(`target` is patched with `knockout(original)` by `unittest.mock`). The tests below are
behavioural: a gate must change the output when it closes, hard negatives must change
the replaced samples, distillation must move the student toward the teacher, a loss
must move the representation it names. `benchmarks/knockouts.py` applies each knockout
in turn and runs the fast tests; a component no fast test catches is a hole.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from msakit import create_model
from msakit.batch import Batch, masked_mean
from msakit.data import MSADataset, SyntheticConfig, make_synthetic
from msakit.data.stats import dataset_stats


@dataclass(frozen=True)
class Component:
    model: str
    name: str
    target: str  # dotted path patched by unittest.mock
    knockout: Callable[[Any], Any]  # original -> replacement
    test: str  # the behavioural test in this file written for it


def _zero_loss(original: Any) -> Any:
    def zero(*args: Any, **kwargs: Any) -> torch.Tensor:
        return original(*args, **kwargs) * 0.0

    return zero


def _identity_first(original: Any) -> Any:
    return lambda self, x, *args, **kwargs: x


def _no_op(original: Any) -> Any:
    return lambda *args, **kwargs: None


def _gtfar_without_gates(original: Any) -> Any:
    def gtfar(self: Any, stacked: torch.Tensor, fused: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        with mock.patch.object(torch, "sigmoid", lambda x: torch.zeros_like(x)):
            return original(self, stacked, fused, alpha)

    return gtfar


def _gtfar_without_tensor_term(original: Any) -> Any:
    def gtfar(self: Any, stacked: torch.Tensor, fused: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return original(self, stacked, fused, alpha * 0.0) + 0.0 * alpha.sum()

    return gtfar


def _uniform_uncertainty(original: Any) -> Any:
    def unc(self: Any, m: str, zt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, expert = original(self, m, zt)
        return torch.zeros_like(u), expert

    return unc


def _everyone_confident(original: Any) -> Any:
    return lambda self, mean_u, present: present.any(1)


def _fixed_teacher(original: Any) -> Any:
    return lambda self, epoch: 0


def _unit_weights(original: Any) -> Any:
    return lambda self, y, mean_u: torch.ones_like(mean_u)


def _lexicon_off(original: Any) -> Any:
    return lambda word: False


def _flat_sop(original: Any) -> Any:
    return lambda pairs, polarity: torch.ones(len(pairs))


def _gate_stuck_open(original: Any) -> Any:
    return lambda self, audio_global: torch.ones(audio_global.shape[0], self.mlp[-1].out_features)


def _gate_deaf(original: Any) -> Any:
    return lambda self, audio_global: original(self, torch.zeros_like(audio_global))


def _no_set(original: Any) -> Any:
    return lambda self, center, scale: None


def _mining_blind(original: Any) -> Any:
    return lambda similarity, num, candidates=None: original(similarity, similarity.shape[0], candidates)


def _never_replace(original: Any) -> Any:
    def gate(indices: torch.Tensor, valid: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
        return original(indices, valid, 0.0)

    return gate


def _uniform_scores(original: Any) -> Any:
    return lambda scores, mask: original(torch.zeros_like(scores), mask)


def _aux_ignored(original: Any) -> Any:
    def fuse(self: Any, x: torch.Tensor, aux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return original(self, x, torch.zeros_like(aux))

    return fuse


T = "msakit.models.tssp_msa"
COMPONENTS: tuple[Component, ...] = (
    # ---- TSSP-MSA ------------------------------------------------------------------------------
    Component("tssp_msa", "UEMF uncertainty weighting", f"{T}.TSSPMSA._uncertainty", _uniform_uncertainty,
              "test_tssp_expert_weights_follow_uncertainty"),
    Component("tssp_msa", "GTFAR gates", f"{T}.TSSPMSA._gtfar", _gtfar_without_gates,
              "test_tssp_gtfar_gates_and_tensor_term_shape_the_fused_output"),
    Component("tssp_msa", "GTFAR tensor term", f"{T}.TSSPMSA._gtfar", _gtfar_without_tensor_term,
              "test_tssp_gtfar_gates_and_tensor_term_shape_the_fused_output"),
    Component("tssp_msa", "C3R contrastive loss", f"{T}.symmetric_info_nce", _zero_loss,
              "test_tssp_c3r_step_aligns_matched_pairs"),
    Component("tssp_msa", "C3R curriculum", f"{T}.TSSPMSA._confident", _everyone_confident,
              "test_tssp_curriculum_keeps_only_the_confident_samples"),
    Component("tssp_msa", "rotating teacher", f"{T}.TSSPMSA.teacher_of", _fixed_teacher,
              "test_tssp_teacher_rotates_and_only_students_learn"),
    Component("tssp_msa", "distillation KL", f"{T}.TSSPMSA._output_kl", _zero_loss,
              "test_tssp_distillation_moves_the_student_toward_the_teacher"),
    Component("tssp_msa", "distillation feature alignment", f"{T}.TSSPMSA._align", _zero_loss,
              "test_tssp_feature_alignment_moves_the_student_toward_the_teacher"),
    Component("tssp_msa", "orthogonality", f"{T}._orthogonality", _zero_loss,
              "test_tssp_orthogonality_penalises_shared_directions"),
    Component("tssp_msa", "TEAC k-means anchors", f"{T}.TSSPMSA.refresh_anchors", _no_op,
              "test_tssp_teac_clusters_separate_groups"),
    Component("tssp_msa", "TEAC emotion weighting", f"{T}.TSSPMSA._anchor_weights", _unit_weights,
              "test_tssp_teac_weights_strong_and_certain_anchors"),
    Component("tssp_msa", "TEAC Time2Vec pooling", "msakit.layers.time2vec.Time2Vec.forward",
              lambda original: lambda self, t: original(self, t) * 0.0,
              "test_tssp_time_aware_pooling_sees_step_order"),
    Component("tssp_msa", "stage-1 hand-over", f"{T}.TSSPMSA.load_pretrained", _no_op,
              "test_tssp_stage1_weights_reach_the_encoder"),
    Component("tssp_msa", "S-MLM sentiment-aware masking", "msakit.pretrain.s_mlm.is_sentiment_word", _lexicon_off,
              "test_s_mlm_masks_lexicon_words_with_p1"),
    Component("tssp_msa", "S-MLM polarity-aware SOP", "msakit.pretrain.s_mlm.sop_weights", _flat_sop,
              "test_s_mlm_sop_weighs_emotional_transitions"),
    # ---- SADGR ---------------------------------------------------------------------------------
    Component("sadgr", "AG-VR gate (eq. 18)", "msakit.models.sadgr.AudioGate.forward", _gate_stuck_open,
              "test_sadgr_closing_the_gate_changes_the_output"),
    Component("sadgr", "audio guidance of the gate (eqs. 15-17)", "msakit.models.sadgr.AudioGate.forward",
              _gate_deaf, "test_sadgr_gate_follows_the_audio"),
    Component("sadgr", "frame self-attention (eq. 14)", "msakit.models.sadgr.FrameSelfAttention.forward",
              _identity_first, "test_sadgr_frame_attention_mixes_frames"),
    Component("sadgr", "masked text-audio attention (§III-C)", "msakit.models.sadgr.CrossModalAttention.forward",
              _identity_first, "test_sadgr_text_reads_the_valid_audio_steps"),
    Component("sadgr", "L_con (eq. 21)", "msakit.layers.standardize.symmetric_info_nce", _zero_loss,
              "test_sadgr_con_step_aligns_text_and_audio"),
    Component("sadgr", "training-split standardisation", "msakit.layers.standardize.Standardize.set", _no_set,
              "test_sadgr_standardises_with_training_statistics"),
    Component("sadgr", "STA-CA heads hand-over", "msakit.models.sadgr.SADGR.load_pretrained", _no_op,
              "test_sadgr_pretrained_heads_reach_the_model"),
    # ---- TeCaFN --------------------------------------------------------------------------------
    Component("tecafn", "hard-negative mining (Alg. 1)", "msakit.models.tecafn.mine_hard_negatives", _mining_blind,
              "test_tecafn_hard_negatives_change_the_replaced_samples"),
    Component("tecafn", "replacement gate (Table 2)", "msakit.models.tecafn.replacement_gate", _never_replace,
              "test_tecafn_gate_replaces_partners"),
    Component("tecafn", "L_tcon / L_bicon InfoNCE", "msakit.models.tecafn.info_nce", _zero_loss,
              "test_tecafn_tcon_step_aligns_text_and_partner"),
    Component("tecafn", "text-queried cross-modal attention", "msakit.models.tecafn.CrossModalAttention.forward",
              _identity_first, "test_tecafn_prediction_reads_the_partner"),
    # ---- AMSGFN --------------------------------------------------------------------------------
    Component("amsgfn", "DMSM dominant selection", "msakit.models.amsgfn.masked_softmax", _uniform_scores,
              "test_amsgfn_dominant_follows_the_scores"),
    Component("amsgfn", "DMGF gated injection", "msakit.layers.gated_fusion.GatedResidualFusion.forward",
              _aux_ignored, "test_amsgfn_dmgf_injects_the_auxiliaries"),
    Component("amsgfn", "CCAM L_align", "msakit.models.amsgfn.symmetric_info_nce", _zero_loss,
              "test_amsgfn_align_step_aligns_modalities"),
    Component("amsgfn", "L_cor", "msakit.models.amsgfn.info_nce", _zero_loss,
              "test_amsgfn_cor_step_lowers_the_loss"),
)  # fmt: skip


def component_names() -> list[str]:
    return [f"{c.model}: {c.name}" for c in COMPONENTS]


def find_component(name: str) -> Component:
    for c in COMPONENTS:
        if f"{c.model}: {c.name}" == name:
            return c
    from msakit.errors import ConfigError

    raise ConfigError(f"no knockout named {name!r}; valid names: {', '.join(component_names())}")


def resolve(target: str) -> Any:
    """The object at a dotted path (module attribute or class attribute)."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(target)


def knocked_out(component: Component) -> Any:
    """A context manager that disables `component` (unittest.mock.patch)."""
    return mock.patch(component.target, new=component.knockout(resolve(component.target)))


# ---- helpers -----------------------------------------------------------------------------------
def _model(name: str, ds: MSADataset, **overrides: Any) -> Any:
    torch.manual_seed(0)
    return create_model(name, **{**ds.info.model_overrides(), "hidden_dim": 16, "dropout": 0.0, **overrides})


def _step(model: Any, loss: torch.Tensor, lr: float = 0.05) -> None:
    model.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad


def _matched_margin(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine of matched pairs minus mean cosine of mismatched ones."""
    s = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    eye = torch.eye(len(a), dtype=torch.bool)
    return float(s[eye].mean() - s[~eye].mean())


@pytest.fixture(scope="module")
def full() -> MSADataset:
    """Every sample has every modality (knockout tests should not hinge on absent rows)."""
    ds = make_synthetic(SyntheticConfig(sizes=(24, 8, 8), dims=(12, 6, 8), lengths=(7, 9, 5), seed=5))
    splits = {}
    for n, s in ds.splits.items():
        mods = {}
        for m, a in s.modalities.items():
            lengths = a.lengths.copy()
            lengths[lengths == 0] = 3
            values = a.values.copy()
            values[:, :3][a.lengths == 0] = torch.randn(int((a.lengths == 0).sum()), 3, values.shape[2]).numpy()
            mods[m] = replace(a, values=values, lengths=lengths, present=a.present | True)
        splits[n] = replace(s, modalities=mods)
    return MSADataset(ds.info, splits, source="full")


def _batch(ds: MSADataset, n: int = 16, split: str = "train") -> Batch:
    return ds.split(split).batch(range(n))


# ---- TSSP-MSA ----------------------------------------------------------------------------------
def test_tssp_expert_weights_follow_uncertainty(full: MSADataset) -> None:
    model = _model("tssp_msa", full).eval()
    with torch.no_grad():
        out = model(_batch(full, split="test", n=8))
    w, u = out.modality_weights, out.uncertainty
    assert w is not None and u is not None
    assert (w.std(1) > 1e-3).all(), "expert weights must differ between modalities"
    lower = u.argmin(1)  # the most certain modality gets the highest weight
    assert torch.equal(w.argmax(1), lower)


def test_tssp_gtfar_gates_and_tensor_term_shape_the_fused_output(full: MSADataset) -> None:
    model = _model("tssp_msa", full).eval()
    batch = _batch(full, split="test", n=8)
    with torch.no_grad():
        base = model(batch).features["fused"]
        closed = copy.deepcopy(model)
        for g in closed.gates.values():
            g.bias.fill_(-1e4)  # every gate σ(·) → 0
        assert not torch.allclose(closed(batch).features["fused"], base, atol=1e-4), "closing the gates did nothing"
        flat = copy.deepcopy(model)
        flat.pair_proj.weight.zero_()
        flat.pair_proj.bias.fill_(1.0)  # tensor term → Σ α_i α_j (constant)
        assert not torch.allclose(flat(batch).features["fused"], base, atol=1e-4), "the tensor term did nothing"


def test_tssp_c3r_step_aligns_matched_pairs(full: MSADataset) -> None:
    model = _model("tssp_msa", full, contrastive_weight=1.0, curriculum_start=1.0).train()
    batch = _batch(full)

    def margin() -> float:
        model.eval()
        with torch.no_grad():
            out = model(batch)
            return _matched_margin(
                model.contrast["text"](out.features["text"]), model.contrast["audio"](out.features["audio"])
            )

    before = margin()
    for _ in range(10):
        model.train()
        _step(model, model(batch).aux_losses["c3r"], lr=0.5)
    assert margin() > before + 1e-3


def test_tssp_curriculum_keeps_only_the_confident_samples(full: MSADataset) -> None:
    model = _model("tssp_msa", full, curriculum_start=0.5, curriculum_epochs=4)
    model.on_epoch_start(1, 5)
    present = torch.ones(10, 3, dtype=torch.bool)
    u = torch.arange(10.0)
    kept = model._confident(u, present)
    assert kept.tolist() == [True] * 5 + [False] * 5  # the half with the lowest uncertainty
    model.on_epoch_start(5, 5)
    assert model._confident(u, present).all()


def test_tssp_teacher_rotates_and_only_students_learn(full: MSADataset) -> None:
    model = _model("tssp_msa", full, distill_confident_only=False, distill_feature_weight=0.0)
    teachers = []
    for epoch in (1, 2, 3, 4):
        model.on_epoch_start(epoch, 4)
        teachers.append(model._teacher)
    assert teachers == [0, 1, 2, 0]
    model.on_epoch_start(2, 4)  # audio teaches
    model.train()
    model.zero_grad()
    model(_batch(full)).aux_losses["distill_kl"].backward()
    grad = {m: model.experts[m][0].weight.grad for m in ("text", "audio", "visual")}
    assert grad["audio"] is None or grad["audio"].abs().sum() == 0  # the teacher is not pulled
    assert grad["text"] is not None and grad["text"].abs().sum() > 0


def test_tssp_distillation_moves_the_student_toward_the_teacher(full: MSADataset) -> None:
    model = _model("tssp_msa", full, distill_confident_only=False, distill_weight=1.0, distill_feature_weight=0.0)
    model.on_epoch_start(1, 4)  # text teaches
    batch = _batch(full)

    def gap() -> float:
        model.eval()
        with torch.no_grad():
            e = model(batch).explanations["expert_predictions"]  # (B, M) expert means
            return float((e[:, 1] - e[:, 0]).abs().mean())

    before = gap()
    for _ in range(5):
        model.train()
        _step(model, model(batch).aux_losses["distill_kl"], lr=0.1)
    assert gap() < before - 1e-3


def test_tssp_feature_alignment_moves_the_student_toward_the_teacher(full: MSADataset) -> None:
    model = _model("tssp_msa", full, distill_confident_only=False, distill_weight=0.0, distill_feature_weight=1.0)
    model.on_epoch_start(1, 4)
    batch = _batch(full)

    def cosine() -> float:
        model.eval()
        with torch.no_grad():
            f = model(batch).features
            return float(F.cosine_similarity(f["audio"], f["text"], dim=-1).mean())

    before = cosine()
    for _ in range(5):
        model.train()
        _step(model, model(batch).aux_losses["distill_align"], lr=0.1)
    assert cosine() > before + 1e-3


def test_tssp_orthogonality_penalises_shared_directions() -> None:
    from msakit.models import tssp_msa

    torch.manual_seed(0)
    a = torch.randn(32, 8)
    valid = torch.ones(32, dtype=torch.bool)
    same = tssp_msa._orthogonality(a, a, valid)
    other = tssp_msa._orthogonality(a, torch.randn(32, 8), valid)
    assert same > 2 * other > 0


def test_tssp_teac_clusters_separate_groups(full: MSADataset) -> None:
    model = _model("tssp_msa", full, num_anchors=2, anchor_space="fused")
    ids = [f"s{i}" for i in range(20)]
    centres = torch.cat([torch.full((10, 16), -5.0), torch.full((10, 16), 5.0)]) + 0.1 * torch.randn(20, 16)
    model._collected = {"fused": dict(zip(ids, centres, strict=True))}
    model.on_epoch_start(2, 4)
    labels = [model._pseudo["fused"][i] for i in ids]
    assert len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1 and labels[0] != labels[10]


def test_tssp_teac_weights_strong_and_certain_anchors(full: MSADataset) -> None:
    model = _model("tssp_msa", full)
    w = model._anchor_weights(torch.tensor([0.0, 3.0, 3.0]), torch.tensor([0.0, 0.0, 2.0]))
    assert w[1] > w[0] and w[1] > w[2]


def test_tssp_time_aware_pooling_sees_step_order() -> None:
    from msakit.models.tssp_msa import TimeAwarePool

    torch.manual_seed(0)
    pool = TimeAwarePool(8, 4)
    x, mask = torch.randn(3, 6, 8), torch.ones(3, 6, dtype=torch.bool)
    assert not torch.allclose(pool(x, mask), pool(x.flip(1), mask), atol=1e-5)


def test_tssp_stage1_weights_reach_the_encoder(full: MSADataset, tmp_path: Any) -> None:
    from msakit.layers.pretrained import load_weights
    from msakit.pretrain import create_objective

    create_objective("ecam", epochs=1, batch_size=8, hidden_dim=16).fit(full, tmp_path / "ecam", progress=False)
    model = _model("tssp_msa", full, pretrained_audio=str(tmp_path / "ecam"))
    model.load_pretrained()
    saved, _ = load_weights(tmp_path / "ecam")
    torch.testing.assert_close(model.encoders["audio"].proj.weight, saved["net.encoder.proj.weight"])


def test_s_mlm_masks_lexicon_words_with_p1() -> None:
    from msakit.pretrain import s_mlm

    words = [["the", "movie", "was", "awful"], ["great", "plot"]]
    ids: list[list[int | None]] = [[None, 0, 1, 2, 3, None], [None, 0, 1, None, None, None]]
    prob = s_mlm.masking_probabilities(ids, words, (2, 6), p_sentiment=0.4, p_other=0.15)
    assert prob[0].tolist() == pytest.approx([0, 0.15, 0.15, 0.15, 0.4, 0])
    assert prob[1].tolist() == pytest.approx([0, 0.4, 0.15, 0, 0, 0])


def test_s_mlm_sop_weighs_emotional_transitions() -> None:
    from msakit.pretrain import s_mlm

    w = s_mlm.sop_weights([("a", "b"), ("a", "c")], {"a": 0.9, "b": -0.9, "c": 0.9})
    assert w[0] > w[1] == pytest.approx(1.0)


# ---- SADGR -------------------------------------------------------------------------------------
def _sadgr(full: MSADataset, **overrides: Any) -> Any:
    model = _model("sadgr", full, **overrides)
    model.on_fit_start(dataset_stats(full.split("train")))
    return model.eval()


def test_sadgr_closing_the_gate_changes_the_output(full: MSADataset) -> None:
    model = _sadgr(full)
    batch = _batch(full, split="test", n=8)
    with torch.no_grad():
        base = model(batch).prediction
        last = model.gate.mlp[-1]
        last.weight.zero_()
        last.bias.fill_(-1e4)  # g → 0: the video is shut out
        closed = model(batch)
    assert closed.explanations["visual_gate"].max() < 1e-3
    assert not torch.allclose(closed.prediction, base, atol=1e-5), "closing the gate did not change the output"


def test_sadgr_gate_follows_the_audio(full: MSADataset) -> None:
    model = _sadgr(full)
    batch = _batch(full, split="test", n=8)
    louder = replace(batch, features={**batch.features, "audio": batch.features["audio"] * 3 + 1})
    with torch.no_grad():
        a, b = model(batch).explanations["visual_gate"], model(louder).explanations["visual_gate"]
    assert not torch.allclose(a, b, atol=1e-5)


def test_sadgr_frame_attention_mixes_frames(full: MSADataset) -> None:
    model = _sadgr(full)
    batch = _batch(full, split="test", n=8)
    with torch.no_grad():
        last = model.gate.mlp[-1]
        last.weight.zero_()
        last.bias.fill_(1e4)  # g → 1: AG-VR is the frame attention alone
        f_v = model(batch).features["visual"]
        frames = model.visual_norm(batch.features["visual"]) * batch.masks["visual"].unsqueeze(-1)
        plain = masked_mean(frames, batch.masks["visual"])
    assert not torch.allclose(f_v, plain, atol=1e-4)


def test_sadgr_text_reads_the_valid_audio_steps(full: MSADataset) -> None:
    model = _sadgr(full)
    batch = _batch(full, split="test", n=8)
    other = replace(batch, features={**batch.features, "audio": batch.features["audio"].flip(0)})
    with torch.no_grad():
        text = model(batch).features["text"]
        assert not torch.allclose(model(other).features["text"], text, atol=1e-5)
        padded = batch.features["audio"].clone()
        padded[~batch.masks["audio"]] = 1e3  # padded audio steps are masked out
        torch.testing.assert_close(
            model(replace(batch, features={**batch.features, "audio": padded})).features["text"], text
        )


def test_sadgr_con_step_aligns_text_and_audio(full: MSADataset) -> None:
    model = _model("sadgr", full, con_weight=1.0)
    model.on_fit_start(dataset_stats(full.split("train")))
    batch = _batch(full)

    def margin() -> float:
        with torch.no_grad():
            return _matched_margin(*model.heads.embed(batch)[:2])

    before = margin()
    for _ in range(5):
        model.train()
        _step(model, model(batch).aux_losses["con"], lr=0.2)
    assert margin() > before + 0.01


def test_sadgr_standardises_with_training_statistics(full: MSADataset) -> None:
    stats = dataset_stats(full.split("train"))
    model = _sadgr(full)
    torch.testing.assert_close(model.visual_norm.mean, torch.as_tensor(stats.features["visual"].center))
    torch.testing.assert_close(model.align("audio").norm.std, torch.as_tensor(stats.features["audio"].scale))


def test_sadgr_pretrained_heads_reach_the_model(full: MSADataset, tmp_path: Any) -> None:
    from msakit.layers.pretrained import load_heads
    from msakit.pretrain import create_objective

    create_objective("sta_ca", epochs=1, shared_dim=16).fit(full, tmp_path, progress=False)
    model = _model("sadgr", full, shared_dim=16, pretrained_heads=str(tmp_path))
    model.load_pretrained()
    state, _ = load_heads(tmp_path)
    torch.testing.assert_close(model.heads.text.proj.weight, state["text.proj.weight"])


# ---- TeCaFN ------------------------------------------------------------------------------------
def _partners(model: Any, batch: Batch, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.train()(batch).explanations["partner_audio"]


def _tecafn_embeddings(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled f1(text), f2(audio) embeddings of eq. 6."""
    x = {}
    for m in ("text", "audio"):
        seq, _ = model.encoders[m](batch.features[m], batch.masks[m])
        x[m] = model.project[m](seq, batch.masks[m])
    return model.unimodal_embed["audio"](x["text"], batch.masks["text"], x["audio"], batch.masks["audio"])


def test_tecafn_hard_negatives_change_the_replaced_samples(full: MSADataset) -> None:
    batch = _batch(full, n=24)
    hard = _model("tecafn", full, p=1.0, num=2)
    uniform = _model("tecafn", full, p=1.0, num=2, hard_negatives_in=())
    chosen_hard, chosen_uniform = _partners(hard, batch, 1), _partners(uniform, batch, 1)
    assert not torch.equal(chosen_hard, chosen_uniform)
    # the hard partners are among the 2 most similar other samples
    hard.eval()
    with torch.no_grad():
        x = {
            m: hard.project[m](hard.encoders[m](batch.features[m], batch.masks[m])[0], batch.masks[m])
            for m in ("text", "audio")
        }
        q, k = hard.unimodal_embed["audio"](x["text"], batch.masks["text"], x["audio"], batch.masks["audio"])
    sim = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T
    sim.fill_diagonal_(-2)
    top = sim.topk(2, dim=1).indices
    assert (top == chosen_hard[:, None]).any(1).all()


def test_tecafn_gate_replaces_partners(full: MSADataset) -> None:
    model = _model("tecafn", full, p=1.0)
    chosen = _partners(model, _batch(full), 0)
    assert (chosen != torch.arange(len(chosen))).all()


def test_tecafn_tcon_step_aligns_text_and_partner(full: MSADataset) -> None:
    model = _model("tecafn", full, gamma_con=1.0, p=0.0)
    batch = _batch(full)

    def margin() -> float:
        model.eval()
        with torch.no_grad():
            x = {
                m: model.project[m](model.encoders[m](batch.features[m], batch.masks[m])[0], batch.masks[m])
                for m in ("text", "audio")
            }
            return _matched_margin(
                *model.unimodal_embed["audio"](x["text"], batch.masks["text"], x["audio"], batch.masks["audio"])
            )

    before = margin()
    for _ in range(5):
        model.train()
        _step(model, model(batch).aux_losses["tcon"], lr=0.2)
    assert margin() > before + 0.01


def test_tecafn_prediction_reads_the_partner(full: MSADataset) -> None:
    model = _model("tecafn", full).eval()
    batch = _batch(full, split="test", n=8)
    other = replace(batch, features={**batch.features, "audio": batch.features["audio"].flip(0)})
    with torch.no_grad():
        assert not torch.allclose(model(batch).features["fused"], model(other).features["fused"], atol=1e-5)


# ---- AMSGFN ------------------------------------------------------------------------------------
def test_amsgfn_dominant_follows_the_scores(full: MSADataset) -> None:
    model = _model("amsgfn", full).eval()
    batch = _batch(full, split="test", n=8)
    with torch.no_grad():
        last = model.scorer[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # audio scores highest
        out = model(batch)
    assert (out.explanations["dominant"] == 1).all()
    assert out.modality_weights is not None and (out.modality_weights[:, 1] > 0.9).all()


def test_amsgfn_dmgf_injects_the_auxiliaries() -> None:
    from msakit.models.amsgfn import DMGFLayer

    torch.manual_seed(0)
    layer = DMGFLayer(8, heads=2, dropout=0.0).eval()
    xp, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    aux, aux_mask, aux_present = (
        torch.randn(2, 2, 5, 8),
        torch.ones(2, 2, 5, dtype=torch.bool),
        torch.ones(2, 2, dtype=torch.bool),
    )
    with torch.no_grad():
        a, _ = layer(xp, mask, aux, aux_mask, aux_present)
        b, _ = layer(xp, mask, aux * 3 + 1, aux_mask, aux_present)
    assert not torch.allclose(a, b, atol=1e-5)


def test_amsgfn_align_step_aligns_modalities(full: MSADataset) -> None:
    model = _model("amsgfn", full, alpha=1.0, beta=0.0)
    batch = _batch(full)

    def margin() -> float:
        model.eval()
        with torch.no_grad():
            f = model(batch).features
            return _matched_margin(model.shared["text"](f["text"]), model.shared["audio"](f["audio"]))

    before = margin()
    for _ in range(10):
        model.train()
        _step(model, model(batch).aux_losses["align"], lr=0.5)
    assert margin() > before + 1e-3


def test_amsgfn_cor_step_lowers_the_loss(full: MSADataset) -> None:
    model = _model("amsgfn", full, alpha=0.0, beta=1.0).train()
    batch = _batch(full)
    before = model(batch).aux_losses["cor"]
    assert before > 0
    for _ in range(5):
        _step(model, model(batch).aux_losses["cor"], lr=0.2)
    assert model(batch).aux_losses["cor"] < before - 1e-3


# ---- the list itself ---------------------------------------------------------------------------
def test_every_component_names_a_test_here_and_an_existing_target() -> None:
    names = set(globals())
    for c in COMPONENTS:
        assert c.test in names, c
        assert resolve(c.target) is not None
    assert len(set(component_names())) == len(COMPONENTS)
    assert {c.model for c in COMPONENTS} == {"tssp_msa", "sadgr", "tecafn", "amsgfn"}


def test_unknown_knockout_name_lists_the_valid_ones() -> None:
    from msakit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no knockout named 'tssp_msa: magic'.*tssp_msa: GTFAR gates"):
        find_component("tssp_msa: magic")
