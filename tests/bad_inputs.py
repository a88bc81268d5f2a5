"""The hostile-input corpus and the harness that runs every CLI command over it.

`build_corpus(root)` writes each bad input into `root` (a tiny valid dataset folder,
checkpoint and pickle first, then one mutated copy per case) and returns the `Case`s:
a name, the kind of input, the argv of one in-process `msakit.cli.main` call, and what
must not be left behind. `run_case` runs one and classifies the outcome:

- ``clean``: exit 2 (bad input) or 1 (environment), exactly one line on stderr, no traceback;
- ``traceback``: an exception escaped `main`, or a traceback was printed;
- ``silent``: exit 0 on an input that must be refused;
- ``partial``: the command failed but left (part of) its output behind, or replaced a file;
- ``ok``: an input that must be accepted was accepted (exit 0).

Run it as a script to print the table: ``python tests/bad_inputs.py [--kind KIND]``.
Nothing here is committed data: every file is generated.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import struct
import sys
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TRAIN = ["--model", "late_fusion", "--seeds", "1", "--epochs", "1", "--no-progress", "-m", "hidden_dim=8"]
TRAIN += ["-t", "tensorboard=false", "-t", "batch_size=8"]
OUTCOMES = ("clean", "ok", "traceback", "silent", "partial")


@dataclass
class Case:
    name: str
    kind: str  # folder | pickle | checkpoint | resume | transcript | preset | override | output | path | cache
    argv: list[str]
    expect: str = "reject"  # reject | accept
    outs: list[Path] = field(default_factory=list)  # must not exist after a refusal
    keep: dict[Path, bytes] = field(default_factory=dict)  # files whose bytes must not change
    setup: Callable[[], None] | None = None  # run just before (e.g. chmod)
    teardown: Callable[[], None] | None = None


@dataclass
class Outcome:
    case: Case
    outcome: str
    code: int | None
    stderr: str


# ----------------------------------------------------------------------------- base inputs


def _base_dataset(root: Path) -> Path:
    from msakit.data import SyntheticConfig, make_synthetic, write_folder
    from msakit.data.folder import read_folder  # noqa: F401  (the reader under test)

    ds = make_synthetic(SyntheticConfig(sizes=(16, 8, 8), dims=(6, 4, 5), lengths=(5, 6, 4), seed=7))
    import pandas as pd

    rows = [(i, name, float(lab)) for name, split in ds for i, lab in zip(split.ids, split.labels, strict=True)]
    labels = pd.DataFrame(rows, columns=["id", "split", "label"])
    mods = {}
    for m in ds.info.dims:
        values, lengths, ids = [], [], []
        for _, split in ds:
            arr = split.modalities[m]
            values.append(np.asarray(arr.values, np.float32))
            lengths.append(arr.lengths)
            ids += split.ids
        mods[m] = (np.concatenate(values), np.concatenate(lengths), ids)
    return write_folder(root / "base", ds.info, labels, mods)


def _copy(base: Path, root: Path, name: str) -> Path:
    dst = root / name
    shutil.copytree(base, dst)
    return dst


def _meta(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    (folder / "meta.json").write_text(json.dumps(meta))


def _npy(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / name, array)


def _read_ids(folder: Path, m: str) -> list[str]:
    return (folder / f"{m}.ids.txt").read_text().splitlines()


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/msakit-pwned",))


# ----------------------------------------------------------------------------- the corpus


def build_corpus(root: Path) -> list[Case]:
    root.mkdir(parents=True, exist_ok=True)
    base = _base_dataset(root)
    out = root / "out"
    out.mkdir()
    from msakit.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["train", "--data", str(base), "--out", str(root / "run"), *TRAIN])
    assert code == 0, "the base training run must succeed"
    ckpt = root / "run" / "seed1" / "best"
    cases: list[Case] = []
    counter = Counter[str]()

    def fresh(prefix: str) -> Path:
        counter[prefix] += 1
        return out / f"{prefix}{counter[prefix]}"

    def dataset_cases(name: str, data: Path | str, kind: str = "folder", expect: str = "reject") -> None:
        """The same bad data given to every command that reads a dataset."""
        o = fresh("train")
        cases.append(Case(f"{name}/train", kind, ["train", "--data", str(data), "--out", str(o), *TRAIN], expect, [o]))
        j = fresh("eval").with_suffix(".json")
        cases.append(
            Case(f"{name}/eval", kind, ["eval", str(ckpt), "--data", str(data), "--json", str(j)], expect, [j])
        )
        p = fresh("pred").with_suffix(".csv")
        cases.append(
            Case(f"{name}/predict", kind, ["predict", str(ckpt), "--data", str(data), "--out", str(p)], expect, [p])
        )
        e = fresh("export").with_suffix(".pkl")
        cases.append(Case(f"{name}/export", kind, ["data", "export", str(data), str(e)], expect, [e]))
        r = fresh("rob")
        argv = ["robustness", str(ckpt), "--data", str(data), "--protocol", "modality", "--out", str(r)]
        cases.append(Case(f"{name}/robustness", kind, argv, expect, [r]))

    # --- folder format: meta.json
    def folder(name: str, mutate: Callable[[Path], None], expect: str = "reject") -> None:
        d = _copy(base, root, name)
        mutate(d)
        dataset_cases(name, d, expect=expect)

    folder("meta_modalities_list", lambda d: _meta(d, modalities=["text", "audio"]))
    folder("meta_modalities_string", lambda d: _meta(d, modalities="text"))
    folder("meta_modality_entry_number", lambda d: _meta(d, modalities={"text": 5}))
    folder("meta_dim_string", lambda d: _meta(d, modalities={"text": {"dim": "six"}}))
    folder("meta_num_classes_abc", lambda d: _meta(d, num_classes="abc"))
    folder("meta_num_classes_zero", lambda d: _meta(d, num_classes=0))
    folder("meta_num_classes_bool", lambda d: _meta(d, num_classes=True))
    folder("meta_label_range_wide", lambda d: _meta(d, label_range="wide"))
    folder("meta_label_range_negative", lambda d: _meta(d, label_range=-1))
    folder("meta_class_names_number", lambda d: _meta(d, class_names=3))
    folder("meta_name_list", lambda d: _meta(d, name=["x"]))
    folder("meta_metric_set_list", lambda d: _meta(d, metric_set=["mosi"]))
    folder("meta_is_list", lambda d: (d / "meta.json").write_text("[1, 2]"))
    folder("meta_binary", lambda d: (d / "meta.json").write_bytes(b"\xff\xfe\x00garbage\x80"))
    folder(
        "meta_nan_label_range",
        lambda d: (d / "meta.json").write_text(
            (d / "meta.json").read_text().replace('"label_range": 3.0', '"label_range": NaN')
        ),
    )
    folder("meta_deep_nesting", lambda d: (d / "meta.json").write_text("[" * 100000 + "]" * 100000))

    # --- folder format: arrays
    def load(d: Path, m: str) -> np.ndarray:
        return np.load(d / f"{m}.npy")

    folder(
        "npy_structured", lambda d: _npy(d, "text.npy", np.zeros(load(d, "text").shape[:2], [("a", "f4"), ("b", "f4")]))
    )
    folder("npy_int64", lambda d: _npy(d, "text.npy", load(d, "text").astype(np.int64)))
    folder("npy_bool", lambda d: _npy(d, "text.npy", load(d, "text") > 0))
    folder("npy_complex", lambda d: _npy(d, "text.npy", load(d, "text").astype(np.complex64) * (1 + 1j)))
    folder("npy_unicode", lambda d: _npy(d, "text.npy", load(d, "text").astype(str)))
    folder("npy_object", lambda d: np.save(d / "text.npy", np.array([{"a": 1}] * 32, dtype=object), allow_pickle=True))
    folder("npy_2d", lambda d: _npy(d, "text.npy", load(d, "text")[:, 0]))
    folder("npy_truncated", lambda d: (d / "text.npy").write_bytes((d / "text.npy").read_bytes()[:200]))
    folder("npy_not_numpy", lambda d: (d / "text.npy").write_bytes(b"PK\x03\x04 not an array"))
    folder("npy_nan", lambda d: _npy(d, "audio.npy", np.where(load(d, "audio") > 1, np.nan, load(d, "audio"))))
    folder("npy_float64", lambda d: _npy(d, "text.npy", load(d, "text").astype(np.float64)), expect="accept")
    folder("npy_huge_header", lambda d: _huge_header(d / "text.npy"))
    folder("lengths_nan", lambda d: _npy(d, "text.lengths.npy", np.where(np.arange(32) == 3, np.nan, 3.0)))
    folder("lengths_fraction", lambda d: _npy(d, "text.lengths.npy", np.full(32, 2.5)))
    folder("lengths_negative", lambda d: _npy(d, "text.lengths.npy", np.full(32, -1, np.int32)))
    folder("lengths_too_long", lambda d: _npy(d, "text.lengths.npy", np.full(32, 99, np.int32)))
    folder("lengths_2d", lambda d: _npy(d, "text.lengths.npy", np.full((32, 1), 2, np.int32)))
    folder("lengths_bool", lambda d: _npy(d, "text.lengths.npy", np.ones(32, bool)))

    # --- folder format: ids and labels
    folder(
        "ids_not_utf8", lambda d: (d / "text.ids.txt").write_bytes((d / "text.ids.txt").read_bytes() + b"\xff\xfe\n")
    )
    folder("ids_duplicate", lambda d: (d / "text.ids.txt").write_text("\n".join(_dup(_read_ids(d, "text"))) + "\n"))
    folder("ids_short", lambda d: (d / "text.ids.txt").write_text("\n".join(_read_ids(d, "text")[:-1]) + "\n"))
    folder("ids_stray", lambda d: (d / "text.ids.txt").write_text("\n".join(["ghost", *_read_ids(d, "text")[1:]])))
    folder("ids_directory", lambda d: ((d / "text.ids.txt").unlink(), (d / "text.ids.txt").mkdir()))
    folder("labels_not_utf8", lambda d: (d / "labels.csv").write_bytes(b"id,split,label\n\xff\xfe,train,1\n"))
    folder("labels_binary", lambda d: (d / "labels.csv").write_bytes(bytes(range(256)) * 4))
    folder("labels_nan", lambda d: _labels(d, lambda t: t.replace(",train,", ",train,nan#", 1)))
    folder("labels_missing_split_column", lambda d: _labels(d, lambda t: t.replace("split", "fold", 1)))
    folder("labels_unknown_split", lambda d: _labels(d, lambda t: t.replace(",test,", ",holdout,", 1)))
    folder("labels_duplicate_id", lambda d: _labels(d, lambda t: t + t.splitlines()[1] + "\n"))
    folder("valid_without_features", _strip_valid)
    folder("valid_empty", lambda d: _labels(d, lambda t: t.replace(",valid,", ",train,")))
    folder("class_label_out_of_range", lambda d: _classes(d, 7))
    folder("class_label_negative", lambda d: _classes(d, -1))
    folder("class_label_fraction", lambda d: _classes(d, 1.5))
    folder("class_names_mismatch", lambda d: (_classes(d, 1), _meta(d, class_names=["a", "b"])))
    folder("symlink_outside", lambda d: ((d / "audio.npy").unlink(), (d / "audio.npy").symlink_to("/etc/passwd")))
    folder("missing_lengths_file", lambda d: (d / "visual.lengths.npy").unlink())

    # --- MMSA / MulT pickles
    pickles = root / "pickles"
    pickles.mkdir()

    def mmsa(n: int = 6) -> dict[str, dict[str, np.ndarray]]:
        rng = np.random.default_rng(0)
        return {
            s: {
                "text": rng.normal(size=(n, 5, 6)).astype(np.float32),
                "audio": rng.normal(size=(n, 6, 4)).astype(np.float32),
                "vision": rng.normal(size=(n, 4, 5)).astype(np.float32),
                "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
                "audio_lengths": np.full(n, 6),
                "vision_lengths": np.full(n, 4),
            }
            for s in ("train", "valid", "test")
        }

    def pkl(name: str, payload: object, expect: str = "reject", raw: bytes | None = None) -> None:
        path = pickles / f"{name}.pkl"
        path.write_bytes(raw if raw is not None else pickle.dumps(payload, protocol=4))
        dataset_cases(f"pickle_{name}", path, "pickle", expect)

    pkl("valid", mmsa(), expect="accept")
    pkl("evil_reduce", {"train": _Evil()})
    pkl("truncated", None, raw=pickle.dumps(mmsa())[:300])
    pkl("not_a_dict", [1, 2, 3])
    pkl("empty_file", None, raw=b"")
    data = mmsa()
    data["train"]["text"] = data["train"]["text"].astype(np.complex64) * 1j
    pkl("complex_text", data)
    data = mmsa()
    data["train"]["audio"] = data["train"]["audio"].astype(np.int64)
    pkl("int_audio", data)
    data = mmsa()
    data["train"]["audio_lengths"] = np.full(6, np.nan)
    pkl("nan_lengths", data)
    data = mmsa()
    data["train"]["audio_lengths"] = np.full(6, 2.5)
    pkl("fraction_lengths", data)
    data = mmsa()
    data["train"]["id"] = np.array(["a", "a", "b", "c", "d", "e"], dtype=object)
    pkl("duplicate_ids", data)
    data = mmsa()
    data["valid"]["regression_labels"] = np.zeros(0, np.float32)
    for k in ("text", "audio", "vision"):
        data["valid"][k] = np.zeros((0, 5, 6), np.float32)
    data["valid"]["audio_lengths"] = data["valid"]["vision_lengths"] = np.zeros(0)
    pkl("empty_valid", data)
    data = mmsa()
    data["train"]["text"] = "a string"  # type: ignore[assignment]
    pkl("text_is_string", data)
    data = mmsa()
    data["valid"]["audio"] = np.zeros((6, 6, 9), np.float32)
    pkl("dims_differ_between_splits", data)
    data = mmsa()
    data["train"]["regression_labels"] = np.full(6, np.inf, np.float32)
    pkl("inf_labels", data)
    mult = {
        s: {
            "text": v["text"],
            "audio": v["audio"],
            "vision": v["vision"],
            "labels": v["regression_labels"][:, None, None],
        }
        for s, v in mmsa().items()
    }
    mult["test"]["labels"] = np.array(["x"] * 6, dtype=object)
    pkl("mult_string_labels", mult)

    # --- checkpoints
    def checkpoint(
        name: str, mutate: Callable[[Path], None], commands: tuple[str, ...] = ("eval", "predict", "robustness")
    ) -> None:
        c = root / "ckpts" / name
        shutil.copytree(ckpt, c)
        mutate(c)
        for command in commands:
            o = fresh(command)
            if command == "eval":
                argv = ["eval", str(c), "--data", str(base), "--json", str(o)]
            elif command == "predict":
                argv = ["predict", str(c), "--data", str(base), "--out", str(o)]
            elif command == "robustness":
                argv = ["robustness", str(c), "--data", str(base), "--protocol", "modality", "--out", str(o)]
            else:
                argv = ["analyze", str(_wav(root)), "--model", str(c), "--transcript", str(_txt(root)), "--out", str(o)]
            cases.append(Case(f"ckpt_{name}/{command}", "checkpoint", argv, "reject", [o]))

    def cfg(c: Path, fn: Callable[[dict], None]) -> None:
        meta = json.loads((c / "config.json").read_text())
        fn(meta)
        (c / "config.json").write_text(json.dumps(meta))

    checkpoint("size_mismatch", lambda c: cfg(c, lambda m: m["model_config"].update(hidden_dim=16)))
    checkpoint("unknown_model", lambda c: cfg(c, lambda m: m.update(model="nope")))
    checkpoint("unknown_field", lambda c: cfg(c, lambda m: m["model_config"].update(bogus=1)))
    checkpoint("mistyped_field", lambda c: cfg(c, lambda m: m["model_config"].update(hidden_dim="big")))
    checkpoint("model_config_list", lambda c: cfg(c, lambda m: m.update(model_config=[1])))
    checkpoint("config_binary", lambda c: (c / "config.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff"))
    checkpoint("config_list", lambda c: (c / "config.json").write_text("[]"))
    checkpoint("weights_truncated", lambda c: _truncate(c / "model.safetensors", 100))
    checkpoint("weights_missing", lambda c: (c / "model.safetensors").unlink())
    checkpoint("weights_nan", _nan_weights)
    checkpoint("weights_pickle", lambda c: (c / "model.safetensors").write_bytes(pickle.dumps(_Evil())))
    checkpoint("dataset_dims_mismatch", lambda c: cfg(c, lambda m: m["model_config"].update(audio_dim=3)))

    # --- resume: a copy of the run whose last/ is damaged
    def resume(name: str, mutate: Callable[[Path], None]) -> None:
        r = root / "resumes" / name
        shutil.copytree(root / "run", r)
        mutate(r / "seed1" / "last")
        before = {p: p.read_bytes() for p in (r / "seed1" / "best").iterdir()}
        argv = ["train", "--data", str(base), "--out", str(r), *TRAIN, "--epochs", "2", "--resume"]
        cases.append(Case(f"resume_{name}", "resume", argv, "reject", [], keep=before))

    def evil_optimizer(last: Path) -> None:
        import torch

        torch.save({"optimizer": _Evil(), "torch_rng": None}, last / "optimizer.pt")

    resume("optimizer_evil", evil_optimizer)
    resume("optimizer_missing", lambda last: (last / "optimizer.pt").unlink())
    resume("optimizer_truncated", lambda last: _truncate(last / "optimizer.pt", 50))
    resume("optimizer_garbage", lambda last: (last / "optimizer.pt").write_bytes(b"\x00" * 64))
    resume("no_fit_state", lambda last: cfg(last, lambda m: m.pop("fit_state", None)))
    resume("fit_state_string", lambda last: cfg(last, lambda m: m.update(fit_state="x")))

    # --- transcripts (analyze with a text checkpoint and a short wav)
    tdir = root / "transcripts"
    tdir.mkdir()
    text_ckpt = _text_checkpoint(root)

    def transcript(name: str, suffix: str, content: bytes | str, expect: str = "reject") -> None:
        t = tdir / f"{name}{suffix}"
        t.write_bytes(content if isinstance(content, bytes) else content.encode())
        o = fresh("analyze")
        argv = ["analyze", str(_wav(root)), "--model", str(text_ckpt), "--transcript", str(t), "--out", str(o)]
        cases.append(Case(f"transcript_{name}", "transcript", argv, expect, [o]))

    transcript("csv_nan", ".csv", "start,end,text\nnan,nan,hello there\n")
    transcript("csv_inf", ".csv", "start,end,text\n0,inf,hello there\n")
    transcript("csv_negative", ".csv", "start,end,text\n-1,0.5,hello there\n")
    transcript("csv_reversed", ".csv", "start,end,text\n0.8,0.2,hello there\n")
    transcript("csv_no_header", ".csv", "0,1,hello\n")
    transcript("csv_binary", ".csv", bytes(range(256)))
    transcript("csv_huge_number", ".csv", "start,end,text\n0,1e400,hello\n")
    transcript("srt_nan_like", ".srt", "1\n00:00:00,000 --> 99:99:99,999\nhello\n")
    transcript("srt_no_times", ".srt", "1\nhello\n\n2\nthere\n")
    transcript("vtt_garbage", ".vtt", "WEBVTT\n\nnot a cue\n")
    transcript("txt_not_utf8", ".txt", b"\xff\xfe\xfa")
    transcript("txt_empty", ".txt", "   \n")
    tiny = "start,end,text\n" + "".join(f"{k * 0.0003:.4f},{k * 0.0003 + 0.0002:.4f},w{k}\n" for k in range(3000))
    transcript("csv_3000_tiny", ".csv", tiny, expect="accept")
    zero = "start,end,text\n" + "".join(f"0.5,0.5,w{k}\n" for k in range(3000))
    transcript("csv_3000_zero_length", ".csv", zero, expect="accept")

    # --- presets and overrides
    pdir = root / "presets"
    pdir.mkdir()

    def preset(name: str, content: bytes | str) -> None:
        p = pdir / f"{name}.yaml"
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        o = fresh("train")
        cases.append(
            Case(
                f"preset_{name}",
                "preset",
                ["train", "--data", str(base), "--out", str(o), *TRAIN, "--preset", str(p)],
                "reject",
                [o],
            )
        )

    preset("binary", bytes(range(256)))
    preset("list", "- 1\n- 2\n")
    preset("unknown_section", "model: {}\nfoo: {}\n")
    preset("section_list", "model: [1, 2]\n")
    preset("python_tag", "model: !!python/object/apply:os.system ['touch /tmp/msakit-pwned']\n")
    preset("unknown_field", "model: {bogus: 1}\n")
    preset("directory", "")
    (pdir / "directory.yaml").unlink()
    (pdir / "directory.yaml").mkdir()
    preset_alias_bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    preset("alias_bomb", preset_alias_bomb + "model: *i\n")

    for name, opts in {
        "yaml_unclosed": ["-m", "hidden_dim=[1,2"],
        "no_key": ["-m", "=5"],
        "epochs_negative": ["--epochs", "-1"],
        "batch_size_zero": ["-t", "batch_size=0"],
        "lr_nan": ["-t", "lr=nan"],
        "seeds_empty": ["--seeds"],
        "hidden_dim_zero": ["-m", "hidden_dim=0"],
        "dropout_two": ["-m", "dropout=2.0"],
        "tab_in_yaml": ["-m", "hidden_dim=\t1"],
    }.items():
        o = fresh("train")
        cases.append(
            Case(
                f"override_{name}",
                "override",
                ["train", "--data", str(base), "--out", str(o), *TRAIN, *opts],
                "reject",
                [o],
            )
        )

    # --- outputs: read-only folder, existing file
    ro, ro_setup, ro_teardown = _readonly_folder(root)
    existing = root / "existing.txt"
    existing.write_bytes(b"keep me\n")
    writers = {
        "train": lambda o: ["train", "--data", str(base), "--out", str(o), *TRAIN],
        "eval": lambda o: ["eval", str(ckpt), "--data", str(base), "--json", str(o)],
        "predict": lambda o: ["predict", str(ckpt), "--data", str(base), "--out", str(o)],
        "export": lambda o: ["data", "export", str(base), str(o)],
        "robustness": lambda o: [
            "robustness",
            str(ckpt),
            "--data",
            str(base),
            "--protocol",
            "modality",
            "--out",
            str(o),
        ],
        "sweep": lambda o: [
            "sweep",
            "--data",
            str(base),
            "--out",
            str(o),
            *TRAIN,
            "--field",
            "dropout",
            "--values",
            "0.1",
        ],
        "analyze": lambda o: [
            "analyze",
            str(_wav(root)),
            "--model",
            str(text_ckpt),
            "--transcript",
            str(_txt(root)),
            "--out",
            str(o),
        ],
    }
    for command, make in writers.items():
        target = ro / command
        cases.append(
            Case(
                f"out_readonly/{command}",
                "output",
                make(target),
                "reject",
                [target],
                setup=ro_setup,
                teardown=ro_teardown,
            )
        )
        cases.append(
            Case(f"out_existing_file/{command}", "output", make(existing), "reject", [], keep={existing: b"keep me\n"})
        )
        cases.append(
            Case(
                f"out_under_file/{command}",
                "output",
                make(existing / "sub"),
                "reject",
                [],
                keep={existing: b"keep me\n"},
            )
        )

    # --- extract: path containment
    for name, (video, clip) in {
        "dotdot_video": ("..", "outside"),  # Raw/../outside.mp4: a real file outside Raw/
        "dot_video": (".", "inside_dot"),
        "dotdot_clip": ("v", "../../outside"),
        "backslash_clip": ("v", "..\\..\\outside"),
    }.items():
        d = root / f"extract_{name}"
        (d / "Raw" / "v").mkdir(parents=True)
        (d / "outside.mp4").write_bytes(b"outside Raw/")
        rows = f"{video},{clip},hi,1.0,train\nv,2,hi,1.0,valid\nv,3,hi,1.0,test\n"
        (d / "label.csv").write_text("video_id,clip_id,text,label,mode\n" + rows)
        o = fresh("extract")
        argv = ["extract", str(d), "--out", str(o), "--no-progress", "--audio", "--visual"]
        cases.append(Case(f"extract_{name}", "path", argv, "reject", [o]))
    return cases


def _readonly_folder(root: Path) -> tuple[Path, Callable[[], None], Callable[[], None]]:
    """A folder nothing can be written under: chmod 555, or /sys for root (which chmod does not stop)."""
    if os.geteuid() == 0 and Path("/sys").is_dir():
        return Path("/sys/msakit-readonly"), lambda: None, lambda: None
    ro = root / "readonly"
    ro.mkdir()
    return ro, lambda: ro.chmod(0o555), lambda: ro.chmod(0o755)


def _dup(ids: list[str]) -> list[str]:
    return [ids[0], ids[0], *ids[2:]]


def _labels(folder: Path, edit: Callable[[str], str]) -> None:
    path = folder / "labels.csv"
    path.write_text(edit(path.read_text()))


def _classes(folder: Path, bad: float) -> None:
    """Turn the folder into a 3-class dataset with one label `bad`."""
    import pandas as pd

    frame = pd.read_csv(folder / "labels.csv", dtype={"id": str})
    frame["label"] = (np.arange(len(frame)) % 3).astype(object)
    frame.loc[0, "label"] = bad
    frame.to_csv(folder / "labels.csv", index=False)
    _meta(folder, num_classes=3, metric_set="classification")


def _strip_valid(folder: Path) -> None:
    """Every valid sample lacks every modality."""
    import pandas as pd

    frame = pd.read_csv(folder / "labels.csv", dtype={"id": str})
    valid = set(frame["id"][frame["split"] == "valid"])
    for m in ("text", "audio", "visual"):
        ids = _read_ids(folder, m)
        keep = [r for r, i in enumerate(ids) if i not in valid]
        for suffix in (".npy", ".lengths.npy"):
            arr = np.load(folder / f"{m}{suffix}")
            np.save(folder / f"{m}{suffix}", arr[keep])
        (folder / f"{m}.ids.txt").write_text("\n".join(ids[r] for r in keep) + "\n")


def _huge_header(path: Path) -> None:
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999, 99999), }"
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\x00" * 64)


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _nan_weights(c: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(c / "model.safetensors"))
    save_file(
        {k: v.float() * float("nan") if v.is_floating_point() else v for k, v in state.items()},
        str(c / "model.safetensors"),
    )


def _wav(root: Path) -> Path:
    path = root / "clip.wav"
    if not path.exists():
        sys.path.insert(0, str(Path(__file__).parent))
        from media_factory import write_wav

        write_wav(path, seconds=1.0)
    return path


def _txt(root: Path) -> Path:
    path = root / "clip.txt"
    path.write_text("it was fine")
    return path


def _text_checkpoint(root: Path) -> Path:
    from msakit.extract.pipeline import Pipeline, PipelineConfig
    from msakit.registry import create_model
    from msakit.training import save_checkpoint

    model = create_model("text_only", modalities=("text",), text_dim=384, hidden_dim=8)
    return save_checkpoint(
        root / "text_ckpt", model, extra={"extract": Pipeline(PipelineConfig(audio=(), visual=())).spec()}
    )


# ----------------------------------------------------------------------------- the harness


def run_case(case: Case) -> Outcome:
    from msakit.cli import main

    err, code, crashed = io.StringIO(), None, False
    if case.setup:
        case.setup()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code = main(case.argv)
            except SystemExit as exc:  # argparse: usage + one error line, exit 2
                code = int(exc.code) if isinstance(exc.code, int) else 2
            except BaseException:
                crashed = True
                traceback.print_exc()
    finally:
        if case.teardown:
            case.teardown()
    text = err.getvalue()
    lines = [line for line in text.splitlines() if line.strip() and not _is_noise(line)]
    if crashed or "Traceback (most recent call last)" in text:
        outcome = "traceback"
    elif case.expect == "accept":
        outcome = "ok" if code == 0 else "refused"
    elif code == 0:
        outcome = "silent"
    elif (
        any(p.exists() for p in case.outs)
        or any(p.read_bytes() != b for p, b in case.keep.items() if p.is_file())
        or any(not p.is_file() for p in case.keep)
    ):
        outcome = "partial"
    elif code in (1, 2) and len(lines) == 1:
        outcome = "clean"
    else:
        outcome = "traceback"  # several lines or an odd exit code: not one clear line
    return Outcome(case, outcome, code, text)


def _is_noise(line: str) -> bool:
    """Warnings and progress bars are not the error line."""
    return "Warning" in line or line.startswith(("  warnings.warn", "usage:", " ")) or "it/s]" in line


def run_corpus(root: Path, kinds: set[str] | None = None) -> list[Outcome]:
    cases = build_corpus(root)
    return [run_case(c) for c in cases if kinds is None or c.kind in kinds]


def summary(outcomes: list[Outcome]) -> str:
    by_kind: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_kind.setdefault(o.case.kind, Counter())[o.outcome] += 1
    names = (*OUTCOMES, "refused")
    rows = ["| kind | runs | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    total: Counter[str] = Counter()
    for kind, counts in sorted(by_kind.items()):
        total.update(counts)
        rows.append(f"| {kind} | {sum(counts.values())} | " + " | ".join(str(counts[n]) for n in names) + " |")
    rows.append(f"| all | {sum(total.values())} | " + " | ".join(str(total[n]) for n in names) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    import argparse
    import tempfile
    import warnings

    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", action="append", help="only these kinds of input")
    parser.add_argument("--show", action="store_true", help="print every case that is not clean/ok")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_corpus(Path(tmp) / "corpus", set(args.kind) if args.kind else None)
    print(summary(results))
    if args.show:
        for r in results:
            if r.outcome not in ("clean", "ok"):
                last = [line for line in r.stderr.splitlines() if line.strip()][-1:] or [""]
                print(f"{r.outcome:9s} {r.case.name}: exit {r.code}: {last[0][:200]}")
    if Path("/tmp/msakit-pwned").exists():
        print("CODE EXECUTED: /tmp/msakit-pwned exists")
