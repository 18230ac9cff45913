"""Render the report's sections as a Markdown file (GitHub-flavoured tables)."""

from __future__ import annotations

import pandas as pd

from sweep.report.document import Section


def markdown_table(frame: pd.DataFrame) -> str:
    """Render a table of strings as a Markdown pipe table.

    pandas' ``to_markdown`` needs the optional ``tabulate`` package, so the
    table is written here. Pipes inside values are escaped.
    """

    def escape(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(escape(column) for column in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(escape(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_markdown(title: str, sections: list[Section]) -> str:
    """Return the Markdown document of ``sections`` under heading ``title``; figures are linked by relative path."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}")
        parts.extend(section.paragraphs)
        if section.table is not None:
            parts.append(markdown_table(section.table))
        parts.extend(f"![{figure.stem}]({figure.as_posix()})" for figure in section.figures)
    return "\n\n".join(parts) + "\n"
