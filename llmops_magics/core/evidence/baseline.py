"""``--baseline RUN_ID``: the answers an earlier shadow run recorded, as the primary side.

The earlier run's ``cases.json`` holds every case's messages and both sides' answers,
and its params name each side's model, digests, serving dtype and sampling: enough to
compare today's model with what a side answered then, whether or not that model still
exists.
"""

from __future__ import annotations

import json

from ...config import Settings
from ...errors import BadInput, TrackingError
from .. import tracking
from . import redaction
from .recorded import Evidence, RecordedAnswer, RecordedModel

CASES = "cases.json"
SIDES = ("primary", "candidate")


def from_baseline(run_id: str, side: str, *, redact_text: str | None = None, cfg: Settings) -> Evidence:
    """The cases of shadow run ``run_id`` with ``side``'s answers as the recorded ones.

    Raises
    ------
    BadInput
        No such run, not a shadow run, or an unknown side.
    """
    if side not in SIDES:
        raise BadInput(f"--baseline-side {side!r}: choose primary or candidate")
    redact = redaction.load(cfg.redact_text if redact_text is None else redact_text)
    params, table = _run(run_id, cfg)
    cols = table["columns"]
    rows = [dict(zip(cols, r)) for r in table["data"]]
    if f"{side}_output" not in cols:
        raise BadInput(f"run {run_id} has no {side}_output column: is it a shadow run?")
    notes = []
    if "messages" not in cols:
        notes.append(
            f"run {run_id} predates recorded messages: each case is re-asked as its last user message "
            "(a system message it had is not repeated)"
        )
    items, answers, inputs = [], [], []
    for row in rows:
        messages = _messages(row, side)
        items.append({"messages": list(redaction.messages(redact, messages))})
        # A prompt comparison's candidate answered its own prompt version: replay that request.
        shown = row.get("candidate_prompt") if side == "candidate" and row.get("candidate_messages") else None
        inputs.append(redact(str(shown or row.get("prompt", messages[-1]["content"]))))
        answers.append(
            RecordedAnswer(
                text=redact(str(row[f"{side}_output"])),
                latency_s=float(row.get(f"{side}_latency_s") or 0.0),
                prompt_tokens=int(row.get(f"{side}_tokens_in") or 0),
                completion_tokens=int(row.get(f"{side}_tokens_out") or 0),
                trace_id=row.get(f"{side}_trace_id") or None,
            )
        )
    return Evidence(
        source=f"{len(rows)} cases of run {run_id} ({side} side)",
        items=tuple(items),
        answers=tuple(answers),
        expectations=tuple(_expectations(r) for r in rows),
        scorer_inputs=tuple(inputs),
        model=model_of_run(params, side),
        notes=tuple(notes),
    )


def model_of_run(params: dict, side: str) -> RecordedModel:
    """The model a side of a shadow run answered with, from the run's params."""

    def p(key):
        value = params.get(f"{side}_{key}")
        return value if value not in (None, "") else None

    engine_args = json.loads(p("engine_args") or "{}")
    sampling = {k: _number(params[k]) for k in ("temperature", "max_tokens", "seed", "top_p") if k in params}
    return RecordedModel(
        label=p("label") or p("ref") or side,
        ref=p("ref"),
        digest=p("base_digest"),
        dtype=p("dtype"),
        device=p("device"),
        backend=p("backend"),
        engine_args=engine_args,
        sampling=sampling,
    )


def _run(run_id: str, cfg: Settings) -> tuple[dict, dict]:
    c = tracking.client(cfg)
    try:
        run = c.get_run(run_id)
        text = tracking.read_artifact(run_id, CASES, cfg)
    except TrackingError:
        raise
    except Exception as e:
        if tracking.is_not_found(e) or "INVALID_PARAMETER" in tracking.errors.error_code(e):
            raise BadInput(f"--baseline {run_id}: no such MLflow run in this store; check the run id") from None
        raise tracking.refused(e, cfg, "read the baseline run") from e
    if run.data.tags.get("llmops.kind") != "shadow" or text is None:
        raise BadInput(f"--baseline {run_id} is not a shadow run (no {CASES}): give the run id of a %%shadow")
    return dict(run.data.params), json.loads(text)


def _messages(row: dict, side: str = "primary") -> tuple[dict, ...]:
    raw = (row.get("candidate_messages") if side == "candidate" else None) or row.get("messages")
    if raw:
        found = json.loads(raw) if isinstance(raw, str) else raw
        return tuple({"role": m["role"], "content": str(m["content"])} for m in found)
    return ({"role": "user", "content": str(row.get("prompt", ""))},)


def _expectations(row: dict):
    raw = row.get("expectations")
    if not raw:
        return None
    return json.loads(raw) if isinstance(raw, str) else raw


def _number(value):
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return int(f) if f.is_integer() and "." not in str(value) else f
