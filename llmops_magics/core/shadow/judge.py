"""The judge: a chat model that states, per case, which side's answer it prefers.

The judge is resolved with the other refs (:func:`.resolve.resolve_judge`) and asked
after the answers are compared. The order of the two answers is a seeded coin flip per
case (:func:`.compare.judge_order`), so position bias cancels on average and a rerun
asks the same questions.
"""

from __future__ import annotations

from ...backends.base import GenerationRequest, Sampling
from ...config import Settings
from ...errors import LlmopsError
from ..generation import engines
from ..generation.resolve import ResolvedModel
from .compare import judge_messages, judge_order, parse_vote
from .resolve import judge_unavailable
from .spec import ShadowSpec


def preferences(
    judge: str,
    model: ResolvedModel,
    requests: list[str],
    primary: list[str],
    candidate: list[str],
    seed: int,
    cfg: Settings,
    backend: str | None,
) -> list[int]:
    """Per case +1 (candidate preferred), -1 (primary preferred) or 0 (tie, or no clear vote)."""
    try:
        generator, _ = engines.get_generator(model.base_path, cfg, backend=backend)
    except LlmopsError as e:
        raise judge_unavailable(judge, e) from None
    order = judge_order(len(requests), seed)
    sampling = Sampling(max_tokens=4, temperature=0.0, seed=seed)
    batch = [
        GenerationRequest(judge_messages(request, p, c, first), sampling, model.adapter)
        for request, p, c, first in zip(requests, primary, candidate, order)
    ]
    votes = generator.generate(batch, progress=f"judge: {model.label}")
    return [parse_vote(v.text, first) for v, first in zip(votes, order)]


def ask_judge(spec: ShadowSpec, model: ResolvedModel | None, rows: list[dict]) -> list[dict]:
    """The judge stage: ``rows`` with each case's ``judge_preference``, or ``rows`` as
    they are when no judge was asked for."""
    if model is None:
        return rows
    prefs = preferences(
        spec.judge,
        model,
        [r["prompt"] for r in rows],
        [r["primary_output"] for r in rows],
        [r["candidate_output"] for r in rows],
        spec.sampling.seed,
        spec.cfg,
        spec.backend,
    )
    return [{**row, "judge_preference": pref} for row, pref in zip(rows, prefs)]
