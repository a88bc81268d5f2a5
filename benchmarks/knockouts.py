"""Disable each named component of the seed models in turn and report which fast tests catch it.

The components, and the patch that disables each, are data in `tests/test_knockouts.py`
(`COMPONENTS`). For every component this script starts a fresh Python process that
applies the patch with `unittest.mock` (no file is edited) and runs the model's fast
tests: by default that model's behavioural tests in `tests/test_knockouts.py`; with
`--broad` also `tests/test_<model>.py`. Always without `slow` and `realdata` and without
the few tests that load the 22 M-parameter MiniLM (`HEAVY`: tens of seconds each on a
2-core machine; every text-side component has its own light test). A test that fails
under the patch *catches* the component. The report lists, per component, the tests that caught it;
every component must be caught.

    OMP_NUM_THREADS=1 python benchmarks/knockouts.py --out docs/knockouts.md
    python benchmarks/knockouts.py --only "sadgr: AG-VR gate (eq. 18)"    # one component
    python benchmarks/knockouts.py --list

Exit code 0 when every selected component is caught, 1 when one is not, 2 for an
unknown component name (the message lists the valid ones).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
#: fast tests left out of every knockout run because they load MiniLM (tens of seconds each here)
HEAVY = (
    "test_s_mlm_warms_up_heads_then_adapts_only_the_top_layers",
    "test_checkpoint_predicts_with_stage1_folders_deleted",
    "test_raw_text_encoder_is_deterministic_frozen_and_its_cache_bounded",
)


def components_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_knockout_components", TESTS / "test_knockouts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


PREFIX = {"tssp_msa": ("test_tssp_", "test_s_mlm_"), "sadgr": ("test_sadgr_",), "tecafn": ("test_tecafn_",)}


def child(name: str, junit: str, broad: bool, mod: ModuleType | None = None) -> int:
    """Disable `name`, run the model's fast tests, write JUnit XML (in this process)."""
    import pytest

    mod = mod or components_module()
    component = mod.find_component(name)
    files = [str(TESTS / "test_knockouts.py")]
    own = TESTS / f"test_{component.model}.py"
    if broad and own.is_file():
        files.append(str(own))
    prefixes = PREFIX.get(component.model, (f"test_{component.model}_",))
    select = " and ".join(f"not {t}" for t in HEAVY)
    if not broad:  # the model's behavioural tests in test_knockouts.py
        select = "(" + " or ".join(p.rstrip("_") for p in prefixes) + ") and " + select
    with mod.knocked_out(component):
        return int(
            pytest.main(
                [
                    *files,
                    "-q",
                    "-m",
                    "not slow and not realdata",
                    "-k",
                    select,
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={junit}",
                ]
            )
        )


def failed_tests(junit: Path) -> list[str]:
    root = ET.parse(junit).getroot()
    out = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            file = Path(case.get("classname", "").replace(".", "/")).name
            out.append(f"{file}::{case.get('name')}")
    return out


def run(name: str, broad: bool, mod: ModuleType | None = None) -> dict[str, Any]:
    """One knockout: in this process when `mod` is given (the knockout suite looks every
    patched name up at call time), else in a fresh Python process (`--broad`: model test
    files may bind names at import)."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        if mod is not None:
            child(name, str(junit), broad, mod)
            return {
                "component": name,
                "caught_by": failed_tests(junit),
                "seconds": round(time.perf_counter() - start, 1),
            }
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, "--junit", str(junit), *(["--broad"] if broad else [])],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if not junit.is_file():
            raise SystemExit(
                f"knockout {name!r}: the test run did not finish:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        caught = failed_tests(junit)
    return {"component": name, "caught_by": caught, "seconds": round(seconds, 1)}


def report(rows: list[dict[str, Any]], command: str) -> str:
    caught = sum(1 for r in rows if r["caught_by"])
    lines = [
        "# Knockout report: does a fast test fail when a named component is disabled?",
        "",
        "Generated by `benchmarks/knockouts.py` (do not edit by hand). Each row disables one",
        "component of a seed model by patching it (`unittest.mock`, the patch is listed in",
        "`tests/test_knockouts.py::COMPONENTS`) and runs that model's fast tests",
        "(its behavioural tests in `tests/test_knockouts.py`; with `--broad` also `tests/test_<model>.py`;",
        "no `slow` / `realdata` / MiniLM-loading tests).",
        "",
        "```bash",
        command,
        "```",
        "",
        f"**{caught} of {len(rows)} components caught ({100.0 * caught / max(len(rows), 1):.0f} %).**",
        "",
        "| model | component | caught by (failing fast tests) |",
        "|---|---|---|",
    ]
    for r in rows:
        model, _, name = r["component"].partition(": ")
        tests = ", ".join(f"`{t.split('::')[-1]}`" for t in r["caught_by"]) or "**NOT CAUGHT**"
        lines.append(f"| {model} | {name} | {tests} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", help="component names (as in --list)")
    p.add_argument("--list", action="store_true", help="list the components and exit")
    p.add_argument("--out", type=Path, help="write the markdown report here (and a .json beside it)")
    p.add_argument(
        "--broad",
        action="store_true",
        help="also run tests/test_<model>.py (slower; the default runs the knockout suite)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--junit", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.junit, args.broad)
    mod = components_module()
    names = mod.component_names()
    if args.list:
        print("\n".join(names))
        return 0
    selected = args.only or names
    unknown = [n for n in selected if n not in names]
    if unknown:
        print(f"error: no knockout named {unknown[0]!r}; valid names: {', '.join(names)}", file=sys.stderr)
        return 2
    rows = []
    for name in selected:
        row = run(name, args.broad, None if args.broad else mod)
        rows.append(row)
        status = ", ".join(row["caught_by"]) or "NOT CAUGHT"
        print(f"{name}: {status} ({row['seconds']} s)", flush=True)
    command = "OMP_NUM_THREADS=1 python benchmarks/knockouts.py --out docs/knockouts.md" + (
        " --broad" if args.broad else ""
    )
    if args.out:
        from msakit.io import atomic_write_json, atomic_write_text

        atomic_write_text(args.out, report(rows, command))
        atomic_write_json(args.out.with_suffix(".json"), {"components": rows})
    missed = [r["component"] for r in rows if not r["caught_by"]]
    print(f"{len(rows) - len(missed)} of {len(rows)} components caught")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
