"""Docs cannot contradict their tables: generated blocks equal what the result files render.

`benchmarks/docgen.py` renders each `<!-- docgen:begin NAME -->` block (table and the
sentences that read it) from `docs/results/NAME.json`; this test re-renders every block
and compares, and checks that the sentences really follow the numbers.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docgen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_docgen", ROOT / "benchmarks" / "docgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_generated_block_matches_its_result_file(docgen: ModuleType) -> None:
    docs = docgen.generated_docs()
    assert any(p.name == "robustness.md" for p in docs)
    stale = [str(p.relative_to(ROOT)) for p in docs if docgen.render_doc(p.read_text()) != p.read_text()]
    assert not stale, f"run `python benchmarks/docgen.py` (docs differ from docs/results): {stale}"


def test_every_block_has_a_renderer_and_a_result_file(docgen: ModuleType) -> None:
    for path in docgen.generated_docs():
        for m in docgen.BLOCK.finditer(path.read_text()):
            assert docgen.renderer(m.group("name")) is not None, (path, m.group("name"))
            assert (docgen.RESULTS / f"{m.group('name')}.json").is_file(), (path, m.group("name"))


def test_findings_follow_the_numbers(docgen: ModuleType) -> None:
    data = docgen.load_result("robustness")
    text = docgen.render_robustness(data)
    mosi = data["datasets"]["mosi"]["models"]
    costly = [m for m, r in mosi.items() if r["drop"].get("audio", 0) >= 2.0]
    for m in costly:
        assert f"{m} ({mosi[m]['drop']['audio']:.1f})" in text
    changed = copy.deepcopy(data)
    for r in changed["datasets"]["mosi"]["models"].values():
        r["drop"]["audio"] = 0.0
    assert "at least 2 points only for" not in docgen.render_robustness(changed)
    # a ranking sentence moves with the table
    best_noise = max(mosi, key=lambda m: mosi[m]["auilc_noise"] or -1)
    assert f"the best models are {best_noise}" in text
    changed["datasets"]["mosi"]["models"]["text_only"]["auilc_noise"] = 99.0
    assert "the best models are text_only (99.0)" in docgen.render_robustness(changed)


def test_a_stale_block_is_detected(docgen: ModuleType) -> None:
    path = next(p for p in docgen.generated_docs() if p.name == "robustness.md")
    text = path.read_text()
    edited = text.replace("the lowest", "the highest", 1)
    assert edited != text and docgen.render_doc(edited) != edited
