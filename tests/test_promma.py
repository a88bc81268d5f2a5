"""ProMMA: missing-modality evaluator, prompt disentanglement, MI prompt weighting, multi-level connection."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmark_module import load_benchmark
from msakit import create_model
from msakit.batch import MODALITIES
from msakit.data import MSADataset
from msakit.models.promma import ProMMAConfig


def _model(dataset: MSADataset, **overrides: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model("promma", **{**dataset.info.model_overrides(), "hidden_dim": 16, **overrides})


def _half_without_audio(dataset: MSADataset):  # type: ignore[no-untyped-def]
    batch = dataset.split("test").batch(range(12))
    half = torch.arange(batch.size) % 2 == 0
    return batch.drop_modalities(["audio"], half), half


def test_evaluator_decides_per_sample_whether_to_impute(tiny_dataset: MSADataset) -> None:
    batch, half = _half_without_audio(tiny_dataset)
    a = MODALITIES.index("audio")
    model = _model(tiny_dataset).eval()
    outs = {}
    for bias in (30.0, -30.0):  # the evaluator's verdict: impute everywhere / nowhere
        with torch.no_grad():
            model.evaluators["audio"][-1].bias.fill_(bias)
            outs[bias] = model(batch)
    impute, skip = outs[30.0], outs[-30.0]
    assert impute.explanations["impute"][half, a].eq(1).all() and impute.explanations["impute"][~half, a].eq(0).all()
    assert skip.explanations["impute"][:, a].eq(0).all()
    assert impute.explanations["impute_prob"][half, a].gt(0.99).all()
    # an imputed modality takes part (prompt weight > 0) but is not reported as observed
    assert impute.explanations["prompt_weights"][half, a].gt(0).all()
    assert skip.explanations["prompt_weights"][half, a].eq(0).all()
    assert impute.modality_weights[half, a].eq(0).all()
    assert not torch.allclose(impute.prediction[half], skip.prediction[half])
    torch.testing.assert_close(impute.prediction[~half], skip.prediction[~half])  # complete samples unaffected


def test_evaluator_is_trained_on_pseudo_labels_from_a_frozen_snapshot(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset, stage1_epochs=1).train()
    batch = tiny_dataset.split("train").batch(range(16))
    out = model(batch)
    assert {"evaluator", "impute"} <= set(out.aux_losses)
    out.aux_losses["evaluator"].backward()
    assert model.evaluators["audio"][-1].weight.grad is not None
    keys = set(model.state_dict())
    model.on_epoch_start(1, 5)
    assert not model._reference
    model.on_epoch_start(2, 5)  # after stage 1: the snapshot is taken, frozen and kept out of the state dict
    (reference,) = model._reference
    assert set(model.state_dict()) == keys
    assert not any(p.requires_grad for p in reference.parameters())
    with torch.no_grad():
        model.evaluators["audio"][-1].bias.add_(5.0)
    assert not torch.equal(reference.evaluators["audio"][-1].bias, model.evaluators["audio"][-1].bias)


def test_private_prompts_are_disentangled_from_the_shared_ones(tiny_dataset: MSADataset) -> None:
    model = _model(tiny_dataset)
    prompts = {m: model.prompts(m) for m in model.modalities}
    assert not torch.allclose(prompts["text"], prompts["audio"]), "each modality must get its own private prompts"
    assert not torch.allclose(prompts["text"], model.prompts.shared)
    batch = tiny_dataset.split("train").batch(range(8))
    loss = model.train()(batch).aux_losses["disentangle"]
    loss.backward()
    assert model.prompts.down["text"].grad is not None and model.prompts.down["text"].grad.abs().sum() > 0
    off = _model(tiny_dataset, private_prompts=False)
    assert all(torch.equal(off.prompts(m), off.prompts.shared) for m in off.modalities)
    # the forward pass reads each modality's private prompts
    test = tiny_dataset.split("test").batch(range(8))
    model.eval()
    with torch.no_grad():
        before = model(test).prediction
        model.prompts.up["audio"].mul_(3.0)
        after = model(test).prediction
    assert not torch.allclose(before, after)


def test_prompt_weights_come_from_the_mutual_information_critic(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("test").batch(range(12))
    model = _model(tiny_dataset).eval()
    with torch.no_grad():
        weights = model(batch).explanations["prompt_weights"]
        assert weights.std(dim=1).gt(1e-4).all(), "MI weights must differ between modalities"
        model.critic_q.weight.mul_(-1.0)  # a different critic gives different weights
        flipped = model(batch).explanations["prompt_weights"]
    assert not torch.allclose(weights, flipped)
    assert "mi" in model.train()(batch).aux_losses
    with torch.no_grad():
        uniform = _model(tiny_dataset, weighting="uniform").eval()(batch).explanations["prompt_weights"]
    full = batch.present.all(1)
    torch.testing.assert_close(uniform[full], torch.full_like(uniform[full], 1 / 3))


def test_shared_prompts_rejoin_every_level_through_the_residual(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("test").batch(range(8))
    model = _model(tiny_dataset).eval()
    with torch.no_grad():
        a = model(batch).prediction
        model.encoders["text"].gates.zero_()  # cut the multi-level connection of the text prompts
        b = model(batch).prediction
    assert not torch.allclose(a, b)
    assert not hasattr(_model(tiny_dataset, connect=False).encoders["text"], "gates")


def test_ablation_rows_build_and_run(tiny_dataset: MSADataset) -> None:
    batch, _ = _half_without_audio(tiny_dataset)
    for name, overrides in ProMMAConfig.ABLATIONS.items():
        with torch.no_grad():
            out = _model(tiny_dataset, **overrides).eval()(batch)
        assert torch.isfinite(out.prediction).all(), name
    never = _model(tiny_dataset, evaluator="never").eval()
    with torch.no_grad():
        assert never(batch).explanations["impute"].eq(0).all()


def test_pseudo_labels_say_whether_imputing_helped_the_reference(tiny_dataset: MSADataset) -> None:
    import torch.nn.functional as F

    from msakit.batch import ModelOutput

    model = _model(tiny_dataset)
    batch = tiny_dataset.split("train").batch(range(16))

    class Reference:  # imputing gives the labels exactly, or misses them by 1
        def __init__(self, impute_helps: bool) -> None:
            self.impute_helps = impute_helps

        def _forward(self, b, mode, *, with_losses):  # type: ignore[no-untyped-def]
            good = (mode == "always") == self.impute_helps
            return ModelOutput(prediction=b.labels.float() + (0.0 if good else 1.0))

    logits = torch.randn(batch.size, 3)
    present = batch.present
    has_ctx = present.sum(1, keepdim=True) - present.int() > 0
    for helps in (True, False):
        model._reference = [Reference(helps)]  # type: ignore[list-item]
        torch.manual_seed(0)
        loss = model._evaluator_loss(batch, logits, present, has_ctx)
        torch.manual_seed(0)
        i = int(torch.randint(3, (1,)).item())  # the modality the loss simulated as missing
        keep = present[:, i] & has_ctx[:, i]
        target = torch.full((int(keep.sum()),), 1.0 if helps else 0.0)
        torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits[keep, i], target))


def test_missing_view_loss_trains_the_one_modality_removed_view(tiny_dataset: MSADataset) -> None:
    batch = tiny_dataset.split("train").batch(range(16))
    model = _model(tiny_dataset, missing_weight=1.0).train()
    torch.manual_seed(0)
    loss = model(batch).aux_losses["missing"]
    assert loss.item() > 0
    loss.backward()
    grads = [model.heads[m][-1].weight.grad for m in model.modalities]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # the view it scores is the batch with one present modality removed per sample: the same loss by hand
    model.zero_grad()
    torch.manual_seed(0)
    cols = [MODALITIES.index(m) for m in model.modalities]
    present = batch.present[:, cols]
    gone = torch.rand(present.shape).masked_fill(~present, -1.0).argmax(1)
    view = batch
    for i, m in enumerate(model.modalities):
        view = view.drop_modalities([m], gone == i)
    assert view.present[:, cols].sum(1).eq(present.sum(1) - 1).all()
    model.eval()  # no dropout: the two passes must see the same network
    torch.manual_seed(0)
    again = model._missing_view_loss(batch, "learned")
    expected = model.task_loss(model._forward(view, "learned", with_losses=False).prediction, batch.labels)
    torch.testing.assert_close(again, expected)
    assert "missing" not in _model(tiny_dataset, missing_weight=0.0).train()(batch).aux_losses


def test_a_lone_modality_predicts_through_its_own_trained_head(tiny_dataset: MSADataset) -> None:
    """Per-modality heads: with one modality left the prediction is that modality's own path h_m(o_m),
    the path the unimodal loss trains; the DPW weights mix per-modality predictions."""
    batch = tiny_dataset.split("test").batch(range(12))
    model = _model(tiny_dataset, evaluator="never").eval()
    alone = batch.drop_modalities(["audio", "visual"])  # text only
    with torch.no_grad():
        out = model(alone)
        slots, _ = model.encoders["text"](
            model.embed["text"](alone.features["text"], alone.masks["text"])[0],
            alone.masks["text"],
            model.prompts("text"),
            model.prompts.shared,
        )
        own = model.bound_prediction(model.heads["text"](slots.mean(1)))
        torch.testing.assert_close(out.prediction, own)
        # complete samples: the prompt weights mix the per-modality heads' predictions
        full = model(batch)
        mods = model.modalities
        per = torch.stack([model.heads[m](full.features[m]) for m in mods], dim=1).squeeze(-1)
        w = full.explanations["prompt_weights"][:, [MODALITIES.index(m) for m in mods]]
        torch.testing.assert_close(full.prediction, model.bound_prediction((w * per).sum(1, keepdim=True)))
    train = tiny_dataset.split("train").batch(range(16))
    loss = model.train()(train).aux_losses["unimodal"]
    loss.backward()
    assert all(model.heads[m][-1].weight.grad.abs().sum() > 0 for m in mods)  # type: ignore[union-attr]
    assert "unimodal" not in _model(tiny_dataset, unimodal_weight=0.0).train()(train).aux_losses
    assert not hasattr(_model(tiny_dataset, fusion="representations"), "heads")


def test_a_checkpoint_from_before_the_per_modality_heads_loads_with_its_one_head(
    tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    import json

    from msakit.training import load_checkpoint, save_checkpoint

    old = _model(tiny_dataset, fusion="representations").eval()
    folder = save_checkpoint(tmp_path / "old", old, dataset=tiny_dataset.info)
    meta = json.loads((folder / "config.json").read_text())
    del meta["model_config"]["fusion"]  # written before the field existed
    (folder / "config.json").write_text(json.dumps(meta))
    loaded, _ = load_checkpoint(folder)
    assert loaded.config.fusion == "representations"
    batch = tiny_dataset.split("test").batch(range(6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).prediction, old(batch).prediction)


def test_heads_reading_their_own_path_ignore_what_the_other_modalities_lost(tiny_dataset: MSADataset) -> None:
    """head_input="own": each head reads o_m, so removing audio moves the text/visual predictions only
    through the weights; with uniform weights the prediction is the plain mean of the kept heads."""
    batch = tiny_dataset.split("test").batch(range(12))
    gone = batch.drop_modalities(["audio"])
    kept = ("text", "visual")

    def own_predictions(model, b):  # type: ignore[no-untyped-def]
        out = []
        for m in kept:
            seq = model.embed[m](b.features[m], b.masks[m])[0]
            slots, _ = model.encoders[m](seq, b.masks[m], model.prompts(m), model.prompts.shared)
            out.append(model.heads[m](slots.mean(1)).squeeze(-1))
        return torch.stack(out, dim=1)  # (B, 2)

    for head_input, matches in (("own", True), ("cross", False)):
        model = _model(tiny_dataset, head_input=head_input, evaluator="never", weighting="uniform").eval()
        with torch.no_grad():
            expected = model.bound_prediction(own_predictions(model, batch).mean(1, keepdim=True))
            got = model(gone).prediction
        ok = torch.allclose(got[batch.present[:, [0, 2]].all(1)], expected[batch.present[:, [0, 2]].all(1)], atol=1e-5)
        assert ok == matches, head_input


def test_the_mixing_softmax_runs_at_its_own_temperature(tiny_dataset: MSADataset) -> None:
    """weight_temperature T: the DPW weights are softmax(critic cosine / T), so the log-ratio of two
    modalities' weights is the default's (T = temperature) times temperature / T; 0 keeps the default."""
    import pytest

    from msakit.errors import ConfigError

    batch = tiny_dataset.split("test").batch(range(12))
    full = batch.present.all(1)
    with torch.no_grad():
        base = _model(tiny_dataset).eval()(batch).explanations["prompt_weights"][full]
        same = _model(tiny_dataset, weight_temperature=0.2).eval()(batch).explanations["prompt_weights"][full]
        soft = _model(tiny_dataset, weight_temperature=1.0).eval()(batch).explanations["prompt_weights"][full]
    torch.testing.assert_close(same, base)
    log_ratio = lambda w: (w[:, 1:] / w[:, :1]).log()  # noqa: E731
    torch.testing.assert_close(log_ratio(soft), log_ratio(base) * (0.2 / 1.0), atol=1e-4, rtol=1e-4)
    assert log_ratio(soft).abs().max() > 1e-3  # not uniform: the critic still ranks the modalities
    with pytest.raises(ConfigError, match="weight_temperature"):
        _model(tiny_dataset, weight_temperature=-1.0)


def test_the_missing_benchmark_scores_an_ensembles_member_zero_beside_it(
    tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    """benchmarks/promma_missing.py with -t ensemble=K: the curves are the ensemble checkpoint's, and
    member 0 (the seed's single run) is scored on the same masks as "single"; --paired reads
    MODEL/single. Without an ensemble there is no "single"."""
    import argparse
    import json

    from msakit.models.ensemble import DeepEnsemble
    from msakit.training import load_checkpoint

    bench = load_benchmark("promma_missing")

    def args(out: Path, *train: str) -> argparse.Namespace:
        opts = ["batch_size=8", *train]
        return argparse.Namespace(
            epochs=1, modality_dropout=0.3, train_opt=opts, hidden_dim=8, model_opt=[], out=out, rates=[0.0, 0.5]
        )

    found = bench.run(args(tmp_path / "ens", "ensemble=2"), "late_fusion", 1, tiny_dataset)
    seed_dir = tmp_path / "ens" / "late_fusion" / "seed1"
    assert isinstance(load_checkpoint(seed_dir / "best")[0], DeepEnsemble)
    assert found["single"] == bench.scored(seed_dir / "member0" / "best", tiny_dataset, [0.0, 0.5], 1)
    assert found == {**bench.scored(seed_dir / "best", tiny_dataset, [0.0, 0.5], 1), "single": found["single"]}
    assert found["clean"]["MAE"] != found["single"]["clean"]["MAE"]  # two members: not the single run
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {"late_fusion": [found, found]}}))
    single = bench._auilc_lists(f"late_fusion/single:{results}")
    both = bench._auilc_lists(f"late_fusion:{results}")
    curve = "test modality_shared/shared"
    assert single[curve] == [found["single"]["auilc"]["modality_shared/shared"]["Non0_acc_2"]] * 2
    assert both[curve] == [found["auilc"]["modality_shared/shared"]["Non0_acc_2"]] * 2
    plain = bench.run(args(tmp_path / "one"), "late_fusion", 1, tiny_dataset)
    assert "single" not in plain
    # --bands MODEL/member0 reads member 0 of the ensemble run (cut 10: every clip is "weak")
    bench.load_dataset = lambda _: tiny_dataset
    table = bench.bands({"late_fusion": tmp_path / "ens", "late_fusion/member0": tmp_path / "ens"}, "-", [1], 10, "")
    test = tiny_dataset.split("test")
    y = torch.as_tensor(test.labels).reshape(-1).float()
    for key, sub in (("late_fusion", "best"), ("late_fusion/member0", "member0/best")):
        net, _ = load_checkpoint(seed_dir / sub)
        bias = float((bench._predictions(net.eval(), test, tuple(tiny_dataset.info.modalities)) - y)[y != 0].mean())
        row = next(r for r in table.splitlines() if r.startswith(f"| test | complete | {key} |"))
        assert f"| {bias:.3f} ± 0.000 |" in row, (key, bias, row)
