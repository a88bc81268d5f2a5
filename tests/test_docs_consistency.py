"""Docs cannot contradict their tables: generated blocks equal what the result files render.

`benchmarks/docgen.py` renders each `<!-- docgen:begin NAME -->` block (table and the
sentences that read it) from `docs/results/NAME.json`; this test re-renders every block
and compares, and checks that the sentences really follow the numbers.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import ModuleType

import pytest

from benchmark_module import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docgen() -> ModuleType:
    return load_benchmark("docgen")


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
    mosi_name = docgen.mosi_key(data["datasets"])
    mosi = data["datasets"][mosi_name]["models"]
    costly = [m for m, r in mosi.items() if r["drop"].get("audio", 0) >= 2.0]
    for m in costly:
        assert f"{m} ({mosi[m]['drop']['audio']:.1f})" in text
    changed = copy.deepcopy(data)
    for r in changed["datasets"][mosi_name]["models"].values():
        r["drop"]["audio"] = 0.0
    assert "at least 2 points only for" not in docgen.render_robustness(changed)
    # a ranking sentence moves with the table
    best_noise = max(mosi, key=lambda m: mosi[m]["auilc_noise"] or -1)
    assert f"the best models are {best_noise}" in text
    changed["datasets"][mosi_name]["models"]["text_only"]["auilc_noise"] = 99.0
    assert "the best models are text_only (99.0)" in docgen.render_robustness(changed)


def test_whole_modality_findings_follow_the_numbers(docgen: ModuleType) -> None:
    def row(whole: float, step: float, audio: float, visual: float) -> dict[str, object]:
        lost = {"audio": audio, "visual": visual}
        return {"auilc_modality_shared": whole, "auilc_step": step, "auilc_modality_imbalanced": lost}

    models = {"a": row(70.0, 75.0, 60.0, 80.0), "late_fusion": row(72.0, 71.0, 79.0, 78.0)}
    models["late_fusion+rmr"] = row(76.0, 77.0, 65.0, 81.0)
    text = " ".join(docgen.whole_modality_findings("X", models))
    assert "is below the AUILC under step_shared (the same rate of lost steps) for 2 of 3 models" in text
    assert "step_shared − modality_shared is from -1.0 to 5.0 points (median 1.0)" in text
    assert "the best models are late_fusion+rmr (76.0) and late_fusion (72.0), the lowest a (70.0)" in text
    assert "(late_fusion+rmr, 76.0, rank 1 of 3) raises late_fusion's 72.0" in text
    assert "the audio for 2 of 3 models and the visual for 1 of 3 models" in text
    models["late_fusion+rmr"]["auilc_modality_shared"] = 60.0
    text = " ".join(docgen.whole_modality_findings("X", models))
    assert "rank 3 of 3) does not raise" in text and "the lowest late_fusion+rmr (60.0)" in text
    # every robustness result in the file renders its whole-modality sentences when it has the columns
    data = docgen.load_result("robustness")
    for info in data["datasets"].values():
        if any(r.get("auilc_modality_shared") is not None for r in info["models"].values()):
            assert docgen.whole_modality_findings("X", info["models"])


def test_a_stale_block_is_detected(docgen: ModuleType) -> None:
    path = next(p for p in docgen.generated_docs() if p.name == "robustness.md")
    text = path.read_text()
    edited = text.replace("the lowest", "the highest", 1)
    assert edited != text and docgen.render_doc(edited) != edited


# ---- every doc: prose against its own tables (benchmarks/doccheck.py) ------------------------------
# Docs other engineers are rewriting this stop, each with the findings the checker reports in it
# today (`python benchmarks/docgen.py --check-all FILE`). This list must only shrink: remove a doc
# once its findings are fixed (the test below fails if an excluded doc has become clean).
PENDING: set[str] = set()  # empty at the end of stop 3: every doc passes


@pytest.fixture(scope="module")
def doccheck() -> ModuleType:
    return load_benchmark("doccheck")


def test_no_doc_contradicts_its_own_tables(doccheck: ModuleType) -> None:
    docs = sorted((ROOT / "docs").rglob("*.md"))
    findings = doccheck.check_files([p for p in docs if str(p.relative_to(ROOT)) not in PENDING], ROOT)
    assert not findings, "\n".join(str(f) for f in findings)


def test_pending_docs_still_have_findings(doccheck: ModuleType) -> None:
    """A doc leaves PENDING as soon as it is clean, so the exclude list can only shrink."""
    clean = [p for p in sorted(PENDING) if not doccheck.check_files([ROOT / p], ROOT)]
    assert not clean, f"these docs are clean now, remove them from PENDING: {clean}"


TABLE_DOC = """# Results

## MOSI

```bash
msakit train --model M --data data/mosi
```

| model | Acc-2 | MAE | Corr |
|---|---|---|---|
| *probe: all (mean, α=10) ← chosen on valid* | 80.0 | 0.900 | 0.700 |
| late_fusion (1.2 s/epoch) | 84.6 ± 0.5 | 0.776 ± 0.010 | 0.778 ± 0.004 |
| tfn | 83.0 ± 0.9 | 0.850 ± 0.020 | 0.740 ± 0.010 |
| amsgfn | 79.0 ± 1.0 | 0.910 ± 0.030 | 0.690 ± 0.020 |

{prose}
"""


def _kinds(doccheck: ModuleType, prose: str) -> list[str]:
    return [f.kind for f in doccheck.check_text(TABLE_DOC.format(prose=prose))]


@pytest.mark.parametrize(
    "true, false, kind",
    [
        ("late_fusion reaches 84.6 Acc-2.", "late_fusion reaches 85.6 Acc-2.", "number"),
        ("tfn's Corr 0.740 is second.", "tfn's Corr 0.778 is second.", "number"),
        ("late_fusion beats tfn on MAE.", "tfn beats late_fusion on MAE.", "ranking"),
        ("amsgfn is behind tfn.", "tfn is behind amsgfn.", "ranking"),
        ("late_fusion has the lowest MAE.", "tfn has the lowest MAE.", "superlative"),
        ("amsgfn has the worst MAE.", "tfn has the worst MAE.", "superlative"),
        (
            "amsgfn has the lowest Corr but the highest MAE.",
            "amsgfn has the lowest Corr but the lowest MAE.",
            "superlative",
        ),
        ("tfn is above the probe on Corr.", "amsgfn is above the probe on Corr.", "probe"),
        ("amsgfn is below the probe.", "tfn is below the probe.", "probe"),
        (
            "Every model is at or above the probe's MAE except amsgfn.",
            "Every model is at or above the probe's MAE.",
            "probe",
        ),
        ("amsgfn is the only model with Acc-2 < 80.", "tfn is the only model with Acc-2 < 80.", "only"),
        ("Every model has Corr 0.69–0.78.", "Every model has Corr 0.70–0.78.", "range"),
    ],
)
def test_a_contradicting_sentence_is_caught(doccheck: ModuleType, true: str, false: str, kind: str) -> None:
    """Sabotage check: the true sentence passes, the same sentence contradicting the table fails."""
    assert _kinds(doccheck, true) == []
    assert kind in _kinds(doccheck, false)


def test_an_unsourced_number_needs_a_command(doccheck: ModuleType) -> None:
    doc = "# D\n\n| model | MAE |\n|---|---|\n| tfn | 0.850 |\n\nOn the hidden set tfn gets MAE 0.912.\n"
    assert [f.kind for f in doccheck.check_text(doc)] == ["number"]  # pinned to tfn's row: a number claim
    assert [f.kind for f in doccheck.check_text(doc.replace("tfn gets", "it gets"))] == ["unsourced"]
    doc = doc.replace("tfn gets", "it gets")
    assert doccheck.check_text(doc.replace("0.912.", "0.912 (`msakit eval runs/tfn --data hidden`).")) == []
    assert doccheck.check_text(doc.replace("0.912.", "0.912 (docs/results/hidden.json).")) == []
    # a sourced number pinned to a row's column must still be that cell, unless the sentence says
    # it is another quantity (valid split, a seed, a paper's table, another doc)
    pinned = doc.replace("it gets", "tfn gets").replace("0.912.", "0.912 (`msakit eval runs/tfn`).")
    assert [f.kind for f in doccheck.check_text(pinned)] == ["number"]
    assert doccheck.check_text(pinned.replace("MAE 0.912", "valid MAE 0.912")) == []
    # numbers in the table, differences of two cells and integers are not "unsourced"
    assert doccheck.check_text(doc.replace("MAE 0.912", "MAE 0.850 over 5 seeds")) == []


def test_the_checker_caught_last_stops_robustness_contradictions(doccheck: ModuleType) -> None:
    """The hand-written 'What we found' issue 16 reported (MEI > 0 for amsgfn only; MLI 0.00–0.04
    on MOSI) against today's table: both claims are reported."""
    text = (ROOT / "docs" / "robustness.md").read_text()
    assert doccheck.check_text(text) == []
    head = text.split("#### What we found")[0]
    wrong = head + (
        "#### What we found\n\n- On MOSI MLI 0.00–0.04 for every model, and amsgfn is the only model with MEI > 0.\n"
    )
    kinds = {f.kind for f in doccheck.check_text(wrong)}
    assert {"range", "only"} <= kinds, kinds
