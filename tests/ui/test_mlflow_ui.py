"""Reviewers' feedback on a shadow run's traces, found where users look for it: the real
MLflow UI (served by a real ``mlflow server``) in Debian's Chromium.

The path a user takes: the shadow result links to the run's page
(``#/experiments/<exp>/runs/<run>``); its "Traces" tab (``.../runs/<run>/evaluations``)
lists one trace per generated answer with a ``preference`` column; a row's request opens
the trace (``?selectedEvaluationId=<trace>``); "Assess" opens the Assessments pane, whose
chevrons show each reviewer, their vote and their note. The experiment's Traces tab
(``#/experiments/<exp>/traces?traceId=<trace>``) opens the same trace view.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

pytestmark = pytest.mark.slow

FEEDBACK = "preference"
TIMEOUT_MS = 30_000
TOGGLE = '[data-component-id="shared.model-trace-explorer.toggle-assessment-expanded"]'
MORE = '[data-component-id="shared.model-trace-explorer.assessment-more-button"]'  # one per feedback shown
FEEDBACK_CELL = f'[role="cell"][style*="--col-{FEEDBACK}_assessment_column"]'  # a row's feedback values
OPEN_TRACE = '[data-component-id="mlflow.evaluations_review.table_ui.evaluation_id_link"]'  # a row's request

QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.", "What is 2 + 2?"]
# (case, reviewer, preferred side, note): bob's first vote is a tie, alice's carries a note.
VOTES = [
    (0, "alice", "candidate", "terse but right"),
    (0, "bob", "tie", None),
    (1, "alice", "primary", None),
    (1, "bob", "primary", None),
]


def _shadow_with_votes(uri: str) -> dict:
    """A real shadow run on the default model (one MLflow trace per generated answer) and
    two reviewers voting through the review session the widget drives; each vote lands as
    ``preference`` feedback from a HUMAN source on both traces of its case.

    Returns
    -------
    dict
        ``experiment_id``, ``run_id``, ``run_name``, ``trace_ids`` (every trace of the run),
        ``cases`` (per case: ``{"primary": trace_id, "candidate": trace_id}``), ``reviewers``
        and ``votes`` (``{"case", "reviewer", "value", "note"}`` each).
    """
    import llmops_magics
    from llmops_magics.core import tracking
    from llmops_magics.core.review.session import open_review

    llmops_magics.configure(tracking_uri=uri)
    result = llmops_magics.shadow(QUESTIONS, primary="default", candidate="default", max_tokens=8, name="demo")
    assert result.run_id and not result.warnings, result.warnings
    for index, reviewer, value, note in VOTES:
        session = open_review(result, reviewer=reviewer)
        session.go(index)
        case = session.current
        choice = value if value in ("tie", "skip") else ("left" if case.left == value else "right")
        session.vote(choice, note=note or "")
        assert not session.feedback_error, session.feedback_error
    cases = [{"primary": r["primary_trace_id"], "candidate": r["candidate_trace_id"]} for r in result.rows]
    return {
        "experiment_id": tracking.experiment_of(result.run_id),
        "run_id": result.run_id,
        "run_name": "shadow demo",
        "trace_ids": [t for case in cases for t in case.values()],
        "cases": cases,
        "reviewers": sorted({v[1] for v in VOTES}),
        "votes": [{"case": i, "reviewer": r, "value": v, "note": n} for i, r, v, n in VOTES],
    }


def _cell_values(cell, expected: set[str]) -> set[str]:
    """The values a feedback cell shows, once it shows ``expected`` or the timeout passes.

    Cells fill in after their row appears (the assessments load separately, a row at a
    time on a busy machine), so one read can catch a cell still empty.
    """
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        shown = {line.strip() for line in cell.inner_text().splitlines() if line.strip()}
        if shown == expected or time.monotonic() > deadline:
            return shown
        time.sleep(0.2)


def _assessments_pane(page, n_feedback: int):
    """Open the trace's Assessments pane and expand every value; return the pane."""
    page.get_by_role("button", name="Assess").click()
    heading = page.get_by_text(f"Feedback ({n_feedback})", exact=True)
    heading.wait_for()
    pane = heading.locator("xpath=../..")
    toggles = pane.locator(TOGGLE)
    toggles.first.wait_for()
    for i in range(toggles.count()):
        toggles.nth(i).click()
    return pane


def _feedback_card(pane, reviewer: str):
    # The outermost block that names this reviewer and holds exactly one feedback: their
    # value and note, and nobody else's.
    more = "@data-component-id='shared.model-trace-explorer.assessment-more-button'"
    return pane.locator(f"xpath=.//div[.//span[normalize-space(text())='{reviewer}'] and count(.//*[{more}])=1]").first


def _assert_votes_shown(pane, votes: list[dict]) -> None:
    # Every vote unfolded first: until then a half-open pane is itself a "block with one feedback".
    pane.locator(MORE).nth(len(votes) - 1).wait_for()
    assert pane.locator(MORE).count() == len(votes), pane.inner_text()
    assert pane.get_by_text(FEEDBACK, exact=True).is_visible()
    for vote in votes:
        text = _feedback_card(pane, vote["reviewer"]).inner_text()
        assert re.search(rf"^{re.escape(vote['value'])}$", text, re.M), (vote, text)
        if vote["note"]:
            assert vote["note"] in text, (vote, text)


def test_reviewers_feedback_is_on_the_shadow_runs_traces(mlflow_page, mlflow_server, screenshot_dir):
    shadow = _shadow_with_votes(mlflow_server.uri)
    page = mlflow_page
    base = mlflow_server.uri
    exp, run = shadow["experiment_id"], shadow["run_id"]

    # The run's page (where a shadow result's link lands) -> its Traces tab: every trace.
    page.goto(f"{base}/#/experiments/{exp}/runs/{run}")
    # The first load parses MLflow's whole UI bundle: the slowest step on a busy machine.
    page.get_by_text(shadow["run_name"], exact=True).first.wait_for(timeout=2 * TIMEOUT_MS)
    page.get_by_role("tab", name="Traces").click()
    page.wait_for_url(re.compile(rf"/runs/{run}/evaluations"))
    rows = page.get_by_role("row")
    for trace_id in shadow["trace_ids"]:
        rows.filter(has_text=trace_id).wait_for()
    # The feedback column comes once the assessments have loaded, after the rows.
    header = page.get_by_role("columnheader").filter(has_text=FEEDBACK)
    header.wait_for()
    assert header.inner_text().splitlines()[0] == FEEDBACK  # then the spread of its values
    # Its cells already tell the votes apart: each voted trace shows its case's values ("tie",
    # "primary (2)" when both reviewers agree), a trace nobody voted on "null".
    # Voted cases first: once their cells show the votes, the assessments have loaded, and a
    # trace nobody voted on shows no value ("null", or an empty cell in some renders).
    voted = {v["case"] for v in shadow["votes"]}
    for index in sorted(range(len(shadow["cases"])), key=lambda i: i not in voted):
        counts = Counter(v["value"] for v in shadow["votes"] if v["case"] == index)
        expected = {value if n == 1 else f"{value} ({n})" for value, n in counts.items()}
        for trace_id in shadow["cases"][index].values():
            cell = rows.filter(has_text=trace_id).locator(FEEDBACK_CELL)
            if expected:
                shown = _cell_values(cell, expected)
                assert shown == expected, (trace_id, shown, expected)
            else:
                shown = {line.strip() for line in cell.inner_text().splitlines() if line.strip()}
                assert shown <= {"null"}, (trace_id, shown)

    # A voted case's primary trace, opened from its row: who preferred what, and why.
    case = next(v["case"] for v in shadow["votes"] if v["note"])
    votes = [v for v in shadow["votes"] if v["case"] == case]
    assert {v["reviewer"] for v in votes} == set(shadow["reviewers"])  # both reviewers on this trace
    primary = shadow["cases"][case]["primary"]
    row = rows.filter(has_text=primary)
    row.locator(OPEN_TRACE).click()
    page.wait_for_url(re.compile(rf"selectedEvaluationId={primary}"))
    pane = _assessments_pane(page, len(votes))
    _assert_votes_shown(pane, votes)
    page.get_by_text(next(v["note"] for v in votes if v["note"]), exact=True).wait_for()
    page.screenshot(path=str(screenshot_dir / "mlflow-feedback.png"))

    # The same votes on the case's candidate trace, from the experiment's Traces tab.
    candidate = shadow["cases"][case]["candidate"]
    page.goto(f"{base}/#/experiments/{exp}/traces?traceId={candidate}")
    _assert_votes_shown(_assessments_pane(page, len(votes)), votes)
