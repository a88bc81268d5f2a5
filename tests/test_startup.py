"""Start-up cost: `import msakit` and a CLI command import only what they use."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from msakit.cli import build_parser, command_modules, commands_of

#: optional or heavy libraries that `import msakit` must not load
HEAVY = ("torch", "sklearn", "scipy", "pandas", "optuna", "fastapi", "uvicorn", "mediapipe", "h5py", "onnxruntime")


def _loaded_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_msakit_loads_no_heavy_module() -> None:
    loaded = _loaded_after("import msakit")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_public_names_still_resolve() -> None:
    import msakit

    for name in msakit.__all__:
        assert getattr(msakit, name) is not None
    assert set(msakit.__all__) <= set(dir(msakit))
    with pytest.raises(AttributeError):
        msakit.not_a_name  # noqa: B018


def test_a_command_imports_only_its_own_module() -> None:
    loaded = _loaded_after("from msakit.cli import build_parser\nbuild_parser(['models'], every_command=False)")
    assert not loaded & {"pandas", "sklearn", "optuna", "fastapi", "uvicorn", "onnxruntime"}
    loaded = _loaded_after(
        "from msakit.cli import build_parser\nbuild_parser(['predict', 'ckpt', '--data', 'd', '--out', 'o'], "
        "every_command=False).parse_args(['predict', 'ckpt', '--data', 'd', '--out', 'o'])"
    )
    assert not loaded & {"pandas", "sklearn", "optuna", "fastapi", "uvicorn"}


@pytest.mark.parametrize("module", command_modules())
def test_commands_read_from_source_match_what_the_module_registers(module: str) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(f"msakit.cli.{module}").register(sub)
    assert sorted(commands_of(module)) == sorted(sub.choices)


def test_every_command_is_reachable_and_help_lists_them_all() -> None:
    every = build_parser()
    choices = every._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in choices:
        one = build_parser([name], every_command=False)
        assert name in one._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    help_parser = build_parser(["--help"], every_command=False)
    assert set(help_parser._subparsers._group_actions[0].choices) == set(choices)  # type: ignore[union-attr]
    typo = build_parser(["modles"], every_command=False)  # argparse's "invalid choice" names them all
    assert set(typo._subparsers._group_actions[0].choices) == set(choices)  # type: ignore[union-attr]
