"""docs/BENCHMARKS.md is rewritten by two scripts: a run on one machine kind must keep the other kinds'
sections and the built-in model's block, and the block's writer must keep every section."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import doc_sections  # noqa: E402


def test_sections_and_blocks_survive_each_others_updates(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    doc_sections.update_document(doc, "avx2", "## AVX2 run\n\nfigures A\n", {"kind": "avx2", "title": "AVX2",
                                                                             "cpu": "Zen 3", "rows_per_s": {}})
    doc_sections.update_block(doc, "builtin", "## The built-in model\n\nfigures B\n")
    doc_sections.update_document(doc, "avx512_vnni", "## VNNI run\n\nfigures C\n",
                                 {"kind": "avx512_vnni", "title": "VNNI", "cpu": "Zen 4", "rows_per_s": {}})
    text = doc.read_text(encoding="utf-8")
    assert "figures A" in text and "figures B" in text and "figures C" in text
    doc_sections.update_block(doc, "builtin", "## The built-in model\n\nfigures D\n")
    text = doc.read_text(encoding="utf-8")
    assert "figures B" not in text and "figures D" in text and text.count("mlb-bench-block: builtin -->") == 2
    assert list(doc_sections.sections(text)) == ["avx512_vnni", "avx2"]
    assert text.index("figures D") < text.index("figures C")  # blocks before the machine kinds' sections
