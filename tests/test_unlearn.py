"""msakit unlearn / verify-certificate: deletion, certificate, tampering, bad requests."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from msakit.cli import main
from msakit.data import MSADataset, load_dataset, make_synthetic
from msakit.data.folder import write_folder
from msakit.data.synthetic import PRESETS
from msakit.training import Trainer, load_checkpoint, train_config_from
from msakit.unlearn import UnlearnSettings, read_certificate, unlearn
from msakit.unlearn.certificate import seal
from msakit.unlearn.head import augment, newton_removal, noise_scale
from msakit.unlearn.saliency import gaussian_sigma, select_and_update


def _to_folder(dataset: MSADataset, out: Path) -> Path:
    rows, mods = [], {}
    for m in dataset.info.modalities:
        values, lengths, ids = [], [], []
        for _name, split in dataset:
            arr = split.modalities[m]
            keep = arr.present.astype(bool)
            values.append(np.asarray(arr.values)[keep])
            lengths.append(arr.lengths[keep])
            ids += [i for i, k in zip(split.ids, keep, strict=True) if k]
        mods[m] = (np.concatenate(values).astype(np.float32), np.concatenate(lengths), ids)
    for name, split in dataset:
        rows += [{"id": i, "split": name, "label": float(y)} for i, y in zip(split.ids, split.labels, strict=True)]
    return write_folder(out, dataset.info, pd.DataFrame(rows), mods)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3-modality folder dataset and an MBD checkpoint trained on it for a few epochs."""
    root = tmp_path_factory.mktemp("unlearn")
    cfg = dataclasses.replace(PRESETS["clean"], sizes=(96, 32, 32), dims=(10, 6, 8), lengths=(5, 5, 4), seed=4)
    data = _to_folder(make_synthetic(cfg), root / "data")
    torch.manual_seed(0)
    train = train_config_from({"seeds": (1,), "epochs": 4, "progress": False, "tensorboard": False})
    overrides = {"hidden_dim": 16, "property_dim": 8}
    Trainer("mbd", load_dataset(data), model_overrides=overrides, train_config=train, out_dir=root / "run").fit()
    return data, root / "run" / "seed1" / "best"


def _unlearn(trained: tuple[Path, Path], out: Path, *extra: str) -> int:
    data, ckpt = trained
    args = ["unlearn", str(ckpt), "--modality", "visual", "--data", str(data), "--out", str(out)]
    return main([*args, "--saliency-samples", "12", *extra])


def _verify(cert: Path, ckpt: Path, *extra: str) -> int:
    return main(["verify-certificate", str(cert), "--checkpoint", str(ckpt), *extra])


def test_whole_modality_deletion_is_certified_and_verifies(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, ckpt = trained
    out = tmp_path / "forgot"
    assert _unlearn(trained, out) == 0
    cert = read_certificate(out / "certificate.json")
    assert cert["request"]["scope"] == "modality" and cert["removed"]["modalities_after"] == ["text", "audio"]
    assert any(k.startswith("encoders.visual.") for k in cert["removed"]["parameters_deleted"])
    model, meta = load_checkpoint(out)
    assert model.modalities == ("text", "audio") and meta["unlearning"]["modality"] == "visual"
    assert not [k for k in model.state_dict() if "visual" in k.split(".")]
    probe = cert["evidence"]["attack_feature_probe_r2"]
    assert probe["unlearned"] < probe["original"] - 0.2, probe  # the visual features are no longer recoverable
    assert cert["evidence"]["head_gradient_residual"] <= cert["calibration"]["head"]["gradient_residual_bound"]
    capsys.readouterr()
    assert _verify(out / "certificate.json", out, "--original", str(ckpt), "--data", str(data)) == 0
    report = capsys.readouterr().out
    assert "FAIL" not in report and "head is the certified minimiser" in report


def test_tampered_checkpoint_or_certificate_fails_verification(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = trained
    out = tmp_path / "forgot"
    assert _unlearn(trained, out) == 0
    cert_path = out / "certificate.json"
    # 1. a checkpoint edited after certification
    weights = load_file(str(out / "model.safetensors"))
    weights["head.bias"] = weights["head.bias"] + 0.5
    save_file(weights, str(out / "model.safetensors"))
    capsys.readouterr()
    assert _verify(cert_path, out) == 2  # a failed check is bad input: exit 2, one line naming the field
    captured = capsys.readouterr()
    assert "FAIL checkpoint after" in captured.out
    (line,) = captured.err.strip().splitlines()
    assert str(cert_path) in line and "'checkpoint_after.sha256'" in line
    # ... even when the editor also rewrites the hash and re-seals the digest, the data expose the head
    cert = read_certificate(cert_path)
    from msakit.unlearn import checkpoint_sha256

    cert["checkpoint_after"] = {**cert["checkpoint_after"], **checkpoint_sha256(out)}
    cert_path.write_text(json.dumps(seal(cert)))
    assert _verify(cert_path, out) == 0  # hashes and digest now agree: only the data can tell
    capsys.readouterr()
    assert _verify(cert_path, out, "--data", str(data)) == 2
    captured = capsys.readouterr()
    assert "FAIL head is the certified minimiser" in captured.out
    assert "'calibration.head.gradient_residual_bound'" in captured.err
    # 2. a certificate edited after sealing
    cert = read_certificate(cert_path)
    cert["evidence"]["attack_feature_probe_r2"]["unlearned"] = 0.0
    cert_path.write_text(json.dumps(cert))
    assert _verify(cert_path, out) == 2
    captured = capsys.readouterr()
    assert "FAIL digest" in captured.out and "'digest.value'" in captured.err
    # 3. a re-sealed certificate whose calibration does not add up
    cert["calibration"]["body"]["sigma"] *= 0.5
    cert_path.write_text(json.dumps(seal(cert)))
    assert _verify(cert_path, out) == 2
    captured = capsys.readouterr()
    assert "FAIL body noise scale" in captured.out and "'calibration.body.sigma'" in captured.err
    # 4. the wrong original checkpoint
    other = tmp_path / "other"
    shutil.copytree(out, other)
    capsys.readouterr()
    assert _verify(cert_path, out, "--original", str(other)) == 2
    assert "FAIL checkpoint before" in capsys.readouterr().out


def test_sample_deletion_reports_membership_and_keeps_the_modality(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = trained
    ids = load_dataset(data).split("train").ids[:20]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    out = tmp_path / "forgot"
    assert _unlearn(trained, out, "--samples", str(tmp_path / "ids.txt")) == 0
    cert = read_certificate(out / "certificate.json")
    assert cert["request"]["scope"] == "samples" and cert["removed"]["samples"] == 20
    assert sorted(cert["request"]["sample_ids"]) == sorted(ids)
    assert set(cert["evidence"]["attack_membership_auc"]) >= {"original", "unlearned"}
    assert load_checkpoint(out)[0].modalities == ("text", "audio", "visual")
    assert _verify(out / "certificate.json", out, "--data", str(data), "--original", str(ckpt)) == 0


def test_bad_requests_fail_clearly_and_write_nothing(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, ckpt = trained
    (tmp_path / "ids.txt").write_text("not-an-id\n")
    out = tmp_path / "forgot"
    assert _unlearn(trained, out, "--samples", str(tmp_path / "ids.txt")) == 2
    err = capsys.readouterr().err
    assert "ids.txt" in err and "not in the training split" in err and "'not-an-id'" in err
    # a modality the model never saw: a model trained on text + audio only
    edited = tmp_path / "no_visual"
    assert _unlearn(trained, edited) == 0
    capsys.readouterr()
    args = ["unlearn", str(edited), "--modality", "visual", "--data", str(data), "--out", str(tmp_path / "x")]
    assert main(args) == 2
    assert "trained without modality 'visual'" in capsys.readouterr().err
    # an output folder that exists is refused before anything is computed
    assert _unlearn(trained, edited) == 2
    assert "exists" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left behind"
    # a certificate that is not one
    (tmp_path / "junk.json").write_text("{}")
    assert _verify(tmp_path / "junk.json", ckpt) == 2


def test_calibration_formulas_match_their_references() -> None:
    # Gaussian mechanism (Dwork & Roth, Thm A.1) and Guo et al.'s Theorem 3 (c = sqrt(2 ln(1.5/δ)))
    assert gaussian_sigma(0.5, 2.0, 1e-5) == pytest.approx(0.5 * math.sqrt(2 * math.log(1.25e5)) / 2.0)
    assert noise_scale(1e-2, 1.0, 1e-4) == pytest.approx(math.sqrt(2 * math.log(1.5e4)) * 1e-2)


def test_newton_removal_equals_retraining_the_head() -> None:
    rng = np.random.default_rng(0)
    phi, y = augment(rng.normal(size=(80, 5))), rng.normal(size=80)
    beta = rng.normal(size=6) * 0.1
    full = newton_removal(np.zeros(6), phi, y, l2=0.1, beta=beta)
    keep = np.arange(80) >= 10
    removed = newton_removal(full.weight, phi[keep], y[keep], l2=0.1, beta=beta)  # one step from the old head
    retrained = np.linalg.solve(phi[keep].T @ phi[keep] / 70 + 0.1 * np.eye(6), phi[keep].T @ y[keep] / 70 - beta / 70)
    np.testing.assert_allclose(removed.weight, retrained, atol=1e-10)
    assert removed.residual < 1e-9


def test_saliency_selects_a_fraction_and_the_gaussian_update_is_random(trained: tuple[Path, Path]) -> None:
    data, ckpt = trained
    model, _ = load_checkpoint(ckpt)
    train = load_dataset(data).split("train")
    forget = list(range(len(train)))

    def drop(batch):  # type: ignore[no-untyped-def]
        return batch.drop_modalities(["visual"])

    def edit(noise_seed: int, fraction: float = 0.1) -> tuple[dict[str, torch.Tensor], object]:
        target = load_checkpoint(ckpt)[0]
        update = select_and_update(
            model, target, train, forget, drop, exclude=lambda k: k.startswith("head."), fraction=fraction,
            epsilon=1.0, delta=1e-5, saliency_samples=8, seed=0, noise_seed=noise_seed,
        )  # fmt: skip
        return {k: v.detach().clone() for k, v in target.named_parameters()}, update

    base = {k: v.detach() for k, v in model.named_parameters()}
    a, update = edit(1)
    b, _ = edit(2)
    changed = sum(int((a[k] != base[k]).sum()) for k in base if not k.startswith("head."))
    body = sum(v.numel() for k, v in base.items() if not k.startswith("head."))
    assert update.candidates == changed and changed <= 0.11 * body, (changed, body)  # saliency picked ~10 %
    assert all(torch.equal(a[k], base[k]) for k in base if k.startswith("head."))
    assert update.sigma == pytest.approx(gaussian_sigma(update.sensitivity, 1.0, 1e-5)) and update.sigma > 0
    assert any(not torch.equal(a[k], b[k]) for k in base), "the Gaussian update must depend on the noise draw"


def test_the_vectorised_step_equals_one_clipped_newton_step_per_record(trained: tuple[Path, Path]) -> None:
    """The edit's per-sample gradients (one batched backward) and its per-record clipping equal the
    per-sample loop they replace: each record's damped Newton step clipped to C on its own, then summed."""
    from msakit.unlearn import saliency

    data, ckpt = trained
    model, _ = load_checkpoint(ckpt)
    train = load_dataset(data).split("train")
    params = {k: p for k, p in model.named_parameters() if not k.startswith("head.")}

    def drop(batch):  # type: ignore[no-untyped-def]
        return batch.drop_modalities(["visual"])

    idx = [0, 3, 5, 8, 13]
    per = saliency._per_sample_grads(model, train, idx, params, drop)
    for j, i in enumerate(idx):
        batch = drop(train.batch([i]))
        loss = model.task_loss(model(batch).prediction, batch.labels)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (k, p), g in zip(params.items(), grads, strict=True):
            torch.testing.assert_close(per[k][j], g if g is not None else torch.zeros_like(p), atol=1e-6, rtol=1e-4)
    # the update by hand, record by record, from the same estimates
    target = load_checkpoint(ckpt)[0]
    before = {k: v.detach().clone() for k, v in target.named_parameters()}
    forget = list(range(len(train)))
    update = select_and_update(
        model,
        target,
        train,
        forget,
        drop,
        exclude=lambda k: k.startswith("head."),
        fraction=0.2,
        epsilon=1e6,
        delta=0.5,
        saliency_samples=len(forget),
        seed=0,
        noise_seed=0,
    )  # fmt: skip  (ε huge: the noise is negligible against the step)
    with_m = saliency._per_sample_grads(model, train, forget, params, None)
    without_m = saliency._per_sample_grads(model, train, forget, params, drop)
    n = len(train)
    f = {k: v / len(forget) for k, v in saliency._batch_fisher(without_m).items()}
    masks = {k: (target.state_dict()[k] != before[k]).float() for k in params}
    expected = {k: torch.zeros_like(p) for k, p in params.items()}
    for j in range(len(forget)):
        step = {k: (with_m[k][j] - without_m[k][j]) / n / (f[k] + update.damping) * masks[k] for k in params}
        norm = float(sum((v**2).sum() for v in step.values())) ** 0.5
        factor = min(1.0, update.sensitivity / norm) if norm > 0 else 0.0
        for k in params:
            expected[k] += step[k] * factor
    got = {k: target.state_dict()[k] - before[k] for k in params}
    assert sum(float((v**2).sum()) for v in expected.values()) ** 0.5 == pytest.approx(update.step_norm, rel=1e-4)
    for k in params:
        torch.testing.assert_close(got[k], expected[k], atol=1e-5 + 1e-3 * update.sigma * 10, rtol=1e-3)


def test_unlearn_refuses_a_model_without_a_convex_head(tmp_path: Path, tiny_dataset: MSADataset) -> None:
    from msakit import create_model
    from msakit.errors import ConfigError
    from msakit.training import save_checkpoint

    model = create_model("late_fusion", **tiny_dataset.info.model_overrides(), hidden_dim=8)
    save_checkpoint(tmp_path / "lf", model, dataset=tiny_dataset.info)
    with pytest.raises(ConfigError, match="no convex head"):
        unlearn(tmp_path / "lf", tiny_dataset, "audio", tmp_path / "out", settings=UnlearnSettings())
    assert not (tmp_path / "out").exists()


def test_reused_embeddings_give_the_evidence_a_fresh_pass_gives(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """The deletion computes each model's embeddings once and reuses them for the head, the
    attack and the validation metrics; the numbers must equal those of fresh passes over the
    written checkpoint."""
    from msakit.training import evaluate
    from msakit.unlearn.core import _drop
    from msakit.unlearn.evidence import feature_probe_r2

    data, ckpt = trained
    out = tmp_path / "forgot"
    assert _unlearn(trained, out) == 0
    cert = read_certificate(out / "certificate.json")
    dataset = load_dataset(data)
    train, valid = dataset.split("train"), dataset.split("valid")
    edited, original = load_checkpoint(out)[0], load_checkpoint(ckpt)[0]
    probe = cert["evidence"]["attack_feature_probe_r2"]
    drop = _drop("visual", set(train.ids))
    assert math.isclose(probe["unlearned"], feature_probe_r2(edited, train, valid, "visual", transform_train=drop))
    assert math.isclose(probe["original"], feature_probe_r2(original, train, valid, "visual"))
    for name, model in (("after", edited), ("before", original)):
        fresh = evaluate(model, valid, dataset.info.metric_set)
        for key, value in cert["evidence"][f"valid_metrics_{name}"].items():
            assert math.isclose(value, fresh[key], rel_tol=1e-5, abs_tol=1e-6), (name, key)


def test_a_failed_write_leaves_no_folder_behind(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import msakit.unlearn.core as core

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(core, "atomic_write_json", disk_full)  # the certificate, written last
    out = tmp_path / "forgot"
    assert _unlearn(trained, out) == 1
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "no temporary folder left behind"


def test_the_body_step_is_kept_only_where_validation_does_not_get_worse(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the stepped body's re-solved head scores worse on validation, the step is taken back:
    the body keeps only the noise, and the certificate says so with both scores; without the
    selection (or when the step scores better) it stays."""
    from msakit.unlearn import core

    data, ckpt = trained
    dataset = load_dataset(data)
    original = {k: v.detach().clone() for k, v in load_checkpoint(ckpt)[0].named_parameters()}
    real_solve, real_select = core._solve_head, core.select_and_update
    seen: dict[str, object] = {}

    def select(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["update"] = update = real_select(*args, **kwargs)
        return update

    def solve(*args, **kwargs):  # type: ignore[no-untyped-def]
        cal = real_solve(*args, **kwargs)
        if "first" not in seen:  # the stepped body's head: made to score worse on validation MAE
            seen["first"] = True
            cal["_score"] += 10.0
        return cal

    monkeypatch.setattr(core, "select_and_update", select)
    monkeypatch.setattr(core, "_solve_head", solve)
    settings = UnlearnSettings(saliency_samples=12, noise_seed=3, select_step=True)
    cert = unlearn(ckpt, dataset, "visual", tmp_path / "sel", settings=settings)
    body = cert["calibration"]["body"]
    assert body["step_applied"] is False
    assert body["step_valid_scores"]["with_step"] > body["step_valid_scores"]["without_step"]
    update = seen["update"]
    assert update.step and update.step_norm > 0  # type: ignore[attr-defined]
    edited = dict(load_checkpoint(tmp_path / "sel")[0].named_parameters())
    stepped = 0
    for k, step in update.step.items():  # type: ignore[attr-defined]
        noise = edited[k].detach() - original[k]  # what the body holds: θ + noise, the step taken back
        changed = step != 0
        stepped += int(changed.sum())
        assert (noise[changed] != 0).all()  # the candidates still got their noise
    assert stepped > 0
    assert _verify(tmp_path / "sel" / "certificate.json", tmp_path / "sel", "--data", str(data)) == 0
    seen.clear()
    monkeypatch.setattr(core, "_solve_head", real_solve)
    kept = unlearn(ckpt, dataset, "visual", tmp_path / "all", settings=dataclasses.replace(settings, select_step=False))
    assert kept["calibration"]["body"]["step_applied"] is True
    edited_all = dict(load_checkpoint(tmp_path / "all")[0].named_parameters())
    for k, step in seen["update"].step.items():  # type: ignore[attr-defined]
        # same noise seed: the two edits differ by exactly the step
        torch.testing.assert_close(edited_all[k].detach() - edited[k].detach(), step, atol=1e-6, rtol=1e-4)
