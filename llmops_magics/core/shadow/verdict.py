"""The decide stage: the checks over the per-case rows, the two verdicts, and the
``ShadowResult`` that carries them with the aggregates and the run's params.

Two verdicts, not one: the *change* (``unchanged`` / ``changed`` / ``inconclusive``) from
identical outputs, similarity and length, and the quality *label* (``equivalent`` /
``better`` / ``worse`` / ``inconclusive``) from refusals, format validity, the judge and
the user's scorers, with Holm's correction across them. A candidate that answers
differently and no worse is ``changed`` and ``equivalent``.

The statistics of each check are in :mod:`.stats`; which checks run, and on which
columns, is decided here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from .cost import compare_cost, cost_check, side_prices, with_cost_check
from .generate import Generated
from .params import run_params
from .plan import Plan
from .resolve import Resolved
from .result import ShadowResult
from .scorers import SCORE_COLUMNS
from .sides import ROLES
from .spec import ShadowSpec
from .stats import (
    Check,
    Thresholds,
    Verdict,
    change_verdict,
    differing_check,
    judge_check,
    latency_check,
    length_check,
    overall,
    paired_rate_check,
    similarity_check,
)


def decide(
    spec: ShadowSpec,
    resolved: Resolved,
    plan: Plan,
    generated: Generated,
    rows: list[dict],
    *,
    scorer_checks: Sequence[Check] = (),
) -> ShadowResult:
    """Run the checks, reach both verdicts and assemble the result (not yet logged).

    ``scorer_checks`` are the checks of the user's scorers (:func:`.scorers.score`);
    they join the quality checks, before latency. The cost of 1,000 requests per side
    (:mod:`.cost`) joins the aggregates and params, and decides only past
    ``max_cost_ratio``.
    """
    found = checks(rows, spec.thresholds, resolved.schema is not None, resolved.judge is not None)
    found = found[:-1] + list(scorer_checks) + found[-1:]
    quality, change = verdicts(rows, found, spec.thresholds)
    cost = compare_cost(rows, generated.batch_s, side_prices(spec.prices, plan.sides), spec.thresholds)
    quality = with_cost_check(quality, cost_check(cost, spec.thresholds))
    if change is not None:  # the same checks in both verdicts; cost never moves the change
        change = dataclasses.replace(change, checks=quality.checks)
    name = spec.name or f"{plan.primary.model.label}-vs-{plan.candidate.model.label}"
    return ShadowResult(
        name=name,
        primary=plan.primary.model.label,
        candidate=plan.candidate.model.label,
        rows=rows,
        verdict=quality,
        change_verdict=change,
        aggregates={**aggregates(rows, generated), **cost.metrics()},
        params={**run_params(spec, resolved, plan, generated, name), **cost.params()},
        sampling=spec.sampling,
        thresholds=spec.thresholds,
        extra={
            "prompt": resolved.prompt,
            "response_format": resolved.schema,
            "engine_plan": plan.engines,
            "notes": plan.notes(),
        },
        serving={role: generated.serving[role] for role in ROLES},
        cost=cost,
    )


def verdicts(rows: list[dict], found: Sequence[Check], t: Thresholds) -> tuple[Verdict, Verdict]:
    """The quality verdict and the change verdict of these checks over these rows.

    Outputs identical case by case make both (``equivalent``, ``unchanged``), however
    few the cases: the same outputs get the same scores.
    """
    identical = bool(rows) and all(r["exact_match"] for r in rows)
    quality = overall(found, alpha=t.alpha, identical=identical)
    # The same (Holm-adjusted) checks in both, so either verdict's check(name) agrees.
    return quality, change_verdict(quality.checks, identical=identical)


def checks(rows: list[dict], t: Thresholds, has_format: bool, has_judge: bool) -> list[Check]:
    """The checks of a comparison: change checks, then quality checks, latency last."""
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    same = col("exact_match")
    found = [
        differing_check([not x for x in col("exact_match")], t),
        similarity_check("edit similarity", col("edit_similarity"), t.min_edit_similarity, t),
        similarity_check(
            "embedding similarity", col("embedding_similarity"), t.min_embedding_similarity, t, seed_offset=1
        ),
        length_check(col("length_ratio"), t),
        paired_rate_check(
            "refusal rate",
            col("primary_refused"),
            col("candidate_refused"),
            t,
            higher_is_better=False,
            same_output=same,
        ),
    ]
    if has_format:
        found.append(
            paired_rate_check(
                "format validity",
                col("primary_format_valid"),
                col("candidate_format_valid"),
                t,
                higher_is_better=True,
                same_output=same,
            )
        )
    if has_judge:
        found.append(judge_check(col("judge_preference"), t, same_output=same))
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
    for key in rows[0] if rows else ():
        if key.startswith(SCORE_COLUMNS):
            # A scorer's mean (a pass rate for pass/fail) per side; MLflow metric names
            # allow letters, digits and _-. /: only.
            agg[re.sub(r"[^\w\-. /:]", "_", key)] = mean(key)
    for side in ROLES:
        out_tokens = sum(r[f"{side}_tokens_out"] for r in rows)
        batch_s = generated.batch_s[side]
        agg[f"{side}_latency_s"] = mean(f"{side}_latency_s")
        agg[f"{side}_tokens_in"] = sum(r[f"{side}_tokens_in"] for r in rows)
        agg[f"{side}_tokens_out"] = out_tokens
        agg[f"{side}_batch_s"] = batch_s
        agg[f"{side}_tokens_per_s"] = out_tokens / batch_s if batch_s > 0 else None
    return {k: v for k, v in agg.items() if v is not None}
