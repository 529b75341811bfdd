"""Small helpers for rich reprs: every string from a model or a user is escaped."""

from __future__ import annotations

import html

from ..config import settings
from .tracking import experiment_of


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


def warnings_block(warnings) -> tuple[str, str]:
    """``(text, html)`` of a result's warnings, one line each; empty without any."""
    if not warnings:
        return "", ""
    text = "".join(f"\nwarning: {w}" for w in warnings)
    html = "".join(f"<div class='llmops-warning' style='color:#b26b00'>warning: {esc(w)}</div>" for w in warnings)
    return text, html


def run_link(run_id: str | None) -> tuple[str, str]:
    """``(text, html)`` linking ``run_id`` in the configured MLflow UI; empty without one.

    Set ``LlmopsMagics.ui_url`` (``llmops-magics ui`` prints it) to turn links on. Never
    calls MLflow: a result must display while MLflow is down.
    """
    cfg = settings()
    experiment = experiment_of(run_id)
    if not run_id or not cfg.ui_url or experiment is None:
        return "", ""
    url = cfg.run_url(experiment, run_id)
    return (
        f"\nMLflow run: {url}",
        f"<div><a href='{esc(url)}' target='_blank' rel='noopener'>"
        f"open run {esc(run_id[:8])} in the MLflow UI</a></div>",
    )
