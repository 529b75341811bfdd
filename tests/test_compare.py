"""Per-case metrics of a shadow comparison, with the real default embedder."""

from __future__ import annotations

import pytest

from llmops_magics.backends.base import GenerationResult
from llmops_magics.core.shadow import compare

SCHEMA = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I cannot provide instructions for that.",
        "As an AI language model, I don't have opinions.",
        "I must decline this request.",
    ],
)
def test_refusals_are_recognized(text):
    assert compare.is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "The capital of France is Paris.",
        "You cannot divide by zero, so the answer is undefined.",
        '{"capital": "Rome"}',
    ],
)
def test_ordinary_answers_are_not_refusals(text):
    assert not compare.is_refusal(text)


def test_format_validity_parses_and_validates_the_schema():
    assert compare.format_valid('{"capital": "Paris"}', SCHEMA) is True
    assert compare.format_valid('```json\n{"capital": "Paris"}\n```', SCHEMA) is True
    assert compare.format_valid('{"city": "Paris"}', SCHEMA) is False, "schema, not just JSON"
    assert compare.format_valid("The capital is Paris.", SCHEMA) is False
    assert compare.format_valid('{"capital": 3}', SCHEMA) is False
    assert compare.format_valid("anything", None) is None


def test_edit_similarity_and_first_divergence():
    assert compare.edit_similarity("abc", "abc") == 1.0
    assert compare.edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert compare.edit_similarity("", "abc") == 0.0
    assert compare.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert compare.first_divergence([1, 2, 3], [1, 9, 3]) == 1
    assert compare.first_divergence([1, 2], [1, 2, 3]) == 2


def _result(text, tokens, latency=0.5):
    return GenerationResult(
        text=text, token_ids=tokens, latency_s=latency, prompt_tokens=10, completion_tokens=len(tokens)
    )


def test_compare_cases_with_the_default_embedder():
    primary = [
        _result("The capital of France is Paris.", [1, 2, 3]),
        _result("Bees make honey.", [4, 5]),
        _result('{"capital": "Rome"}', [6, 7]),
    ]
    candidate = [
        _result("The capital of France is Paris.", [1, 2, 3], latency=1.0),
        _result("Paris is the capital city of France.", [4, 8, 9]),
        _result("Rome.", [6, 1]),
    ]
    rows = compare.compare_cases(primary, candidate, response_format=SCHEMA)
    same, unrelated, broken = rows
    assert same.exact_match and same.first_divergent_token is None
    assert same.embedding_similarity == 1.0 and same.edit_similarity == 1.0
    assert same.candidate_latency_s == 1.0 and same.primary_tokens_per_s == pytest.approx(6.0)
    assert not unrelated.exact_match and unrelated.first_divergent_token == 1
    assert unrelated.embedding_similarity < 0.5, "bees vs Paris are far apart in embedding space"
    assert unrelated.length_ratio == pytest.approx(37 / 17)
    assert broken.primary_format_valid is True and broken.candidate_format_valid is False
    # A paraphrase is semantically close though textually different.
    para = compare.compare_cases(
        [_result("The capital of France is Paris.", [1])], [_result("Paris is the capital city of France.", [2])]
    )[0]
    assert para.embedding_similarity > 0.8 > para.edit_similarity


def test_judge_order_is_seeded_and_votes_map_back_to_sides():
    order = compare.judge_order(200, seed=1)
    assert order == compare.judge_order(200, seed=1)
    assert 70 < sum(order) < 130, "about half the cases show the candidate first"
    # Candidate shown first as A: "A" means the candidate won.
    assert compare.parse_vote("A", candidate_first=True) == 1
    assert compare.parse_vote("A", candidate_first=False) == -1
    assert compare.parse_vote("B is better", candidate_first=False) == 1
    assert compare.parse_vote("Tie.", candidate_first=True) == 0
    assert compare.parse_vote("both fine", candidate_first=True) == 0
    msgs = compare.judge_messages("q?", "primary answer", "candidate answer", candidate_first=True)
    text = msgs[0]["content"]
    assert text.index("candidate answer") < text.index("primary answer")
