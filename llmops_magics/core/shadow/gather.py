"""The gather stage: cases from an app's traces, an evaluation dataset or an earlier run.

Typed inputs are parsed by :func:`.spec.validate`; a source outside the notebook is
read here, after every option is checked and before any model is resolved, and the
spec comes back with its items, its sample and the ``Evidence`` (recorded answers,
expectations, the recorded model).
"""

from __future__ import annotations

import dataclasses

from ..evidence.baseline import from_baseline
from ..evidence.datasets import from_dataset
from ..evidence.traces import from_traces
from .inputs import sample_indices
from .spec import ShadowSpec


def gather(spec: ShadowSpec) -> ShadowSpec:
    """``spec`` with the cases of its source read in (as it is when the inputs were typed)."""
    if spec.source is None:
        return spec
    cfg = spec.cfg
    if spec.from_traces is not None:
        evidence = from_traces(
            spec.from_traces,
            filter_string=spec.trace_filter,
            since=spec.since,
            need_answers=spec.recorded,
            redact_text=cfg.redact_text,
            cfg=cfg,
        )
    elif spec.from_dataset is not None:
        evidence = from_dataset(
            spec.from_dataset, has_prompt=spec.prompt is not None, redact_text=cfg.redact_text, cfg=cfg
        )
    else:
        evidence = from_baseline(spec.baseline, spec.baseline_side, redact_text=cfg.redact_text, cfg=cfg)
    indices = sample_indices(len(evidence.items), spec.n, spec.sample_seed)
    return dataclasses.replace(spec, items=evidence.items, indices=tuple(indices), evidence=evidence)


def annotate(rows: list[dict], spec: ShadowSpec) -> list[dict]:
    """Each row with what its source knows about the case: the inputs and expectations
    the scorers receive, and the recorded answer's trace (feedback lands there too)."""
    ev = spec.evidence
    out = []
    for row in rows:
        i = row["id"]
        extra = {"scorer_inputs": row["prompt"], "expectations": None}
        if ev is not None:
            if ev.scorer_inputs:
                extra["scorer_inputs"] = ev.scorer_inputs[i]
            if ev.expectations:
                extra["expectations"] = ev.expectations[i]
            if ev.answers is not None and spec.recorded:
                extra["primary_recorded"] = True
                extra["primary_trace_id"] = ev.answers[i].trace_id
            item = ev.items[i]
            if isinstance(item, dict) and item.get("trace_id"):
                extra["source_trace_id"] = item["trace_id"]
        out.append({**row, **extra})
    return out
