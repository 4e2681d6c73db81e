"""docs/BENCHMARKS.md as one section per machine kind, and the README's headline table from them.

Why: which CPU a machine has decides which int8 kernels onnxruntime runs
(``batch.cpus.CpuFeatures.int8_path``), so figures from an AVX2 machine and from a VNNI
machine answer different questions, and a benchmark run must not erase the other kind's
figures. ``benchmarks/run_all.py`` replaces the section of the kind it runs on and keeps
the others; a section written by hand (figures measured elsewhere, saying by whom and
how) stays until a run on that kind replaces it.

Each section sits between ``<!-- mlb-bench-kind: KIND -->`` and
``<!-- /mlb-bench-kind: KIND -->`` and carries one ``<!-- mlb-bench-summary: {...} -->``
line (JSON) that the tables at the top of the document and in the README are made from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import common as c

_SECTION_RE = re.compile(r"<!-- mlb-bench-kind: (?P<kind>[\w-]+) -->\n(?P<body>.*?)<!-- /mlb-bench-kind: (?P=kind) -->",
                         re.S)
_SUMMARY_RE = re.compile(r"<!-- mlb-bench-summary: (?P<json>\{.*?\}) -->")
# Blocks that are not one machine kind's run_all section (the built-in model against its anchor,
# written by bench_builtin.py): kept as they are when a kind's section is replaced.
_BLOCK_RE = re.compile(r"<!-- mlb-bench-block: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /mlb-bench-block: (?P=name) -->", re.S)
README_START = "<!-- mlb-bench-headline:start -->"
README_END = "<!-- mlb-bench-headline:end -->"
# Rows of the headline table: summary key, title.
HEADLINE_ROWS = (
    ("recipe", "the recipe (PyTorch, pad to 128, batch 8)"),
    ("pipeline-32", "`transformers.pipeline`, batch 32"),
    ("optimum-64", "optimum `ORTModelForSequenceClassification` in a pipeline"),
    ("mlb-batch-fp32", "`mlb-batch`, fp32 file"),
    ("mlb-batch-int8", "`mlb-batch`, int8 file"),
)
PREAMBLE = """# Benchmarks, one section per machine kind

Which CPU a machine has decides which int8 kernels onnxruntime runs (`mlbert/runtime/cpus.py`,
[EXPORT.md](EXPORT.md#which-cpu-an-int8-file-suits)), so the figures are kept per machine kind:
`benchmarks/run_all.py` records the CPU's model and instruction sets, replaces the section of the
kind it runs on and keeps the others. A section says who measured it, how, and with which files.
"""


def sections(text: str) -> Dict[str, str]:
    """KIND -> the section's text (markers included), in document order."""
    return {m.group("kind"): m.group(0) for m in _SECTION_RE.finditer(text)}


def summary_of(section: str) -> Optional[Dict[str, Any]]:
    m = _SUMMARY_RE.search(section)
    return json.loads(m.group("json")) if m else None


def wrap(kind: str, body: str, summary: Dict[str, Any]) -> str:
    """A section's text: markers, its summary line, the body."""
    line = json.dumps(summary, ensure_ascii=False, separators=(",", ":"))
    return f"<!-- mlb-bench-kind: {kind} -->\n<!-- mlb-bench-summary: {line} -->\n{body.rstrip()}\n<!-- /mlb-bench-kind: {kind} -->"


def demote(markdown: str) -> str:
    """Every heading one level deeper (a whole report becomes one section)."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.M)


def _cell(summary: Dict[str, Any], key: str) -> str:
    value = (summary.get("rows_per_s") or {}).get(key)
    return c.fmt(value) if value else "not measured"


def kinds_table(summaries: List[Dict[str, Any]]) -> str:
    """rows/s on GoEmotions test per contender (rows) and machine kind (columns), plus int8 / fp32."""
    if not summaries:
        return "No machine kind measured yet."
    head = ["contender, GoEmotions test rows/s"] + [f"{s['title']}: {s['cpu']}" for s in summaries]
    rows = [[title] + [_cell(s, key) for s in summaries] for key, title in HEADLINE_ROWS]
    ratios = []
    for s in summaries:
        r = s.get("rows_per_s") or {}
        ratios.append(f"{r['mlb-batch-int8'] / r['mlb-batch-fp32']:.2f}x"
                      if r.get("mlb-batch-int8") and r.get("mlb-batch-fp32") else "n/a")
    rows.append(["`mlb-batch` int8 / fp32"] + ratios)
    rows.append(["int8 file"] + [s.get("int8_file", "") for s in summaries])
    if any(s.get("note") for s in summaries):
        rows.append(["note"] + [s.get("note", "") for s in summaries])
    rows.append(["measured"] + [f"{s.get('date', '')}, {s.get('by', '')}" for s in summaries])
    return c.md_table(head, rows)


def blocks(text: str) -> Dict[str, str]:
    """NAME -> the block's text (markers included), in document order."""
    return {m.group("name"): m.group(0) for m in _BLOCK_RE.finditer(text)}


def document(all_sections: Dict[str, str], all_blocks: Optional[Dict[str, str]] = None) -> str:
    summaries = [s for s in (summary_of(text) for text in all_sections.values()) if s]
    parts = [PREAMBLE, "## Machine kinds measured\n", kinds_table(summaries), ""]
    parts += [text + "\n" for text in (all_blocks or {}).values()]
    parts += [text + "\n" for text in all_sections.values()]
    return "\n".join(parts)


def _write(path: Path, all_sections: Dict[str, str], all_blocks: Dict[str, str]) -> str:
    text = document(all_sections, all_blocks)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def update_document(path: Path, kind: str, body: str, summary: Dict[str, Any]) -> str:
    """Replace (or add first) ``kind``'s section of ``path``; keep the other kinds' sections and the blocks."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = sections(old)
    new = {kind: wrap(kind, body, summary)}
    new.update({k: v for k, v in kept.items() if k != kind})
    return _write(path, new, blocks(old))


def update_block(path: Path, name: str, body: str) -> str:
    """Replace (or add) the block ``name`` of ``path``; keep every section and the other blocks."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = blocks(old)
    kept[name] = f"<!-- mlb-bench-block: {name} -->\n{body.rstrip()}\n<!-- /mlb-bench-block: {name} -->"
    return _write(path, sections(old), kept)


def update_readme(readme: Path, doc: Path) -> bool:
    """The README's headline table (between its markers) from the document's sections; False if no markers."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    summaries = [s for s in (summary_of(t) for t in sections(doc.read_text(encoding="utf-8")).values()) if s]
    table = kinds_table(summaries)
    readme.write_text(text[:start + len(README_START)] + "\n" + table + "\n" + text[end:], encoding="utf-8")
    return True
