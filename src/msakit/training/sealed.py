"""A sealed test split: train and choose on validation first, open the test split after.

`msakit train --seal-test` trains, selects and stops early exactly as a plain run (the
same checkpoints, byte for byte) but never evaluates the test split: its results.json
holds the validation metrics and a `test_split` record (state "sealed", when training
started, the data spec and evaluation batch that opening needs). `msakit test RUN`
(`open_test`) then evaluates every seed's `best` on test, once, with the trainer's own
evaluation (same batch size, same device kind), recomputes the degenerate-training
warnings over both splits and rewrites results.json in one atomic write, so the folder
equals a plain run's field for field apart from timing (seconds_per_epoch) and the
`test_split` record, which then says "opened" and when.

Readers that need test numbers call `refuse_sealed` (or `sealed_message`) first; `msakit eval`,
`predict` and `robustness` refuse the test split of a checkpoint inside a sealed run
(`check_split_open`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msakit.errors import DataError

if TYPE_CHECKING:
    from msakit.training.trainer import RunResult

SEAL_KEY = "test_split"  # results.json: the seal record (absent in a plain run)
SEALED, OPENED = "sealed", "opened"


def now() -> str:
    """UTC time as ISO 8601 to the second, e.g. 2026-12-03T14:31:05Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Seal:
    """What a sealed run records so that `msakit test` can open it later."""

    data: str  # the dataset spec the run was trained on (`--data`), reloaded to open the test split
    sealed_at: str = field(default_factory=now)  # when training started; kept across --resume

    def record(self, out_dir: Path, *, eval_batch_size: int, device: str) -> dict[str, Any]:
        return {
            "state": SEALED,
            "sealed_at": self.sealed_at,
            "trained_at": now(),  # when results.json was last written (the last finished seed)
            "data": self.data,
            "eval_batch_size": eval_batch_size,  # the trainer's evaluation batch: some models depend on it
            "device": device,
            "open_with": f"msakit test {out_dir}",
        }


def read_results(run: Path) -> dict[str, Any]:
    """RUN/results.json as a dict; DataError naming the file when it is missing or not a run's results."""
    path = Path(run) / "results.json"
    if not path.is_file():
        raise DataError("not a run folder: no results.json (written by `msakit train`)", path=path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not readable JSON ({exc})", path=path) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("seeds"), list):
        raise DataError("not a `msakit train` results file (no list of seeds)", path=path, field="seeds")
    return payload


def seal_state(payload: dict[str, Any]) -> str | None:
    """ "sealed", "opened", or None for a run that was never sealed."""
    record = payload.get(SEAL_KEY)
    return record.get("state") if isinstance(record, dict) else None


def sealed_message(run: Path) -> str | None:
    """One line saying RUN's test split is sealed (and how to open it), or None when it is not."""
    try:
        payload = read_results(run)
    except DataError:
        return None  # not a run's results: the reader reports what it cannot read
    if seal_state(payload) != SEALED:
        return None
    return (
        f"{Path(run) / 'results.json'}: the test split of this run is sealed (msakit train --seal-test); "
        f"choose on validation, then open it with `msakit test {run}`"
    )


def refuse_sealed(runs: Any, reader: str) -> None:
    """Exit 2 with one line on stderr when any of `runs` (paths) is a sealed run."""
    for run in runs:
        message = sealed_message(Path(run))
        if message:
            print(f"{reader}: error: {message}", file=sys.stderr)
            raise SystemExit(2)


def check_split_open(checkpoint: Path, split: str) -> None:
    """DataError when `split` is "test" and CHECKPOINT lies in a run whose test split is sealed.

    `msakit eval`, `predict` and `robustness` read a checkpoint, not a run, and default to the test
    split, so without this the commonest command would open the seal; a checkpoint sits at
    RUN/seedN/best or, for an ensemble member, RUN/seedN/memberJ/best.
    """
    if split != "test":
        return
    for run in list(Path(checkpoint).resolve().parents)[:3]:
        if sealed_message(run):
            raise DataError(
                f"checkpoint {checkpoint} belongs to a run whose test split is sealed (msakit train --seal-test); "
                f"use --split valid, or open the test split with `msakit test {run}` once the choice is made",
                path=run / "results.json",
                field=SEAL_KEY,
            )


def check_resume(out_dir: Path, *, sealed: bool) -> None:
    """Before a --resume writes anything: a sealed run resumes only sealed, and a run whose test split
    was already evaluated cannot be sealed afterwards."""
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        return
    payload = read_results(out_dir)
    state = seal_state(payload)
    if state == SEALED and not sealed:
        raise DataError(
            "this run's test split is sealed; resume it with --seal-test, or open it with "
            f"`msakit test {out_dir}` once the validation choice is made",
            path=path,
            field=SEAL_KEY,
        )
    if sealed and state != SEALED and any("test" in s for s in payload["seeds"] if isinstance(s, dict)):
        raise DataError(
            "this run's test split was already evaluated, so --seal-test cannot hide it; "
            "resume without --seal-test, or train a sealed run into a new --out",
            path=path,
            field="seeds",
        )


def previous_seal_time(out_dir: Path) -> str | None:
    """`sealed_at` of a sealed run being resumed (so the record keeps when training first started)."""
    try:
        record = read_results(out_dir).get(SEAL_KEY)
    except DataError:
        return None
    return record.get("sealed_at") if isinstance(record, dict) and record.get("state") == SEALED else None


def open_test(run: Path, *, data: str | None = None, device: str | None = None) -> tuple[RunResult, str]:
    """Open the sealed test split of `run`: (the completed result, its seal state before this call).

    State "opened" or None (never sealed): nothing is evaluated or written; the result is read back
    from results.json. State "sealed": every seed's RUN/seedN/best is evaluated once on test and
    results.json is rewritten once, atomically, after all seeds (a failure leaves it as it was).
    """
    from msakit.data import load_dataset
    from msakit.io import atomic_write_json
    from msakit.training.checkpoint import load_checkpoint
    from msakit.training.diagnostics import diagnose_run
    from msakit.training.distributed import resolve_device
    from msakit.training.trainer import result_from_dict, score_test_split

    run = Path(run)
    payload = read_results(run)
    path = run / "results.json"
    state = seal_state(payload)
    if state != SEALED:
        if any(not isinstance(s, dict) or "test" not in s for s in payload["seeds"]):
            raise DataError("a seed has no test metrics and the run is not sealed", path=path, field="seeds")
        return result_from_dict(payload), state or "plain"
    record = dict(payload[SEAL_KEY])
    planned, done = payload.get("seeds_planned"), [s.get("seed") for s in payload["seeds"]]
    if planned is not None and list(planned) != done:
        raise DataError(
            f"{len(done)} of the {len(planned)} planned seeds finished; finish the run first "
            "(msakit train ... --resume --seal-test with the same options)",
            path=path,
            field="seeds_planned",
        )
    checkpoints = [run / f"seed{seed}" / "best" for seed in done]
    for best in checkpoints:  # all of them before any evaluation: nothing is written on a missing one
        if not (best / "config.json").is_file():
            raise DataError("missing seed checkpoint (no config.json)", path=best)
    dataset = load_dataset(data or record["data"])
    if dataset.info.name != payload["dataset"]:
        raise DataError(
            f"dataset {dataset.info.name!r}, but the run was trained on {payload['dataset']!r}",
            path=data or record["data"],
            field="data",
        )
    target = resolve_device(device or record.get("device") or "auto")
    result = result_from_dict(payload)
    for seed, best in zip(result.seeds, checkpoints, strict=True):
        model, _ = load_checkpoint(best, map_location=target)
        seed.test = score_test_split(
            model, dataset, result.metric_set, batch_size=int(record["eval_batch_size"]), device=target
        )
    result.warnings = diagnose_run(result, dataset, device=target)
    record.pop("open_with", None)
    record.update(state=OPENED, opened_at=now())
    extra = {k: payload[k] for k in ("seeds_planned",) if k in payload}
    atomic_write_json(path, {**result.to_dict(), **extra, SEAL_KEY: record})
    return result, SEALED


__all__ = [
    "OPENED",
    "SEALED",
    "SEAL_KEY",
    "Seal",
    "check_resume",
    "check_split_open",
    "open_test",
    "read_results",
    "refuse_sealed",
    "seal_state",
    "sealed_message",
]
