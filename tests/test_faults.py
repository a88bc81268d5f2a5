"""Fault injection: hostile inputs, unwritable outputs, a full disk, and `kill -9` at chosen points.

Default suite (fast): the CLI over a part of the hostile-input corpus (`bad_inputs.py`),
a read-only output, a disk that fills up, ``--out`` naming an existing file, umask file
modes, damaged caches. Under ``slow``: the whole corpus, and `kill -9` of real
`msakit train`, `msakit data prepare` and `msakit extract` processes at 12 points, after
which ``--resume`` (train) must equal the uninterrupted run metric for metric and a
rerun (prepare, extract) must succeed with byte-identical outputs.

A kill point is "the N-th call of F": a driver process patches F (e.g. `os.replace`,
safetensors' `save_file`, `torch.save`, `np.save`, an optimizer step) to SIGKILL itself
before or after the real call, then runs `msakit.cli.main` with the command's argv.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bad_inputs import TRAIN, _base_dataset, build_corpus, run_case, summary
from msakit.cli import main

BAD = ("traceback", "silent", "partial")


def _train_argv(data: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", data, "--out", str(out), *TRAIN, *extra]


# ----------------------------------------------------------------------------- the hostile-input corpus

# the kinds run in the default suite (the folder/pickle kinds, ~340 runs, are under slow)
FAST_KINDS = {"checkpoint", "resume", "transcript", "preset", "override", "output", "path"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "c")


def _run_kinds(corpus: list, kinds: set[str] | None) -> None:
    outcomes = [run_case(c) for c in corpus if kinds is None or c.kind in kinds]
    bad = [
        f"{o.outcome}: {o.case.name}: exit {o.code}: {o.stderr.strip()[-300:]}" for o in outcomes if o.outcome in BAD
    ]
    print("\n" + summary(outcomes))
    assert not bad, "\n".join(bad)
    assert not Path("/tmp/msakit-pwned").exists(), "a crafted file executed code"
    refused = [o.case.name for o in outcomes if o.outcome == "refused"]
    assert not refused, f"valid inputs refused: {refused}"


def test_corpus_fast_kinds_fail_cleanly(corpus: list) -> None:
    _run_kinds([c for c in corpus if "3000" not in c.name], FAST_KINDS)  # 3000 utterances: 20 s each, slow


def test_corpus_folder_inputs_fail_cleanly_in_eval(corpus: list) -> None:
    """Each malformed dataset folder, given to `eval` (the other commands read it the same way: slow)."""
    _run_kinds([c for c in corpus if c.kind in ("folder", "pickle") and c.name.endswith("/eval")], None)


@pytest.mark.slow
def test_whole_corpus_fails_cleanly(corpus: list) -> None:
    _run_kinds(corpus, None)


# ----------------------------------------------------------------------------- outputs


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line and not line.startswith(" ")]
    assert len(lines) == 1, err
    return lines[0]


def test_disk_full_leaves_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every rename onto a target fails with ENOSPC: exit 1, one line, the output folder is gone."""
    real = os.replace

    def full(src: object, dst: object) -> None:
        if "seed1" in str(dst) or "results" in str(dst) or "timeline" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real(src, dst)  # type: ignore[arg-type]

    data = str(_base_dataset(tmp_path))  # 32 samples: the failure, not the training, is under test
    monkeypatch.setattr(os, "replace", full)
    for argv, out in (
        (_train_argv(data, tmp_path / "run"), tmp_path / "run"),
        (["sweep", "--data", data, "--out", str(tmp_path / "sw"), *TRAIN, "--field", "dropout",
          "--values", "0.1", "0.2"], tmp_path / "sw"),
    ):  # fmt: skip
        assert main(argv) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert "no space left" in line.lower(), line
        assert not out.exists(), sorted(str(p) for p in out.rglob("*"))


def test_analyze_writes_all_three_outputs_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from msakit import analyze

    def no_png(analysis: object, path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    analysis = analyze.Analysis(
        media="clip.wav", duration=float("nan"), checkpoint="c", model="text_only", fused_modalities=["text"],
        cue_modalities=[], transcript_source="transcript", notes=[], utterances=[],
    )  # fmt: skip
    monkeypatch.setattr(analyze, "plot", no_png)
    with pytest.raises(OSError):
        analyze.write_outputs(analysis, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # neither json nor csv without the png
    monkeypatch.setattr(analyze, "plot", lambda a, p: p.write_bytes(b"png"))
    paths = analyze.write_outputs(analysis, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["duration"] is None  # NaN becomes null, not invalid JSON


def test_read_only_output_is_an_environment_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        target = Path("/sys/msakit-readonly/run")  # root ignores chmod; /sys refuses every write
        if not Path("/sys").is_dir():
            pytest.skip("needs /sys (root) or a non-root user")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        target = tmp_path / "ro" / "run"
    try:
        assert main(_train_argv("synthetic:dominant", target)) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert str(target.parent) in line or str(target) in line, line
        assert main(["data", "export", "synthetic:dominant", str(target / "d.pkl")]) == 1
        _one_error_line(capsys.readouterr().err)
    finally:
        if os.geteuid() != 0:
            (tmp_path / "ro").chmod(0o755)
    assert not target.exists()


def test_out_naming_an_existing_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "keep.txt"
    existing.write_text("keep me")
    for argv in (
        _train_argv("synthetic:dominant", existing),
        ["data", "export", "synthetic:dominant", str(existing)],
        ["robustness", "x", "--data", "synthetic", "--out", str(existing / "sub")],
    ):
        assert main(argv) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert str(existing) in line, line
    assert existing.read_text() == "keep me"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    from msakit.io import atomic_write_text

    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / f"f{umask:o}.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


# ----------------------------------------------------------------------------- caches and paths


def test_damaged_text_cache_entry_is_recomputed(tmp_path: Path) -> None:
    from msakit.text_encoder import cache_key, encode_tokens_cached

    class Stub:
        name, dim, calls = "stub", 4, 0

        def encode_tokens(self, texts, max_len=50, batch_size=64, progress=True, *, ids=None):  # type: ignore[no-untyped-def]
            Stub.calls += 1
            return np.ones((len(texts), max_len, 4), np.float32), np.full(len(texts), 2)

    texts = ["good", "bad"]
    values, _ = encode_tokens_cached(texts, tmp_path, 3, encoder=Stub(), progress=False)
    entry = tmp_path / f"{cache_key('stub', 3, texts)}.npz"
    entry.write_bytes(entry.read_bytes()[:40])  # truncated: BadZipFile before the fix
    again, _ = encode_tokens_cached(texts, tmp_path, 3, encoder=Stub(), progress=False)
    assert Stub.calls == 2 and np.array_equal(values, again)
    encode_tokens_cached(texts, tmp_path, 3, encoder=Stub(), progress=False)
    assert Stub.calls == 2  # the recomputed entry is whole again
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]  # no temporary files left


def test_damaged_clip_cache_entry_is_extracted_again(tmp_path: Path) -> None:
    from msakit.extract.dataset import _load_npz, _save_npz

    entry = tmp_path / "v_1.npz"
    _save_npz(entry, {"audio": np.ones((3, 2), np.float32)}, {"version": 1, "missing": {}})
    assert _load_npz(entry) is not None
    entry.write_bytes(entry.read_bytes()[:100])
    assert _load_npz(entry) is None
    _save_npz(entry, {"audio": np.array([[np.nan]], np.float32)}, {"version": 1, "missing": {}})
    assert _load_npz(entry) is None  # not what an extractor writes


@pytest.mark.parametrize("video", ["..", ".", "a/b", "a\\b", "x\x00y"])
def test_clip_paths_stay_inside_raw(tmp_path: Path, video: str) -> None:
    from msakit.errors import DataError
    from msakit.extract.dataset import read_label_csv

    (tmp_path / "label.csv").write_text(f"video_id,clip_id,text,label,mode\n{video},c,hi,1,train\n")
    with pytest.raises(DataError, match="video_id"):
        read_label_csv(tmp_path)


# ----------------------------------------------------------------------------- kill -9

DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import torch
    import msakit.training.checkpoint as ckpt
    target, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    argv = sys.argv[4:]
    calls = 0
    def patch(owner, name):
        real = getattr(owner, name)
        def wrapper(*a, **k):
            global calls
            calls += 1
            if calls == nth and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*a, **k)
            if calls == nth and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        setattr(owner, name, wrapper)
    owners = {
        "os.replace": (os, "replace"),
        "save_file": (ckpt, "save_file"),
        "torch.save": (torch, "save"),
        "np.save": (np, "save"),
        "step": (torch.optim.AdamW, "step"),
    }
    if target in owners:
        patch(*owners[target])
    if os.environ.get("MSAKIT_STUB_TEXT"):
        import msakit.extract.text as text_module
        class Stub:
            name, dim = "stub", 384
            def encode_tokens(self, texts, max_len=50, batch_size=64, progress=True, *, ids=None):
                values = np.zeros((len(texts), max_len, 384), np.float32)
                lengths = np.array([min(len(t.split()) + 2, max_len) for t in texts])
                for i, n in enumerate(lengths):
                    values[i, :n] = float(n)
                return values, lengths
        text_module._ENCODER = Stub()
    from msakit.cli import main
    sys.exit(main(argv))
    """
)


def _drive(tmp: Path, target: str, nth: int, when: str, argv: list[str], **env: str) -> int:
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run(
        [sys.executable, str(driver), target, str(nth), when, *argv],
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# train: 2 seeds x 3 epochs; each epoch saves last/ (and best/ when it improves): kill points spread over
# an optimizer step, the weights write, the optimizer-state write and the two renames of a save
TRAIN_KILLS = [
    ("step", 3, "before"),  # mid-epoch 1, nothing saved yet
    ("step", 9, "after"),  # mid-epoch 2
    ("save_file", 1, "after"),  # inside the first checkpoint write: weights written, config not
    ("save_file", 4, "after"),  # inside a later checkpoint write
    ("torch.save", 2, "before"),  # inside a last/ write, before optimizer.pt
    ("os.replace", 2, "after"),  # between a checkpoint's renames (old moved aside, new not in place)
    ("os.replace", 5, "before"),
    ("step", 20, "after"),  # in seed 2
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ref") / "run"
    argv = ["train", "--data", "synthetic:dominant", "--out", str(out), *TRAIN, "--epochs", "3", "--seeds", "1", "2"]
    assert _drive(out.parent, "none", 0, "never", argv) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(("target", "nth", "when"), TRAIN_KILLS)
def test_kill_train_then_resume_equals_uninterrupted(
    tmp_path: Path, uninterrupted: dict, target: str, nth: int, when: str
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", "synthetic:dominant", "--out", str(out), *TRAIN, "--epochs", "3", "--seeds", "1", "2"]
    assert _drive(tmp_path, target, nth, when, argv) == -signal.SIGKILL
    assert _drive(tmp_path, "none", 0, "never", [*argv, "--resume"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    for a, b in zip(resumed["seeds"], uninterrupted["seeds"], strict=True):
        assert a["test"] == b["test"], (target, nth, when)  # metric for metric, exactly
        assert a["valid"] == b["valid"]
    leftovers = [p.name for p in out.rglob(".*")]
    assert not leftovers, leftovers  # no temporary or .old folders after a successful resume


def _mfn_source(root: Path) -> Path:
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(5)
    root.mkdir(parents=True)
    for split, n in (("train", 12), ("valid", 5), ("test", 5)):
        for name, dim in (("audio", 6), ("video", 4)):
            with h5py.File(root / f"{name}_{split}.h5", "w") as h5:
                h5.create_dataset("d1", data=rng.normal(size=(n, 7, dim)))
        with h5py.File(root / f"y_{split}.h5", "w") as h5:
            h5.create_dataset("d1", data=rng.uniform(-3, 3, size=(n, 1)))
    return root


PREPARE_KILLS = [("np.save", 1, "after"), ("np.save", 4, "before"), ("os.replace", 1, "before")]


@pytest.mark.slow
@pytest.mark.parametrize(("target", "nth", "when"), PREPARE_KILLS)
def test_kill_prepare_then_rerun_is_byte_identical(tmp_path: Path, target: str, nth: int, when: str) -> None:
    source = _mfn_source(tmp_path / "src")
    argv = lambda out: ["data", "prepare", "h5", "--source", str(source), "--out", str(out), "--no-progress"]  # noqa: E731
    assert _drive(tmp_path, "none", 0, "never", argv(tmp_path / "ref")) == 0
    out = tmp_path / "out"
    assert _drive(tmp_path, target, nth, when, argv(out)) == -signal.SIGKILL
    assert not out.exists()  # nothing visible from the killed run
    assert _drive(tmp_path, "none", 0, "never", argv(out)) == 0
    assert _tree(out) == _tree(tmp_path / "ref")
    assert not [p for p in tmp_path.glob(".out.*")], "stale temporary folder left next to OUT"


EXTRACT_KILLS = [("os.replace", 2, "after"), ("np.save", 2, "before")]


@pytest.mark.slow
@pytest.mark.parametrize(("target", "nth", "when"), EXTRACT_KILLS)
def test_kill_extract_then_rerun_is_byte_identical(tmp_path: Path, target: str, nth: int, when: str) -> None:
    pytest.importorskip("av")
    pytest.importorskip("parselmouth")
    from media_factory import write_video

    root = tmp_path / "ds"
    rows = [("v1", "1", "good", 1.0, "train"), ("v1", "2", "bad", -1.0, "train"), ("v2", "1", "ok", 0.5, "valid"),
            ("v2", "2", "meh", 0.0, "test")]  # fmt: skip
    for video, clip, *_ in rows:
        (root / "Raw" / video).mkdir(parents=True, exist_ok=True)
        write_video(root / "Raw" / video / f"{clip}.mp4", seconds=0.6)
    (root / "label.csv").write_text(
        "video_id,clip_id,text,label,mode\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    )
    argv = lambda out: ["extract", str(root), "--out", str(out), "--visual", "--no-progress"]  # noqa: E731
    assert _drive(tmp_path, "none", 0, "never", argv(tmp_path / "ref"), MSAKIT_STUB_TEXT="1") == 0
    out = tmp_path / "out"
    assert _drive(tmp_path, target, nth, when, argv(out), MSAKIT_STUB_TEXT="1") == -signal.SIGKILL
    assert not out.exists()
    assert _drive(tmp_path, "none", 0, "never", argv(out), MSAKIT_STUB_TEXT="1") == 0
    assert _tree(out) == _tree(tmp_path / "ref")


# ----------------------------------------------------------------------------- the boundary itself


def test_an_unexpected_error_is_one_line_pointing_to_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def bug(args: object) -> int:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr("msakit.cli.build_parser", _patched_parser({"models": bug}))
    assert main(["models"]) == 3
    line = _one_error_line(capsys.readouterr().err)
    assert "internal error: ZeroDivisionError: division by zero second line" in line and "--debug" in line
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "models"])


def _patched_parser(funcs: dict) -> object:
    from msakit import cli

    real = cli.build_parser

    def build(*args: object, **kwargs: object) -> object:
        parser = real(*args, **kwargs)  # type: ignore[arg-type]
        for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
            for name, sub in action.choices.items():
                if name in funcs:
                    sub.set_defaults(func=funcs[name])
        return parser

    return build
