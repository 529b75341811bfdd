"""Per-case comparison of two answers to the same prompt.

Metrics (one value per case unless said):

* ``exact_match``: same text (and, when both sides share a tokenizer, same token ids).
* ``edit_similarity``: 1 - Levenshtein distance / longer length, on characters
  (1.0 = identical, 0.0 = nothing in common); tokenizer-independent, so it also
  compares models on different bases.
* ``embedding_similarity``: cosine of the two answers' embeddings with the default
  embedder (all-MiniLM-L6-v2), all answers embedded in one batch.
* ``length_ratio``: (candidate characters + 1) / (primary characters + 1); the +1
  keeps an empty answer finite.
* ``refused``: the refusal heuristic (:func:`is_refusal`) per side.
* ``format_valid``: when the prompt declares a response format (a JSON schema), the
  answer parses as JSON (one surrounding Markdown code fence allowed) and validates
  against the schema; None when no format is declared.
* ``first_divergent_token``: index of the first generated token that differs (None
  when identical); compared on token ids when the sides share a tokenizer, else on
  characters (``first_divergent_char`` is always given).
* latency, tokens/s, tokens in/out per side, from the backend's results.

:func:`compare` is the pipeline's compare stage: one row per case (the case, both
answers, every metric), the table the verdict, the MLflow run and the review read.
The judge's prompt and vote parsing are here too (:func:`judge_messages`); the judge
stage that asks it is :mod:`.judge`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from ...backends.base import GenerationResult
from ...backends.default_models import embedding_model_dir
from ...backends.embeddings import sentence_embedder
from .generate import Generated
from .resolve import Resolved

# The refusal heuristic: an answer refuses when, within its first 200 characters, it
# says it cannot / will not help in one of the stock phrasings chat models are tuned
# to use. It is a heuristic: it misses creative refusals and flags an answer that
# quotes a refusal; counts of both sides are compared, so the bias largely cancels.
REFUSAL_PATTERNS = (
    r"\bI(?:'m| am)? (?:sorry|afraid)\b",
    r"\bI (?:can(?:no|')t|cannot|won't|will not|am not able to|'m not able to|am unable to|'m unable to)"
    r" (?:help|assist|provide|comply|do that|answer|fulfil|fulfill|share|create|generate|write|give)",
    r"\bas an AI\b",
    r"\bI (?:must|have to) (?:decline|refuse)\b",
    r"\b(?:it is|it's) not appropriate\b",
)
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)


def is_refusal(text: str) -> bool:
    """Whether ``text`` reads as a refusal (see ``REFUSAL_PATTERNS``)."""
    return bool(_REFUSAL.search(text[:200]))


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def format_valid(text: str, schema: dict | None) -> bool | None:
    """Whether ``text`` is JSON valid against ``schema``; None when there is no schema."""
    if schema is None:
        return None
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        value = json.loads(body)
    except ValueError:
        return False
    import jsonschema  # deferred: it takes seconds to import, and only a response format needs it

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    return True


def edit_similarity(a: str, b: str) -> float:
    """1 - normalized Levenshtein distance on characters."""
    if a == b:
        return 1.0

    return float(Levenshtein.normalized_similarity(a, b))


def first_divergence(a: Sequence, b: Sequence) -> int | None:
    """Index of the first differing element (the shorter's length when one is a
    prefix of the other); None when equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


@dataclass(frozen=True)
class CaseComparison:
    """The metrics of one case."""

    exact_match: bool
    edit_similarity: float
    embedding_similarity: float
    length_ratio: float
    primary_refused: bool
    candidate_refused: bool
    primary_format_valid: bool | None
    candidate_format_valid: bool | None
    first_divergent_token: int | None
    first_divergent_char: int | None
    primary_latency_s: float
    candidate_latency_s: float
    primary_tokens_per_s: float
    candidate_tokens_per_s: float
    primary_tokens_in: int
    candidate_tokens_in: int
    primary_tokens_out: int
    candidate_tokens_out: int


def _tps(r: GenerationResult) -> float:
    return r.completion_tokens / r.latency_s if r.latency_s > 0 else 0.0


def compare_cases(
    primary: Sequence[GenerationResult],
    candidate: Sequence[GenerationResult],
    *,
    response_format: dict | None = None,
    same_tokenizer: bool = True,
    embedder=None,
) -> list[CaseComparison]:
    """Compare answers case by case.

    Parameters
    ----------
    primary, candidate : sequences of GenerationResult
        The two sides' results, in the same case order.
    response_format : dict, optional
        A JSON schema the answers must satisfy (format validity per side).
    same_tokenizer : bool
        Whether token ids are comparable (same base model).
    embedder : optional
        Something with ``embed(texts) -> (n, d)`` normalized vectors; the default
        sentence embedder when None.
    """
    if len(primary) != len(candidate):
        raise ValueError("both sides need one result per case")
    if embedder is None:
        embedder = sentence_embedder(str(embedding_model_dir()))
    texts_p = [r.text for r in primary]
    texts_c = [r.text for r in candidate]
    vectors = embedder.embed(texts_p + texts_c)
    n = len(primary)
    cosines = (vectors[:n] * vectors[n:]).sum(axis=1) if n else []
    out = []
    for i, (p, c) in enumerate(zip(primary, candidate)):
        same_text = p.text == c.text
        if same_tokenizer and p.token_ids and c.token_ids:
            div_token = first_divergence(p.token_ids, c.token_ids)
            exact = same_text and div_token is None
        else:
            div_token, exact = None, same_text
            if not same_text and not same_tokenizer:
                div_token = None
        out.append(
            CaseComparison(
                exact_match=exact,
                edit_similarity=edit_similarity(p.text, c.text),
                embedding_similarity=1.0 if same_text else float(min(1.0, max(-1.0, cosines[i]))),
                length_ratio=(len(c.text) + 1) / (len(p.text) + 1),
                primary_refused=is_refusal(p.text),
                candidate_refused=is_refusal(c.text),
                primary_format_valid=format_valid(p.text, response_format),
                candidate_format_valid=format_valid(c.text, response_format),
                first_divergent_token=div_token,
                first_divergent_char=first_divergence(p.text, c.text),
                primary_latency_s=p.latency_s,
                candidate_latency_s=c.latency_s,
                primary_tokens_per_s=_tps(p),
                candidate_tokens_per_s=_tps(c),
                primary_tokens_in=p.prompt_tokens,
                candidate_tokens_in=c.prompt_tokens,
                primary_tokens_out=p.completion_tokens,
                candidate_tokens_out=c.completion_tokens,
            )
        )
    return out


def compare(resolved: Resolved, generated: Generated) -> list[dict]:
    """The compare stage: one row per case with its input, both answers and the metrics."""
    comparisons = compare_cases(
        generated.primary,
        generated.candidate,
        response_format=resolved.schema,
        same_tokenizer=resolved.same_tokenizer,
    )
    return [
        {
            "id": case.id,
            "input": case.input if isinstance(case.input, str) else json.dumps(case.input, default=str),
            "prompt": case.request_text,
            # The whole request, so a later run can replay this one (--baseline).
            "messages": json.dumps(list(case.messages)),
            "primary_output": p.text,
            "candidate_output": c.text,
            **dataclasses.asdict(cmp),
            "primary_finish_reason": p.finish_reason,
            "candidate_finish_reason": c.finish_reason,
        }
        for case, p, c, cmp in zip(resolved.cases, generated.primary, generated.candidate, comparisons)
    ]


# ---------------------------------------------------------------- LLM-as-judge

JUDGE_PROMPT = (
    "You compare two answers to the same request.\n\n"
    "Request:\n{request}\n\n"
    "Answer A:\n{a}\n\n"
    "Answer B:\n{b}\n\n"
    "Which answer is better? Reply with exactly one word: A, B, or tie."
)
_VOTE = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)


def judge_order(n: int, seed: int) -> list[bool]:
    """Per case, whether the candidate is shown first (as A): a seeded coin flip, so
    position bias cancels on average and the order is reproducible."""
    rng = random.Random(seed)
    return [rng.random() < 0.5 for _ in range(n)]


def judge_messages(request: str, primary: str, candidate: str, candidate_first: bool) -> tuple[dict, ...]:
    a, b = (candidate, primary) if candidate_first else (primary, candidate)
    return ({"role": "user", "content": JUDGE_PROMPT.format(request=request, a=a, b=b)},)


def parse_vote(text: str, candidate_first: bool) -> int:
    """+1 candidate preferred, -1 primary preferred, 0 tie or no clear vote."""
    m = _VOTE.search(text)
    if not m:
        return 0
    vote = m.group(1).upper()
    if vote == "TIE":
        return 0
    candidate_won = (vote == "A") == candidate_first
    return 1 if candidate_won else -1
