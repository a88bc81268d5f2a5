"""The package layering holds: models, data and layers import nothing from training,
pretraining or the CLI (also not lazily inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import msakit

ROOT = Path(msakit.__file__).parent
LOWER = ("models", "data", "layers")
FORBIDDEN = ("msakit.training", "msakit.pretrain", "msakit.cli")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative imports resolved."""
    package = ".".join(("msakit", *path.relative_to(ROOT).parent.parts))
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            out += [(node.lineno, base)]
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN):
                found.append(f"{path.relative_to(ROOT.parent)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("package", LOWER)
def test_lower_packages_do_not_import_training_pretraining_or_cli(package: str) -> None:
    assert not violations(package), "\n".join(violations(package))


def test_the_walker_sees_lazy_and_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: a function-local or relative import of a forbidden module is found."""
    fake = tmp_path / "msakit"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "bad.py").write_text(
        "def f():\n    from msakit.pretrain._loop import load_weights\n"
        "from ..training import trainer\nimport msakit.cli.train\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    found = violations("models")
    assert len({v.split(" imports ")[0] for v in found}) == 3, found
