"""Every answer a shadow comparison generated, as an MLflow trace linked to its run.

Two traces per case (primary and candidate), written in a few batched calls by
:func:`tracking.trace_write.write_traces` after the run exists, so the MLflow UI's
Traces tab of the run is the history of what each side answered, and reviewers'
feedback (issue #6) has a trace to land on. A side that was recorded rather than
generated (``<role>_recorded`` in its row) already has its trace: none is written.

Times: each side ran as one batch whose requests were all queued at its start, so a
case's generation spans ``[batch end - batch seconds, + its own latency]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ...config import Settings
from ..tracking import trace_write as tw
from .result import ShadowResult
from .sides import ROLES


class ShadowTrace(NamedTuple):
    """One generation of a comparison: the row it belongs to, its side, its trace."""

    row: int
    role: str
    trace: tw.GenerationTrace


def trace_records(
    result: ShadowResult,
    messages_by_case: Mapping | Sequence | None = None,
    *,
    ended_at: Mapping[str, float] | None = None,
) -> list[ShadowTrace]:
    """The traces of both sides of every case, with trace ids assigned (nothing written).

    Parameters
    ----------
    result : ShadowResult
        A finished comparison (rows, params, sampling, serving, aggregates).
    messages_by_case : sequence or mapping, optional
        Each case's request messages: a sequence in row order (``[c.messages for c in
        resolved.cases]``) or a mapping from case id. Without it, the row's prompt as one
        user message.
    ended_at : mapping, optional
        When each side's batch ended (seconds since the epoch, by role); default
        ``result.extra["batch_ended"]`` when present, else now.

    Returns
    -------
    list of ShadowTrace
        In row order, primary before candidate; recorded sides left out.
    """
    now = time.time()
    ends = {**(result.extra.get("batch_ended") or {}), **(ended_at or {})}
    out = []
    for role in ROLES:
        side = _side_attributes(result, role)
        end_s = float(ends.get(role) or now)
        start_ns = int((end_s - float(result.aggregates.get(f"{role}_batch_s") or 0.0)) * 1e9)
        for i, row in enumerate(result.rows):
            if row.get(f"{role}_recorded"):
                continue  # its answer was read, not generated: its own trace already exists
            latency = float(row.get(f"{role}_latency_s") or 0.0)
            attributes = {
                **side,
                "llmops.shadow": result.name,
                **tw.generation_attributes(
                    model=side[tw.MODEL],
                    prompt_tokens=row.get(f"{role}_tokens_in"),
                    completion_tokens=row.get(f"{role}_tokens_out"),
                    latency_s=latency,
                    finish_reason=row.get(f"{role}_finish_reason"),
                ),
            }
            trace = tw.GenerationTrace(
                name=f"shadow {role}",
                messages=_side_messages(row, role) or _messages(messages_by_case, i, row),
                response=row.get(f"{role}_output") or "",
                attributes=attributes,
                start_ns=start_ns,
                end_ns=start_ns + int(latency * 1e9),
                # Few tags: the sqlite store writes each with queries of its own (about
                # half a millisecond per tag per trace); the rest are attributes.
                tags={tw.KIND_TAG: "shadow", tw.ROLE_TAG: role, tw.CASE_TAG: row.get("id", i)},
                trace_id=tw.new_trace_id(),
            )
            out.append(ShadowTrace(i, role, trace))
    return sorted(out, key=lambda r: (r.row, ROLES.index(r.role)))


def trace_shadow(
    result: ShadowResult,
    messages_by_case: Mapping | Sequence | None,
    run_id: str | None,
    cfg: Settings,
    *,
    records: list[ShadowTrace] | None = None,
    ended_at: Mapping[str, float] | None = None,
) -> tw.TraceReport:
    """Write a comparison's traces, linked to ``run_id``, and name them in its rows.

    Each row gets ``primary_trace_id`` and ``candidate_trace_id`` (None where a trace
    could not be written; a recorded side keeps the id it came with). When traces were
    lost, ``result.warnings`` says how many and why, in one line. The report is also
    kept as ``result.extra["traces"]``.

    Parameters
    ----------
    records : list of ShadowTrace, optional
        From :func:`trace_records`, when the ids were put in the rows before the run was
        logged (so its ``cases.json`` names them); built here otherwise.
    """
    records = records if records is not None else trace_records(result, messages_by_case, ended_at=ended_at)
    report = tw.write_traces([r.trace for r in records], run_id=run_id, cfg=cfg)
    for row in result.rows:
        for role in ROLES:
            row.setdefault(f"{role}_trace_id", None)
    for rec, trace_id in zip(records, report.trace_ids):
        result.rows[rec.row][f"{rec.role}_trace_id"] = trace_id
    if report.note:
        result.warnings.append(report.note)
    result.extra["traces"] = report
    return report


def stamp_trace_ids(result: ShadowResult, records: list[ShadowTrace]) -> None:
    """Put the pre-assigned trace ids in the rows (before the run's table is logged)."""
    for rec in records:
        result.rows[rec.row][f"{rec.role}_trace_id"] = rec.trace.trace_id


def _side_attributes(result: ShadowResult, role: str) -> dict:
    """What one side ran: model, digests, prompt, sampling, engine options, serving."""
    p = result.params
    label = str(p.get(f"{role}_label") or getattr(result, role))
    prompt_name, _, prompt_version = str(p.get("prompt") or "").partition("/")
    s = result.sampling
    return tw.generation_attributes(
        model=label,
        model_ref=str(p.get(f"{role}_ref") or ""),
        # Labels are name/version for registered models only (folder names hold no "/").
        model_version=label.rpartition("/")[2] if "/" in label else None,
        model_digest=str(p.get(f"{role}_base_digest") or ""),
        adapter=str(p.get(f"{role}_adapter") or ""),
        adapter_digest=str(p.get(f"{role}_adapter_digest") or ""),
        prompt=prompt_name or None,
        prompt_version=prompt_version or None,
        prompt_digest=str(p.get("prompt_digest") or "") or None,
        sampling={"max_tokens": s.max_tokens, "temperature": s.temperature, "seed": s.seed, "top_p": s.top_p},
        engine_args=_json(p.get(f"{role}_engine_args")),
        serving=result.serving.get(role) or {},
    )


def _json(value) -> dict | None:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if value else None
    except (TypeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _side_messages(row: dict, role: str) -> list[dict] | None:
    """The candidate's own request where it differs (a candidate prompt version), else None."""
    raw = row.get(f"{role}_messages") if role == "candidate" else None
    if not raw:
        return None
    try:
        found = json.loads(raw) if isinstance(raw, str) else raw
    except (TypeError, ValueError):
        return None
    if not isinstance(found, list):
        return None
    return [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in found if isinstance(m, dict)]


def _messages(messages_by_case, i: int, row: dict) -> list[dict]:
    found = None
    if isinstance(messages_by_case, Mapping):
        found = messages_by_case.get(row.get("id"))
    elif messages_by_case is not None and i < len(messages_by_case):
        found = messages_by_case[i]
    if found:
        return [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in found]
    return [{"role": "user", "content": str(row.get("prompt", ""))}]
