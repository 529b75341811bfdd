"""A recorded primary: answers given once (by the app, or by a side of an earlier run)
compared with a model answering now.

Greedy vLLM answers depend on the batch they ran in (ENVIRONMENT.md), so a model
re-asked its own recorded requests does not always repeat itself. When the recorded
model still resolves, it is re-run in the candidate's batches (same cases, same order,
same sampling) and the share of its own recorded answers it reproduces is the noise
floor: the change verdict is then read against it (:func:`change_against_reproduction`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...backends.base import GenerationResult, Sampling
from ...errors import LlmopsError
from ..evidence.recorded import Evidence, RecordedModel
from ..generation.resolve import ResolvedModel
from .inputs import Case
from .sides import Side, resolve_side
from .spec import ShadowSpec
from .stats import CHANGE_WORDS, Check, Thresholds, Verdict, clopper_pearson, mcnemar_exact


@dataclass(frozen=True)
class Reproduction:
    """How often the recorded model, re-run now, gave its recorded answer again."""

    identical: int
    n: int
    ci: tuple[float, float]
    differs: tuple[bool, ...]  # per case: the re-run differs from the recording

    @property
    def rate(self) -> float:
        return self.identical / self.n if self.n else 1.0

    def describe(self) -> str:
        low, high = self.ci
        return (
            f"re-run now, the recorded model reproduces {self.identical} of {self.n} recorded answers "
            f"({self.rate:.0%}, 95% CI {low:.0%} to {high:.0%})"
        )


def recorded_side(spec: ShadowSpec) -> tuple[Side, str | None]:
    """The primary side of a recording, and a note when its model cannot be re-run.

    The side is re-run (``regenerate``) when the recording names a model that still
    resolves: it runs with the recorded serving options (dtype) so the reproduction
    rate measures batch noise, not a config change.
    """
    evidence: Evidence = spec.evidence
    model = evidence.model or RecordedModel(label="recorded")
    if model.ref:
        # Re-run as recorded: same backend and dtype, so the rate measures batch noise only.
        args = {**model.engine_args, **({"dtype": model.dtype} if model.dtype else {})}
        backend = model.backend if model.backend in ("vllm", "transformers", "openai") else spec.backend
        try:
            side = resolve_side("primary", model.ref, args, spec.cfg, backend)
            shown = dataclasses.replace(side.model, name=f"recorded {side.model.name}")
            return dataclasses.replace(side, model=shown, recorded=model), None
        except LlmopsError as e:
            why = f"the recorded model {model.ref} no longer resolves ({e}): no reproduction baseline"
    else:
        why = None
    stand_in = ResolvedModel(ref="recorded", name=model.label, base_path="", version=model.version)
    side = Side("primary", stand_in, spec.cfg, spec.backend or spec.cfg.backend, recorded=model, regenerate=False)
    return side, why


def recorded_results(evidence: Evidence, cases) -> list[GenerationResult]:
    """The recorded answers of ``cases`` as results (no token ids: compared as text)."""
    out = []
    for case in cases:
        a = evidence.answers[case.id]
        out.append(
            GenerationResult(
                text=a.text,
                finish_reason="recorded",
                latency_s=a.latency_s,
                prompt_tokens=a.prompt_tokens,
                completion_tokens=a.completion_tokens,
            )
        )
    return out


def replay(generated, primary: Side, evidence: Evidence, cases: list[Case], alpha: float):
    """``generated`` (the generate stage's ``Generated``) with the recorded answers as the
    primary, and the reproduction (None when the recorded model was not re-run)."""
    recorded = recorded_results(evidence, cases)
    model = primary.recorded
    serving = {"backend": "recorded", "dtype": model.dtype or "", "device": model.device or ""}
    reproduction = None
    if primary.regenerate:
        differs = tuple(r.text != g.text for r, g in zip(recorded, generated.primary))
        same = sum(not d for d in differs)
        reproduction = Reproduction(same, len(differs), clopper_pearson(same, len(differs), alpha), differs)
    replayed = dataclasses.replace(
        generated,
        primary=recorded,
        serving={**generated.serving, "primary": serving},
        batch_s={**generated.batch_s, "primary": 0.0},
    )
    return replayed, reproduction


def sampling_warning(model: RecordedModel | None, sampling: Sampling) -> str | None:
    """A line when one side was sampled and the other greedy: differences are then partly noise."""
    t = model.temperature if model is not None else None
    if t is None:
        return None
    if (t > 0) != (sampling.temperature > 0):
        recorded_mode = f"sampled (temperature {t:g})" if t > 0 else "greedy"
        new_mode = f"sampled (temperature {sampling.temperature:g})" if sampling.temperature > 0 else "greedy"
        return (
            f"the recorded answers were {recorded_mode} but the new side is {new_mode}: "
            "differences are partly sampling noise"
        )
    return None


def change_against_reproduction(candidate_differs, reproduction: Reproduction, t: Thresholds) -> Check:
    """Does the candidate differ from the recording more often than the recorded model
    itself does when re-run in the same batches?

    Paired per case: exact McNemar on the cases where only the candidate differs vs only
    the re-run differs. ``unchanged`` when the share of cases where only the candidate
    differs is within ``max_differing_rate`` (95% upper bound), ``changed`` when the
    candidate differs significantly more often, ``inconclusive`` otherwise.
    """
    cand = [bool(x) for x in candidate_differs]
    noise = list(reproduction.differs)
    n = len(cand)
    only_cand = sum(c and not r for c, r in zip(cand, noise))
    only_noise = sum(r and not c for c, r in zip(cand, noise))
    p = mcnemar_exact(only_noise, only_cand)
    _, high = clopper_pearson(only_cand, n, t.alpha)
    base = (
        f"candidate differs from the recording in {sum(cand)} of {n}, the re-run recorded model in "
        f"{sum(noise)}; only the candidate in {only_cand}, only the re-run in {only_noise}"
    )
    if p < t.alpha and only_cand > only_noise:
        verdict, reason = "worse", f"{base} (McNemar exact p={p:.3g})"
    elif high <= t.max_differing_rate:
        verdict, reason = "equivalent", f"{base} (95% upper bound {high:.0%} within {t.max_differing_rate:.0%})"
    else:
        verdict, reason = "inconclusive", f"{base} (McNemar exact p={p:.3g}, 95% upper bound {high:.0%})"
    rate = only_cand / n if n else 0.0
    return Check("differing beyond reproduction", "change", verdict, rate, (0.0, high), reason, p, None, n)


def read_against_reproduction(result, reproduction: Reproduction) -> None:
    """Read ``result``'s change verdict against the reproduction rate (in place).

    The candidate's differing cases are compared, case by case, with the cases the
    re-run recorded model itself got differently (:func:`change_against_reproduction`);
    that check decides the change, and the result says so.
    """
    check = change_against_reproduction([not r["exact_match"] for r in result.rows], reproduction, result.thresholds)
    for row, differs in zip(result.rows, reproduction.differs):
        row["reproduction_differs"] = differs
    result.aggregates["reproduction_rate"] = reproduction.rate
    result.extra["reproduction"] = {
        "identical": reproduction.identical,
        "n": reproduction.n,
        "rate": reproduction.rate,
        "ci": list(reproduction.ci),
    }
    label = CHANGE_WORDS[check.verdict]
    if all(r["exact_match"] for r in result.rows):
        label = "unchanged"  # the recorded answers, every one: nothing moved, whatever the noise
    reasons = (
        f"{check.name}: {label}: {check.reason}",
        f"{reproduction.describe()}; the change verdict is read against that rate",
    )
    before = result.change_verdict.checks if result.change_verdict is not None else result.verdict.checks
    result.change_verdict = Verdict(label, reasons, tuple(before) + (check,))
    result.verdict = dataclasses.replace(result.verdict, checks=tuple(result.verdict.checks) + (check,))
