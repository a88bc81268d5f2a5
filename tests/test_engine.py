"""The engine's events, the data module, and crash-safe, clearly refused checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from msakit.data import MSADataset
from msakit.data.core import DataModule, RandomBatches, SplitData, shard
from msakit.errors import DataError, TrainingError
from msakit.io import atomic_dir, recover_dir
from msakit.training import Callback, FitState, Trainer, train_config_from
from msakit.training.checkpoint import FORMAT, read_checkpoint_meta

EVENTS = ("on_fit_start", "on_epoch_start", "on_epoch_end", "on_validation_end", "on_checkpoint", "on_fit_end")


def _cfg(**kw: object):  # type: ignore[no-untyped-def]
    return train_config_from({"epochs": 3, "seeds": [1], "progress": False, "tensorboard": False, **kw})


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.backwards = 0
        self.metrics: list[dict[str, float]] = []

    def on_fit_start(self, state: FitState) -> None:
        self.events.append(("on_fit_start", state.epoch))

    def on_epoch_start(self, state: FitState, epoch: int) -> None:
        self.events.append(("on_epoch_start", epoch))

    def on_after_backward(self, state: FitState, batch: object) -> None:
        grads = [p.grad for p in state.model.parameters() if p.grad is not None]
        assert grads, "after_backward comes after the gradients exist"
        self.backwards += 1

    def on_epoch_end(self, state: FitState, epoch: int, train_losses: dict[str, float]) -> None:
        assert train_losses["total"] > 0
        self.events.append(("on_epoch_end", epoch))

    def on_validation_end(self, state: FitState, epoch: int, metrics: dict[str, float]) -> None:
        self.metrics.append(metrics)
        self.events.append(("on_validation_end", epoch))

    def on_checkpoint(self, state: FitState, path: Path) -> None:
        assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
        self.events.append(("on_checkpoint", epoch_of(path)))

    def on_fit_end(self, state: FitState) -> None:
        self.events.append(("on_fit_end", state.epoch))


def epoch_of(path: Path) -> int:
    meta = read_checkpoint_meta(path)
    return int(meta.get("epoch") or meta["fit_state"]["epoch"])


def test_events_in_order_and_validation_metrics_are_what_selection_used(
    tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    rec = Recorder()
    result = Trainer("text_only", tiny_dataset, train_config=_cfg(batch_size=8), out_dir=tmp_path, callbacks=[rec])
    seed = result.fit().seeds[0]
    names = [e for e, _ in rec.events]
    assert names[0] == "on_fit_start" and names[-1] == "on_fit_end"
    per_epoch = ["on_epoch_start", "on_epoch_end", "on_validation_end"]
    for epoch in (1, 2, 3):
        assert [e for e, n in rec.events if n == epoch and e in per_epoch] == per_epoch
        assert ("on_checkpoint", epoch) in rec.events  # `last` every epoch
    assert rec.backwards == 3 * 3  # 24 training samples / batch 8, 3 epochs
    maes = [m["MAE"] for m in rec.metrics]
    assert seed.best_epoch == 1 + maes.index(min(maes))
    assert seed.valid == rec.metrics[seed.best_epoch - 1]


def test_callback_exception_propagates_out_of_fit(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    class Pruned(Exception):
        pass

    class Pruner(Callback):
        def on_validation_end(self, state: FitState, epoch: int, metrics: dict[str, float]) -> None:
            if epoch == 2:
                raise Pruned(f"pruned at {epoch}")

    trainer = Trainer("text_only", tiny_dataset, train_config=_cfg(), out_dir=tmp_path, callbacks=[Pruner()])
    with pytest.raises(Pruned, match="pruned at 2"):
        trainer.fit()


def test_should_stop_ends_training_and_patience_is_early_stopping(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    class StopAfterTwo(Callback):
        def should_stop(self, state: FitState) -> bool:
            return state.epoch >= 2

    stopped = Trainer(
        "text_only", tiny_dataset, train_config=_cfg(epochs=5), out_dir=tmp_path / "a", callbacks=[StopAfterTwo()]
    ).fit()
    assert stopped.seeds[0].epochs_run == 2
    # patience 0: the protocol stops right after the first epoch without improvement
    patient = Trainer("text_only", tiny_dataset, train_config=_cfg(epochs=6, patience=1), out_dir=tmp_path / "b").fit()
    log = (tmp_path / "b" / "seed1" / "log.csv").read_text().splitlines()
    assert len(log) - 1 == patient.seeds[0].epochs_run
    assert patient.seeds[0].epochs_run <= patient.seeds[0].best_epoch + 1


def test_results_json_plans_seeds(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    Trainer("text_only", tiny_dataset, train_config=_cfg(epochs=1, seeds=[3, 4]), out_dir=tmp_path).fit()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["seeds_planned"] == [3, 4] and [s["seed"] for s in results["seeds"]] == [3, 4]


def test_robustness_training_runs_the_trainer_protocol(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    from msakit.robustness.training import fit_with_robustness

    fit_with_robustness("text_only", tiny_dataset, out_dir=tmp_path, train_config=_cfg(epochs=1, seeds=[1, 2]))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["seeds_planned"] == [1, 2]  # the trainer's seed loop, not a copy of it
    for seed in (1, 2):
        assert json.loads((tmp_path / f"seed{seed}" / "mli.json").read_text())["steps"] == 1


# ---- data module ------------------------------------------------------------------------


def test_shard_splits_every_global_batch_and_weights_add_up() -> None:
    for n, world in [(8, 2), (7, 2), (5, 3), (1, 2)]:
        batch = list(range(100, 100 + n))
        parts = [shard(batch, r, world) for r in range(world)]
        real = [i for (idx, w) in parts if w > 0 for i in idx]
        assert real == batch  # each sample exactly once, in order
        loss = {i: float(i % 5) for i in batch}  # a per-sample loss
        rank_means = [w * sum(loss[i] for i in idx) / len(idx) for idx, w in parts]
        # DDP averages the ranks' (weighted) mean losses: that must be the whole batch's mean
        assert sum(rank_means) / world == pytest.approx(sum(loss.values()) / n)


def test_eval_slices_cover_each_sample_once(tiny_dataset: MSADataset) -> None:
    split = tiny_dataset.split("valid")
    seen: list[str] = []
    for rank in range(5):
        data = DataModule(tiny_dataset, batch_size=4, eval_batch_size=2, rank=rank, world_size=5)
        seen += [i for b in data.eval_batches(split) for i in b.ids]
    assert seen == split.ids


def test_sampler_is_pluggable(tiny_dataset: MSADataset) -> None:
    class Reversed:
        def batches(self, split: SplitData, batch_size: int, *, shuffle: bool, seed: int) -> list[list[int]]:
            order = list(range(len(split)))[::-1]
            return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    data = DataModule(tiny_dataset, batch_size=10, sampler=Reversed())
    loader, weights = data.train_batches(seed=0)
    ids = [i for b in loader for i in b.ids]
    assert ids == tiny_dataset.split("train").ids[::-1] and weights == [1.0, 1.0, 1.0]
    default = RandomBatches().batches(tiny_dataset.split("train"), 10, shuffle=True, seed=5)
    again = RandomBatches().batches(tiny_dataset.split("train"), 10, shuffle=True, seed=5)
    assert default == again and sorted(i for b in default for i in b) == list(range(24))


def test_world_larger_than_training_split_is_refused(tiny_dataset: MSADataset) -> None:
    with pytest.raises(DataError, match=r"world size 25 is larger than the training split \(24 samples\)"):
        DataModule(tiny_dataset, world_size=25)


def test_split_names_are_validated_when_read(tiny_dataset: MSADataset) -> None:
    splits = dict(tiny_dataset.splits)
    extra = MSADataset(tiny_dataset.info, {**splits, "test_2": splits["test"]})
    assert "test_2" in extra.splits
    with pytest.raises(DataError, match=r"split name '\.\./x'"):
        MSADataset(tiny_dataset.info, {**splits, "../x": splits["test"]})
    no_valid = MSADataset(tiny_dataset.info, {"train": splits["train"], "test": splits["test"]})
    with pytest.raises(DataError, match=r"no split 'valid'"):
        DataModule(no_valid)


def test_training_without_test_split_reports_no_test(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    splits = dict(tiny_dataset.splits)
    ds = MSADataset(tiny_dataset.info, {"train": splits["train"], "valid": splits["valid"]})
    with pytest.warns(UserWarning, match="no test split"):
        result = Trainer("text_only", ds, train_config=_cfg(epochs=1), out_dir=tmp_path).fit()
    assert result.seeds[0].test == {} and result.seeds[0].valid


# ---- checkpoints and resume -------------------------------------------------------------


def _partial_run(tiny_dataset: MSADataset, out: Path, epochs: int = 2) -> Path:
    Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=epochs), out_dir=out).fit()
    return out / "seed1" / "last"


def test_atomic_dir_is_invisible_until_complete(tmp_path: Path) -> None:
    target = tmp_path / "ck"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("new")
        assert not target.exists()
    assert (target / "a").read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) != oct(0o700)  # follows the umask, not mkdtemp's 0700


def test_resume_recovers_a_save_killed_between_renames(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    full = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=4), out_dir=tmp_path / "full").fit()
    last = _partial_run(tiny_dataset, tmp_path / "part")
    run = last.parent
    os.replace(last, run / ".last.old")  # the kill came after `last` moved aside, before the new one arrived
    (run / ".last.tmp-zzz").mkdir()  # and a stale temporary folder of another interrupted save
    (run / ".last.tmp-zzz" / "model.safetensors").write_bytes(b"half")
    rec = Recorder()
    resumed = Trainer(
        "late_fusion", tiny_dataset, train_config=_cfg(epochs=4), out_dir=tmp_path / "part", callbacks=[rec]
    )
    assert resumed.fit(resume=True).seeds[0].test == full.seeds[0].test
    assert [n for e, n in rec.events if e == "on_epoch_start"] == [3, 4]  # continued from the recovered epoch 2
    assert not list(run.glob(".last.*"))
    assert recover_dir(run / "missing") is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda last: (last / "optimizer.pt").unlink(), r"optimizer\.pt.*missing.*without --resume"),
        (
            lambda last: (last / "optimizer.pt").write_bytes((last / "optimizer.pt").read_bytes()[:200]),
            r"optimizer\.pt.*damaged or truncated",
        ),
        (lambda last: (last / "optimizer.pt").write_bytes(pickle.dumps({"optimizer": {}})), r"optimizer\.pt"),
        (lambda last: torch.save({"state": 1}, last / "optimizer.pt"), r"optimizer\.pt.*'optimizer'"),
        (
            lambda last: _edit_config(last, lambda m: m.pop("fit_state")),
            r"config\.json.*'fit_state'.*cannot be resumed",
        ),
        (
            lambda last: _edit_config(last, lambda m: m["fit_state"].update(epoch="two")),
            r"fit_state\.epoch must be a number",
        ),
        (lambda last: _edit_config(last, lambda m: m.update(format=FORMAT + 1)), r"format 3 is newer"),
    ],
    ids=["missing", "truncated", "plain-pickle", "no-optimizer-key", "no-fit-state", "bad-fit-state", "newer"],
)
def test_bad_resume_state_is_one_clear_error(tiny_dataset: MSADataset, tmp_path: Path, damage, message) -> None:  # type: ignore[no-untyped-def]
    last = _partial_run(tiny_dataset, tmp_path, epochs=1)
    damage(last)
    trainer = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=2), out_dir=tmp_path)
    with pytest.raises(DataError, match=message):
        trainer.fit(resume=True)


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (shutil.rmtree, ("/nonexistent-msakit-test",))


def test_malicious_optimizer_state_is_refused_without_weights_only_advice(
    tiny_dataset: MSADataset, tmp_path: Path
) -> None:
    last = _partial_run(tiny_dataset, tmp_path, epochs=1)
    torch.save({"optimizer": {}, "evil": _Evil()}, last / "optimizer.pt")
    trainer = Trainer("late_fusion", tiny_dataset, train_config=_cfg(epochs=2), out_dir=tmp_path)
    with pytest.raises(DataError) as info:
        trainer.fit(resume=True)
    text = str(info.value)
    assert "refused" in text and "weights_only" not in text and "\n" not in text


def test_format_1_checkpoint_still_loads(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    from msakit.training import load_checkpoint

    best = _partial_run(tiny_dataset, tmp_path, epochs=1).parent / "best"
    _edit_config(best, lambda m: m.pop("format"))
    model, meta = load_checkpoint(best)
    assert model.model_name == "late_fusion"
    assert meta["model"] == "late_fusion" and "format" not in meta


def test_divergence_names_epoch_and_step(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    class Explode(Callback):
        def on_epoch_start(self, state: FitState, epoch: int) -> None:
            if epoch == 2:
                for p in state.model.parameters():
                    p.data.fill_(float("nan"))

    trainer = Trainer(
        "text_only", tiny_dataset, train_config=_cfg(batch_size=8), out_dir=tmp_path, callbacks=[Explode()]
    )
    with pytest.raises(TrainingError, match=r"seed 1: loss became nan at epoch 2, step 4.*best.*intact"):
        trainer.fit()


def _edit_config(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads((folder / "config.json").read_text())
    edit(meta)
    (folder / "config.json").write_text(json.dumps(meta))


def test_precision_and_device_options_are_checked_before_training(
    tiny_dataset: MSADataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msakit.errors import ConfigError
    from msakit.training import distributed

    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: False)  # tests/test_cpu_bf16.py: the rest
    with pytest.raises(ConfigError, match=r"precision 'bf16' on CPU needs native bf16"):
        Trainer("text_only", tiny_dataset, train_config=_cfg(precision="bf16", device="cpu"))
    with pytest.raises(ConfigError, match=r"precision must be one of"):
        Trainer("text_only", tiny_dataset, train_config=_cfg(precision="fp8"))


def test_trainer_takes_the_sampler_by_name_or_object(tiny_dataset: MSADataset, tmp_path: Path) -> None:
    from msakit.errors import ConfigError

    class Forward:
        calls = 0

        def batches(self, split: SplitData, batch_size: int, *, shuffle: bool, seed: int) -> list[list[int]]:
            Forward.calls += 1
            return RandomBatches().batches(split, batch_size, shuffle=False, seed=seed)

    Trainer("text_only", tiny_dataset, train_config=_cfg(epochs=2), out_dir=tmp_path, sampler=Forward()).fit()
    assert Forward.calls == 2  # one epoch's order each
    with pytest.raises(DataError, match="needs a dialogue dataset"):
        Trainer("text_only", tiny_dataset, train_config=_cfg(epochs=1, sampler="dialogue"), out_dir=tmp_path).fit()
    with pytest.raises(ConfigError, match="sampler must be"):
        Trainer("text_only", tiny_dataset, train_config=_cfg(sampler="spiral"))
