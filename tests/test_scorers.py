"""The user's MLflow scorers as shadow checks: real ``@scorer`` functions, built-ins and
``make_judge`` judges, run by :func:`preflight` and :func:`score` on hand-built rows of
real text (no model needed: the scorers read the text of both sides)."""

from __future__ import annotations

import pytest
from mlflow.entities import Feedback
from mlflow.genai.judges import CategoricalRating, make_judge
from mlflow.genai.scorers import Guidelines, RegexMatch, RetrievalGroundedness, scorer

from llmops_magics.core.shadow import stats
from llmops_magics.core.shadow.scorers import ScorerSet, preflight, score
from llmops_magics.core.shadow.stats import Thresholds
from llmops_magics.errors import BadInput

CITIES = [(f"Country{k}", f"City{k}") for k in range(40)]


def rows_of(primary, candidate) -> list[dict]:
    """One row per country: the question, both answers, the expected city."""
    return [
        {
            "id": k,
            "prompt": f"What is the capital of {country}?",
            "primary_output": primary(country, city),
            "candidate_output": candidate(country, city),
            "expectations": {"city": city},
        }
        for k, (country, city) in enumerate(CITIES)
    ]


def formal(country, city):
    return f"Please note: the capital of {country} is {city}."


def terse(country, city):
    return f"{city}."


@scorer
def polite(outputs) -> bool:
    return "please" in outputs.lower()


@scorer
def names_the_city(outputs, expectations) -> bool:
    return expectations["city"] in outputs.replace(".", " ").split()


@scorer
def brevity(outputs) -> float:
    return 1.0 / len(outputs.split())


@scorer
def picky(inputs, outputs) -> Feedback:
    if "Country7" in inputs and outputs == "City7.":
        raise ValueError("cannot read answers about Country7")
    return Feedback(value=CategoricalRating.YES if "City" in outputs else CategoricalRating.NO)


@scorer
def review(outputs, expectations) -> list[Feedback]:
    return [
        Feedback(name="correct", value="pass" if expectations["city"] in outputs else "fail"),
        Feedback(name="words", value=len(outputs.split())),
    ]


def test_boolean_and_float_scorers_become_checks_with_verdicts():
    rows = rows_of(formal, terse)
    ready = preflight([polite, names_the_city, brevity], len(rows), 1000)
    assert ready.names == ("polite", "names_the_city", "brevity")
    assert ready.summary == "3 scorers x 40 cases x 2 sides = 240 scorer calls, no LLM judge calls"
    out = score(ready, None, rows, progress=False)
    checks = {c.name: c for c in out.checks}
    assert set(checks) == {"scorer polite", "scorer names_the_city", "scorer brevity"}
    # Every terse answer drops "please": 40 discordant pairs one way, McNemar p = 2 / 2^40.
    assert checks["scorer polite"].verdict == "worse"
    assert checks["scorer polite"].p_value == pytest.approx(2 / 2**40)
    assert checks["scorer polite"].estimate == -1.0
    # Both name the city in every case: no discordant pair, Tango's bound z²/(n+z²) = 8.8% > 5%.
    same_city = checks["scorer names_the_city"]
    assert same_city.verdict == "inconclusive" and same_city.ci[1] == pytest.approx(3.8415 / 43.8415, abs=1e-4)
    # The bound reaches 5% at z² x 19 = 73 cases: 33 more.
    assert same_city.more_cases == 33 and "about 33 more cases would decide it" in same_city.reason
    # A numeric scorer: paired differences, higher is better (shorter answers score more).
    assert checks["scorer brevity"].verdict == "better" and checks["scorer brevity"].ci[0] > 0
    assert checks["scorer brevity"].kind == "quality" and checks["scorer brevity"].p_value < 0.01
    first = out.rows[0]
    assert (first["primary_score.polite"], first["candidate_score.polite"]) == (True, False)
    assert first["candidate_score.brevity"] == 1.0 and first["score_errors"] == []
    assert out.warnings == ()
    assert rows[0].get("primary_score.polite") is None, "the rows given are not changed"


def test_a_scorer_that_raises_on_one_case_is_reported_not_fatal():
    rows = rows_of(formal, terse)
    out = score(preflight([picky], len(rows), None), None, rows, progress=False)
    (check,) = out.checks
    assert check.name == "scorer picky" and check.n == 39
    assert "1 case left out (no value on one side)" in check.reason
    assert out.rows[7]["candidate_score.picky"] is None and out.rows[7]["primary_score.picky"] is True
    assert out.rows[7]["score_errors"] == ["picky (candidate): ValueError: cannot read answers about Country7"]
    assert all(r["score_errors"] == [] for i, r in enumerate(out.rows) if i != 7)
    assert out.warnings == (
        "scorer picky: no value from 1 of 80 calls; first, case 7 (candidate): "
        "ValueError: cannot read answers about Country7",
    )


def test_a_list_of_feedback_gives_one_check_per_name():
    rows = rows_of(formal, lambda country, city: f"The capital of {country} is {city}.")
    out = score(preflight([review], len(rows), None), None, rows, progress=False)
    checks = {c.name: c for c in out.checks}
    assert set(checks) == {"scorer review/correct", "scorer review/words"}
    assert checks["scorer review/correct"].n == 40 and checks["scorer review/correct"].estimate == 0.0
    words = checks["scorer review/words"]  # 8 words vs 6: fewer words is a lower score
    assert words.verdict == "worse" and words.estimate == pytest.approx(-2.0)
    assert out.rows[3]["primary_score.review/words"] == 8 and out.rows[3]["candidate_score.review/correct"] is True


def test_identical_outputs_are_equivalent_however_few_the_cases():
    rows = rows_of(formal, formal)[:3]
    out = score(preflight([polite, brevity], 3, None), None, rows, progress=False)
    assert [c.verdict for c in out.checks] == ["equivalent", "equivalent"]
    assert all("outputs identical in all 3 cases" in c.reason for c in out.checks)


def test_unreadable_results_are_errors_per_case():
    @scorer
    def moody(outputs):
        return "maybe"

    @scorer
    def judged(outputs):
        return Feedback(name="judged", error=RuntimeError("the judge timed out"))

    rows = rows_of(formal, terse)[:5]
    out = score(preflight([moody, judged], 5, None), None, rows, progress=False)
    assert [(c.name, c.verdict, c.n) for c in out.checks] == [
        ("scorer moody", "inconclusive", 0),
        ("scorer judged", "inconclusive", 0),
    ]
    assert "no case has a value on both sides (5 left out)" in out.checks[0].reason
    assert out.rows[0]["score_errors"][0] == "moody (primary): returned 'maybe': need yes/no or pass/fail text"
    assert "judged (primary): feedback error: the judge timed out" in out.rows[0]["score_errors"]
    assert out.warnings[0].startswith("scorer moody: no value from 10 of 10 calls; first, case 0 (primary)")


def test_scorer_inputs_and_margins_come_from_the_rows_and_thresholds():
    seen = []

    @scorer
    def sees(inputs, outputs) -> float:
        seen.append(inputs)
        return 0.5

    rows = [{**r, "scorer_inputs": {"country": f"Country{r['id']}"}} for r in rows_of(formal, terse)]
    out = score(preflight([sees], 40, None), None, rows, progress=False)
    assert {"country": "Country0"} in seen and all(isinstance(s, dict) for s in seen)
    assert out.checks[0].verdict == "equivalent", "same score on both sides, 40 cases"
    # A margin per scorer, and one for every other; a margin above 1 for a pass rate is read as 1.
    t = Thresholds(scorer_margins={"names_the_city": 0.1}, scorer_margin=0.02)
    assert (t.margin_for("names_the_city"), t.margin_for("polite"), t.margin_for("review/words")) == (0.1, 0.02, 0.02)
    # At 40 cases and no discordant pair Tango's bound is 8.8%: within 0.1, not within 0.05.
    ready = preflight([names_the_city], 40, None, thresholds=t)
    wide = score(ready, None, rows_of(formal, terse), thresholds=t, progress=False)
    assert wide.checks[0].verdict == "equivalent" and "margin ±10.0%" in wide.checks[0].reason
    big = Thresholds(scorer_margins={"polite": 3})
    loose = score(preflight([polite], 40, None), None, rows_of(formal, terse), thresholds=big, progress=False)
    assert loose.warnings == ("scorer.polite=3 is above 1, the most a pass rate can move: read as 1",)


def test_preflight_refuses_what_cannot_score_an_answer_in_one_line():
    @scorer
    def tool_calls(outputs, trace) -> int:
        return 0

    @scorer
    def conversation(session) -> bool:
        return True

    def not_decorated(outputs) -> bool:
        return True

    trace_judge = make_judge(
        name="trace_judge", instructions="Did {{ trace }} call the right tools?", model="openai:/gpt-4o-mini"
    )
    cases = [
        ([tool_calls], "scorer 'tool_calls' takes a required `trace` argument"),
        ([conversation], "scorer 'conversation' is session-level"),
        ([RetrievalGroundedness()], "(RetrievalGroundedness) needs each answer's trace"),
        ([trace_judge], "judge 'trace_judge' reads {{ trace }} in its instructions"),
        ([not_decorated], "scorer 'not_decorated' is a plain function, not an MLflow Scorer: decorate it with @scorer"),
        (["polite"], "scorer 'polite' is a str, not an MLflow Scorer"),
        ([polite, scorer(name="polite")(lambda outputs: True)], "two scorers are named 'polite'"),
    ]
    for given, message in cases:
        with pytest.raises(BadInput) as err:
            preflight(given, 10, None)
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BadInput, match=r"--threshold scorer\.polit: no scorer is named 'polit' \(scorers: polite\)"):
        preflight([polite], 10, None, thresholds=Thresholds(scorer_margins={"polit": 0.1}))


def test_preflight_counts_calls_and_refuses_too_many():
    judge = make_judge(name="is_helpful", instructions="Is {{ outputs }} helpful for {{ inputs }}?", model="openai:/x")
    guide = Guidelines(name="is_polite", guidelines="The answer is polite.")
    ready = preflight([polite, judge, guide, RegexMatch(pattern=r"City\d+")], 40, 320)
    assert isinstance(ready, ScorerSet) and ready.judges == ("is_helpful", "is_polite")
    assert ready.calls == 320 and ready.judge_calls == 160
    assert ready.summary == "4 scorers x 40 cases x 2 sides = 320 scorer calls, 160 of them LLM judge calls"
    with pytest.raises(BadInput) as err:
        preflight([polite, judge, guide], 40, 200)
    assert str(err.value) == (
        "3 scorers x 40 cases x 2 sides = 240 scorer calls, 160 of them LLM judge calls: more than "
        "--max-scorer-calls 200; raise it (--max-scorer-calls 240, or the max_scorer_calls setting), "
        "or compare fewer cases (--n)"
    )
    assert preflight([polite], 1, None).summary == "1 scorer x 1 case x 2 sides = 2 scorer calls, no LLM judge calls"


def test_scorer_checks_decide_the_label_not_the_change():
    """A candidate that answers differently and no worse on the user's scorer: changed,
    and equivalent on quality (refusals and the scorer)."""
    rows = rows_of(formal, lambda country, city: f"It's {city}: the capital of {country}, please note.")
    rows = [{**r, "id": i} for i, r in enumerate(rows * 3)]  # 120 cases
    out = score(preflight([polite], len(rows), None), None, rows, progress=False)
    t = Thresholds()
    p = [r["primary_output"] for r in rows]
    c = [r["candidate_output"] for r in rows]
    found = [
        stats.differing_check([a != b for a, b in zip(p, c)], t),
        stats.paired_rate_check("refusal rate", [False] * 120, [False] * 120, t, higher_is_better=False),
        *out.checks,
    ]
    quality = stats.overall(found, alpha=t.alpha)
    change = stats.change_verdict(quality.checks)
    assert (quality.label, change.label) == ("equivalent", "changed")
    assert quality.check("scorer polite").adjusted_p == 1.0
