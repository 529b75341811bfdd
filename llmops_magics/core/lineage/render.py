"""A lineage record as text and HTML (its ``%lineage cell N`` view and its cell display)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..display import esc
from .derive import derive

if TYPE_CHECKING:  # the record imports this module to display itself
    from .record import LineageRecord


def record_text(r: LineageRecord) -> str:
    d = derive(r.events)
    lines = [
        r.text_line(),
        f"record {r.record_id} · session {r.session_id[:8]} · cell {r.cell_id or '-'} · "
        f"{r.status}{' ' + r.error_type if r.error_type else ''} · {r.duration_s:.3f} s · {r.started}",
        f"source {r.source_digest}",
    ]
    if r.pins:
        lines.append("pins: " + ", ".join(f"{p.get('kind')} {p.get('name')}/{p.get('version')}" for p in r.pins))
    if d["tokens"]["prompt"] or d["tokens"]["completion"]:
        lines.append(f"tokens {d['tokens']['prompt']} in / {d['tokens']['completion']} out")
    return "\n".join(lines)


def record_html(r: LineageRecord) -> str:
    body = "".join(f"<div>{esc(line)}</div>" for line in record_text(r).splitlines())
    return f"<div class='llmops-lineage'>{body}<pre>{esc(r.source)}</pre></div>"
