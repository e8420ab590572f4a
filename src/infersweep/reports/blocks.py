"""Report sections as plain data (paragraphs and tables), rendered to Markdown or HTML by one
function each: the recommendation and the Pareto front say the same in report.md, report.html
and on the terminal."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()  # per column: right-aligned

    def aligned(self, i: int) -> bool:
        return i < len(self.numeric) and self.numeric[i]


Block = Para | Heading | Table


def md_cell(text) -> str:
    """Text as one markdown table cell: a "|" would end the cell, a newline the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], level: int = 3) -> list[str]:
    """Markdown lines; headings at ``level`` (### by default)."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += [f"{'#' * level} {block.text}", ""]
        elif isinstance(block, Para):
            lines += [block.text, ""]
        else:
            lines.append("| " + " | ".join(map(md_cell, block.headers)) + " |")
            lines.append("|" + "|".join("---:" if block.aligned(i) else "---"
                                        for i in range(len(block.headers))) + "|")
            lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in block.rows]
            lines.append("")
    return lines


def to_html(blocks: list[Block], level: int = 3) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{level}>{escape(block.text)}</h{level}>")
        elif isinstance(block, Para):
            parts.append(f"<p>{escape(block.text)}</p>")
        else:
            head = "".join(f"<th>{escape(h)}</th>" for h in block.headers)
            num = ' class="num"'
            body = "".join(
                "<tr>" + "".join(f"<td{num if block.aligned(i) else ''}>{escape(str(c))}</td>"
                                 for i, c in enumerate(row)) + "</tr>"
                for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "".join(parts)
