"""Does a doc's prose contradict its own tables? A checker for every `docs/**/*.md`.

`benchmarks/docgen.py` generates some sentences from result files; this module checks
the hand-written ones. It parses a markdown doc into tables and prose sentences and
reports these kinds of finding:

- **number** — a sentence pins a number to a row ("late_fusion 0.463", "tfn's Corr
  0.496", "probe (1.131)") that no cell of that row holds (within the sentence's
  rounding; a column named just before the number narrows it to that column).
- **ranking** — "A beats / is above / is ahead of B", "A is below / behind B": the two
  rows compared on the column the sentence names (or, when it names none, on every
  column both rows fill: then only a unanimous contrary order counts).
- **superlative** — "best", "highest", "lowest", ... with the row(s) the clause names:
  they must be the extreme rows of the table on the named column (ties allowed).
- **probe** — "A is above / at or above / below the probe", "every model beats the
  probe": rows against the table's probe row (the one "chosen on valid", else any).
- **only** — "A is the only model with MEI > 0": exactly the named rows pass the test.
- **range** — "MLI 0.00–0.04 for every model": every row of that column lies in the range.
- **unsourced** — a sentence that names a row or a column of the doc's tables states a
  decimal number that no table cell (nor a difference of two cells of one column) holds,
  and neither it, its paragraph nor the code block right after it carries a command
  (`msakit …`, `python …`, a `benchmarks/*.py` script) or a `docs/results/*.json` source.

Scope choices, so that the check is strict where a claim is clear and silent where it
is not: a "number" is a decimal (``0.48``, ``83.2``, ``0.48 ± 0.01``) outside code spans;
integers (seeds, epochs, counts) are not checked. Signed numbers (``+4.8``), numbers
in ranges (``1.2–5.8``) and numbers after a delta word (loses, costs, gains, by, ...)
are differences, checked only by the unsourced rule. A sentence's tables are those of
its own section; when its row is not there, those of the parent sections, then the doc.
Lower-is-better columns are recognised by name (MAE, loss, error, WER, time, s/epoch,
memory, ...). "above/below the probe" means better/worse (the probe is a floor). Probe
and paper rows are references, not contenders, for "best" / "lowest". Where a sentence
names no column, a ranking counts as contradicted only when every column disagrees.
A number pinned to a row passes when the row holds it; otherwise it fails unless the
sentence is sourced (a command or result file in it, its paragraph, the code block next
to it or its section) and, where it names a column, says it is another quantity
(valid, seed, AUILC, a paper's Table N, another doc).

    python benchmarks/docgen.py --check-all [FILES]     # exit 1 and one line per finding
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

NUM = r"[-−]?\d+(?:\.\d+)?"
DECIMAL = re.compile(r"(?<![\w.+\-−/=])([+\-−]?)(\d+\.\d+)(?:\s*±\s*\d+(?:\.\d+)?)?(?![\w.]*\d)")
FIRST_NUMBER = re.compile(r"[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
LOWER_IS_BETTER = re.compile(
    r"\b(mae|mse|rmse|loss|error|err|wer|cer|ece|nll|time|seconds|s/epoch|s / epoch|cpu|wall|latency|ms|"
    r"memory|mb|gb|mib|gib|perplexity|rank|drop|cost)\b",
    re.I,
)
COMMAND = re.compile(
    r"`[^`]*(?:msakit |python3? |benchmarks/[\w/]+\.py|docs/results/[\w.-]+\.json)[^`]*`|docs/results/"
    r"|\b[\w/-]+\.md\b|seeds/|\bthe paper\b|\bpaper'?s?\b|\(paper|\bREADME\b"
)
DELTA_WORDS = {
    "loses", "lose", "lost", "costs", "cost", "gains", "gain", "gained", "drops", "drop", "dropped", "by",
    "improves", "improved", "over", "more", "less", "fewer", "short", "behind", "ahead", "saves", "adds",
    "within", "than", "vs", "versus", "against", "and", "or", "to", "from", "minus", "plus", "of",
}  # fmt: skip
SUPERLATIVES = {
    "best": "good", "worst": "bad", "highest": "high", "lowest": "low", "largest": "high", "smallest": "low",
    "strongest": "good", "weakest": "bad", "top": "good",
}  # fmt: skip
BETTER = r"beats|beat|outperforms|outperform|is better than|are better than|better than|is ahead of|ahead of|tops"
WORSE = r"is worse than|are worse than|worse than|trails|trail|is behind|are behind|behind|loses to|lose to"
QUALIFIERS = re.compile(
    r"\b(?:valid|validation|dev|seeds?|single-seed|per-seed|auilc|paper|earlier|before|after|Table \d+)\b|\.md\b", re.I
)  # words that say a number pinned to a row is another quantity than the table's cell
STOP_LABELS = {
    "all", "none", "full", "mean", "model", "row", "run", "total", "text", "audio", "visual", "video", "with",
    "without",
    "gate", "both", "one", "two", "yes", "no", "default", "before", "after", "clean", "shared",
}  # fmt: skip


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    line: int
    section: tuple[str, ...]

    def labels(self) -> list[str]:
        return [row_key(r[0]) for r in self.rows]

    def aliases(self, row: int) -> set[str]:
        """Names a sentence may use for a row: its key and its whole label ('sadgr (ag-vr gate)')."""
        full = re.sub(r"\s+", " ", re.sub(r"[*`]|\[|\]\([^)]*\)", "", self.rows[row][0])).strip().lower()
        return {row_key(self.rows[row][0]), full}

    def value(self, row: int, col: int) -> float | None:
        """The cell's first number (its mean), what rankings compare."""
        if col >= len(self.rows[row]):
            return None
        return parse_number(self.rows[row][col])

    def numbers(self, row: int, col: int) -> list[float]:
        """Every number a cell prints ('text 20.0 / audio 19.4' -> [20.0, 19.4]), what a claim may cite."""
        if col >= len(self.rows[row]):
            return []
        return [float(x.replace("−", "-")) for x in FIRST_NUMBER.findall(re.sub(r"[*`]", "", self.rows[row][col]))]

    def numeric_columns(self) -> list[int]:
        return [
            c for c in range(1, len(self.header)) if any(self.value(r, c) is not None for r in range(len(self.rows)))
        ]

    def probe_row(self) -> int | None:
        probes = [i for i, k in enumerate(self.labels()) if k == "probe"]
        chosen = [i for i in probes if "chosen" in self.rows[i][0]]
        return (chosen or probes or [None])[0]


@dataclass
class Sentence:
    text: str  # code spans removed
    raw: str
    line: int
    section: tuple[str, ...]
    sourced: bool  # the sentence, its paragraph or the next code block carries a command / result file


@dataclass
class Finding:
    path: str
    line: int
    kind: str
    message: str
    sentence: str = field(repr=False)

    def __str__(self) -> str:
        short = self.sentence if len(self.sentence) < 160 else self.sentence[:157] + "..."
        return f"{self.path}:{self.line}: {self.kind}: {self.message} — “{short}”"


# ---- parsing -------------------------------------------------------------------------------------
def row_key(cell: str) -> str:
    """'*probe: all (mean, α=316) ← chosen on valid*' -> 'probe'; 'tecafn, `-m x` (3 s)' -> 'tecafn'."""
    s = re.sub(r"[*`]|\[|\]\([^)]*\)", "", cell).strip()
    s = re.split(r"\s*[(:,←]", s, maxsplit=1)[0].strip()
    return s.lower()


def norm(text: str) -> str:
    """'Non0_acc_2' / 'Non0 Acc-2.' -> 'non0 acc 2': lower case, punctuation and underscores as spaces."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def parse_number(cell: str) -> float | None:
    s = re.sub(r"[*`]", "", cell).strip()
    m = FIRST_NUMBER.match(s)
    return float(m.group(0).replace("−", "-")) if m else None


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse(text: str) -> tuple[list[Table], list[Sentence]]:
    """Tables and prose sentences of a markdown doc, each with its section path."""
    lines = text.splitlines()
    tables: list[Table] = []
    sentences: list[Sentence] = []
    section: list[tuple[int, str]] = []
    para: list[tuple[int, str]] = []
    paras: list[tuple[list[tuple[int, str]], tuple[str, ...], int]] = []  # (lines, section, end line index)

    def flush(i: int) -> None:
        if para:
            paras.append((list(para), tuple(h for _, h in section), i))
            para.clear()

    code: dict[tuple[str, ...], list[str]] = {}  # code lines per section
    i, fence = 0, False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush(i)
            fence = not fence
            i += 1
            continue
        if fence:
            code.setdefault(tuple(h for _, h in section), []).append(line)
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)", line)
        if heading:
            flush(i)
            level = len(heading.group(1))
            section = [(lv, h) for lv, h in section if lv < level] + [(level, heading.group(2).strip())]
            i += 1
            continue
        if stripped.startswith("|") and i + 1 < len(lines) and re.match(r"^\|?\s*:?-{2,}", lines[i + 1].strip()):
            flush(i)
            header, rows, start = _cells(line), [], i
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append(Table(header, rows, start + 1, tuple(h for _, h in section)))
            continue
        if not stripped or stripped.startswith("<!--") or (line.startswith("    ") and not para):
            if line.startswith("    "):
                code.setdefault(tuple(h for _, h in section), []).append(line)
            flush(i)
            i += 1
            continue
        if re.match(r"^\s*(?:[-*+]|\d+\.)\s+", line):
            flush(i)
        para.append((i + 1, line))
        i += 1
    flush(len(lines))

    inline = {sec: " ".join(t for pl, sc, _ in paras if sc == sec for _, t in pl) for _, sec, _ in paras}
    section_sourced = {
        sec: bool(COMMAND.search("`" + " ".join(code.get(sec, [])) + "`")) or bool(COMMAND.search(inline.get(sec, "")))
        for sec in set(code) | set(inline)
    }
    for plines, sec, end in paras:
        joined = " ".join(t.strip() for _, t in plines)
        joined = re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", joined)
        near = [b for b in (_next_block(lines, end), _prev_block(lines, plines[0][0] - 1)) if b]
        sourced_para = bool(COMMAND.search(joined)) or any(COMMAND.search(f"`{b}`") for b in near)
        sourced_para = sourced_para or section_sourced.get(sec, False)
        starts = _line_offsets(plines)
        for start, chunk in _split_sentences(joined):
            line_no = next((ln for off, ln in reversed(starts) if off <= start), plines[0][0])
            clean = re.sub(r"`[^`]*`", " ", chunk)
            clean = re.sub(r"\]\([^)]*\)", "]", clean)
            sentences.append(Sentence(clean, chunk, line_no, sec, sourced_para or bool(COMMAND.search(chunk))))
    return tables, sentences


def _next_block(lines: list[str], i: int) -> str:
    """The code block (fenced or indented) that follows a paragraph, skipping blank lines and a 'Reproduce:' line."""
    j = i
    while j < len(lines) and not lines[j].strip():
        j += 1
    if j < len(lines) and lines[j].strip().startswith("```"):
        k = j + 1
        while k < len(lines) and not lines[k].strip().startswith("```"):
            k += 1
        return " ".join(lines[j + 1 : k])
    if j < len(lines) and lines[j].startswith("    "):
        k = j
        while k < len(lines) and (lines[k].startswith("    ") or not lines[k].strip()):
            k += 1
        return " ".join(lines[j:k])
    return ""


def _prev_block(lines: list[str], i: int) -> str:
    """The code block (fenced or indented) right before line index `i`, skipping blank lines."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j >= 0 and lines[j].strip().startswith("```"):
        k = j - 1
        while k >= 0 and not lines[k].strip().startswith("```"):
            k -= 1
        return " ".join(lines[k + 1 : j])
    if j >= 0 and lines[j].startswith("    "):
        k = j
        while k >= 0 and (lines[k].startswith("    ") or not lines[k].strip()):
            k -= 1
        return " ".join(lines[k + 1 : j + 1])
    return ""


def _line_offsets(plines: list[tuple[int, str]]) -> list[tuple[int, int]]:
    out, off = [], 0
    for ln, t in plines:
        out.append((off, ln))
        off += len(t.strip()) + 1
    return out


def _split_sentences(text: str) -> list[tuple[int, str]]:
    out, start = [], 0
    for m in re.finditer(r"(?<=[.!?])\s+(?=[A-Z(`*\"“])", text):
        before = text[max(0, m.start() - 5) : m.start()]
        if re.search(r"\b(?:e\.g|i\.e|etc|vs|cf|al|Fig|Eq|Sec|No)\.$", before):
            continue
        out.append((start, text[start : m.start()]))
        start = m.end()
    out.append((start, text[start:]))
    return [(s, t) for s, t in out if t.strip()]


# ---- matching helpers ----------------------------------------------------------------------------
def matches(number: str, value: float, *, percent: bool = True) -> bool:
    """Does '0.48' (as written, with its rounding) state `value`? Also across a ×100 scale."""
    digits = len(number.split(".")[1]) if "." in number else 0
    n = float(number.replace("−", "-"))
    tol = 0.5 * 10**-digits + 1e-9
    candidates = [value, 100 * value, value / 100] if percent else [value]
    return any(abs(abs(c) - abs(n)) <= tol for c in candidates)


def label_pattern(label: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w/-])" + re.escape(label) + r"(?:'s|’s)?(?![\w-])", re.I)


def columns_named(table: Table, clause: str) -> list[int]:
    """Columns of `table` whose header the clause names. A shortened name ('Acc-2' for 'Has0 Acc-2')
    counts only where it is not part of a longer name the clause uses ('Non0 Acc-2')."""
    text = " " + norm(clause) + " "
    spans: list[tuple[int, int, int, bool]] = []  # (start, end, column, full name)
    for c, h in enumerate(table.header[1:], start=1):
        full = norm(re.sub(r"[*`]|\(.*?\)", "", h))
        forms = [(full, True)]
        head, _, rest = full.partition(" ")
        if head in {"has0", "non0", "test", "mult"} and rest:
            forms.append((rest, False))
        for f, is_full in forms:
            if len(f) < 2:
                continue
            spans += [(m.start(), m.end(), c, is_full) for m in re.finditer(f" {re.escape(f)} ", text)]
    fulls = [(a, b) for a, b, _, is_full in spans if is_full]
    inside = {(a, b) for a, b, _, _ in spans for x, y in fulls if x <= a and b <= y and (x, y) != (a, b)}
    found = sorted({c for a, b, c, is_full in spans if is_full or (a, b) not in inside})
    if not found:  # a word only one header has ('noise' for 'AUILC noise')
        words = [set(norm(re.sub(r"[*`]|\(.*?\)", "", h)).split()) for h in table.header[1:]]
        for c, ws in enumerate(words, start=1):
            others = set().union(*(w for k, w in enumerate(words, start=1) if k != c))
            if any(len(w) >= 4 and w not in others and f" {w} " in text for w in ws):
                found.append(c)
    return found


def lower_better(header: str) -> bool:
    return bool(LOWER_IS_BETTER.search(header))


# ---- the checks ----------------------------------------------------------------------------------
@dataclass
class DocIndex:
    tables: list[Table]

    def scoped(self, section: tuple[str, ...], label: str | None = None, clause: str = "") -> list[Table]:
        """Tables of the sentence's section, widening to the parents (and the doc) until one holds `label`;
        when the clause names words that set some of them apart ('on MOSI'), only those."""
        for depth in range(len(section), -1, -1):
            prefix = section[:depth]
            cand = [t for t in self.tables if t.section[:depth] == prefix]
            if label is not None:
                cand = [t for t in cand if any(label in t.aliases(r) for r in range(len(t.rows)))]
            if cand:
                return _narrow(cand, clause)
        return []

    def labels(self) -> set[str]:
        names = {a for t in self.tables for r in range(len(t.rows)) for a in t.aliases(r)}
        return {k for k in names if len(k) >= 3 and k not in STOP_LABELS and not re.match(r"[-−+.\d]", k)}

    def all_values(self) -> list[float]:
        return [
            v for t in self.tables for r in range(len(t.rows)) for c in range(len(t.header)) for v in t.numbers(r, c)
        ]

    def row_values(self, label: str, column_text: str) -> tuple[list[float], bool] | None:
        """Numbers in the rows named `label` anywhere in the doc, and whether they are those of a column the
        words before the number name; None when no table has such a row."""
        out: list[float] = []
        seen = named = False
        for t in self.tables:
            for r in range(len(t.rows)):
                if label not in t.aliases(r):
                    continue
                seen = True
                cols = columns_named(t, column_text) if column_text.strip() else []
                named = named or bool(cols)
                out += [v for c in (cols or range(1, len(t.header))) for v in t.numbers(r, c)]
        return (out, named) if seen else None

    def differences(self) -> list[float]:
        """Differences of two cells of one column: what 'A is 1.2 points ahead' may cite."""
        out = []
        for t in self.tables:
            for c in t.numeric_columns():
                vals = [v for r in range(len(t.rows)) if (v := t.value(r, c)) is not None]
                out += [a - b for a in vals for b in vals if a != b]
        return out


def _heading_words(t: Table) -> set[str]:
    return {w for h in t.section for w in re.findall(r"[a-z][\w-]{2,}", h.lower())}


def _narrow(tables: list[Table], clause: str) -> list[Table]:
    """The tables whose headings share the most distinctive words with the clause (all of them if none do)."""
    if len(tables) < 2 or not clause:
        return tables
    words = [_heading_words(t) for t in tables]
    common = set.intersection(*words)
    said = set(re.findall(r"[a-z][\w-]{2,}", clause.lower()))
    score = [len((w - common) & said) for w in words]
    best = max(score)
    return [t for t, sc in zip(tables, score, strict=True) if sc == best] if best else tables


def check_text(text: str, path: str = "<doc>") -> list[Finding]:
    tables, sentences = parse(text)
    if not tables:
        return []
    index = DocIndex(tables)
    labels = sorted(index.labels(), key=len, reverse=True)
    headers = {norm(re.sub(r"[*`]|\(.*?\)", "", h)) for t in tables for h in t.header[1:]}
    values, diffs = index.all_values(), index.differences()
    findings: list[Finding] = []
    for s in sentences:
        mentions = _mentions(s.text, labels)

        def add(kind: str, message: str, s: Sentence = s) -> None:
            findings.append(Finding(path, s.line, kind, message, s.raw.strip()))

        claimed = set()
        for label, number, column_text in _number_claims(s.text, mentions):
            row = index.row_values(label, column_text)
            if row is None or any(matches(number, v) for v in row[0]):
                continue
            own = index.row_values(label, "") or ([], False)
            elsewhere = any(matches(number, v) for v in values) and not any(matches(number, v) for v in own[0])
            qualified = QUALIFIERS.search(s.text) is not None  # 'valid MAE', 'MAE AUILC': another quantity
            if not s.sourced or (row[1] and (elsewhere or not qualified)):
                what = f"{label} {column_text.strip(' (:=')} {number}" if row[1] else f"{label} {number}"
                add(
                    "number",
                    f"{what} is in no cell of its row" + ("" if row[1] else " and the sentence cites no source"),
                )
                claimed.add(number.lstrip("-"))
        for message in _ranking_claims(s, mentions, index):
            add("ranking", message)
        for message in _superlative_claims(s, mentions, index):
            add("superlative", message)
        for message in _probe_claims(s, mentions, index):
            add("probe", message)
        for message in _only_claims(s, mentions, index):
            add("only", message)
        for message in _range_claims(s, index):
            add("range", message)
        names_table = bool(mentions) or any(f" {h} " in f" {norm(s.text)} " for h in headers if len(h) >= 3)
        if names_table and not s.sourced:
            for m in DECIMAL.finditer(s.text):
                num = m.group(2)
                if num in claimed:
                    continue
                if not any(matches(num, v) for v in values) and not any(matches(num, d, percent=False) for d in diffs):
                    add(
                        "unsourced",
                        f"{m.group(1)}{num} is in no table here and the sentence cites no command or result file",
                    )
    return findings


def _mentions(text: str, labels: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, label) of row names in the text, longest names first, not overlapping."""
    taken: list[tuple[int, int, str]] = []
    for label in labels:
        for m in label_pattern(label).finditer(text):
            if not any(a < m.end() and m.start() < b for a, b, _ in taken):
                taken.append((m.start(), m.end(), label))
    return sorted(taken)


def _number_claims(text: str, mentions: list[tuple[int, int, str]]) -> list[tuple[str, str, str]]:
    """(label, number, words between) where a decimal follows a row name with at most four plain words between."""
    claims = []
    for k, (_, end, label) in enumerate(mentions):
        stop = mentions[k + 1][0] if k + 1 < len(mentions) else len(text)
        m = DECIMAL.search(text, end, stop)
        if not m or m.group(1):  # a signed number is a difference: the unsourced rule checks it
            continue
        between = text[end : m.start()]
        words = re.findall(r"[\w']+", between)
        if re.search(r"\bbetween\b", " ".join(text[: mentions[k][0]].split()[-6:]), re.I):
            continue
        if re.search(r"\d|[;,+=–]|\bvs\b", between) or len(words) > 4 or DELTA_WORDS & {w.lower() for w in words}:
            continue
        tail = text[m.end() : m.end() + 24]
        if re.match(
            r"\s*(?:[–-]\s*\d|×|x\b|times|vs\b|versus|against"
            r"|points? (?:behind|ahead|short|more|less|lower|higher|better|worse))",
            tail,
        ):
            continue
        if re.match(r"[–-]\d", text[m.end() : m.end() + 3]):
            continue
        if re.match(r"\s*(?:and \w+ )?(?:above|below|better|worse|higher|lower)\b", text[m.end() : m.end() + 30]):
            continue  # 'for the probe (MAE 1.046 and Corr above the probe)': the subject's number, compared
        named_after = re.match(r"\s+([A-Za-z][\w-]*(?:\s+[A-Za-z0-9][\w-]*)?)", text[m.end() :])
        after = named_after.group(1) if named_after else ""
        claims.append((label, m.group(2), f"{between} {after}"))
    return claims


def _order(t: Table, a: int, b: int, cols: list[int]) -> list[int]:
    """Per column: +1 if row a is better than row b, -1 if worse, 0 if equal (columns both rows fill)."""
    out = []
    for c in cols:
        va, vb = t.value(a, c), t.value(b, c)
        if va is None or vb is None:
            continue
        sign = (va > vb) - (va < vb)
        out.append(-sign if lower_better(t.header[c]) else sign)
    return out


def _rows(t: Table, label: str) -> list[int]:
    return [r for r in range(len(t.rows)) if label in t.aliases(r)]


def _clauses(s: Sentence) -> list[str]:
    """Clauses of a sentence; one without a row name inherits the last row named before it
    ('tssp_msa has the best clean score but the lowest spectrum score')."""
    parts = [
        c
        for c in re.split(r";|\. |,? but |, while |, whereas |, (?:and )?(?=\w+ (?:is|are|has|have|beats)\b)", s.text)
        if c.strip()
    ]
    return parts


def _labels_in(clause: str, mentions: list[tuple[int, int, str]]) -> list[str]:
    return [lab for _, _, lab in _mentions(clause, sorted({m[2] for m in mentions}, key=len, reverse=True))]


def _claim_columns(t: Table, clause: str, verb_end: int) -> list[int]:
    """Columns a comparison is about: those named after its verb up to the next 'and' / 'but'
    ('beats the probe's MAE and matches its Acc-2' is about MAE), else those named anywhere."""
    after = re.split(r"\b(?:and|but|while|whereas)\b", clause[verb_end:], maxsplit=1)[0]
    return columns_named(t, after) or columns_named(t, clause)


def _ranking_claims(s: Sentence, mentions: list[tuple[int, int, str]], index: DocIndex) -> list[str]:
    out = []
    for clause in _clauses(s):
        m = re.search(rf"\b(?P<verb>{BETTER}|{WORSE})\b", clause, re.I)
        if not m or re.search(r"\b(?:not|never|no longer)\b", clause[: m.start()], re.I):
            continue
        ms = _mentions(clause, sorted({x[2] for x in mentions}, key=len, reverse=True))
        before = [lab for st, _, lab in ms if st < m.start("verb")]
        after = [lab for st, _, lab in ms if st >= m.end("verb")]
        if not before or not after or before[-1] == after[0]:
            continue
        a, b = before[-1], after[0]
        better = re.fullmatch(BETTER, m.group("verb"), re.I) is not None
        verdicts = []
        for t in index.scoped(s.section, a, clause):
            if not _rows(t, b):
                continue
            cols = _claim_columns(t, clause, m.end("verb")) or t.numeric_columns()
            order = _order(t, _rows(t, a)[0], _rows(t, b)[0], cols)
            if order:
                verdicts.append(all(o == (-1 if better else 1) for o in order))
        if verdicts and all(verdicts):
            out.append(f"“{a} {m.group('verb')} {b}”, but the table orders them the other way")
    return out


def _superlative_claims(s: Sentence, mentions: list[tuple[int, int, str]], index: DocIndex) -> list[str]:
    out = []
    last: list[str] = []
    for part in _clauses(s):
        for clause in re.split(r"[,:]| \(|\)", part):
            pool_words = r"(?:of|among|than|over)\s+(?:the\s+|all\s+|every\s+)?(?:\w+\s+)?$"
            ms = [  # 'the best of the tecafn runs': a name after 'of' / 'among' is the pool, not the claim
                lab
                for st, _, lab in _mentions(clause, sorted({m[2] for m in mentions}, key=len, reverse=True))
                if not re.search(pool_words, clause[:st], re.I)
            ]
            words = [w.lower() for w in re.findall(r"[\w-]+", clause)]
            sup = [w for w in words if w in SUPERLATIVES]
            if re.search(r"\b(?:degrades?|loses?|drops?) (?:the )?least\b", clause, re.I):
                sup.append("best")
            if not ms and sup and last and re.match(r"\s*(?:and\s+)?the\s+\w+est\b", clause):
                ms = last  # 'A has the best X but the lowest Y': the elliptical clause is about A
            starts = _mentions(" ".join(clause.split()[:3]), sorted({m[2] for m in mentions}, key=len, reverse=True))
            last = [lab for _, _, lab in starts] or ([] if ms else last)
            if len(sup) != 1 or not ms:
                continue
            if re.search(r"\b(?:not|no|never|except|second|third|among|per|each|seeds?|paper)\b", clause, re.I):
                continue
            out += _check_extreme(s, clause, sup[0], ms, index)
    return out


def _check_extreme(s: Sentence, clause: str, sup: str, claimed_list: list[str], index: DocIndex) -> list[str]:
    kind = "good" if sup in {"best"} else SUPERLATIVES.get(sup, "good")
    claimed = set(claimed_list)
    verdicts: list[str | None] = []
    for t in _narrow(index.scoped(s.section, claimed_list[0], clause), s.text):
        claimed = {x for x in claimed_list if _rows(t, x)}  # names that are no row here (a dataset) do not count
        if not claimed:
            continue
        cols = columns_named(t, clause)
        if not cols:
            if len(t.numeric_columns()) != 1:
                continue
            cols = t.numeric_columns()
        pool = [  # probe and paper rows are references, not contenders, unless the clause names them
            i
            for i, k in enumerate(t.labels())
            if (k != "probe" or "probe" in claimed) and ("paper" not in t.rows[i][0].lower() or k in claimed)
        ]
        for c in cols:
            vals = {i: v for i in pool if (v := t.value(i, c)) is not None}
            if not vals or not all(any(i in vals for i in _rows(t, x)) for x in claimed):
                continue
            high = kind == "high" or (kind == "good" and not lower_better(t.header[c]))
            high = high or (kind == "bad" and lower_better(t.header[c]))
            top = sorted(set(vals.values()), reverse=high)[: len(claimed)]
            bad = [x for x in claimed if not any(vals.get(i) in top for i in _rows(t, x))]
            verdicts.append(
                f"{', '.join(sorted(bad))} is not the {sup} on {t.header[c]} (table line {t.line})" if bad else None
            )
    return [v for v in verdicts if v] if verdicts and all(verdicts) else []


def _probe_claims(s: Sentence, mentions: list[tuple[int, int, str]], index: DocIndex) -> list[str]:
    out = []
    for clause in _clauses(s):
        m = re.search(
            r"\b(?P<rel>at or above|at or below|above|below|under|beats?|reach(?:es)?|matches)\b\s+"
            r"(?:the\s+|its\s+|their\s+)?(?:linear\s+)?probe",
            clause,
            re.I,
        )
        if not m or re.search(r"\b(?:not|no|except|but|only|nearly|almost|unless)\b", clause, re.I):
            continue
        rel = m.group("rel").lower()
        want = -1 if rel in {"below", "under", "at or below"} else 1
        ms = [lab for lab in _labels_in(clause, mentions) if lab != "probe"]
        every = re.search(r"\b(?:every|all)\b", clause[: m.start()], re.I)
        for t in index.scoped(s.section, ms[0] if ms else None, clause):
            p = t.probe_row()
            if p is None:
                continue
            keys = t.labels()
            rows = (
                [i for x in ms for i in _rows(t, x)]
                if ms
                else ([i for i, k in enumerate(keys) if k != "probe"] if every else [])
            )
            named = _claim_columns(t, clause, m.end("rel"))
            for i in rows:
                order = _order(t, i, p, named or t.numeric_columns())
                if not order:
                    continue
                # a named column must agree; with none named only a unanimous contrary order counts
                if any(o == -want for o in order) if named else all(o == -want for o in order):
                    out.append(
                        f"{t.rows[i][0].strip('* ')} is said to be {rel} the probe, "
                        f"but the table (line {t.line}) says otherwise"
                    )
    return out


def _only_claims(s: Sentence, mentions: list[tuple[int, int, str]], index: DocIndex) -> list[str]:
    """'A is the only model with MEI > 0': exactly the named rows pass the condition."""
    out = []
    for clause in _clauses(s):
        m = re.search(
            rf"\bthe only \w+ (?:with|whose|where)\b(?P<what>[^<>≤≥]*?)"
            rf"(?P<op>>|<|≥|≤|above|below|over|under)\s*(?P<v>{NUM})",
            clause,
        )
        ms = [lab for lab in _labels_in(clause[: m.start()] if m else "", mentions)]
        if not m or not ms:
            continue
        v = float(m.group("v").replace("−", "-"))
        op = m.group("op")
        for t in index.scoped(s.section, ms[0], clause):
            cols = columns_named(t, m.group("what"))
            for c in cols:
                passing = {
                    t.labels()[i]
                    for i in range(len(t.rows))
                    if (x := t.value(i, c)) is not None
                    and (
                        x > v
                        if op in {">", "above", "over"}
                        else x < v
                        if op in {"<", "below", "under"}
                        else x >= v
                        if op == "≥"
                        else x <= v
                    )
                }
                if passing != set(ms):
                    out.append(
                        f"the rows with {t.header[c]} {op} {m.group('v')} are {', '.join(sorted(passing)) or 'none'}, "
                        f"not only {', '.join(ms)} (table line {t.line})"
                    )
    return out


def _range_claims(s: Sentence, index: DocIndex) -> list[str]:
    """'MLI 0.00–0.04' right after a column name: every (non-probe) row of that column is in the range."""
    out = []
    for clause in _clauses(s):
        for m in re.finditer(
            rf"(?P<col>[A-Za-z][\w -]{{1,30}}?)\s+(?:of\s+|from\s+|ranges?\s+|between\s+)?"
            rf"(?P<lo>{NUM})\s*(?:–|to|and)\s*(?P<hi>{NUM})",
            clause,
        ):
            lo, hi = (float(m.group(k).replace("−", "-")) for k in ("lo", "hi"))
            if lo >= hi or "." not in m.group("lo") + m.group("hi"):
                continue
            near = " ".join(clause[: m.start("lo")].split()[-8:] + clause[m.end("hi") :].split()[:5])
            if not re.search(r"\b(?:every|all|each|ranges?)\b", near, re.I):
                continue
            verdicts = []
            for t in _narrow(index.scoped(s.section, None, clause), s.text):
                cols = [
                    c
                    for c in columns_named(t, m.group("col"))
                    if norm(m.group("col")).endswith(norm(t.header[c]).split(" ")[-1])
                ]
                for c in cols:
                    vals = [v for i, k in enumerate(t.labels()) if k != "probe" and (v := t.value(i, c)) is not None]
                    digits = max(len(m.group(k).split(".")[1]) if "." in m.group(k) else 0 for k in ("lo", "hi"))
                    tol = 0.5 * 10**-digits
                    outside = [v for v in vals if v < lo - tol or v > hi + tol]
                    if vals:
                        verdicts.append(
                            f"{t.header[c]} {m.group('lo')}–{m.group('hi')}, "
                            f"but the table (line {t.line}) has {outside[0]:g}"
                            if outside
                            else None
                        )
            if verdicts and all(verdicts):
                out.append(str(verdicts[0]))
    return out


def check_files(paths: list[Path], root: Path) -> list[Finding]:
    out = []
    for p in paths:
        rel = str(p.resolve().relative_to(root)) if p.resolve().is_relative_to(root) else str(p)
        out += check_text(p.read_text(), rel)
    return out
