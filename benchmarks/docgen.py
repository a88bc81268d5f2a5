"""Docs generated from result files: tables and the sentences that read them.

A doc holds generated blocks between markers

    <!-- docgen:begin NAME -->
    ...
    <!-- docgen:end NAME -->

and `RENDERERS[NAME]` turns the result file `docs/results/NAME.json` into the block's
markdown: the table *and* every sentence that states a number or a ranking about it
("What we found"), so a doc cannot contradict its own table. Result files are small
JSON summaries written by the `collect-*` commands below from run folders (which are
not committed), or, for runs whose folders are gone, transcribed from the tables the
run printed (the file says so in `provenance`).

    python benchmarks/docgen.py                     # rewrite every block
    python benchmarks/docgen.py --check             # exit 1 if a doc differs from its results
    python benchmarks/docgen.py --check-all [FILES] # exit 1 if prose contradicts its own tables (doccheck.py)
    python benchmarks/docgen.py collect-ablation runs/tssp_mosi_table4 --name tssp_msa_mosi_table4 \\
        --command "msakit ablate ..."               # RUN/NN/results.json -> docs/results/NAME.json
    python benchmarks/docgen.py collect-robustness runs/robustness_all --name robustness

`tests/test_docs_consistency.py` runs the check.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
BLOCK = re.compile(r"(<!-- docgen:begin (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- docgen:end (?P=name) -->)", re.S)


# ---- formatting ----------------------------------------------------------------------------------
def pts(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}"


def pm(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def span(values: list[float], digits: int = 1) -> str:
    lo, hi = min(values), max(values)
    if lo == hi:
        return f"{lo:.{digits}f}"
    return f"from {lo:.{digits}f} to {hi:.{digits}f}" if lo < 0 else f"{lo:.{digits}f}–{hi:.{digits}f}"


def names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---- robustness ----------------------------------------------------------------------------------
ROBUSTNESS_COLUMNS = (
    "clean",
    "auilc_modality_shared",
    "auilc_step",
    "auilc_noise",
    "auilc_spectrum",
    "spectrum_uniform",
    "mei",
    "mli",
)
DATASET_LABELS = {
    "mosi": "MOSI",
    "mosi-e5": "MOSI (mosi-e5)",
    "mmmo": "MMMO",
    "youtube": "YouTube",
    "synthetic": "the synthetic benchmark",
}


def mosi_key(datasets: dict[str, Any]) -> str | None:
    """The MOSI entry of a robustness result (`mosi`, or a feature variant such as `mosi-e5`)."""
    return next((d for d in datasets if d.split("-")[0] == "mosi"), None)


def render_robustness(data: dict[str, Any]) -> str:
    out: list[str] = []
    datasets = data["datasets"]
    run = data.get("run")
    if run:
        out += ["Run (`OUT/invocations.jsonl`, in order):", ""]
        out += [f"- `{i['command']}` started {i['started']}" for i in run["invocations"]]
        commits = list(run["commits"])  # in the order the pairs started
        used = (
            commits[0][:7]
            if len(commits) == 1
            else f"{len(commits)} successive commits, {commits[0][:7]} to {commits[-1][:7]}"
        )
        out += [
            "",
            f"The {sum(run['commits'].values())} pairs were trained from {used} (others committed while it ran); "
            "each pair's commit, budget and locally modified sources are in `docs/results/robustness.json`.",
            "",
        ]
        seconds = {
            f"{ds}/{m}": r["run"]["robustness_seconds"]
            for ds, info in datasets.items()
            for m, r in info["models"].items()
            if (r.get("run") or {}).get("robustness_seconds") is not None
        }
        if seconds:
            slowest = max(seconds, key=lambda k: seconds[k])
            out += [
                f'One `run_protocols(..., "all")` evaluation took {span(list(seconds.values()), 0)} s of wall time '
                f"per pair (median {statistics.median(seconds.values()):.0f} s; slowest {slowest}) on the loaded "
                "machine, every protocol included.",
                "",
            ]
        if run.get("failed"):
            out += ["Pairs that did not run:", ""]
            out += [f"- {pair}: {why}" for pair, why in run["failed"].items()]
            out.append("")
        if run.get("unfinished"):
            out += [
                f"Pairs not finished when the run was stopped ({len(run['unfinished'])}): "
                + ", ".join(run["unfinished"])
                + ".",
                "",
            ]
    for ds, info in datasets.items():
        out += [
            f"#### {ds} ({info['metric']} ×100, test split, seed 1, perturbation seed 0)",
            "",
            "| model | clean | drop when removed (points, clean − removed) | AUILC modality_shared "
            "| AUILC modality_imbalanced (modality lost) | AUILC step_shared | AUILC noise "
            "| AUILC spectrum | spectrum U(0,1) | MEI | MLI |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for model, r in info["models"].items():
            drops = " / ".join(f"{m} {d:.1f}" for m, d in r["drop"].items())
            lost = " / ".join(f"{m} {v:.1f}" for m, v in (r.get("auilc_modality_imbalanced") or {}).items()) or "n/a"
            cells = [f"{r[k]:.1f}" if r.get(k) is not None else "n/a" for k in ROBUSTNESS_COLUMNS[:6]]
            cells += [f"{r[k]:.2f}" if r.get(k) is not None else "n/a" for k in ("mei", "mli")]
            out.append(f"| {model} | {cells[0]} | {drops} | {cells[1]} | {lost} | " + " | ".join(cells[2:]) + " |")
        out.append("")
    out += ["#### What we found (every number below is computed from the tables above)", ""]
    out += [f"- {s}" for s in robustness_findings(datasets)]
    return "\n".join(out) + "\n"


def robustness_findings(datasets: dict[str, Any]) -> list[str]:
    found = []
    mosi_name = mosi_key(datasets)
    mosi = datasets[mosi_name]["models"] if mosi_name else {}
    syn = datasets.get("synthetic", {}).get("models", {})
    if mosi:
        text = {m: r["drop"]["text"] for m, r in mosi.items() if "text" in r["drop"]}
        audio = {m: r["drop"]["audio"] for m, r in mosi.items() if "audio" in r["drop"]}
        costly = sorted((m for m, d in audio.items() if d >= 2.0), key=lambda m: -audio[m])
        sentence = (
            f"On {DATASET_LABELS.get(mosi_name or '', mosi_name)} removing the text costs every model "
            f"{span(list(text.values()))} points of the primary "
            f"metric; removing the audio costs {span(list(audio.values()))} points"
        )
        if costly:
            sentence += ", at least 2 points only for " + names([f"{m} ({audio[m]:.1f})" for m in costly])
        if len(costly) < len(audio) / 2:
            sentence += ". MOSI's audio carries little sentiment for most models here"
        found.append(sentence + ".")
    for ds, info in datasets.items():
        if ds in ("synthetic", mosi_name):
            continue
        per = {}
        for r in info["models"].values():
            for m, d in r["drop"].items():
                per.setdefault(m, []).append(d)
        if per:
            found.append(
                f"On {DATASET_LABELS.get(ds, ds)} removing "
                + names([f"the {m} costs {span(d)} points" for m, d in per.items()])
                + " of the primary metric."
            )
    if syn:
        multi = {m: r for m, r in syn.items() if len(r["drop"]) > 1 and r.get("mei") not in (None, 0.0)}
        drops = [d for r in multi.values() for d in r["drop"].values()]
        worst = {m: max(r["drop"].values()) for m, r in multi.items()}
        below = sorted(m for m, w in worst.items() if w < 2.0)
        if worst:
            lowest = min(worst, key=lambda m: worst[m])
            found.append(
                f"On the synthetic benchmark (all three modalities informative) a removed modality costs a "
                f"multimodal model {span(drops)} points; the worst modality costs less than 2 points for "
                + (names(below) if below else "no model")
                + f" (smallest worst case: {lowest}, {worst[lowest]:.1f}), so TSSP-MSA's claim of < 2 points per "
                + (
                    "missing modality holds for no model here."
                    if not below
                    else f"missing modality holds for {len(below)} of {len(worst)} models."
                )
            )
    for ds, info in datasets.items():
        found += whole_modality_findings(DATASET_LABELS.get(ds, ds), info["models"])
    for ds, info in datasets.items():
        models = info["models"]
        mei = {m: r["mei"] for m, r in models.items() if r.get("mei") is not None}
        mli = {m: r["mli"] for m, r in models.items() if r.get("mli") is not None}
        label = DATASET_LABELS.get(ds, ds)
        if ds != "synthetic" and mei:
            positive = sorted((m for m, v in mei.items() if round(v, 2) > 0.0), key=lambda m: -mei[m])
            found.append(
                f"MEI on {label} is 0.01 or more for {len(positive)} of {len(mei)} models"
                + (" (" + names([f"{m} {mei[m]:.2f}" for m in positive]) + ")" if positive else "")
                + (
                    f"; MLI ranges {span(list(mli.values()), 2)}, highest for "
                    + names([f"{m} {mli[m]:.2f}" for m in sorted(mli, key=lambda m: -mli[m])[:2]])
                    if mli
                    else ""
                )
                + "."
            )
        for key, what in (("auilc_noise", "Gaussian noise (AUILC)"), ("spectrum_uniform", "the per-sample spectrum")):
            vals = {m: r[key] for m, r in models.items() if r.get(key) is not None}
            if not vals:
                continue
            order = sorted(vals, key=lambda m: -vals[m])
            found.append(
                f"Under {what} on {label} the best models are "
                + names([f"{m} ({vals[m]:.1f})" for m in order[:2]])
                + f", the lowest {order[-1]} ({vals[order[-1]]:.1f})"
                + (
                    f"; tssp_msa ranks {order.index('tssp_msa') + 1} of {len(order)} ({vals['tssp_msa']:.1f})"
                    if "tssp_msa" in vals
                    else ""
                )
                + "."
            )
    return found


def whole_modality_findings(label: str, models: dict[str, Any]) -> list[str]:
    """modality_shared against step_shared, its ranking, the random-rate reference, modality_imbalanced."""
    found = []
    whole = {m: r["auilc_modality_shared"] for m, r in models.items() if r.get("auilc_modality_shared") is not None}
    if not whole:
        return found
    gaps = {m: models[m]["auilc_step"] - v for m, v in whole.items() if models[m].get("auilc_step") is not None}
    if gaps:
        lower = [m for m, g in gaps.items() if g > 0]
        found.append(
            f"On {label} the AUILC under modality_shared (whole modalities lost per sample at rate r) is below "
            f"the AUILC under step_shared (the same rate of lost steps) for {len(lower)} of {len(gaps)} models; "
            f"step_shared − modality_shared is {span(list(gaps.values()))} points "
            f"(median {statistics.median(gaps.values()):.1f})."
        )
    order = sorted(whole, key=lambda m: -whole[m])
    sentence = (
        f"Under modality_shared on {label} the best models are "
        + names([f"{m} ({whole[m]:.1f})" for m in order[:2]])
        + f", the lowest {order[-1]} ({whole[order[-1]]:.1f})"
    )
    if "late_fusion+rmr" in whole and "late_fusion" in whole:
        rmr, plain = whole["late_fusion+rmr"], whole["late_fusion"]
        sentence += (
            f"; training with random missing rates (late_fusion+rmr, {rmr:.1f}, rank "
            f"{order.index('late_fusion+rmr') + 1} of {len(order)}) "
            + ("raises" if rmr > plain else "does not raise")
            + f" late_fusion's {plain:.1f}"
        )
    found.append(sentence + ".")
    lost = {
        m: r["auilc_modality_imbalanced"]
        for m, r in models.items()
        if len(r.get("auilc_modality_imbalanced") or {}) > 1
    }
    if lost:
        worst: dict[str, list[str]] = {}
        for m, per in lost.items():
            worst.setdefault(min(per, key=lambda k: per[k]), []).append(m)
        found.append(
            f"Under modality_imbalanced on {label} (one modality lost per sample at rate r) the costliest modality "
            "to lose is "
            + names(
                [
                    f"the {k} for {len(v)} of {len(lost)} models"
                    for k, v in sorted(worst.items(), key=lambda kv: -len(kv[1]))
                ]
            )
            + "."
        )
    return found


def collect_robustness(run: Path) -> dict[str, Any]:
    """OUT/<dataset>/<model>/robustness.json of benchmarks/robustness_all.py -> the result file."""
    datasets: dict[str, Any] = {}
    started: dict[str, str] = {}  # commit -> first pair's start
    commits: dict[str, int] = {}
    for path in sorted(run.glob("*/*/robustness.json")):
        r = json.loads(path.read_text())
        key, s = r["primary_metric"], r["summaries"]
        curves = s.get("curves", {})

        def auc(curve: str, key: str = key, curves: dict[str, Any] = curves) -> float | None:
            c = curves.get(curve)
            return 100 * c["metrics"][key]["auilc"] if c else None

        mixed = next((c for c in r["conditions"] if c["curve"] == "per_sample_uniform"), None)
        meta_path = path.parent / "run.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta.get("git_commit"):
            commits[meta["git_commit"]] = commits.get(meta["git_commit"], 0) + 1
            started[meta["git_commit"]] = min(started.get(meta["git_commit"], "~"), meta.get("started", ""))
        entry = datasets.setdefault(path.parent.parent.name, {"metric": key, "models": {}})
        entry["models"][path.parent.name] = {
            "clean": 100 * r["clean"][key],
            "drop": {m: 100 * d[key] for m, d in s.get("drop_per_removed_modality", {}).items()},
            "auilc_modality_shared": auc("modality_shared/shared"),
            "auilc_modality_imbalanced": {
                m: v for m in r.get("modalities", []) if (v := auc(f"modality_imbalanced/{m}_missing")) is not None
            },
            "auilc_step": auc("step_shared/shared") or auc("rate/shared"),
            "auilc_noise": auc("noise/gaussian_all"),
            "auilc_spectrum": auc("spectrum/fixed"),
            "spectrum_uniform": 100 * mixed["metrics"][key] if mixed else None,
            "mei": (s.get("mei") or {}).get("value"),
            "mli": (s.get("mli") or {}).get("mli"),
            "run": {
                k: meta.get(k)
                for k in (
                    "started",
                    "git_commit",
                    "modified_sources",
                    "epochs",
                    "patience",
                    "model_overrides",
                    "train_seconds",
                    "robustness_seconds",
                )
            },
        }
    failed = {}
    for path in sorted(run.glob("*/*/error.txt")):
        if not (path.parent / "robustness.json").is_file():
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            failed[f"{path.parent.parent.name}/{path.parent.name}"] = lines[-1] if lines else "failed"
    plan_path = run / "plan.json"  # the pairs the latest invocation meant to run (robustness_all.py)
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else []
    done = {f"{ds}/{m}" for ds, info in datasets.items() for m in info["models"]}
    unfinished = [pair for pair in plan if pair not in done and pair not in failed]
    log = run / "invocations.jsonl"
    invocations = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    return {
        "provenance": f"collected from {run} by benchmarks/docgen.py",
        "run": {
            "invocations": invocations,
            "unfinished": unfinished,
            "commits": {c: commits[c] for c in sorted(commits, key=started.get)},
            "failed": failed,
        },
        "datasets": datasets,
    }


# ---- ablation tables (msakit ablate output folders) -------------------------------------------------
ABLATION_METRICS = {
    "mosi": [
        ("Has0_acc_2", "Has0 Acc-2", 100, 1),
        ("Non0_acc_2", "Non0 Acc-2", 100, 1),
        ("Non0_F1_score", "Non0 F1", 100, 1),
        ("Mult_acc_7", "Acc-7", 100, 1),
        ("MAE", "MAE", 1, 3),
        ("Corr", "Corr", 1, 3),
    ],
    "classification": [("Acc", "Acc", 100, 1), ("F1_score", "F1", 100, 1)],
}
LOWER_IS_BETTER = {"MAE"}


def collect_ablation(run: Path, command: str) -> dict[str, Any]:
    """RUN/NN/results.json (one per row, in `msakit ablate` order) -> per-row seeds and metrics."""
    from msakit.training.sealed import refuse_sealed

    rows = {}
    for path in sorted(run.glob("[0-9][0-9]/results.json")):
        refuse_sealed([path.parent], "docgen")  # a row shows test metrics
        r = json.loads(path.read_text())
        label = r.get("row") or path.parent.name
        rows[label] = {
            "seeds": [s["seed"] for s in r["seeds"]],
            "test": {k: [s["test"][k] for s in r["seeds"]] for k in r["seeds"][0]["test"]},
            "valid": {k: [s["valid"][k] for s in r["seeds"]] for k in r["seeds"][0]["valid"]},
            "model_overrides": r.get("model_overrides", {}),
        }
    return {"command": command, "metric_set": "mosi", "rows": rows}


def render_ablation(data: dict[str, Any], *, reference: str) -> str:
    """Rows of an `msakit ablate` run (per-seed metrics) as a table, read by `table_findings`."""
    metrics = ABLATION_METRICS[data.get("metric_set", "mosi")]
    select = "MAE" if data.get("metric_set", "mosi") == "mosi" else "Acc"
    header = ["row", "seeds", *(label for _, label, _, _ in metrics), f"valid {select}"]
    rows = []
    for label, row in data["rows"].items():
        cells = [pm(*_ms(row["test"][k]), scale=s, digits=d) for k, _, s, d in metrics]
        scale, digits = (1, 3) if select == "MAE" else (100, 1)
        rows.append([label, str(len(row["seeds"])), *cells, pm(*_ms(row["valid"][select]), scale, digits)])
    table = {
        "command": data["command"],
        "header": header,
        "rows": rows,
        "reference": reference,
        "primary": metrics[1][1] if select == "MAE" else metrics[0][1],
        "secondary": "MAE" if select == "MAE" else None,
        "valid": f"valid {select}",
    }
    return render_table(table)


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# ---- drop-one-modality tables ----------------------------------------------------------------------
def render_drop_one(data: dict[str, Any]) -> str:
    mods = data["modalities"]
    out = [
        "| run | all | " + " | ".join(f"drop without {m}" for m in mods) + " |",
        "|---|---|" + "---|" * len(mods),
    ]
    for run in data["runs"]:
        cells = [f"{run['drop'][m][0]:.1f} ± {run['drop'][m][1]:.1f}" if m in run["drop"] else "–" for m in mods]
        out.append(
            f"| {run['label']} | {run['all'][0]:.1f} ± {run['all'][1]:.1f}{run.get('unit', '')} | "
            + " | ".join(cells)
            + " |"
        )
    out += [
        "",
        "Drops are clean − dropped in points (positive = removing the modality hurts), as",
        "`benchmarks/drop_one_modality.py` prints them. Reading:",
        "",
    ]
    for run in data["runs"]:
        if not run["drop"]:
            continue
        worst = max(run["drop"], key=lambda m: run["drop"][m][0])
        under = all(v[0] < 2.0 for v in run["drop"].values())
        found = f"{run['label']}: the costliest removal is {worst} ({run['drop'][worst][0]:.1f} points); " + (
            "every single-modality drop costs under 2 points." if under else "not every drop is under 2 points."
        )
        out.append(f"- {found}")
    return "\n".join(out) + "\n"


# ---- transcribed summary tables (mean ± std cells) ---------------------------------------------------
CELL = re.compile(r"^\*{0,2}(-?[\d.]+)(?: ± ([\d.]+))?\*{0,2}")


def cell_value(cell: str) -> tuple[float, float] | None:
    """'82.1 ± 1.4' -> (82.1, 1.4); '0.817' -> (0.817, 0.0); anything else -> None."""
    m = CELL.match(cell.strip())
    return (float(m.group(1)), float(m.group(2) or 0.0)) if m else None


def render_table(data: dict[str, Any]) -> str:
    """A transcribed table and its reading: each row against `reference` on the `primary` column
    (and on `secondary`, e.g. MAE), within or beyond one seed-std, and the best row on `valid`."""
    header, rows = data["header"], data["rows"]
    out = []
    if data.get("command"):
        out += ["```bash", data["command"], "```", ""]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "Reading (computed from the table):", ""]
    out += [f"- {s}" for s in [*table_findings(data), *data.get("notes", [])]]  # notes: collected from the runs
    return "\n".join(out) + "\n"


def _label(cell: str) -> str:
    return re.sub(r"\*\*|`", "", cell).strip()


def table_findings(data: dict[str, Any]) -> list[str]:
    header, rows = data["header"], data["rows"]
    labels = [_label(r[0]) for r in rows]
    ref = labels.index(data["reference"])
    found = []
    for key in (data["primary"], data.get("secondary"), *data.get("also", ())):
        if not key:
            continue
        col = header.index(key)
        lower = "MAE" in key
        fraction = lower or key == "Corr"  # not a percentage: three digits, no "points"
        values = [cell_value(r[col]) for r in rows]
        base = values[ref]
        assert base is not None, (key, rows[ref])
        beyond, within = [], []
        for label, v in zip(labels, values, strict=True):
            if v is None or label == labels[ref]:
                continue
            loss = (v[0] - base[0]) if lower else (base[0] - v[0])  # positive = worse than the reference
            digits = 3 if fraction else 1
            text = f"{label} {loss:+.{digits}f}"
            (beyond if abs(loss) > max(base[1], v[1]) else within).append(text)
        unit = "" if fraction else ", in points"
        sentence = f"{key}, how much worse than {labels[ref]} (positive = worse{unit}): " + "; ".join(beyond + within)
        if beyond:
            sentence += f". Beyond one seed-std of the larger spread: {names([b.rsplit(' ', 1)[0] for b in beyond])}."
        else:
            sentence += ". Every difference is within one seed-std."
        found.append(sentence)
        ranked = {label: _number(r[col]) for label, r in zip(labels, rows, strict=True) if cell_value(r[col])}
        where = key if key.startswith("test") else f"test {key}"
        found.append(f"Best row on {where}: {_best(ranked, lower)}.")
    if data.get("valid"):
        col = header.index(data["valid"])
        lower = "MAE" in data["valid"]
        ranked = {label: _number(r[col]) for label, r in zip(labels, rows, strict=True) if cell_value(r[col])}
        found.append(f"Best row on {data['valid']} (the split that selects): {_best(ranked, lower)}.")
    return found


def _number(cell: str) -> str:
    """The mean of a cell as printed ('0.280 ± 0.009' -> '0.280')."""
    m = CELL.match(cell.strip())
    assert m is not None, cell
    return m.group(1)


def _best(values: dict[str, str], lower: bool) -> str:
    """The best row, or the tied rows, with the value: 'a (0.817)' / 'a, b (tied, 0.817)'."""
    best = (min if lower else max)(float(v) for v in values.values())
    tied = [k for k, v in values.items() if float(v) == best]
    shown = values[tied[0]]
    return f"{tied[0]} ({shown})" if len(tied) == 1 else f"{names(tied)} (tied, {shown})"


def import_table(doc: Path, heading: str) -> dict[str, Any]:
    """The first markdown table after `heading` in `doc`: header and rows as cell strings."""
    text = doc.read_text()
    start = text.index(heading)
    lines = text[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip().strip("|").split("|")])
    return {"header": table[0], "rows": table[2:]}


def render_expert_weights(data: dict[str, Any]) -> str:
    """Mean expert weight α per modality over the seeds of a run (benchmarks/tssp_checks.py expert-weights)."""
    alpha = data["alpha"]
    order = sorted(alpha, key=lambda m: -alpha[m][0])
    shown = ", ".join(f"α_{m} {alpha[m][0]:.2f} ± {alpha[m][1]:.2f}" for m in order)
    return (
        f"```bash\n{data['command']}\n```\n\n"
        f"Mean expert weight on the {data['split']} split, {data['seeds']} seeds of {data['run']}: {shown}; "
        f"the largest weight goes to {order[0]}.\n"
    )


def render_paired(data: dict[str, Any]) -> str:
    """Seed-paired AUILC differences of two systems (benchmarks/promma_missing.py --paired): the table,
    and per curve whether the mean difference's 95 % t-interval over the seeds excludes 0."""
    from scipy import stats

    first, second = data.get("labels") or [data[k].partition(":")[0] for k in ("first", "second")]
    head = f"| split | curve | {first} | {second} | paired difference | seeds first ahead | 95 % CI of the difference |"
    out = ["```bash", data["command"], "```", "", head, "|---|---|---|---|---|---|---|"]
    reading = []
    for key, row in data["rows"].items():
        split, curve = key.split(" ", 1)
        diff = [100 * d for d in row["difference"]]
        n, mean, sd = len(diff), statistics.mean(diff), statistics.stdev(diff)
        half = float(stats.t.ppf(0.975, n - 1)) * sd / n**0.5
        cells = [_mean_sd([100 * v for v in row[k]]) for k in ("first", "second")]
        ahead = sum(d > 0 for d in diff)
        ci = f"[{mean - half:+.1f}, {mean + half:+.1f}]"
        out.append(f"| {split} | {curve} | {' | '.join(cells)} | {mean:.1f} ± {sd:.1f} | {ahead}/{n} | {ci} |")
        verdict = "below (the interval excludes 0)" if mean + half < 0 else "above (the interval excludes 0)"
        verdict = verdict if abs(mean) > half else "the interval includes 0 (not told apart over these seeds)"
        reading.append(f"{split} {curve}: {first} − {second} {mean:+.1f} points, {ci}: {verdict}.")
    out += ["", "Reading (computed from the table):", ""] + [f"- {s}" for s in reading]
    return "\n".join(out) + "\n"


def render_compare(data: dict[str, Any]) -> str:
    """Rescored runs side by side (benchmarks/promma_missing.py --compare): the command and its table."""
    return f"```bash\n{data['command']}\n```\n\n{data['table']}\n"


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def render_ensemble_rows(data: dict[str, Any]) -> str:
    """The single model (member 0) beside the K-member ensemble of one `-t ensemble=K` run
    (benchmarks/ensemble_rows.py --json), validation first, with the paired difference and, on
    validation MAE, in how many seeds the ensemble is lower."""
    size, seeds, summ = data["size"], data["seeds"], data["summary"]
    keys = [k for k in ("Non0_acc_2", "Non0_F1_score", "MAE", "Corr", "Mult_acc_7") if k in summ["single"]["valid"]]
    cmd = data["command"] if not data.get("measured_by") else f"{data['command']}\n{data['measured_by']}"
    out = ["```bash", cmd, "```", "", "| system | split | " + " | ".join(keys) + " |", "|" + "---|" * (2 + len(keys))]
    labels = {"single": "single (member 0)", "ensemble": f"{size}-member ensemble", "paired": "ensemble − single"}
    for split in [s for s in ("valid", "test") if s in summ["single"]]:
        for kind, label in labels.items():
            cells = []
            for k in keys:
                m, sd = summ[kind][split][k]["mean"], summ[kind][split][k]["std"]
                scale, digits = (1, 3) if k in ("MAE", "Corr") else (100, 1)
                sign = "+" if kind == "paired" else ""
                cells.append(f"{m * scale:{sign}.{digits}f} ± {sd * scale:.{digits}f}")
            out.append(f"| {label} | {split} | " + " | ".join(cells) + " |")  # system first: the row's label
    lower = sum(r["ensemble"]["valid"]["MAE"] < r["single"]["valid"]["MAE"] for r in seeds)
    mae = {k: summ[k]["valid"]["MAE"]["mean"] for k in ("single", "ensemble")}
    verdict = "lower" if mae["ensemble"] < mae["single"] else "not lower"
    out += ["", "Reading (computed from the result file):", ""]
    out.append(
        f"- validation MAE: the {size}-member ensemble {mae['ensemble']:.3f} against the single model's "
        f"{mae['single']:.3f} ({verdict}; lower in {lower} of {len(seeds)} seeds)."
    )
    return "\n".join(out) + "\n"


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "robustness": render_robustness,
    "tssp_msa_mosi_table4": lambda d: render_ablation(d, reference="full"),
    "tssp_msa_drop_one": render_drop_one,
    "tssp_msa_expert_weights": render_expert_weights,
    "qa_moe_ablation_mmmo": lambda d: render_ablation(d, reference="full"),
    "qa_moe_ablation_mosi-e5": lambda d: render_ablation(d, reference="full"),
    "prlf_ablation_mosi-e5": lambda d: render_ablation(d, reference="full"),
    "ebmc_ablation_mosi-e5": lambda d: render_ablation(d, reference="full"),
    # written with their markdown by benchmarks/absa_eval.py and benchmarks/scene_eval.py
    "absa_eval": lambda d: d["markdown"],
    "scene_eval": lambda d: d["markdown"],
    # written with their markdown by benchmarks/subspace_alignment.py distinct --json
    "tsd_mosi_distinct": lambda d: d["markdown"],
    "tsd_mmmo_distinct": lambda d: d["markdown"],
    # written with their markdown by benchmarks/serve_{load,analyze,cpu}.py --record
    "serve_load": lambda d: d["markdown"],
    "serve_analyze": lambda d: d["markdown"],
    "serve_cpu": lambda d: d["markdown"],
    # written by benchmarks/promma_missing.py --paired / --compare (their tables)
    "promma_missing_mmmo_paired_s6": render_paired,
    "promma_missing_synthetic_paired_s6": render_paired,
    "promma_missing_mosi_e5_paired_s6": render_paired,
    "promma_missing_mmmo_own_s6": render_paired,
    "promma_missing_synthetic_own_s6": render_paired,
    "promma_missing_mosi_e5_own_s6": render_paired,
    "promma_missing_mmmo_evaluator_s7": render_compare,
    "promma_missing_mmmo_always_paired_s7": render_paired,
    "promma_missing_mmmo_never_paired_s7": render_paired,
    "promma_missing_synthetic_bands_s7": render_compare,
    "promma_missing_mmmo_bands_s7": render_compare,
    "promma_missing_synthetic_wtemp_s7": render_compare,
    "promma_missing_mmmo_wtemp_s7": render_compare,
    "promma_missing_synthetic_e15_paired_s7": render_paired,
    "promma_missing_synthetic_wt1_paired_s7": render_paired,
    "promma_missing_synthetic_wt1_lf_paired_s7": render_paired,
    "promma_missing_synthetic_topk3_paired_s7": render_paired,
    "promma_missing_synthetic_topk3_vs_default_s7": render_paired,
    "promma_missing_mmmo_topk3_paired_s7": render_paired,
    "promma_missing_mmmo_topk3_vs_default_s7": render_paired,
    "promma_missing_mosi_e5_topk3_paired_s7": render_paired,
    "promma_missing_mosi_e5_topk3_vs_default_s7": render_paired,
    "promma_missing_mmmo_ens3_s8": render_compare,
    "promma_missing_mmmo_ens3_s13": render_compare,  # the eighth stop's command rerun at the thirteenth
    "promma_missing_mmmo_vs_lf_s13": render_paired,
    "promma_missing_synthetic_ens3_bands_s8": render_compare,
    "promma_missing_mmmo_ens3_paired_s8": render_paired,
    "promma_missing_mmmo_single_paired_s8": render_paired,
    "promma_missing_mmmo_ens3_vs_single_s8": render_paired,
    "promma_missing_mmmo_lf_ens3_vs_single_s8": render_paired,
    "promma_missing_synthetic_ens3_s8": render_compare,
    "promma_missing_synthetic_ens3_paired_s8": render_paired,
    "promma_missing_synthetic_single_paired_s8": render_paired,
    "promma_missing_synthetic_ens3_vs_single_s8": render_paired,
    "promma_missing_synthetic_lf_ens3_vs_single_s8": render_paired,
    "promma_missing_mosi_e5_ens3_s8": render_compare,
    "promma_missing_mosi_e5_ens3_paired_s8": render_paired,
    "promma_missing_mosi_e5_single_paired_s8": render_paired,
    "promma_missing_mosi_e5_ens3_vs_single_s8": render_paired,
    "promma_missing_mosi_e5_lf_ens3_vs_single_s8": render_paired,
    "promma_missing_mmmo_md05_vs_md03_s10": render_paired,
    "promma_missing_mmmo_md07_vs_md03_s10": render_paired,
    "promma_missing_mmmo_md05_vs_lf_s10": render_paired,
    "promma_missing_mmmo_mw1_vs_md03_s10": render_paired,
}


def renderer(name: str) -> Callable[[dict[str, Any]], str]:
    """The renderer of a block: a named one, else a transcribed table (result files with a 'header')."""
    if name in RENDERERS:
        return RENDERERS[name]
    path = RESULTS / f"{name}.json"
    if path.is_file() and "header" in json.loads(path.read_text()):
        return render_table
    if path.is_file() and "markdown" in json.loads(path.read_text()):  # rendered when collected (collect_studies.py)
        return lambda d: d["markdown"]
    if path.is_file() and {"size", "summary", "seeds"} <= set(json.loads(path.read_text())):  # ensemble_rows.py
        return render_ensemble_rows
    raise SystemExit(f"docgen: unknown block {name!r}; known: {', '.join(RENDERERS)} or a table result file")


# ---- the docs ----------------------------------------------------------------------------------------
def load_result(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"docgen: block {name!r} has no result file {path}")
    return json.loads(path.read_text())


def render_doc(text: str) -> str:
    def block(m: re.Match[str]) -> str:
        name = m.group("name")
        return m.group(1) + renderer(name)(load_result(name)) + m.group(4)

    return BLOCK.sub(block, text)


def generated_docs() -> list[Path]:
    return [p for p in sorted(DOCS.rglob("*.md")) if "<!-- docgen:begin" in p.read_text()]


def check_all(paths: list[Path]) -> int:
    """Every sentence of `paths` against its doc's own tables (benchmarks/doccheck.py): 1 on any finding."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from doccheck import check_files

    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"docgen: error: no such doc: {missing[0]}", file=sys.stderr)
        return 2
    findings = check_files(paths, ROOT)
    for f in findings:
        print(f)
    print(f"{len(findings)} finding(s) in {len({f.path for f in findings})} of {len(paths)} doc(s)", file=sys.stderr)
    return 1 if findings else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    p.add_argument("--check", action="store_true", help="exit 1 when a doc differs from its result files")
    p.add_argument(
        "--check-all",
        nargs="*",
        type=Path,
        metavar="FILES",
        help="exit 1 when a sentence contradicts its doc's own tables (default: every docs/**/*.md); see doccheck.py",
    )
    ab = sub.add_parser("collect-ablation")
    ab.add_argument("run", type=Path)
    ab.add_argument("--name", required=True)
    ab.add_argument("--command", required=True)
    ab.add_argument("--rows", nargs="+", help="row labels in folder order (default: folder names)")
    rb = sub.add_parser("collect-robustness")
    rb.add_argument("run", type=Path)
    rb.add_argument("--name", default="robustness")
    args = p.parse_args(argv)
    from msakit.io import atomic_write_json, atomic_write_text

    if args.cmd == "collect-ablation":
        data = collect_ablation(args.run, args.command)
        if args.rows:
            if len(args.rows) != len(data["rows"]):
                print(f"error: {len(args.rows)} labels for {len(data['rows'])} rows", file=sys.stderr)
                return 2
            data["rows"] = dict(zip(args.rows, data["rows"].values(), strict=True))
        atomic_write_json(RESULTS / f"{args.name}.json", data)
        return 0
    if args.cmd == "collect-robustness":
        atomic_write_json(RESULTS / f"{args.name}.json", collect_robustness(args.run))
        return 0
    if args.check_all is not None:
        return check_all(args.check_all or sorted(DOCS.rglob("*.md")))
    stale = []
    for path in generated_docs():
        text = path.read_text()
        new = render_doc(text)
        if new != text:
            stale.append(path)
            if not args.check:
                atomic_write_text(path, new)
    if args.check and stale:
        print("docs out of date with their result files: " + ", ".join(str(s) for s in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
