"""Small helpers for rich reprs: every string from a model or a user is escaped."""

from __future__ import annotations

import html


def esc(value) -> str:
    """HTML-escape any value (model outputs are untrusted text)."""
    return html.escape(str(value), quote=True)


def html_table(headers: list[str], rows: list[list], *, cls: str = "llmops") -> str:
    head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left;white-space:pre-wrap'>{esc(c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c).replace("\n", " ") for c in r] for r in rows]
    widths = [min(60, max(len(r[i]) for r in cells)) for i in range(len(headers))]
    lines = ["  ".join(c[:w].ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
