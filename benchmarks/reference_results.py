"""5-seed results of registered models beside the linear-probe floor, per dataset -> Markdown.

    OMP_NUM_THREADS=1 python benchmarks/reference_results.py --data-root data --datasets mosi-e5 mmmo \
        --models text_only late_fusion --out docs/results/reference.md [-m key=value ...] [-t key=value ...]

Each dataset is the folder `<data-root>/<name>` written by `msakit data prepare`. For
each one the table starts with the linear probe (`msakit probe`: ridge / logistic on
pooled features per modality and together, choices made on validation), then one row
per model: the same protocol as `msakit train` (validation-only selection, test
evaluated once per seed, mean ± std over seeds). The degenerate-training warnings of
each run (`results.json`) are listed under its table. `--reuse` reads a finished run's
`results.json` instead of training again (same runs folder, same seeds), so a long
sweep can be resumed. `--preset MODEL=PRESET` trains MODEL with a preset (a shipped
`<model>/<dataset>` name or a YAML file, e.g. a `msakit tune` study's best.yaml), under
`-m` / `-t`; the row label names it. A JSON with every number is written beside the Markdown.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from msakit.config import load_yaml_overrides, parse_override
from msakit.data import load_dataset
from msakit.io import atomic_write_json, atomic_write_text
from msakit.probe import linear_probe
from msakit.report import metric_table
from msakit.training import Trainer, train_config_from
from msakit.training.sealed import refuse_sealed


def _summary(payload: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {k: (v["mean"], v["std"]) for k, v in payload["test_summary"].items()}


def run_model(
    model: str, dataset: Any, out_dir: Path, model_overrides: dict, train_overrides: dict, reuse: bool
) -> dict:
    """results.json of one 5-seed run (trained now, or read back with `reuse`)."""
    saved = out_dir / "results.json"
    seeds = list(train_config_from(train_overrides).seeds)
    if reuse and saved.is_file():
        refuse_sealed([out_dir], "reference_results")  # its tables show the test summary
        payload = json.loads(saved.read_text())
        if [s["seed"] for s in payload["seeds"]] == seeds and "warnings" in payload:
            return payload
    start = time.perf_counter()
    trainer = Trainer(
        model,
        dataset,
        model_overrides=model_overrides,
        train_config=train_config_from(train_overrides),
        out_dir=out_dir,
    )
    result = trainer.fit()
    payload = {**result.to_dict(), "wall_seconds": time.perf_counter() - start}
    atomic_write_json(saved, payload)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="Markdown file (a .json with the numbers beside it)")
    parser.add_argument("--models", nargs="+", default=["text_only", "late_fusion"])
    parser.add_argument("--datasets", nargs="+", default=["mosi", "mosei", "sims", "meld", "youtube", "mmmo"])
    parser.add_argument("--runs", type=Path, default=Path("runs/reference"))
    parser.add_argument("--reuse", action="store_true", help="read finished runs' results.json instead of retraining")
    parser.add_argument("--no-probe", action="store_true", help="leave out the linear-probe rows")
    parser.add_argument("-m", "--model-opt", action="append", default=[], help="model override for every run")
    parser.add_argument("-t", "--train-opt", action="append", default=[], help="trainer override for every run")
    parser.add_argument(
        "--preset", action="append", default=[], metavar="MODEL=PRESET", help="a preset for one model (repeatable)"
    )
    args = parser.parse_args()
    model_overrides = dict(parse_override(o) for o in args.model_opt)
    train_overrides = {"progress": False, "tensorboard": False, **dict(parse_override(o) for o in args.train_opt)}
    flags = " ".join([*(f"-m {o}" for o in args.model_opt), *(f"-t {o}" for o in args.train_opt)])
    presets = dict(p.split("=", 1) for p in args.preset)
    preset_overrides = {m: load_yaml_overrides(p) for m, p in presets.items()}
    sections, numbers = [], {}
    for name in args.datasets:
        dataset = load_dataset(args.data_root / name)
        rows: list[tuple[str, Any]] = []
        record: dict[str, Any] = {"models": {}}
        notes: list[str] = []
        if not args.no_probe:
            probe = linear_probe(dataset)
            record["probe"] = probe.to_dict()
            best = probe.best()
            for r in probe.rows:
                mark = " ← chosen on valid" if r is best else ""
                label = f"*probe: {r.name} ({r.pooling}, α={r.alpha:.3g}){mark}*"
                rows.append((label, {k: (v, None) for k, v in r.test.items()}))
            notes += [f"probe: {n}" for n in probe.notes]
        ran = []
        for model in args.models:
            if model == "text_only" and "text" not in dataset.info.dims:
                continue
            ran.append(model)
            preset = preset_overrides.get(model, {})
            run_name = f"{model}-{name}" + ("-preset" if model in presets else "")
            payload = run_model(
                model,
                dataset,
                args.runs / run_name,
                {**preset.get("model", {}), **model_overrides},
                {**preset.get("train", {}), **train_overrides},
                args.reuse,
            )
            record["models"][model] = payload
            spe = sum(s["seconds_per_epoch"] for s in payload["seeds"]) / len(payload["seeds"])
            epochs = sum(s["best_epoch"] for s in payload["seeds"]) / len(payload["seeds"])
            how = f", `--preset {presets[model]}`" if model in presets else ""
            rows.append((f"{model}{how} ({spe:.2f} s/epoch, best epoch {epochs:.1f})", _summary(payload)))
            notes += [f"{model}: {w}" for w in payload.get("warnings", [])]
            print(name, model, {k: f"{m:.4f}" for k, (m, _) in _summary(payload).items()}, flush=True)
        numbers[name] = record
        probe_cmd = f"    msakit probe --data {args.data_root / name}\n" if not args.no_probe else ""
        cmds = probe_cmd + "\n".join(
            f"    msakit train --model {m} --data {args.data_root / name} {flags}".rstrip()
            + (f" --preset {presets[m]}" if m in presets else "")
            for m in ran
        )
        warn = "\n".join(f"- {n}" for n in notes) or "- none"
        sections.append(
            f"### {dataset.info.name} ({', '.join(dataset.info.modalities)}; `{args.data_root / name}`)\n\n"
            f"{metric_table(rows, dataset.info.metric_set)}\n\nWarnings and notes:\n\n{warn}\n\nReproduce:\n\n{cmds}\n"
        )
    atomic_write_text(args.out, "\n".join(sections))
    atomic_write_json(args.out.with_suffix(".json"), numbers)


if __name__ == "__main__":
    main()
