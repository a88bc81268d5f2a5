"""CH-SIMS: the best Chinese reading, chosen on validation, against every English row on the page.

Issue 13's reach asks that CH-SIMS read in the original Chinese beat the English
translation. `docs/results.md` reads the two languages in several ways, each applied to
both alike: e5 sentence vectors with `late_fusion` and the probe
(`docs/results/sims_language.json`), `late_fusion` tuned per language and tecafn
(`docs/results/reference_sims_tuned.json`), and e5 fine-tuned on each language
(`docs/results/sims_finetune.json`). This script gathers the rows of both languages from
those result files. It picks the Chinese reading as the Chinese row with the lowest
validation MAE (the split that selects; test is not looked at). It then writes that row
and every English row to one docgen table, `docs/results/sims_summary.json`. The table is
read against the Chinese row, and it says on which test metrics the Chinese row is ahead
of every English row.

    python benchmarks/sims_summary.py

With ``--averaged`` it adds each trained row's seed-averaged prediction (one model: the mean
of its seeds' outputs) in both languages alike, and a kind of row that one language cannot
rebuild is averaged in neither. With ``--paired`` it also sets the chosen Chinese row against each English row on the
same test clips (`benchmarks/probe_gap.py`'s idea, both sides resampled together): the
predictions are rebuilt from the run folders' ``seed*/best`` checkpoints, the probes are
refitted, and the fine-tuned rows' per-seed predictions are read from
``--finetune-work``/predictions.json. Each rebuilt row must repeat its table cells (test
Corr and MAE to the printed digit), else the script stops. Written to
``docs/results/NAME_paired.json`` (a docgen block):

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_summary.py --averaged --paired
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docgen import RESULTS, cell_value
from msakit.io import atomic_write_json
from msakit.metrics import compute_metrics
from probe_gap import _corr, model_test_predictions, probe_test_predictions
from sims_language import COLUMNS, _cell

SOURCES = ("sims_language", "sims_finetune")
HEADER = ["row", "seeds", *(c[1] for c in COLUMNS), "valid MAE"]
TUNED = {"sims-zh-e5": "Chinese", "sims-en-e5": "English"}


def tuned_rows(data: dict[str, Any]) -> list[list[str]]:
    """The per-language tuned late_fusion and the tecafn rows, from their per-seed results."""
    rows = []
    for folder, language in TUNED.items():
        for label, runs in (
            (
                f"{language}, e5: late_fusion --preset late_fusion/sims-{folder[5:7]}",
                data[folder]["models"]["late_fusion"],
            ),
            (f"{language}, e5: tecafn", data["tecafn_defaults"][folder]["models"]["tecafn"]),
        ):
            seeds = runs["seeds"]
            cells = [_cell([s["test"][key] for s in seeds], sc, d) for key, _, sc, d in COLUMNS]
            rows.append([label, str(len(seeds)), *cells, _cell([s["valid"]["MAE"] for s in seeds], 1, 3)])
    return rows


def gather(results: Path) -> list[list[str]]:
    rows = []
    for name in SOURCES:
        data = json.loads((results / f"{name}.json").read_text())
        if data["header"] != HEADER:
            raise SystemExit(f"error: {results / name}.json: header {data['header']}, expected {HEADER}")
        rows += data["rows"]
    return rows + tuned_rows(json.loads((results / "reference_sims_tuned.json").read_text()))


def _mean(cell: str) -> float:
    value = cell_value(cell)
    assert value is not None, cell
    return value[0]


def summary(rows: list[list[str]]) -> dict[str, Any]:
    """The Chinese row chosen on validation MAE and every English row, with the verdict per metric."""
    valid = HEADER.index("valid MAE")
    chinese = [r for r in rows if r[0].startswith("Chinese")]
    english = [r for r in rows if r[0].startswith("English")]
    chosen = min(chinese, key=lambda r: _mean(r[valid]))  # ties: the first listed
    verdict = []
    for key in ("Corr", "MAE", "Acc-2", "valid MAE"):
        col, lower = HEADER.index(key), "MAE" in key
        ours = _mean(chosen[col])
        behind = [r[0] for r in english if (_mean(r[col]) <= ours if lower else _mean(r[col]) >= ours)]
        where = key if key.startswith("valid") else f"test {key}"
        if behind:
            verdict.append(f"On {where} the Chinese row is not ahead of: {'; '.join(behind)}.")
        else:
            verdict.append(f"On {where} the Chinese row is ahead of every English row.")
    return {
        "provenance": "written by benchmarks/sims_summary.py from "
        + ", ".join(f"{s}.json" for s in SOURCES)
        + " and reference_sims_tuned.json",
        "command": "python benchmarks/sims_summary.py",
        "header": HEADER,
        "rows": [chosen, *english],
        "reference": chosen[0],
        "primary": "Corr",
        "secondary": "MAE",
        "also": ["Acc-2"],
        "valid": "valid MAE",
        "notes": [f"The Chinese row is the Chinese row with the lowest valid MAE of {len(chinese)}.", *verdict],
    }


# ---- the paired bootstrap ------------------------------------------------------------------------
LANG = {"Chinese": "zh", "English": "en"}
VARIANTS = {"e5": "e5", "e5 p+q": "pq", "e5 p+q+lex": "pq-lex"}  # sims_language's row label -> work slug
LAYER_PROBES = ("last layer", "layer chosen on valid", "all 13 layers", "all 13 layers + lexicon")


@dataclass
class Sources:
    """Where each table row's predictions come from (the folders the result files were written from)."""

    data_root: Path
    language_work: Path
    ref: Path
    finetune_work: Path
    labels: Path


def _test_ids(folder: Path) -> list[str]:
    from msakit.data import load_dataset

    return list(load_dataset(folder).split("test").ids)


def _by_id(preds: np.ndarray, ids: list[str], order: list[str]) -> np.ndarray:
    """(…, n) predictions in `ids` order put into `order` (the labels.csv test order)."""
    where = {clip: i for i, clip in enumerate(ids)}
    return preds[..., [where[clip] for clip in order]]


AVERAGED = " averaged"  # suffix of a seed-averaged row: "LABEL, 5 seeds averaged"


def row_predictions(label: str, src: Sources, split: str = "test") -> np.ndarray | None:
    """(seeds, n) predictions of a table row on `split` in labels.csv order, clipped to [-1, 1] as the sims
    metrics do (a seed-averaged row: (1, n)); None when the row's runs kept none (the fifth stop's
    fixed-recipe fine-tuning)."""
    from msakit.data import load_dataset

    if label.endswith(AVERAGED):
        base = row_predictions(label.rsplit(", ", 1)[0], src, split)
        return None if base is None else base.mean(0, keepdims=True)
    frame = pd.read_csv(src.labels, dtype={"id": str}, keep_default_na=False)
    order = frame.loc[frame["split"] == split, "id"].tolist()
    language, _, rest = label.partition(", ")
    lang = LANG[language]
    folder = src.data_root / f"sims-{lang}-e5"
    if rest.startswith("e5 fine-tuned"):
        path = src.finetune_work / "predictions.json"
        kept = json.loads(path.read_text()) if path.is_file() else {}
        if label not in kept:
            return None
        preds = np.array([s[f"{split}_pred"] for s in kept[label]["seeds"]], dtype=np.float64)
        return np.clip(preds, -1, 1)  # written in labels.csv order
    probe = rest.startswith("frozen e5, ") or rest.endswith(": probe")
    if probe and split != "test":
        raise SystemExit(f"error: {label}: only test predictions are rebuilt for probe rows")
    if rest.startswith("frozen e5, "):
        return np.clip(layer_probe_predictions(lang, rest, src, order)[None], -1, 1)
    variant, _, model = rest.partition(": ")
    if variant in VARIANTS and VARIANTS[variant] != "e5":
        folder = src.language_work / f"{lang}-{VARIANTS[variant]}" / "data"
    data = load_dataset(folder)
    ids = list(data.split(split).ids)
    if model == "probe":
        pred, _ = probe_test_predictions(data)
        return np.clip(_by_id(pred[None], ids, order), -1, 1)
    return np.clip(_by_id(model_test_predictions(data, model_run(label, src), split), ids, order), -1, 1)


def model_run(label: str, src: Sources) -> Path:
    """The run folder (seed*/best checkpoints) a trained table row was written from."""
    language, _, rest = label.partition(", ")
    lang = LANG[language]
    variant, _, model = rest.partition(": ")
    if model == "late_fusion" and variant in VARIANTS:
        return src.language_work / f"{lang}-{VARIANTS[variant]}" / "late_fusion"
    if model.startswith("late_fusion --preset"):
        return src.ref / f"late_fusion-sims-{lang}-e5-preset"
    if model == "tecafn":
        return src.ref / f"tecafn-sims-{lang}-e5"
    raise SystemExit(f"error: no prediction source for the row {label!r}")


def row_kind(label: str) -> str:
    """A row's method without its language (and without a recipe in brackets): 'e5 fine-tuned, recipe chosen
    on valid', 'e5: late_fusion', ... The same kind in both languages is the same method."""
    kind = label.partition(", ")[2].split(" (")[0]
    return kind.replace("/sims-zh", "/sims-LANG").replace("/sims-en", "/sims-LANG")  # the per-language presets


def averaged_rows(rows: list[list[str]], src: Sources) -> list[list[str]]:
    """For every trained row whose runs can be rebuilt in both languages alike: the row of its seeds' mean
    prediction (one model: the average of the 5 seeds' outputs), scored on valid and test alike. A kind of
    row that one language cannot rebuild (its runs kept no predictions) is averaged in neither."""
    frame = pd.read_csv(src.labels, dtype={"id": str}, keep_default_na=False)
    labels = {split: frame.loc[frame["split"] == split, "label"].to_numpy(np.float64) for split in ("valid", "test")}
    preds: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for row in rows:
        if row[1] in ("–", "1"):
            continue  # a probe or a single run: nothing to average
        valid, test = (row_predictions(row[0], src, split) for split in ("valid", "test"))
        preds[row[0]] = None if valid is None or test is None else (valid, test)
    missing = {row_kind(label) for label, p in preds.items() if p is None}
    out = []
    for label, pair in preds.items():
        if pair is None or row_kind(label) in missing:
            continue
        row = next(r for r in rows if r[0] == label)
        valid, test = pair
        v, t = (compute_metrics("sims", p.mean(0), labels[s]) for p, s in ((valid, "valid"), (test, "test")))
        cells = [_cell([t[key]], sc, d) for key, _, sc, d in COLUMNS]
        out.append([f"{row[0]}, {len(test)} seeds{AVERAGED}", "avg", *cells, _cell([v["MAE"]], 1, 3)])
        print(out[-1], flush=True)
    return out


def layer_probe_predictions(lang: str, rest: str, src: Sources, order: list[str]) -> np.ndarray:
    """The frozen-layer ridge probes of benchmarks/sims_finetune.py, refitted on its cached layer means."""
    from sims_finetune import ridge_probe

    frame = pd.read_csv(src.labels, dtype={"id": str}, keep_default_na=False)
    means = np.load(src.finetune_work / f"{lang}-layer-means.npy", allow_pickle=False)
    lexicon = np.load(src.finetune_work / f"{lang}-lexicon.npy", allow_pickle=False).astype(np.float64)
    splits, y = frame["split"].to_numpy(), frame["label"].to_numpy(np.float64)
    kind = rest.removeprefix("frozen e5, ").removesuffix(": probe")
    if kind == "last layer":
        x = means[:, -1]
    elif kind.startswith("layer chosen on valid"):
        x = means[:, int(kind.split("(")[1].rstrip(")"))]
    elif kind == "all 13 layers":
        x = means.reshape(len(means), -1)
    elif kind == "all 13 layers + lexicon":
        x = np.hstack([means.reshape(len(means), -1), lexicon])
    else:
        raise SystemExit(f"error: no prediction source for the frozen probe {rest!r}")
    _, _, pred = ridge_probe(x, splits, y, predictions=True)
    return _by_id(pred, frame.loc[splits == "test", "id"].tolist(), order)


def _acc2(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SIMS Mult_acc_2 along the last axis: class (0, 1] against [-1, 0]."""
    return ((pred > 0) == (y > 0)).mean(-1)


PAIRED = {"Corr": (_corr, True), "MAE": (lambda p, y: np.abs(p - y).mean(-1), False), "Acc-2": (_acc2, True)}


def paired(ours: np.ndarray, other: np.ndarray, y: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """Chinese (mean over its seeds) − English row (mean over its seeds) on the same resampled test clips:
    the observed difference, its 95 % percentile interval and the share of resamples with Chinese at least as good."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(resamples, len(y)))
    yb = y[idx]
    out: dict[str, Any] = {}
    for key, (fn, higher) in PAIRED.items():
        observed = float(fn(ours, y).mean() - fn(other, y).mean())
        diffs = np.stack([fn(p[idx], yb) for p in ours]).mean(0) - np.stack([fn(p[idx], yb) for p in other]).mean(0)
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        share = float((diffs >= 0).mean() if higher else (diffs <= 0).mean())
        out[key] = {"observed": observed, "low": float(lo), "high": float(hi), "chinese_at_least": share}
    return out


def _check_cells(label: str, preds: np.ndarray, y: np.ndarray, row: list[str]) -> None:
    """The rebuilt predictions must repeat the row's test Corr and MAE cells (to the printed digit)."""
    for key in ("Corr", "MAE"):
        fn = PAIRED[key][0]
        value, printed = float(fn(preds, y).mean()), _mean(row[HEADER.index(key)])
        if abs(value - printed) > 0.0005 + 1e-9:
            raise SystemExit(f"error: {label}: rebuilt test {key} {value:.4f} does not repeat the table's {printed}")


def paired_table(table: dict[str, Any], src: Sources, resamples: int, seed: int, command: str) -> dict[str, Any]:
    frame = pd.read_csv(src.labels, dtype={"id": str}, keep_default_na=False)
    y = frame.loc[frame["split"] == "test", "label"].to_numpy(np.float64).clip(-1, 1)
    chosen, *english = table["rows"]
    ours = row_predictions(chosen[0], src)
    if ours is None:
        raise SystemExit(f"error: {chosen[0]}: no predictions kept (rerun benchmarks/sims_finetune.py)")
    _check_cells(chosen[0], ours, y, chosen)
    rows: dict[str, Any] = {}
    for row in english:
        other = row_predictions(row[0], src)
        if other is None:
            rows[row[0]] = None
            continue
        _check_cells(row[0], other, y, row)
        rows[row[0]] = {"seeds": len(other), "gap": paired(ours, other, y, resamples, seed)}
        print(row[0], {k: round(v["observed"], 4) for k, v in rows[row[0]]["gap"].items()}, flush=True)
    return {
        "provenance": "written by benchmarks/sims_summary.py --paired",
        "command": command,
        "chinese": chosen[0],
        "resamples": resamples,
        "seed": seed,
        "rows": rows,
        "markdown": paired_markdown(chosen[0], rows, resamples, len(y), command),
    }


def paired_markdown(chinese: str, rows: dict[str, Any], resamples: int, clips: int, command: str) -> str:
    def cell(g: dict[str, float], scale: float, digits: int) -> str:
        o, lo, hi = (scale * g[k] for k in ("observed", "low", "high"))
        return f"{o:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] ({100 * g['chinese_at_least']:.0f} %)"

    lines = [
        "```bash",
        command,
        "```",
        "",
        f"Chinese row: {chinese}. Difference = Chinese − English row (each the mean over its seeds) on the same "
        f"test clips, with the 95 % interval over {resamples} paired resamples of the {clips} test clips and, in "
        "brackets, the share of resamples in which the Chinese row is at least as good (for MAE lower is better).",
        "",
        "| English row | seeds | Corr difference | MAE difference | Acc-2 difference (points) |",
        "|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        if r is None:
            lines.append(f"| {label} | – | no predictions kept (earlier runs) | – | – |")
            continue
        g = r["gap"]
        cells = [cell(g["Corr"], 1, 3), cell(g["MAE"], 1, 3), cell(g["Acc-2"], 100, 1)]
        lines.append(f"| {label} | {r['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "Reading (computed from the table):", ""]
    for key, better in (("Corr", "higher"), ("MAE", "lower"), ("Acc-2", "higher")):
        sign = 1 if better == "higher" else -1
        done = {k: r["gap"][key] for k, r in rows.items() if r is not None}
        ahead = [k for k, g in done.items() if sign * g["low"] > 0 and sign * g["high"] > 0]
        behind = [k for k, g in done.items() if sign * g["low"] < 0 and sign * g["high"] < 0]
        inside = [k for k in done if k not in ahead and k not in behind]
        lines.append(
            f"- {key}: Chinese ahead beyond test noise of {len(ahead)}, behind beyond test noise of {len(behind)}"
            f" ({'; '.join(behind) or 'none'}), inside test noise (interval contains 0) for {len(inside)}."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="sims_summary")
    p.add_argument("--paired", action="store_true", help="also the paired bootstrap against every English row")
    p.add_argument(
        "--averaged", action="store_true", help="also each trained row's seed-averaged prediction, in both languages"
    )
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=Path("data"))
    p.add_argument("--language-work", type=Path, default=Path("runs/datasets/sims-language"))
    p.add_argument("--ref", type=Path, default=Path("runs/results-docs/ref"))
    p.add_argument("--finetune-work", type=Path, default=Path("runs/sims/finetune"))
    p.add_argument("--labels", type=Path, default=Path("../shared/data/sims/labels.csv"))
    args = p.parse_args(argv)
    if (args.paired or args.averaged) and not args.labels.is_file():
        print(f"error: {args.labels}: CH-SIMS labels.csv not found", file=sys.stderr)
        return 2
    src = Sources(args.data_root, args.language_work, args.ref, args.finetune_work, args.labels)
    rows = gather(RESULTS)
    if args.averaged:
        rows += averaged_rows(rows, src)
    table = summary(rows)
    if args.averaged:
        table["command"] = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_summary.py " + " ".join(
            argv or sys.argv[1:]
        )
    atomic_write_json(RESULTS / f"{args.name}.json", table)
    if args.paired:
        command = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_summary.py " + " ".join(argv or sys.argv[1:])
        result = paired_table(table, src, args.resamples, args.seed, command)
        atomic_write_json(RESULTS / f"{args.name}_paired.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
