"""The decision of a cross-validated study (`msakit tune --cv K`) against its trial 0, and the final rows.

A study tuned with `--cv K --objective M` scores every trial by its mean over K folds (of the
pooled train + valid splits) and the tuning seeds; each trial also keeps every metric's mean
(user attribute "mean_valid"). This script applies the rule written for the twelfth stop
(docs/decisions/cvtune_s12.md) to each study, from the study alone:

- a trial qualifies iff its mean MAE is at most trial 0's + `--mae-guard` and its mean Corr at
  least trial 0's - `--corr-guard` (trial 0 is the configuration the study started from: the
  preset's member model);
- the candidate is the qualifying complete trial with the highest mean of the objective;
- it is adopted iff that mean is at least trial 0's + `--margin`.

    python benchmarks/cv_decision.py qa_moe/mmmo=runs/cvtune/qa_moe prlf/mmmo=runs/cvtune/prlf

`--evaluate` prints only each study's trial 0: with one-trial studies (`--trials 1`) it scores
presets under the folds, and nothing is chosen. `--probe DATA` adds the linear probe's row under
the same folds (`msakit probe --cv K`: each fold chooses pooling and α on its held-out part; the
row the probe's validation MAE picks).

With `--test`, LABEL=STUDY,RUN also reads RUN, the adopted preset trained on the standard split
(opened with `msakit test`; a sealed run is refused in one line), and adds its 5-seed test row.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from msakit.io import atomic_write_json
from msakit.training.sealed import read_results, refuse_sealed
from probe_base_rows import mean_std, test_cell

KEYS = ("Non0_acc_2", "MAE", "Corr")


def load_study(folder: Path) -> Any:
    """The one Optuna study in FOLDER/study.db."""
    import optuna

    storage = f"sqlite:///{(folder / 'study.db').resolve()}"
    if not (folder / "study.db").is_file():
        raise SystemExit(f"cv_decision: error: {folder / 'study.db'}: no study here")
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if len(names) != 1:
        raise SystemExit(f"cv_decision: error: {folder / 'study.db'} holds {len(names)} studies, expected one")
    return optuna.load_study(study_name=names[0], storage=storage)


def decide(study: Any, *, margin: float, mae_guard: float, corr_guard: float) -> dict[str, Any]:
    """Trial 0's and the candidate's cross-validated means, and whether the candidate is adopted."""
    import optuna

    objective = study.user_attrs["select_key"]
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    first = next((t for t in done if t.number == 0), None)
    if first is None:
        raise SystemExit(f"cv_decision: error: study {study.study_name!r} has no complete trial 0 to compare with")

    def means(t: Any) -> dict[str, float]:
        return {k: float(t.user_attrs["mean_valid"][k]) for k in dict.fromkeys((objective, *KEYS))}

    base = means(first)
    qualified = [
        t for t in done if means(t)["MAE"] <= base["MAE"] + mae_guard and means(t)["Corr"] >= base["Corr"] - corr_guard
    ]
    best = max(qualified, key=lambda t: sign * means(t)[objective])  # trial 0 always qualifies
    gain = sign * (means(best)[objective] - base[objective])
    return {
        "study": study.study_name,
        "scored_on": study.user_attrs.get("scored_on", "the validation split"),
        "objective": objective,
        "trials_complete": len(done),
        "trials_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "trial0": base,
        "candidate": {"number": best.number, "params": dict(best.params), **means(best)},
        "qualified": len(qualified),
        "adopted": bool(best.number != 0 and gain >= margin),
    }


def final_rows(run: str) -> dict[str, Any]:
    seeds = read_results(Path(run))["seeds"]
    return {split: {k: mean_std([s[split][k] for s in seeds]) for k in KEYS} for split in ("valid", "test")}


def cells(m: dict[str, float]) -> str:
    return f"{100 * m['Non0_acc_2']:.1f} / {m['MAE']:.3f} / {m['Corr']:.3f}"


def probe_row(data: str, scored_on: set[str]) -> dict[str, Any]:
    """The validation-chosen probe row of `msakit probe --cv K` on the folds the studies were scored on."""
    from msakit.data import load_dataset
    from msakit.probe import cross_validated_probe

    ks = {int(text.split("-fold", 1)[0]) for text in scored_on if "-fold" in text}
    if len(ks) != 1 or len(scored_on) != 1:
        got = sorted(scored_on)
        raise SystemExit(f"cv_decision: error: --probe needs studies scored on one K-fold split, got {got}")
    best = cross_validated_probe(load_dataset(data), ks.pop()).best()
    return {"name": best.name, "pooling": best.pooling, "valid": best.valid}


def leads_sentence(rows: dict[str, dict[str, Any]], probe: dict[str, Any]) -> str:
    pv = probe["valid"]

    def above(m: dict[str, float]) -> bool:
        return m["Non0_acc_2"] >= pv["Non0_acc_2"] and m["MAE"] <= pv["MAE"] and m["Corr"] >= pv["Corr"]

    ahead = [k for k, r in rows.items() if above(r["trial0"])]
    return (
        f"Under the same folds, trial 0 leads the probe's row (Non0 Acc-2 and Corr at least the probe's, MAE at "
        f"most) for {len(ahead)} of {len(rows)} presets" + (f" ({', '.join(ahead)})." if ahead else ".")
    )


def evaluation_markdown(rows: dict[str, dict[str, Any]], command: str, probe: dict[str, Any] | None) -> str:
    """`--evaluate`: each study's trial 0 only (one-trial studies score a preset; nothing is chosen)."""
    lines = ["```bash", command, "```", "", "| preset | cross-validated Non0 Acc-2 / MAE / Corr |", "|---|---|"]
    lines += [f"| {label} | {cells(r['trial0'])} |" for label, r in rows.items()]
    if probe is not None:
        lines += [f"| probe: {probe['name']} ({probe['pooling']}), same folds | {cells(probe['valid'])} |", ""]
        lines.append(leads_sentence(rows, probe))
    scored = sorted({r["scored_on"] for r in rows.values()})
    lines += [
        "",
        f"Trial 0 of each study: the preset's member model; means over the folds and seeds ({', '.join(scored)}).",
    ]
    return "\n".join(lines) + "\n"


def markdown(
    rows: dict[str, dict[str, Any]],
    command: str,
    margin: float,
    mae_guard: float,
    corr_guard: float,
    probe: dict[str, Any] | None = None,
) -> str:
    test = any("final" in r for r in rows.values())
    means = "Non0 Acc-2 / MAE / Corr"
    head = f"| preset | trials (complete + pruned) | trial 0: {means} | candidate: {means} | adopted |"
    sep = "|---|---|---|---|---|"
    if test:
        head += " adopted preset, test Non0 Acc-2 / MAE / Corr (5 seeds) |"
        sep += "---|"
    lines = ["```bash", command, "```", "", head, sep]
    for label, r in rows.items():
        c = r["candidate"]
        line = (
            f"| {label} | {r['trials_complete']} + {r['trials_pruned']} | {cells(r['trial0'])} | "
            f"{cells(c)} (trial {c['number']}) | {'yes' if r['adopted'] else 'no'} |"
        )
        if test:
            if "final" in r:
                line += f" {test_cell(r['final']['test'])} |"
            else:
                line += " – (preset unchanged, not run) |"
        lines.append(line)
    if probe is not None:
        label = f"probe: {probe['name']} ({probe['pooling']}), same folds"
        lines.append(f"| {label} | – | {cells(probe['valid'])} | – | – |" + (" – |" if test else ""))
    adopted = [k for k, r in rows.items() if r["adopted"]]
    scored = {r["scored_on"] for r in rows.values()}
    lines += [
        "",
        f"Means over the folds and tuning seeds ({', '.join(sorted(scored))}). The rule: a trial qualifies iff its "
        f"mean MAE is at most trial 0's + {mae_guard:g} and its mean Corr at least trial 0's - {corr_guard:g}; the "
        f"qualifying trial with the highest mean objective is adopted iff it beats trial 0 by at least {margin:g}: "
        + (f"adopted for {', '.join(adopted)}." if adopted else "no preset changes."),
    ]
    if probe is not None:
        lines += ["", leads_sentence(rows, probe)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="+", metavar="LABEL=STUDY[,RUN]")
    p.add_argument("--margin", type=float, default=0.01, help="objective gain over trial 0 to adopt (0.01 = 1 point)")
    p.add_argument("--mae-guard", type=float, default=0.02)
    p.add_argument("--corr-guard", type=float, default=0.02)
    p.add_argument("--test", action="store_true", help="also the adopted presets' test rows (opened runs only)")
    p.add_argument("--evaluate", action="store_true", help="print each study's trial 0 only (a preset's score)")
    p.add_argument("--probe", metavar="DATA", help="add the probe's row under the studies' folds (msakit probe --cv K)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    parsed = []
    for spec in args.studies:
        label, eq, rest = spec.partition("=")
        folder, _, run = rest.partition(",")
        if not (label and eq and folder):
            print(f"cv_decision: error: {spec!r}: expected LABEL=STUDY[,RUN]", file=sys.stderr)
            return 2
        parsed.append((label, Path(folder), run))
    if args.test:
        refuse_sealed([run for _, _, run in parsed if run], "cv_decision")
    rows = {}
    for label, folder, run in parsed:
        rows[label] = decide(
            load_study(folder), margin=args.margin, mae_guard=args.mae_guard, corr_guard=args.corr_guard
        )
        if run and not rows[label]["adopted"]:
            print(f"cv_decision: error: {label}: a final run was given but the rule did not adopt", file=sys.stderr)
            return 2
        if args.test and run:
            rows[label]["final"] = {"run": run, **final_rows(run)}
    probe = probe_row(args.probe, {r["scored_on"] for r in rows.values()}) if args.probe else None
    command = (
        "python benchmarks/cv_decision.py "
        + ("--test " if args.test else "")
        + ("--evaluate " if args.evaluate else "")
    )
    command += f"--probe {shlex.quote(args.probe)} " if args.probe else ""
    command += " ".join(shlex.quote(s) for s in args.studies)
    if args.evaluate:
        md = evaluation_markdown(rows, command, probe)
    else:
        md = markdown(rows, command, args.margin, args.mae_guard, args.corr_guard, probe)
    print(md)
    if args.json:
        atomic_write_json(args.json, {"command": command, "rows": rows, "probe": probe, "markdown": md})
    return 0


if __name__ == "__main__":
    sys.exit(main())
