"""Hyper-parameter search with Optuna, on the validation split only.

The search space of a (model, trainer) pair is read from the config dataclasses: every
field declared with `msakit.config.tunable(...)` is searched over its declared range;
`space_overrides` narrows, widens, adds or drops fields. Each trial trains the model
with the sampled configuration over the tuning seeds on a copy of the dataset that has
no test split, so nothing in a search can look at test; its objective is the mean over
seeds of the best validation score of the trainer's selection metric (MAE for MOSI-style
regression, accuracy for classification; `objective` may name another metric, and `cv=K`
scores a trial by K-fold cross-validation over the pooled train + valid splits instead, for
datasets whose validation split is too small to choose on). After every epoch the trainer's validation
metric is reported to Optuna through an engine callback, and a pruner (`PRUNERS`: the
MedianPruner by default, or Hyperband / successive halving, which stop weak trials
earlier) stops trials that fall behind earlier trials at the same epoch.

The study lives in an Optuna RDB storage, by default `RUN/study.db` (SQLite): a stopped
search resumes where it was, and several processes (or machines, with a PostgreSQL URL)
can work on one study at once; `jobs=N` starts N - 1 worker processes on this machine
that share the study with this one (each loads the dataset once and trains on one
thread). `--trials N` is the number of finished trials (complete or pruned) the study
should hold in total, counted across every process and every resume. The best
configuration is kept in `RUN/best.yaml`, a preset `train --preset` reads.

Degenerate-training warnings (`msakit.training.diagnostics`) are not printed per trial:
each complete trial keeps its own in the study (user attribute "warnings") and the
search ends with one summary line per kind of warning (`summarise_warnings`), naming
how many trials had it and whether the best trial is one of them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import sys
import time
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from msakit.config import SearchRange, TrainConfig, apply_overrides, parse_override, search_ranges
from msakit.data.core import MSADataset
from msakit.data.folds import cross_validation_folds
from msakit.errors import ConfigError, TrainingError
from msakit.io import atomic_write_text
from msakit.registry import build_config, get_model_class

OWNERS = ("model", "train")
_SPEC_KEYS = {"low", "high", "log", "step", "choices"}
# trainer fields that belong to the search run, not to the configuration it chooses
_NOT_IN_PRESET = ("seeds", "progress", "tensorboard", "device", "num_workers", "log_every")


@dataclass(frozen=True)
class Param:
    """One searched field: `owner` is "model" or "train"."""

    owner: str
    name: str
    range: SearchRange
    kind: type  # int | float | str | bool, from the field's annotation

    @property
    def key(self) -> str:
        return f"{self.owner}.{self.name}"


def search_space(
    model: str,
    space_overrides: Mapping[str, SearchRange | None] | None = None,
    *,
    fixed: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Param]:
    """`owner.field` -> Param: the declared ranges, then `space_overrides` (None drops a field).

    Keys of `space_overrides` are `model.x`, `train.x` or a bare `x` that names a field of
    exactly one of the two configs. Fields fixed in `fixed` (a preset or -m/-t) are not
    searched unless `space_overrides` names them with a range: an explicit range wins, so a
    study on top of a preset can revisit the preset's own values (the preset's value is then
    only the base the other fields start from). ConfigError names an unknown field or a range
    its type cannot take.
    """
    classes = {"model": get_model_class(model).config_class, "train": TrainConfig}
    defaults = {"model": build_config(model), "train": TrainConfig()}
    ranges = {f"{o}.{n}": r for o in OWNERS for n, r in search_ranges(classes[o]).items()}
    explicit: set[str] = set()
    for raw_key, spec in (space_overrides or {}).items():
        key = _qualify(raw_key, classes, model)
        if spec is None:
            ranges.pop(key, None)
        else:
            ranges[key] = spec
            explicit.add(key)
    fixed = fixed or {}
    space: dict[str, Param] = {}
    for key, spec in ranges.items():
        owner, name = key.split(".", 1)
        if name in fixed.get(owner, {}) and key not in explicit:
            continue
        kind = _field_kind(classes[owner], name, key)
        owner_label = f"model {model!r}" if owner == "model" else "trainer"
        probes = list(spec.choices) if spec.choices is not None else [spec.low, spec.high]
        if kind is int and spec.choices is None:
            if not all(float(typing.cast(float, v)).is_integer() for v in probes):
                raise ConfigError(f"search space: range of {key} needs integer bounds, got {spec.low}:{spec.high}")
            probes = [int(typing.cast(float, v)) for v in probes]
        for value in probes:  # each end / choice must be a value the field accepts
            apply_overrides(defaults[owner], {name: value}, owner=f"search space of {owner_label}")
        space[key] = Param(owner, name, spec, kind)
    return space


def _qualify(raw_key: str, classes: Mapping[str, type], model: str) -> str:
    names = {o: {f.name for f in dataclasses.fields(c)} for o, c in classes.items()}
    owner, dot, name = raw_key.partition(".")
    if dot and owner in OWNERS:
        if name not in names[owner]:
            raise ConfigError(f"search space names unknown {owner} field {name!r} (model {model!r})")
        return raw_key
    hits = [o for o in OWNERS if raw_key in names[o]]
    if not hits:
        raise ConfigError(
            f"search space names unknown field {raw_key!r}: not a field of model {model!r} nor of the trainer"
        )
    if len(hits) > 1:
        raise ConfigError(f"search space: field {raw_key!r} is ambiguous; write model.{raw_key} or train.{raw_key}")
    return f"{hits[0]}.{raw_key}"


def _field_kind(config_class: type, name: str, key: str) -> type:
    hint = typing.get_type_hints(config_class)[name]
    if hint not in (int, float, str, bool):
        raise ConfigError(f"search space: cannot search {key} (type {hint}); only int, float, str and bool fields")
    return typing.cast(type, hint)


def parse_space_option(text: str) -> tuple[str, SearchRange | None]:
    """`key=low:high[:log]`, `key=a,b,c` (choices) or `key=none` (do not search it) from the CLI."""
    if "=" not in text:
        raise ConfigError(f"--space {text!r} must look like key=low:high[:log], key=a,b,c or key=none")
    key, raw = (s.strip() for s in text.split("=", 1))
    if raw.lower() == "none":
        return key, None
    if ":" in raw:
        parts = raw.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise ConfigError(f"--space {text!r}: a range is low:high or low:high:log")
        low, high = (parse_override(f"v={p}")[1] for p in parts[:2])
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"--space {text!r}: low and high must be numbers")
        return key, SearchRange(low=low, high=high, log=len(parts) == 3)
    return key, SearchRange(choices=tuple(parse_override(f"v={c}")[1] for c in raw.split(",")))


def load_space_file(path: str | Path) -> dict[str, SearchRange | None]:
    """A YAML search space: `{model: {field: {low, high, log, step} | {choices: [...]} | null}, train: {...}}`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read search space: {exc}") from exc
    if not isinstance(data, dict) or set(data) - set(OWNERS):
        raise ConfigError(f"{path}: a search space has only the sections 'model' and 'train'")
    out: dict[str, SearchRange | None] = {}
    for owner, fields in data.items():
        for name, spec in (fields or {}).items():
            if spec is not None and (
                not isinstance(spec, dict) or set(spec) - {"low", "high", "log", "step", "choices"}
            ):
                raise ConfigError(f"{path}: {owner}.{name} must be null or a mapping of low/high/log/step/choices")
            if spec is None:
                out[f"{owner}.{name}"] = None
                continue
            choices = spec.get("choices")
            out[f"{owner}.{name}"] = SearchRange(
                low=spec.get("low"),
                high=spec.get("high"),
                log=bool(spec.get("log", False)),
                step=spec.get("step"),
                choices=tuple(choices) if choices is not None else None,
            )
    return out


def suggest(trial: Any, space: Mapping[str, Param]) -> dict[str, dict[str, Any]]:
    """{"model": {...}, "train": {...}}: one value per searched field, drawn by the trial's sampler."""
    chosen: dict[str, dict[str, Any]] = {o: {} for o in OWNERS}
    for key, p in space.items():
        r = p.range
        if r.choices is not None:
            value = trial.suggest_categorical(key, list(r.choices))
        elif p.kind is int:
            value = trial.suggest_int(key, int(r.low), int(r.high), step=int(r.step or 1), log=r.log)  # type: ignore[arg-type]
        else:
            value = trial.suggest_float(key, float(r.low), float(r.high), step=r.step, log=r.log)  # type: ignore[arg-type]
        chosen[p.owner][p.name] = value
    return chosen


def default_params(
    model: str, space: Mapping[str, Param], train: TrainConfig, model_overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """`owner.field` -> the configuration's current value, for the searched fields whose range holds it."""
    current = {"model": build_config(model, model_overrides), "train": train}
    out: dict[str, Any] = {}
    for key, p in space.items():
        value, r = getattr(current[p.owner], p.name), p.range
        inside = value in r.choices if r.choices is not None else r.low <= value <= r.high
        if inside:
            out[key] = value
    return out


class PruningCallback:
    """Engine callback: reports each epoch's validation score to the trial; raises TrialPruned when weak.

    Seeds run one after the other, so seed i's epoch e is step i * epochs + e: trials are
    compared at the same seed and epoch. Under cross-validation the folds run one after the
    other too, and fold f's callback starts at step `offset` = f * len(seeds) * epochs.
    """

    def __init__(self, trial: Any, select_key: str, seeds: Sequence[int], epochs: int, *, offset: int = 0) -> None:
        self.trial, self.select_key, self.seeds, self.epochs = trial, select_key, list(seeds), epochs
        self.offset = offset

    def on_validation_end(self, state: Any, epoch: int, metrics: Mapping[str, float]) -> None:
        import optuna

        value = float(metrics[self.select_key])
        if math.isnan(value):
            return
        step = self.offset + self.seeds.index(state.seed) * self.epochs + epoch
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.select_key} {value:.4f} at seed {state.seed} epoch {epoch}")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError('msakit tune needs Optuna: pip install "msakit[tune]" (or pip install optuna)') from exc
    return optuna


def validation_only(dataset: MSADataset) -> MSADataset:
    """The dataset without its test split (tuning must not be able to look at it)."""
    return dataclasses.replace(dataset, splits={k: v for k, v in dataset.splits.items() if k != "test"})


def open_storage(url: str) -> Any:
    """An Optuna RDB storage; ConfigError (one line) when it cannot be reached or opened."""
    optuna = _optuna()

    kwargs: dict[str, Any] = {"heartbeat_interval": 30, "grace_period": 120}
    if url.startswith("sqlite:"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # wait for another process's write lock
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats (to fail the trials of a killed process) are "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as exc:  # sqlalchemy / driver errors have no common base we could name here
            racing = any(m in str(exc) for m in ("already exists", "UNIQUE constraint", "locked"))
            if racing and attempt < 4:  # workers started together race to create the schema
                time.sleep(0.2 * (attempt + 1))
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot open study storage {url!r}: {first}") from None
    raise AssertionError("unreachable")


PRUNERS = ("median", "hyperband", "sha", "none")


def make_pruner(name: str, *, steps: int) -> Any:
    """An Optuna pruner by name; a trial reports one step per (seed, epoch), `steps` in all.

    median: MedianPruner, 5 startup trials, `n_warmup_steps` 2 (compares with the median of
    earlier trials at the same step, and may stop a trial from its 2nd report, i.e. after the
    first seed's 2nd epoch, on); `median:W` from its W-th report on, for models that peak
    late: with 2, a tssp_msa study on MOSI-e5 stopped 535 of its 551 pruned trials within the
    first four epochs while the model peaks at epochs 3-6.
    hyperband / sha: Hyperband / asynchronous successive halving over epochs (minimum 1 epoch,
    reduction factor 3): a trial must be in the top third at each rung to go on, so weak
    trials stop after 1, 3 or 9 epochs. none: no pruning.
    """
    optuna = _optuna()
    kind, colon, arg = name.partition(":")
    if colon and kind != "median":
        raise ConfigError(f"pruner {name!r}: only median takes a warm-up (median:W)")
    if kind == "median":
        if colon and not (arg.isdigit() and int(arg) >= 0):
            raise ConfigError(f"pruner {name!r}: the warm-up W of median:W must be an integer >= 0")
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=int(arg) if colon else 2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(steps, 1), reduction_factor=3)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")


@dataclass
class TuneResult:
    study_name: str
    storage: str
    direction: str
    select_key: str
    best_value: float
    best_params: dict[str, Any]
    preset: dict[str, dict[str, Any]]
    n_complete: int
    n_pruned: int
    n_failed: int
    seconds: float
    warnings: list[str] = dataclasses.field(default_factory=list)  # summarise_warnings over the study


def tune(
    model: str,
    dataset: MSADataset,
    *,
    out_dir: str | Path,
    trials: int,
    data_label: str = "",
    storage: str | None = None,
    study_name: str | None = None,
    timeout: float | None = None,
    seeds: Sequence[int] = (1,),
    model_overrides: Mapping[str, Any] | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    space_overrides: Mapping[str, SearchRange | None] | None = None,
    sampler_seed: int | None = None,
    pruner: Any = None,
    progress: bool = True,
    jobs: int = 1,
    data_spec: str | None = None,
    cv: int = 0,
    objective: str | None = None,
) -> TuneResult:
    """Run (or resume, or join) the study until it holds `trials` finished trials; write RUN/best.yaml.

    `pruner` is a name in `PRUNERS` or an Optuna pruner (default: "median"). `jobs` > 1
    starts `jobs - 1` worker processes sharing the study; they load the dataset from
    `data_spec` (what `load_dataset` reads), since a process cannot share this one's arrays.

    `cv` = K >= 2 scores each trial by K-fold cross-validation over the pooled train + valid
    splits (`msakit.data.folds`) instead of on the validation split: K fits per seed, each
    early-stopped on its own held-out fold, the objective the mean over folds and seeds. For
    small datasets, where one validation split of a few dozen samples is too noisy to choose
    on. `objective` is the metric the study maximises or minimises (default: the trainer's
    selection metric, which also keeps driving early stopping); each trial also keeps every
    metric's mean over its fits (user attribute "mean_valid"), for rules that guard one
    metric while choosing on another.
    """
    optuna = _optuna()

    from msakit.metrics import get_metric_set
    from msakit.training.trainer import Trainer

    out = Path(out_dir)
    base_model = dict(model_overrides or {})
    base_train = {**dict(train_overrides or {}), "seeds": tuple(seeds), "progress": False, "tensorboard": False}
    cfg = apply_overrides(TrainConfig(), base_train, owner="trainer")
    if cfg.ensemble >= 2:  # K fits per seed would report K runs of epochs to one pruning curve, at K× the cost
        raise ConfigError(
            f"tune: train option 'ensemble' ({cfg.ensemble}) is not searched with; tune the member model, then "
            "compare -t ensemble=K against it on validation with msakit train (docs/tuning.md)"
        )
    build_config(model, {**dataset.info.model_overrides(), **base_model})  # fail before any trial
    space = search_space(model, space_overrides, fixed={"model": base_model, "train": dict(train_overrides or {})})
    if not space:
        raise ConfigError(f"nothing to search for model {model!r} (every tunable field is fixed or dropped)")
    metric_set = get_metric_set(dataset.info.metric_set)
    select_key = cfg.select_metric or metric_set.select_key
    if select_key not in metric_set.higher_is_better:
        raise ConfigError(f"trainer: select_metric {select_key!r} is not a {metric_set.name} metric")
    objective_key = objective or select_key
    if objective_key not in metric_set.higher_is_better:
        raise ConfigError(
            f"tune: objective {objective_key!r} is not a {metric_set.name} metric "
            f"(one of {', '.join(metric_set.higher_is_better)})"
        )
    folds = cross_validation_folds(dataset, cv) if cv else [validation_only(dataset)]  # refuses K < 2 in one line
    direction: typing.Literal["minimize", "maximize"] = (
        "maximize" if metric_set.higher_is_better[objective_key] else "minimize"
    )
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or f"{model}-{data_label or dataset.info.name}"
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if jobs > 1 and not data_spec:
        raise ConfigError("--jobs > 1 needs the dataset as a path or spec the worker processes can load")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner_name = pruner if isinstance(pruner, str) or pruner is None else None
    if jobs > 1 and pruner_name is None:
        raise ConfigError("--jobs > 1 takes the pruner by name (one of PRUNERS), so every process builds the same")
    if pruner is None or isinstance(pruner, str):
        pruner = make_pruner(pruner or "median", steps=len(folds) * len(cfg.seeds) * cfg.epochs)
    out.mkdir(parents=True, exist_ok=True)  # after every check above: a refused search writes nothing
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(url),
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        pruner=pruner,
        direction=direction,
        load_if_exists=True,
    )
    _check_study(
        study,
        model=model,
        data=data_label or dataset.info.name,
        select_key=objective_key,
        direction=direction,
        scored_on=f"{cv}-fold cross-validation over train + valid" if cv else "the validation split",
    )
    if not study.trials:  # a fresh study first tries the defaults, so it never ends worse than them
        study.enqueue_trial(default_params(model, space, cfg, {**dataset.info.model_overrides(), **base_model}))
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    start = time.perf_counter()

    def score_trial(trial: Any) -> float:
        chosen = suggest(trial, space)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        fits, best_epochs, trial_warnings = [], [], []
        for f, data in enumerate(folds):  # one fold: the validation split itself
            trainer = Trainer(
                model,
                data,
                model_overrides={**base_model, **chosen["model"]},
                train_config=apply_overrides(cfg, chosen["train"], owner="trainer"),
                out_dir=out / "trials" / f"{trial.number:04d}" / (f"fold-{f}" if cv else ""),
                callbacks=[
                    PruningCallback(trial, objective_key, cfg.seeds, cfg.epochs, offset=f * len(cfg.seeds) * cfg.epochs)
                ],
                report_warnings=False,  # summarised once per study, not printed per trial
            )
            with warnings.catch_warnings():  # the test split is left out on purpose
                warnings.filterwarnings("ignore", message=".*has no test split", category=UserWarning)
                result = trainer.fit()
            fits += [s.valid for s in result.seeds]
            best_epochs += [s.best_epoch for s in result.seeds]
            trial_warnings += list(result.warnings)
        scores = [v[objective_key] for v in fits]
        trial.set_user_attr("valid_per_seed", scores)  # fold-major under cv: fold 0's seeds, then fold 1's
        trial.set_user_attr("best_epochs", best_epochs)
        trial.set_user_attr("warnings", trial_warnings)
        trial.set_user_attr("mean_valid", {k: float(np.mean([v[k] for v in fits])) for k in fits[0]})
        return float(sum(scores) / len(scores))

    def report(study: Any, trial: Any) -> None:
        finished = len(study.get_trials(deepcopy=False, states=done_states))
        try:
            best = f"best {objective_key} {study.best_value:.4f} (trial {study.best_trial.number})"
            write_best_preset(out / "best.yaml", study, model=model, base_model=base_model, base_train=base_train)
        except ValueError:  # no complete trial yet
            best = "no complete trial yet"
        if trial.state == optuna.trial.TrialState.COMPLETE:
            what = f"{objective_key} {trial.value:.4f}"
            if trial.user_attrs.get("warnings"):
                what += f" ({len(trial.user_attrs['warnings'])} degenerate-training warnings, summarised at the end)"
        elif trial.state == optuna.trial.TrialState.PRUNED:
            what = f"pruned at step {trial.last_step}"
        else:
            what = trial.state.name.lower()
        line = f"[tune {name}] trial {trial.number} {what}"
        if progress:
            print(f"{line}; {finished}/{trials} finished; {best}; {time.perf_counter() - start:.0f} s", flush=True)

    remaining = trials - len(study.get_trials(deepcopy=False, states=done_states))
    workers = []
    if remaining > 1 and jobs > 1:  # the study exists (and holds the defaults' trial) before any worker opens it
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch or SQLite state
        worker_kwargs = {
            "model": model,
            "data_spec": data_spec,
            "out_dir": str(out),
            "trials": trials,
            "data_label": data_label,
            "storage": url,
            "study_name": name,
            "timeout": timeout,
            "seeds": tuple(seeds),
            "model_overrides": base_model,
            "train_overrides": dict(train_overrides or {}),
            "space_overrides": dict(space_overrides or {}),
            "pruner": pruner_name,
            "cv": cv,
            "objective": objective,
        }
        for k in range(min(jobs, remaining) - 1):  # each worker its own sampler seed, or they suggest alike
            seed_k = None if sampler_seed is None else sampler_seed + 1 + k
            proc = context.Process(target=_worker, kwargs={**worker_kwargs, "sampler_seed": seed_k})
            proc.start()
            workers.append(proc)
    if remaining > 0:
        study.optimize(
            score_trial,
            n_trials=remaining,
            timeout=timeout,
            catch=(TrainingError,),  # a diverging configuration is a failed trial, not a failed search
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=done_states), report],
        )
    elif progress:
        print(f"[tune {name}] the study already holds {trials} finished trials; nothing to run", file=sys.stderr)
    for proc in workers:
        proc.join()
    failed = [p.exitcode for p in workers if p.exitcode != 0]
    if failed:
        raise TrainingError(f"{len(failed)} of {len(workers)} tuning worker processes failed (exit codes {failed})")
    all_trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in all_trials) for s in optuna.trial.TrialState}
    try:
        best_trial = study.best_trial
    except ValueError:
        raise TrainingError(f"study {name!r} has no complete trial (all pruned or failed)") from None
    preset = write_best_preset(out / "best.yaml", study, model=model, base_model=base_model, base_train=base_train)
    return TuneResult(
        study_name=name,
        storage=url,
        direction=direction,
        select_key=objective_key,
        best_value=float(best_trial.value),
        best_params=dict(best_trial.params),
        preset=preset,
        n_complete=counts[optuna.trial.TrialState.COMPLETE],
        n_pruned=counts[optuna.trial.TrialState.PRUNED],
        n_failed=counts[optuna.trial.TrialState.FAIL],
        seconds=time.perf_counter() - start,
        warnings=summarise_warnings(all_trials, best_number=best_trial.number),
    )


def _warning_kind(message: str) -> str:
    """A warning with its seed and numbers blanked: messages of one kind share it."""
    return re.sub(r"\d+(?:\.\d+)?(?:e-?\d+)?", "#", re.sub(r"^seed \d+: ", "", message))


def summarise_warnings(trials: Sequence[Any], *, best_number: int | None = None) -> list[str]:
    """One line per kind of degenerate-training warning over the study's complete trials.

    Each line says in how many complete trials (and which) it fired, whether the best trial
    is among them, and quotes one instance (the best trial's when it has one).
    """
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    kinds: dict[str, dict[int, str]] = {}  # kind -> trial number -> first message of that kind
    for t in complete:
        for message in t.user_attrs.get("warnings", []):
            kinds.setdefault(_warning_kind(message), {}).setdefault(t.number, message)
    lines = []
    for by_trial in kinds.values():
        numbers = sorted(by_trial)
        shown = ", ".join(map(str, numbers[:8])) + (", ..." if len(numbers) > 8 else "")
        best = best_number is not None and best_number in by_trial
        quoted = best_number if best_number is not None and best else numbers[0]
        where = "the best trial among them" if best else "not the best trial"
        lines.append(
            f"in {len(numbers)} of {len(complete)} complete trials ({shown}; {where}), "
            f"e.g. trial {quoted}: {by_trial[quoted]}"
        )
    return lines


def _worker(*, data_spec: str, **kwargs: Any) -> None:
    """One extra process of `tune(jobs=N)`: loads the dataset itself and joins the study."""
    from msakit.data import load_dataset

    tune(dataset=load_dataset(data_spec), progress=False, jobs=1, **kwargs)


def _check_study(study: Any, **attrs: str) -> None:
    """A study remembers what it tunes; joining it with another model, data or metric is an error."""
    for key, value in attrs.items():
        held = study.user_attrs.get(key)
        if held is None:
            study.set_user_attr(key, value)
        elif held != value:
            raise ConfigError(
                f"study {study.study_name!r} tunes {key} {held!r}, not {value!r}; choose another --study or --out"
            )


def write_best_preset(
    path: Path,
    study: Any,
    *,
    model: str,
    base_model: Mapping[str, Any],
    base_train: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """RUN/best.yaml: the fixed overrides plus the best trial's values, with how they were chosen."""
    best = study.best_trial
    preset: dict[str, dict[str, Any]] = {"model": dict(base_model), "train": {}}
    preset["train"] = {k: v for k, v in base_train.items() if k not in _NOT_IN_PRESET}
    for key, value in best.params.items():
        owner, name = key.split(".", 1)
        preset[owner][name] = value
    preset = {k: _plain(v) for k, v in preset.items() if v}
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    header = (
        f"# {model}: chosen by `msakit tune` on the validation split only (study {study.study_name!r}).\n"
        f"# Scored on {study.user_attrs.get('scored_on', 'the validation split')}.\n"
        f"# Best trial {best.number}: mean validation {study.user_attrs.get('select_key', 'score')} "
        f"{best.value:.4f} over seeds {list(base_train.get('seeds', ()))}; the study holds "
        f"{states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, {states.count('FAIL')} failed trials.\n"
        f"#   msakit train --model {model} --data {study.user_attrs.get('data', 'DATA')} --preset {path}\n"
    )
    atomic_write_text(path, header + yaml.safe_dump(preset, sort_keys=True))
    return preset


def _plain(section: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}


__all__ = [
    "PRUNERS",
    "Param",
    "PruningCallback",
    "TuneResult",
    "load_space_file",
    "make_pruner",
    "open_storage",
    "parse_space_option",
    "search_space",
    "suggest",
    "summarise_warnings",
    "tune",
    "validation_only",
    "write_best_preset",
]
