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


# ---- one atomic folder writer, one weights format ---------------------------------------------------------------
def hand_written_writers(root: Path) -> list[str]:
    """Places outside msakit.io that stage a folder beside its target (`mkdtemp(dir=...)`) or
    rename one into place, and places outside the checkpoint module that write weights.

    `atomic_dir` is the one folder writer and `checkpoint.save_weights` the one weights +
    metadata format (issue 14); moving files *into* the folder `atomic_dir` yields is fine.
    """
    found = []
    allowed_weights = {root / "training" / "checkpoint.py"}
    for path in sorted(root.rglob("*.py")):
        if path == root / "io.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            if name == "mkdtemp" and any(k.arg == "dir" for k in node.keywords):
                found.append(f"{where} stages a folder with mkdtemp(dir=...): use msakit.io.atomic_dir")
            if name == "rename" and isinstance(node.func, ast.Attribute):
                found.append(f"{where} renames a path into place: use msakit.io.atomic_dir / atomic_path")
            if name in ("save_file", "save") and path not in allowed_weights:
                target = node.func.value if isinstance(node.func, ast.Attribute) else None
                if name == "save_file" or (isinstance(target, ast.Name) and target.id == "torch"):
                    found.append(f"{where} writes weights by hand: use training.checkpoint.save_weights")
    return found


def test_one_atomic_folder_writer_and_one_weights_format() -> None:
    assert hand_written_writers(ROOT) == []


def test_the_writer_check_sees_a_hand_rolled_folder_swap(tmp_path: Path) -> None:
    pkg = tmp_path / "msakit"
    (pkg / "training").mkdir(parents=True)
    (pkg / "bad.py").write_text(
        "import tempfile, torch\n"
        "from pathlib import Path\n"
        "def write(out):\n"
        "    tmp = Path(tempfile.mkdtemp(dir=out.parent))\n"
        "    torch.save({}, tmp / 'w.pt')\n"
        "    tmp.rename(out)\n"
    )
    found = hand_written_writers(pkg)
    assert len(found) == 3 and all(f.startswith("msakit/bad.py:") for f in found)
