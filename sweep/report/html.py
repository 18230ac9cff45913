"""Render the report's sections as one self-contained HTML page.

Figures are embedded as base64 PNG data, so the page is a single file that
shows its figures wherever it is opened, as a file or as an MLflow artifact.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from sweep.report.document import Section

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; }
img { max-width: 100%; margin: 0.5em 0; }
p { max-width: 70em; }
"""


def render_html(title: str, sections: list[Section], folder: Path) -> str:
    """Return the HTML page of ``sections``.

    Args:
        title: Page title and top heading.
        sections: Content, from ``build_sections``.
        folder: Report folder that the sections' figure paths are relative to.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        parts.extend(f"<p>{html.escape(paragraph).replace('`', '')}</p>" for paragraph in section.paragraphs)
        if section.table is not None:
            parts.append(section.table.to_html(index=False, escape=True, border=0))
        for figure in section.figures:
            data = base64.b64encode((folder / figure).read_bytes()).decode("ascii")
            parts.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(figure.stem)}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
