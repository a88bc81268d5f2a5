"""The robustness suite: perturbation semantics, protocol summaries, bad input, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from msakit.batch import Batch
from msakit.cli import main
from msakit.config import TrainConfig
from msakit.data import MSADataset, SyntheticConfig, load_dataset, make_synthetic
from msakit.registry import create_model
from msakit.robustness import (
    GaussianNoise,
    GradientNormLogger,
    RandomMissingRate,
    RobustnessError,
    RobustnessSettings,
    Spectrum,
    StepMissing,
    TemporalShuffle,
    TextNoise,
    auilc,
    bind,
    compose,
    create_perturbation,
    equity_index,
    fit_with_robustness,
    gini,
    noisy_texts,
    relative_robustness,
    run_protocols,
)
from msakit.robustness.protocols import _shapley
from msakit.training import evaluate


def _model(dataset: MSADataset, name: str = "late_fusion", **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **{**dataset.info.model_overrides(), "hidden_dim": 8, **overrides})
    return model.eval()


def _batch(dataset: MSADataset, split: str = "test") -> Batch:
    data = dataset.split(split)
    return data.batch(range(len(data)))


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def bimodal() -> MSADataset:
    return make_synthetic(
        SyntheticConfig(sizes=(24, 12, 16), dims=(12, 6, 8), lengths=(7, 9, 5), modalities=("text", "audio"), seed=5),
        name="bimodal",
    )


# ---- perturbation semantics ----------------------------------------------------------------


@pytest.mark.parametrize(
    "perturbation",
    [
        StepMissing(rate=0.0),
        Spectrum(strength=0.0),
        GaussianNoise(snr_db=math.inf),
        TemporalShuffle(rate=0.0),
        StepMissing(rates={"audio": 0.0}),
    ],
    ids=["missing", "spectrum", "noise", "shuffle", "imbalanced"],
)
def test_zero_strength_reproduces_clean_metrics_exactly(tiny_dataset, perturbation):
    model = _model(tiny_dataset)
    split = tiny_dataset.split("test")
    clean = evaluate(model, split, "mosi")
    assert evaluate(model, split, "mosi", transform=bind(perturbation, 3)) == clean


@pytest.mark.parametrize("modality", ["text", "audio", "visual"])
def test_rate_one_equals_removing_the_modality(tiny_dataset, modality):
    model, batch = _model(tiny_dataset), _batch(tiny_dataset)
    missing = StepMissing(rates={modality: 1.0})(batch, _rng())
    removed = batch.drop_modalities([modality])
    assert torch.equal(missing.present, removed.present)
    assert torch.equal(missing.masks[modality], removed.masks[modality])
    assert torch.equal(model(missing).prediction, model(removed).prediction)
    spectrum = Spectrum(strength=1.0, modalities=(modality,))(batch, _rng())
    assert torch.equal(model(spectrum).prediction, model(removed).prediction)


def test_missing_rate_drops_the_expected_share_and_is_nested(tiny_dataset):
    batch = _batch(tiny_dataset, "train")
    low, high = StepMissing(rate=0.3)(batch, _rng(1)), StepMissing(rate=0.6)(batch, _rng(1))
    valid = batch.masks["text"].sum().item()
    share = 1 - low.masks["text"].sum().item() / valid
    assert 0.15 < share < 0.45
    assert not (high.masks["text"] & ~low.masks["text"]).any()  # dropped at 0.3 => dropped at 0.6
    dropped = batch.masks["text"] & ~low.masks["text"]
    assert (low.features["text"][dropped] == 0).all()  # MMSA: frames zeroed *and* masked
    assert torch.equal(batch.features["text"][low.masks["text"]], low.features["text"][low.masks["text"]])


def test_imbalanced_rates_touch_only_their_modality(tiny_dataset):
    batch = _batch(tiny_dataset)
    out = StepMissing(rates={"text": 0.9})(batch, _rng())
    assert torch.equal(out.features["audio"], batch.features["audio"])
    assert out.masks["text"].sum() < batch.masks["text"].sum()


def test_perturbations_are_deterministic_and_do_not_modify_the_input(tiny_dataset):
    batch = _batch(tiny_dataset)
    before = batch.features["visual"].clone()
    p = compose(StepMissing(rate=0.4), GaussianNoise(snr_db=5.0), TemporalShuffle(rate=0.5))
    a, b = p(batch, _rng(7)), p(batch, _rng(7))
    c = p(batch, _rng(8))
    assert all(torch.equal(a.features[m], b.features[m]) for m in batch.modalities)
    assert not torch.equal(a.features["visual"], c.features["visual"])
    assert torch.equal(batch.features["visual"], before)


def test_gaussian_noise_hits_the_requested_snr_on_valid_steps_only(tiny_dataset):
    batch = _batch(tiny_dataset, "train")
    out = GaussianNoise(snr_db=0.0, modalities=("text",))(batch, _rng())
    mask = batch.masks["text"]
    noise = out.features["text"] - batch.features["text"]
    ratio = noise[mask].pow(2).mean() / batch.features["text"][mask].pow(2).mean()
    assert 0.8 < ratio.item() < 1.25  # 0 dB: noise power ≈ signal power
    assert (noise[~mask] == 0).all()
    assert torch.equal(out.features["audio"], batch.features["audio"])


def test_temporal_shuffle_permutes_valid_steps(tiny_dataset):
    batch = _batch(tiny_dataset)
    out = TemporalShuffle(rate=1.0, modalities=("audio",))(batch, _rng())
    x, y, mask = batch.features["audio"], out.features["audio"], batch.masks["audio"]
    for i in range(batch.size):
        a = x[i][mask[i]].sum(0)
        assert torch.allclose(a, y[i][mask[i]].sum(0), atol=1e-5)
    assert not torch.equal(x, y)
    assert (y[~mask] == 0).all()


def test_spectrum_per_sample_and_random_missing_rate_keep_one(tiny_dataset):
    batch = _batch(tiny_dataset, "train")
    mixed = Spectrum()(batch, _rng())
    assert mixed.present.sum() <= batch.present.sum()
    aug = RandomMissingRate(max_rate=1.0, per_modality=False)(batch, _rng())
    assert aug.present.any(1).all()  # nobody loses everything
    assert aug.masks["text"].sum() < batch.masks["text"].sum()


def test_text_noise():
    texts = ["it was really good", "not a whole bunch of background info"]
    assert noisy_texts(texts, 0.0) == texts
    assert noisy_texts(texts, 0.5, seed=1) == noisy_texts(texts, 0.5, seed=1)
    assert noisy_texts(texts, 1.0, typos=False) == ["", ""]
    typo = noisy_texts(texts, 1.0, word_drops=False, seed=2)
    assert [len(t.split()) for t in typo] == [4, 7] and typo != texts


def test_text_noise_changes_raw_text_only(tiny_dataset):
    batch = _batch(tiny_dataset)
    batch = Batch(
        batch.features,
        batch.masks,
        batch.present,
        batch.labels,
        batch.ids,
        raw_text=["a fine movie indeed"] * batch.size,
    )
    out = TextNoise(rate=0.5)(batch, _rng())
    assert out.raw_text != batch.raw_text
    assert out.features["text"] is batch.features["text"]


def test_registry_and_bad_rates():
    assert isinstance(create_perturbation("missing", rate=0.2), StepMissing)
    with pytest.raises(RobustnessError, match="unknown perturbation"):
        create_perturbation("blur")
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(RobustnessError, match=r"\[0, 1\]"):
            StepMissing(rate=bad)
        with pytest.raises(RobustnessError, match=r"\[0, 1\]"):
            RobustnessSettings(rates=(0.0, bad))
    with pytest.raises(RobustnessError, match="unknown modality"):
        StepMissing(rate=0.1, modalities=("smell",))


# ---- summaries -------------------------------------------------------------------------------


def test_curve_summaries_against_hand_values():
    xs, ys = [0.0, 0.5, 1.0], [1.0, 0.5, 0.0]
    assert auilc(xs, ys) == pytest.approx(0.5)
    assert auilc([0.0, 0.1, 0.3], [0.8, 0.6, 0.6]) == pytest.approx((0.07 + 0.12) / 0.3)
    assert relative_robustness([1.0, 0.8, 0.6]) == pytest.approx(0.09 + 0.07)


def test_gini_and_equity_index():
    assert gini([1.0, 1.0, 1.0]) == pytest.approx(0.0)
    assert gini([1.0, 0.0]) == pytest.approx(1.0)
    assert gini([3.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert gini([3.0, 1.0]) == pytest.approx(0.5)  # |3-1|·2 / (2·2·4) · 2
    assert equity_index([2.0, 2.0]) == pytest.approx(1.0)
    assert math.isnan(gini([0.0, 0.0])) and math.isnan(gini([1.0]))


def test_shapley_is_efficient_and_symmetric():
    v = {frozenset(): 0.5, frozenset({"text"}): 0.8, frozenset({"audio"}): 0.5, frozenset({"text", "audio"}): 0.8}
    phi = _shapley(("text", "audio"), v)
    assert phi["audio"] == pytest.approx(0.0) and phi["text"] == pytest.approx(0.3)
    assert _shapley(("text", "audio"), {frozenset(): 0.5}) == {}


# ---- protocols -------------------------------------------------------------------------------


def test_protocols_are_deterministic_and_report_absent_modalities(bimodal):
    model = _model(bimodal)
    settings = RobustnessSettings(rates=(0.0, 0.5, 1.0), snrs=(0.0,), seed=4)
    a = run_protocols(model, bimodal, "all", settings).to_dict()
    b = run_protocols(model, bimodal, "all", settings).to_dict()
    assert a == b
    other = run_protocols(model, bimodal, "rate", RobustnessSettings(rates=(0.5,), seed=5)).to_dict()
    assert (
        other["conditions"][0]["metrics"]
        != next(c for c in a["conditions"] if c["curve"] == "shared" and c["x"] == 0.5)["metrics"]
    )
    conds = a["conditions"]
    visual = [c for c in conds if c["protocol"] == "modality" and "visual" in c["params"]["kept"]]
    assert len(visual) == 3 and all(c["status"] == "absent from dataset: visual" and not c["metrics"] for c in visual)
    rate0 = next(c for c in conds if c["curve"] == "shared" and c["x"] == 0.0)
    assert rate0["metrics"] == a["clean"]
    # rate 1.0 of audio alone equals keeping only text
    audio1 = next(c for c in conds if c["curve"] == "audio_missing" and c["x"] == 1.0)
    text_only = next(c for c in conds if c["protocol"] == "modality" and c["params"]["kept"] == ["text"])
    assert audio1["metrics"] == text_only["metrics"]
    s = a["summaries"]
    assert set(s["drop_per_removed_modality"]) == {"text", "audio"}
    phi = s["mei"]["shapley"]
    none = next(c for c in conds if c["curve"] == "none_kept")["metrics"]["Non0_acc_2"]
    assert sum(phi.values()) == pytest.approx(a["clean"]["Non0_acc_2"] - none)
    assert "step_shared/shared" in s["curves"] and "noise/gaussian_audio" in s["curves"]
    text_noise = [c for c in conds if c["curve"] == "text_noise"]
    assert text_noise and all(c["status"].startswith("not applicable") for c in text_noise)


def test_protocol_naming_a_lacking_modality_is_an_error(bimodal, tiny_dataset):
    model = _model(bimodal)
    with pytest.raises(RobustnessError, match="absent from dataset"):
        run_protocols(model, bimodal, "rate", RobustnessSettings(modalities=("visual",)))
    trimodal_data_bimodal_model = _model(tiny_dataset, modalities=("text", "audio"))
    with pytest.raises(RobustnessError, match="trained without modality 'visual'"):
        run_protocols(trimodal_data_bimodal_model, tiny_dataset, "noise", RobustnessSettings(modalities=("visual",)))
    with pytest.raises(RobustnessError, match="unknown protocol"):
        run_protocols(model, bimodal, "blur")


# ---- training-time: random missing rates and the MLI logger -----------------------------------


def test_gradient_logger_sees_only_the_modalities_a_model_uses(tiny_dataset, tmp_path):
    cfg = TrainConfig(epochs=1, seeds=(1,), progress=False, tensorboard=False, batch_size=8)
    fit_with_robustness(
        "text_only", tiny_dataset, out_dir=tmp_path / "t", train_config=cfg, model_overrides={"hidden_dim": 8}
    )
    log = json.loads((tmp_path / "t" / "seed1" / "mli.json").read_text())
    assert log["mean_grad_norm"]["text"] > 0
    assert log["mean_grad_norm"]["audio"] == 0 and log["mean_grad_norm"]["visual"] == 0
    assert log["mli"] == pytest.approx(0.0)  # all gradient to one modality
    fit_with_robustness(
        "late_fusion",
        tiny_dataset,
        out_dir=tmp_path / "l",
        train_config=cfg,
        model_overrides={"hidden_dim": 8},
        train_transform=RandomMissingRate(0.5),
    )
    log = json.loads((tmp_path / "l" / "seed1" / "mli.json").read_text())
    assert all(v > 0 for v in log["mean_grad_norm"].values())
    assert 0 < log["mli"] <= 1 and sum(log["share"].values()) == pytest.approx(1.0)
    assert log["steps"] == 3


def test_gradient_logger_param_source(tiny_dataset):
    model = _model(tiny_dataset).train()
    logger = GradientNormLogger(("text", "audio", "visual"), source="params")
    batch = logger(_batch(tiny_dataset, "train"), _rng())
    model.task_loss(model(batch).prediction, batch.labels).backward()
    from msakit.training.engine import FitState

    logger.on_after_backward(FitState(model=model), batch)
    assert all(logger.steps[0][m] > 0 for m in ("text", "audio", "visual"))


# ---- CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("ckpt")
    cfg = TrainConfig(epochs=1, seeds=(1,), progress=False, tensorboard=False, batch_size=64)
    data = load_dataset("synthetic:clean")
    paths = []
    for name in ("late_fusion", "text_only"):
        fit_with_robustness(name, data, out_dir=out / name, train_config=cfg, model_overrides={"hidden_dim": 8})
        paths.append(out / name / "seed1" / "best")
    return paths


def test_cli_writes_json_csv_and_plots(checkpoints, tmp_path, capsys):
    out = tmp_path / "r"
    code = main(
        [
            "robustness",
            str(checkpoints[0]),
            "--data",
            "synthetic:clean",
            "--protocol",
            "rate",
            "--rates",
            "0",
            "0.5",
            "1",
            "--out",
            str(out),
            "--seed",
            "2",
        ]
    )
    assert code == 0
    report = json.loads((out / "robustness.json").read_text())
    assert report["seed"] == 2 and report["summaries"]["mli"]["mli"] is not None
    assert (out / "robustness.csv").read_text().startswith("protocol,curve,x,params,status")
    assert (out / "step_shared.png").stat().st_size > 1000


def test_cli_compare_overlays(checkpoints, tmp_path):
    out = tmp_path / "c"
    code = main(
        [
            "robustness",
            "--compare",
            *map(str, checkpoints),
            "--data",
            "synthetic:clean",
            "--protocol",
            "imbalanced",
            "--rates",
            "0",
            "0.5",
            "--modalities",
            "audio",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    payload = json.loads((out / "compare.json").read_text())
    assert payload["labels"] == ["late_fusion", "text_only"]
    assert (out / "compare_step_imbalanced_audio_missing.png").is_file()
    # text_only ignores audio: its audio curve is flat
    curve = payload["reports"]["text_only"]["summaries"]["curves"]["step_imbalanced/audio_missing"]
    assert curve["metrics"]["Non0_acc_2"]["drop_at_max"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--rates", "0.2", "1.5"], "[0, 1]"), (["--modalities", "smell"], "unknown modality"), ([], "either one")],
)
def test_cli_bad_input_exits_2(checkpoints, tmp_path, capsys, extra, message):
    args = (
        ["robustness"]
        + ([] if not extra else [str(checkpoints[0])])
        + ["--data", "synthetic:clean", "--out", str(tmp_path / "x"), *extra]
    )
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "robustness.json").exists()


def test_cli_modality_absent_from_data_exits_2(tmp_path, capsys, bimodal):
    import pandas as pd

    from msakit.data import write_folder
    from msakit.training import save_checkpoint

    rows, arrays = [], {}
    for m in bimodal.info.modalities:
        values, lengths, ids = [], [], []
        for _, split in bimodal:
            arr = split.modalities[m]
            values.append(arr.values)
            lengths.append(arr.lengths)
            ids += split.ids
        arrays[m] = (np.concatenate(values), np.concatenate(lengths), ids)
    for split_name, split in bimodal:
        rows += [
            {"id": i, "split": split_name, "label": float(y)} for i, y in zip(split.ids, split.labels, strict=True)
        ]
    folder = write_folder(tmp_path / "data", bimodal.info, pd.DataFrame(rows), arrays)
    ckpt = save_checkpoint(tmp_path / "m", _model(bimodal), dataset=bimodal.info)
    args = ["robustness", str(ckpt), "--data", str(folder), "--protocol", "rate", "--rates", "0", "0.5"]
    assert main([*args, "--out", str(tmp_path / "ok")]) == 0
    assert main([*args, "--modalities", "visual", "--out", str(tmp_path / "bad")]) == 2
    assert "absent from dataset" in capsys.readouterr().err
    assert (
        main(["robustness", str(ckpt), "--data", str(folder), "--protocol", "modality", "--out", str(tmp_path / "m2")])
        == 0
    )
    report = json.loads((tmp_path / "m2" / "robustness.json").read_text())
    statuses = {"+".join(c["params"]["kept"]): c["status"] for c in report["conditions"]}
    assert statuses["visual"] == "absent from dataset: visual" and statuses["text"] == "ok"


def test_batch_size_does_not_change_modality_removal(bimodal):
    model = _model(bimodal)
    a = run_protocols(model, bimodal, "modality", RobustnessSettings(batch_size=4)).to_dict()
    b = run_protocols(model, bimodal, "modality", RobustnessSettings(batch_size=64)).to_dict()
    for m, drops in a["summaries"]["drop_per_removed_modality"].items():
        assert drops == pytest.approx(b["summaries"]["drop_per_removed_modality"][m])
    assert np.isfinite(a["clean"]["MAE"])


# ---- whole-modality missing per sample (MissBench) and raw-text reach -----------------------------
def test_modality_missing_removes_whole_modalities_per_sample_at_the_rate(tiny_dataset):
    from msakit.robustness.perturbations import ModalityMissing

    big = make_synthetic(SyntheticConfig(sizes=(8, 4, 2000)))
    batch = _batch(big)
    out = ModalityMissing(rate=0.3)(batch, _rng(3))
    lost = batch.present & ~out.present  # (B, M)
    assert 0.25 < lost.float().mean() < 0.35  # each modality lost with probability ≈ r
    assert out.present.any(1)[batch.present.any(1)].all()  # nobody loses everything
    for m in batch.modalities:  # a lost modality is gone whole: no valid step, zero features
        rows = lost[:, ["text", "audio", "visual"].index(m)]
        assert not out.masks[m][rows].any() and (out.features[m][rows] == 0).all()
        kept = out.present_mask(m)
        torch.testing.assert_close(out.features[m][kept], batch.features[m][kept])  # the rest untouched
    # imbalanced: only the named modality, whole
    only = ModalityMissing(rates={"audio": 0.5})(batch, _rng(3))
    assert torch.equal(only.present[:, 0], batch.present[:, 0]) and torch.equal(only.present[:, 2], batch.present[:, 2])
    assert 0.4 < (batch.present[:, 1] & ~only.present[:, 1]).float().mean() < 0.6
    # rate 1 of everything: each sample keeps exactly one modality
    assert (ModalityMissing(rate=1.0)(batch, _rng(0)).present.sum(1) == 1).all()


def test_protocols_name_step_and_modality_missing_apart(bimodal):
    model = _model(bimodal)
    report = run_protocols(
        model,
        bimodal,
        ["modality_shared", "modality_imbalanced", "rate"],
        RobustnessSettings(rates=(0.0, 0.5)),
    )
    curves = set(report.summaries["curves"])
    assert {"modality_shared/shared", "modality_imbalanced/audio_missing", "step_shared/shared"} <= curves
    with pytest.raises(RobustnessError, match=r"unknown protocol 'missing'.*modality_shared.*step_imbalanced"):
        run_protocols(model, bimodal, "missing")


class _WordCounter(torch.nn.Module):
    """A stand-in for a model that re-encodes raw text: predicts from the number of words."""

    def __init__(self, reads_raw_text: bool) -> None:
        from msakit.models.base import Capabilities

        super().__init__()
        self.model_name = "word_counter"
        self.modalities = ("text", "audio")
        self.declared_capabilities = Capabilities(reads_raw_text=reads_raw_text)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, batch: Batch):  # type: ignore[no-untyped-def]
        from msakit.batch import ModelOutput

        words = torch.tensor([float(len(t.split())) for t in batch.raw_text])  # type: ignore[union-attr]
        return ModelOutput(prediction=self.scale * (words - 4.0))  # blind to features and `present`


def test_every_text_protocol_reaches_models_that_read_raw_text(bimodal):
    from dataclasses import replace as dc_replace

    words = ["so", "this", "film", "was", "really", "quite", "good", "and", "I", "liked", "it"]
    splits = {
        n: dc_replace(s, raw_text=[" ".join(words[: 2 + i % 9]) for i in range(len(s.ids))])
        for n, s in bimodal.splits.items()
    }
    data = MSADataset(bimodal.info, splits, source="with-text")
    settings = RobustnessSettings(rates=(0.5,), snrs=(0.0,), shuffle_rates=(1.0,))
    for reads, changes in ((True, True), (False, False)):
        report = run_protocols(_WordCounter(reads), data, ["step_shared", "spectrum"], settings)  # type: ignore[arg-type]
        moved = [c.metrics["MAE"] != report.clean["MAE"] for c in report.conditions if c.x == 0.5]
        assert moved and all(m == changes for m in moved), (reads, report.conditions)
