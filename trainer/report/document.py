"""The report document: a list of blocks written as both Markdown and HTML.

One ``Document`` renders to ``report.md`` and ``report.html`` so both files always say the
same; the HTML is self-contained (inline CSS, images by relative path) so the report
folder can be opened or copied as it is.
"""

from __future__ import annotations

import html
import math
import os
import re
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from mlbert.io.atomic import write_text_atomic

REPORT_MD = "report.md"
REPORT_HTML = "report.html"


class Document:
    """A tiny block list rendered to both Markdown and HTML, so both files say the same."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: List[Tuple[str, Any]] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Iterable[str]) -> None:
        items = list(items)
        if items:
            self.blocks.append(("bullets", items))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", ([str(h) for h in headers], [[_cell(c) for c in r] for r in rows])))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("image", (path, alt)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [value, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                headers, rows = value
                out.append("| " + " | ".join(_md_escape(h) for h in headers) + " |")
                out.append("|" + "|".join("---" for _ in headers) + "|")
                out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "image":
                path, alt = value
                out += [f"![{alt}]({path.replace(os.sep, '/')})", ""]
            elif kind == "code":
                out += ["```", value, "```", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        esc = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
            "td:first-child,th:first-child{text-align:left}img{max-width:100%}pre{background:#f4f4f4;padding:.5em;"
            "overflow-x:auto}</style>",
            "</head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out.append(f"<h{level}>{esc(text)}</h{level}>")
            elif kind == "paragraph":
                out.append(f"<p>{_inline_html(value)}</p>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                headers, rows = value
                out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
                out.append("</table>")
            elif kind == "image":
                path, alt = value
                out.append(f'<p><img src="{esc(path.replace(os.sep, "/"))}" alt="{esc(alt)}"></p>')
            elif kind == "code":
                out.append(f"<pre><code>{esc(value)}</code></pre>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def write(self, folder: str, markdown_name: str = REPORT_MD, html_name: Optional[str] = REPORT_HTML) -> str:
        path = os.path.join(folder, markdown_name)
        atomic_write(path, self.to_markdown())
        if html_name:
            atomic_write(os.path.join(folder, html_name), self.to_html())
        return path


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format_number(float(value))
    return str(value)


def format_number(value: Optional[float], digits: int = 3) -> str:
    """Metric values for tables: ``n/a`` for missing or undefined (NaN) values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _inline_html(text: str) -> str:
    """HTML for a paragraph written in Markdown: only `code` spans are translated."""
    escaped = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` whole or not at all (``mlbert.io.atomic``): a reader never sees half a report."""
    write_text_atomic(path, text)
