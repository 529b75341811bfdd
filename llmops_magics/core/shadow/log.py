"""What a comparison leaves behind: its MLflow run (:func:`log_result`) and the event lineage
hears (:func:`emit`). Both read only the finished ``ShadowResult``."""

from __future__ import annotations

import json
import re
import time

from ...backends import hardware
from ...config import Settings
from ...errors import TrackingError
from .. import events, tracking
from ..verify.fingerprint import messages_digest, text_digest
from .result import ShadowResult
from .traces import stamp_trace_ids, trace_records, trace_shadow


def log_result(result: ShadowResult, cfg: Settings, started: float, messages=None) -> None:
    """Record one MLflow run (tags, params, metrics, p-values, the per-case table) and one
    trace per generated answer, linked to it (``messages``: each case's request).

    Sets ``result.run_id``; when MLflow fails the comparison stands, the run waits in
    the home (``result.run_key``) and ``result.warnings`` says so.
    """
    # Trace ids are chosen before the run is logged, so its cases.json names them.
    records = trace_records(result, messages) if messages is not None else None
    if records:
        stamp_trace_ids(result, records)
    try:
        result.run_id = _log_run(result, cfg, started, time.time())
    except TrackingError as e:  # the comparison stands; the run waits in the home
        result.warnings.append(str(e))
        result.run_key = getattr(e, "key", None)
    if records:
        # With the run kept for later the traces cannot link to it: written unlinked if
        # MLflow answers, else counted and said in one line (their ids cleared).
        trace_shadow(result, messages, result.run_id, cfg, records=records)


def _log_run(result: ShadowResult, cfg: Settings, started: float, ended: float) -> str:
    cols = list(result.rows[0]) if result.rows else []
    table = {c: [_cell(r[c]) for r in result.rows] for c in cols}
    return tracking.log_run(
        run_name=f"shadow {result.name}",
        tags={
            "llmops.kind": "shadow",
            "llmops.verdict": result.label,
            "llmops.change": result.change,
            "llmops.primary": result.primary,
            "llmops.candidate": result.candidate,
        },
        params=result.params,
        metrics={
            **result.aggregates,
            **{f"p_value.{_metric_name(c.name)}": c.p_value for c in result.checks if c.p_value is not None},
            **{
                f"adjusted_p.{_metric_name(c.name)}": c.adjusted_p
                for c in result.checks
                if getattr(c, "adjusted_p", None) is not None
            },
        },
        tables={"cases.json": table},
        cfg=cfg,
        start_time=started,
        end_time=ended,
        prompts=prompt_versions(result.params),
        models=model_versions(result.params),
    )


def prompt_versions(params: dict) -> list[tuple[str, str]]:
    """The prompt versions both sides filled (``(name, version)``, each once), from the
    ``{side}_prompt`` params (``summarize/3``), so the run page links every one."""
    found = []
    for role in ("primary", "candidate"):
        label = params.get(f"{role}_prompt") or ""
        if "/" in label:
            pair = tuple(label.rsplit("/", 1))
            if pair not in found:
                found.append(pair)
    return found


def model_versions(params: dict) -> list[tuple[str, str]]:
    """The registered model versions both sides ran (``(name, version)``), from the
    ``{side}_model_version`` params (``chat/2``; names never hold a slash)."""
    found = []
    for role in ("primary", "candidate"):
        label = params.get(f"{role}_model_version") or ""
        if "/" in label:
            name, version = label.rsplit("/", 1)
            found.append((name, version))
    return found


def _metric_name(name: str) -> str:
    """A check name as an MLflow metric key (a scorer may be named anything)."""
    return re.sub(r"[^A-Za-z0-9_\-./]", "_", name.replace(" ", "_"))


def _cell(v):
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return v


# The params verify compares between a saved shadow cell and its run now.
_DIGESTS = ("_model_digest", "_base_digest", "_adapter_digest", "_prompt_digest")


def emit(result: ShadowResult) -> None:
    """Tell the event listeners (lineage) what this comparison found."""
    events.emit(
        events.ShadowRan(
            name=result.name,
            verdict=result.label,
            change=result.change,
            source=result.params.get("source"),
            run_id=result.run_id,
            run_key=result.run_key,
            primary=result.params["primary_ref"],
            candidate=result.params["candidate_ref"],
            n_cases=result.n_cases,
            primary_label=result.primary,
            candidate_label=result.candidate,
            prompt=result.params["prompt"],
            differing_cases=len(result.differing_cases),
            engine_plan=result.extra["engine_plan"],
            serving=result.serving,
            # Per case, for llmops-magics verify: the request and each side's answer.
            input_digests=[messages_digest(json.loads(r["messages"])) for r in result.rows if r.get("messages")],
            output_digests={
                role: [text_digest(r.get(f"{role}_output")) for r in result.rows] for role in ("primary", "candidate")
            },
            hardware=hardware.describe((result.serving.get("candidate") or {}).get("device")),
            candidate_prompt=result.params.get("candidate_prompt") or None,
            # Empty ones too: an adapter added or removed reads as "" -> digest.
            digests={k: v for k, v in result.params.items() if k.endswith(_DIGESTS)},
        )
    )
