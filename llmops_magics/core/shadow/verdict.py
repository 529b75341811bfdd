"""The decide stage: the checks over the per-case rows, the overall verdict, and the
``ShadowResult`` that carries them with the aggregates and the run's params.

The statistics of each check are in :mod:`.stats`; which checks run, and on which
columns, is decided here.
"""

from __future__ import annotations

import numpy as np

from .generate import Generated
from .params import run_params
from .plan import Plan
from .resolve import Resolved
from .result import ShadowResult
from .sides import ROLES
from .spec import ShadowSpec
from .stats import (
    Check,
    Thresholds,
    differing_check,
    judge_check,
    latency_check,
    length_check,
    overall,
    paired_rate_check,
    similarity_check,
)


def decide(spec: ShadowSpec, resolved: Resolved, plan: Plan, generated: Generated, rows: list[dict]) -> ShadowResult:
    """Run the checks, reach the verdict and assemble the result (not yet logged)."""
    checks_run = checks(rows, spec.thresholds, resolved.schema is not None, resolved.judge is not None)
    name = spec.name or f"{plan.primary.model.label}-vs-{plan.candidate.model.label}"
    return ShadowResult(
        name=name,
        primary=plan.primary.model.label,
        candidate=plan.candidate.model.label,
        rows=rows,
        verdict=overall(checks_run),
        aggregates=aggregates(rows, generated),
        params=run_params(spec, resolved, plan, generated, name),
        sampling=spec.sampling,
        thresholds=spec.thresholds,
        extra={
            "prompt": resolved.prompt,
            "response_format": resolved.schema,
            "engine_plan": plan.engines,
            "notes": plan.notes(),
        },
        serving={role: generated.serving[role] for role in ROLES},
    )


def checks(rows: list[dict], t: Thresholds, has_format: bool, has_judge: bool) -> list[Check]:
    """The checks of a comparison, quality first, latency last."""
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    found = [
        differing_check([not x for x in col("exact_match")], t),
        similarity_check("edit similarity", col("edit_similarity"), t.min_edit_similarity, t),
        similarity_check(
            "embedding similarity", col("embedding_similarity"), t.min_embedding_similarity, t, seed_offset=1
        ),
        length_check(col("length_ratio"), t),
        paired_rate_check("refusal rate", col("primary_refused"), col("candidate_refused"), t, higher_is_better=False),
    ]
    if has_format:
        found.append(
            paired_rate_check(
                "format validity", col("primary_format_valid"), col("candidate_format_valid"), t, higher_is_better=True
            )
        )
    if has_judge:
        found.append(judge_check(col("judge_preference"), t))
    found.append(latency_check(col("primary_latency_s"), col("candidate_latency_s"), t))
    return found


def aggregates(rows: list[dict], generated: Generated) -> dict:
    """Means and rates over the cases, tokens and speed per side (the run's metrics)."""

    def mean(k):
        vals = [r[k] for r in rows if r.get(k) is not None]
        return float(np.mean(vals)) if vals else None

    agg = {
        "n_cases": len(rows),
        "differing_cases": sum(not r["exact_match"] for r in rows),
        "exact_match_rate": mean("exact_match"),
        "edit_similarity": mean("edit_similarity"),
        "embedding_similarity": mean("embedding_similarity"),
        "length_ratio": mean("length_ratio"),
        "primary_refusal_rate": mean("primary_refused"),
        "candidate_refusal_rate": mean("candidate_refused"),
        "primary_format_valid_rate": mean("primary_format_valid"),
        "candidate_format_valid_rate": mean("candidate_format_valid"),
        "judge_preference": mean("judge_preference"),
        "generate_s": generated.seconds,
    }
    for side in ROLES:
        out_tokens = sum(r[f"{side}_tokens_out"] for r in rows)
        batch_s = generated.batch_s[side]
        agg[f"{side}_latency_s"] = mean(f"{side}_latency_s")
        agg[f"{side}_tokens_in"] = sum(r[f"{side}_tokens_in"] for r in rows)
        agg[f"{side}_tokens_out"] = out_tokens
        agg[f"{side}_batch_s"] = batch_s
        agg[f"{side}_tokens_per_s"] = out_tokens / batch_s if batch_s > 0 else None
    return {k: v for k, v in agg.items() if v is not None}
