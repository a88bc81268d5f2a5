"""The command line: every command has help, bad input exits 2 with a clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msakit.cli import build_parser, main


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"run", "train", "eval", "predict", "models", "datasets", "data"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: msakit" in capsys.readouterr().out


def test_train_eval_predict_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        "late_fusion",
        "--data",
        "synthetic",
        "--out",
        str(out),
        "--seeds",
        "1",
        "--epochs",
        "2",
        "--no-progress",
        "-m",
        "hidden_dim=16",
        "-t",
        "tensorboard=false",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Non0_acc_2" in printed and "mean ± std over 1 seed" in printed
    ckpt = out / "seed1" / "best"
    assert main(["eval", str(ckpt), "--data", "synthetic", "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    saved = json.loads((out / "results.json").read_text())["seeds"][0]["test"]
    assert metrics == pytest.approx(saved)
    assert main(["predict", str(ckpt), "--data", "synthetic", "--out", str(tmp_path / "p.csv")]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("id,label,prediction,present_text") and len(rows) == 251


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "nope", "--data", "synthetic"], "unknown model 'nope'"),
        (["train", "--model", "late_fusion", "--data", "synthetic", "-m", "hiden=1"], "unknown config field 'hiden'"),
        (["train", "--model", "late_fusion", "--data", "synthetic", "-t", "lr=fast"], "'lr' expects float"),
        (["train", "--model", "late_fusion", "--data", "/no/such/dir"], "/no/such/dir"),
        (["train", "--model", "late_fusion", "--data", "synthetic:nope"], "unknown synthetic preset"),
        (["eval", "/no/ckpt", "--data", "synthetic"], "config.json"),
    ],
)
def test_bad_input_exits_2_with_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_checkpoint_on_mismatched_features_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from msakit.data import SyntheticConfig, make_synthetic
    from msakit.registry import create_model
    from msakit.training import save_checkpoint

    ds = make_synthetic(SyntheticConfig(sizes=(6, 3, 3)))
    model = create_model("late_fusion", **{**ds.info.model_overrides(), "audio_dim": 99})
    save_checkpoint(tmp_path / "ckpt", model)
    assert main(["eval", str(tmp_path / "ckpt"), "--data", "synthetic"]) == 2
    assert "audio features are 16-d" in capsys.readouterr().err
    out = tmp_path / "out.csv"
    assert main(["predict", str(tmp_path / "ckpt"), "--data", "synthetic", "--out", str(out)]) == 2
    assert not out.exists()


def test_models_lists_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from msakit import list_models

    assert main(["models", "--details"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "hidden_dim" in out
