"""Helpers the benchmark scripts share to write their generated sections of docs/benchmarks.md."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def median_rows(files: list[Path], size: str) -> dict[str, float]:
    """Per path, the median over `files` (inference_speed.py results) of samples per CPU-second at `size`."""
    rows = [json.loads(f.read_text())["samples_per_cpu_second"][size] for f in files]
    return {k: statistics.median(r[k] for r in rows if k in r) for k in rows[0]}


def replace_block(doc: Path, begin: str, end: str, lines: list[str], after: str = "<!-- speed:end -->\n") -> None:
    """Write `lines` between the markers `begin` and `end` in `doc`, replacing what is there; without the
    markers the block goes after the line `after` (else at the end). Written through a temporary file."""
    text = doc.read_text()
    block = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        at = text.index(after) + len(after) if after in text else len(text)
        text = text[:at] + block + "\n" + text[at:]
    tmp = doc.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(doc)


def inference_table(
    afters: list[Path], befores: list[Path], baseline: dict[str, dict[str, float]], aliases: dict[str, str]
) -> tuple[list[str], dict[str, dict[str, float]], list[float]]:
    """The before/after table of inference_speed.py pairs (medians), the after medians per batch size, and the
    after ÷ before ratios of the unchanged model-alone rows (the machine's noise). `baseline`: the issue's
    figures per batch size and path; `aliases`: a path -> the path whose baseline it is measured against."""
    lines = [
        "| batch | path | issue baseline | before | after | after ÷ before | after ÷ issue baseline |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    medians, noise = {}, []
    for size in ("batch_1", "batch_256"):
        a, b = median_rows(afters, size), median_rows(befores, size)
        medians[size] = a
        noise += [a[k] / b[k] for k in ("torch", "onnxruntime") if k in a and k in b]
        for path, value in a.items():
            base, before = baseline[size].get(aliases.get(path, path)), b.get(path)
            lines.append(
                f"| {size.split('_')[1]} | {path} | {f'{base:.0f}' if base else '—'} | "
                f"{f'{before:.0f}' if before else '— (new)'} | {value:.0f} | "
                f"{f'{value / before:.2f}' if before else '—'} | {f'{value / base:.2f}' if base else '—'} |"
            )
    return lines, medians, noise
