"""Review votes as MLflow feedback on the traces of each case; several reviewers; agreement.

Everything is real: the traces are written by MLflow tracing itself (synchronous export)
into the session's sqlite store or into a real ``mlflow server`` process, the shadow run
is a real run whose ``cases.json`` names the traces of each case, and the reviewers vote
through the review widget's own message handler (what the browser's messages reach).
"""

from __future__ import annotations

import json
import time

import mlflow
import pytest
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from servers import free_port

from llmops_magics import configure, settings
from llmops_magics.core import tracking
from llmops_magics.core.review.agreement import agreement, alpha_interval, krippendorff_alpha
from llmops_magics.core.review.session import open_review
from llmops_magics.widgets.review import review_widget

SIDES = ("primary", "candidate")
# What each reviewer prefers, case by case, in real terms (the test peeks at the blind layout).
ALICE = ["candidate", "candidate", "primary", "candidate", "tie", "primary"]
BOB = ["candidate", "candidate", "primary", "primary", "tie", "skip"]
# Krippendorff's alpha of ALICE and BOB by hand (nominal; a skip is a missing value):
#   case 5 has one value left (bob skipped): no pair, it drops out. Five units of two values
#   each; every pair counts 1 / (m_u - 1) = 1, in both orders:
#     cases 0, 1 (c, c): o_cc += 2 each -> o_cc = 4
#     case 2 (p, p): o_pp = 2;  case 4 (t, t): o_tt = 2;  case 3 (c, p): o_cp = o_pc = 1
#   n_c = 4 + 1 = 5, n_p = 2 + 1 = 3, n_t = 2, n = 10
#   sum_{c != k} o_ck = 2;  sum_{c != k} n_c n_k = n^2 - sum n_c^2 = 100 - (25 + 9 + 4) = 62
#   alpha = 1 - (n - 1) * 2 / 62 = 1 - 18 / 62 = 22 / 31 = 0.7097
HAND_ALPHA = 22 / 31
SLACK_S = 3.0


@pytest.fixture(autouse=True)
def synchronous_traces(monkeypatch):
    # MLflow's asynchronous export can drop or delay traces; these tests read them back at once.
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")


def traced_rows(cfg, n: int, tag: str) -> list[dict]:
    """Shadow rows whose two generations per case are real traces in ``cfg``'s store."""
    exp = tracking.experiment_id(cfg=cfg)
    rows = []
    with _use_tracking_uri(cfg.resolved_tracking_uri):
        for i in range(n):
            row = {"id": i, "input": f"{tag} question {i}", "prompt": f"{tag} question {i}"}
            for side in SIDES:
                span = mlflow.start_span_no_context(
                    f"{side} generation",
                    inputs={"messages": [{"role": "user", "content": row["input"]}]},
                    experiment_id=exp,
                )
                span.set_outputs({"content": f"{side} answer {i}"})
                span.end()
                row[f"{side}_output"] = f"{side} answer {i}"
                row[f"{side}_trace_id"] = span.trace_id
            rows.append(row)
        mlflow.flush_trace_async_logging()
    return rows


def traced_run(cfg, n: int, tag: str) -> tuple[str, list[dict]]:
    """A shadow-like run whose ``cases.json`` names the traces of each case."""
    rows = traced_rows(cfg, n, tag)
    run_id = tracking.log_run(
        run_name=tag,
        tags={"llmops.primary": "chat@champion", "llmops.candidate": "chat@challenger"},
        params={},
        metrics={},
        tables={"cases.json": {k: [r[k] for r in rows] for k in rows[0]}},
        cfg=cfg,
    )
    return run_id, rows


def preferences(cfg, trace_id: str) -> list:
    """The ``preference`` feedback on one trace, as ``mlflow.get_trace`` shows it."""
    with _use_tracking_uri(cfg.resolved_tracking_uri):
        trace = mlflow.get_trace(trace_id)
    assert trace is not None, f"trace {trace_id} is not in the store"
    return [a for a in trace.info.assessments if a.name == "preference"]


def send(widget, **content) -> None:
    """A custom message from the view, through the same entry the browser's messages reach."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})
    assert not widget.state["error"], widget.state["error"]


def vote_for(widget, index: int, winner: str, note: str = "") -> None:
    """Go to a case and prefer a real side (the reviewer sees it blind; the test knows the layout)."""
    send(widget, action="go", index=index)
    case = widget.session.current
    choice = winner if winner in ("tie", "skip") else ("left" if case.left == winner else "right")
    send(widget, action="vote", choice=choice, note=note)


def outcome(winner: str, side: str) -> str:
    return winner if winner in ("tie", "skip") else ("won" if winner == side else "lost")


def test_alpha_matches_hand_computations():
    # The table worked above: two reviewers, a skip as a missing value.
    table = [list(pair) for pair in zip(ALICE, BOB)]
    units = [[None if v == "skip" else v for v in unit] for unit in table]
    assert krippendorff_alpha(units) == pytest.approx(HAND_ALPHA)
    # A case with one value only holds no pair: adding more of them changes nothing.
    assert krippendorff_alpha([*units, ["candidate", None], [None, None]]) == pytest.approx(HAND_ALPHA)

    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the nominal example:
    # 4 coders, 12 units, missing values. By hand: unit 1 (1,1,1) and the other unanimous
    # units add no disagreement; unit 2 (2,3,2): (3^2 - (2^2 + 1^2)) / 2 = 2; unit 6
    # (1,2,3,4): (16 - 4) / 3 = 4; unit 8 (1,1,2,1): (16 - 10) / 3 = 2; units 11 (1,1) and
    # 12 (3 alone: dropped) none. sum_{c != k} o_ck = 8. Pairable values n = 40 with
    # n_1..n_5 = 9, 13, 10, 5, 3; n^2 - sum n_c^2 = 1600 - 384 = 1216.
    # alpha = 1 - 39 * 8 / 1216 = 0.743 (the paper's value).
    x = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, x, x, x],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, x, 3],
        [x, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, x],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, x],
    ]
    paper = list(zip(*coders))
    assert krippendorff_alpha(paper) == pytest.approx(1 - 39 * 8 / 1216)
    assert round(krippendorff_alpha(paper), 3) == 0.743

    # Perfect agreement is 1; one category only cannot be told from chance: undefined.
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == 1.0
    assert krippendorff_alpha([["tie", "tie"], ["tie", "tie", None]]) is None
    # Systematic disagreement is below 0: (a, b) twice -> n_a = n_b = 2, o_ab + o_ba = 4,
    # alpha = 1 - 3 * 4 / (16 - 8) = -0.5.
    assert krippendorff_alpha([["a", "b"], ["b", "a"]]) == pytest.approx(-0.5)

    # The bootstrap over cases: seeded, around the estimate, inside [-1, 1].
    (lo, hi), undefined = alpha_interval(paper, seed=3)
    assert ((lo, hi), undefined) == alpha_interval(paper, seed=3)
    assert -1 <= lo <= 0.743 <= hi <= 1 and hi - lo > 0.1
    agreed = agreement({str(i): {"alice": a, "bob": b} for i, (a, b) in enumerate(units)})
    assert agreed.alpha == pytest.approx(HAND_ALPHA) and agreed.cases == 5 and agreed.values == 10
    assert "0.71" in agreed.text() and "over 5 cases, 2 reviewers" in agreed.text()


def test_two_reviewers_vote_in_the_widget_and_mlflow_shows_who_preferred_what():
    cfg = settings()
    run_id, rows = traced_run(cfg, len(ALICE), "two-reviewers")
    alice = review_widget(run_id, reviewer="alice", seed=1)
    assert alice.state["reviewer"] == "alice" and alice.state["summary"] is None
    for i, want in enumerate(ALICE):
        vote_for(alice, i, want, note=f"alice on case {i}")
    # Bob has a queue of his own: alice's votes are not his, he starts at the first case.
    bob = review_widget(run_id, reviewer="bob", seed=1)
    assert bob.state["tally"]["reviewed"] == 0 and bob.session.index == 0
    for i, want in enumerate(BOB):
        vote_for(bob, i, want)
    for w in (alice, bob):
        assert w.state["sync_error"] == "" and w.state["feedback"]["pending"] == 0

    # On BOTH traces of every case, one feedback per reviewer, in real terms, ties and skips too.
    for i, row in enumerate(rows):
        for side in SIDES:
            found = preferences(cfg, row[f"{side}_trace_id"])
            assert sorted(a.source.source_id for a in found) == ["alice", "bob"]
            for a in found:
                wanted = (ALICE if a.source.source_id == "alice" else BOB)[i]
                assert a.source.source_type == "HUMAN" and a.valid
                assert a.value == wanted
                assert a.metadata["side"] == side and a.metadata["outcome"] == outcome(wanted, side)
                assert a.metadata["run_id"] == run_id and a.metadata["case_id"] == str(i)
                assert a.rationale == (f"alice on case {i}" if a.source.source_id == "alice" else None)

    # The summary: each reviewer's win rate (Wilson) and their agreement.
    summary = bob.state["summary"]
    assert summary["reviewers"]["alice"]["win_rate"] == pytest.approx(3 / 5)
    assert summary["reviewers"]["bob"]["win_rate"] == pytest.approx(2 / 4)
    assert summary["reviewers"]["bob"]["skips"] == 1
    assert summary["agreement"]["alpha"] == pytest.approx(HAND_ALPHA)
    lo, hi = summary["agreement"]["ci_low"], summary["agreement"]["ci_high"]
    assert lo <= HAND_ALPHA <= hi
    assert any(line.startswith("alice: candidate win rate 60% (95% Wilson CI") for line in summary["lines"])
    assert any("Krippendorff's alpha" in line and "0.71" in line for line in summary["lines"])
    # Alice's view learns of bob when she asks (the view's refresh button).
    assert alice.state["summary"] is None
    send(alice, action="refresh")
    assert alice.state["summary"]["agreement"]["alpha"] == pytest.approx(HAND_ALPHA)

    # The run holds each reviewer's table, the shared one and the summary metrics.
    metrics = tracking.client(cfg).get_run(run_id).data.metrics
    assert metrics["review.reviewers"] == 2 and metrics["review.alpha"] == pytest.approx(HAND_ALPHA)
    assert metrics["review.reviewer.alice.candidate_win_rate"] == pytest.approx(0.6)
    assert metrics["review.reviewed"] == len(ALICE) + len(BOB)
    bobs = json.loads(tracking.read_artifact(run_id, "review/verdicts/bob.json", cfg))
    assert [r[2] for r in bobs["data"]] == BOB
    shared = json.loads(tracking.read_artifact(run_id, "review/verdicts.json", cfg))
    assert len(shared["data"]) == len(ALICE) + len(BOB)


def test_a_changed_vote_overrides_the_reviewers_earlier_feedback():
    cfg = settings()
    run_id, rows = traced_run(cfg, 2, "changed-vote")
    w = review_widget(run_id, reviewer="erin")
    vote_for(w, 0, "candidate", note="first look")
    vote_for(w, 0, "tie", note="on reflection, the same")
    for side in SIDES:
        found = preferences(cfg, rows[0][f"{side}_trace_id"])
        assert len(found) == 2
        old = next(a for a in found if a.value == "candidate")
        new = next(a for a in found if a.value == "tie")
        # MLflow keeps the history: the earlier feedback is marked invalid, the new one points at it.
        assert not old.valid and new.valid and new.overrides == old.assessment_id
        assert new.rationale == "on reflection, the same"
    # The untouched case has no feedback at all.
    assert preferences(cfg, rows[1]["primary_trace_id"]) == []


def test_each_reviewer_resumes_their_own_queue(tmp_path):
    cfg = settings()
    run_id, rows = traced_run(cfg, 5, "resume")
    alice = open_review(run_id, reviewer="alice")
    for i in range(3):
        alice.go(i)
        alice.vote("tie")
    bob = open_review(run_id, reviewer="bob")
    for i in (0, 4):
        bob.go(i)
        bob.vote("skip")

    again = open_review(run_id, reviewer="alice")
    assert again.index == 3 and sorted(again.verdicts) == ["0", "1", "2"]
    assert {v.reviewer for v in again.verdicts.values()} == {"alice"}
    assert sorted(again.others["bob"]) == ["0", "4"]
    assert open_review(run_id, reviewer="bob").index == 1
    # Spools are per reviewer.
    assert again.spool_path != bob.spool_path and again.spool_path.parent == bob.spool_path.parent

    # Another machine, the same MLflow: each reviewer's queue comes back from the run alone.
    elsewhere = configure(home=tmp_path / "elsewhere", tracking_uri=cfg.resolved_tracking_uri)
    remote = open_review(run_id, reviewer="alice", cfg=elsewhere)
    assert not remote.spool_path.exists()
    assert remote.index == 3 and sorted(remote.verdicts) == ["0", "1", "2"]
    assert set(remote.summary().reviewers) == {"alice", "bob"}
    # Feedback is sent by the machine that spooled the vote, never again from here.
    assert remote.sender.pending() == []
    assert len(preferences(cfg, rows[0]["primary_trace_id"])) == 2


def test_rows_without_traces_vote_as_before_without_feedback(tmp_path):
    rows = [{"id": i, "input": f"q{i}", "primary_output": f"p{i}", "candidate_output": f"c{i}"} for i in range(3)]
    down = configure(home=tmp_path / "home", tracking_uri=f"http://127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    w = review_widget(rows, reviewer="frank", cfg=down)
    send(w, action="vote", choice="left")
    send(w, action="vote", choice="skip")
    # No trace and no run: nothing asks MLflow (a down server costs nothing, says nothing).
    assert time.monotonic() - t0 < 2.0
    assert w.state["sync_error"] == "" and w.state["feedback"]["pending"] == 0
    lines = [json.loads(x) for x in w.session.spool_path.read_text().splitlines()]
    assert [x["type"] for x in lines] == ["verdict", "verdict"] and lines[0]["traces"] == {}


@pytest.fixture
def on_server(mlflow_server, tmp_path):
    cfg = configure(tracking_uri=mlflow_server.uri, home=tmp_path / "home")
    yield cfg
    if not mlflow_server.running:
        mlflow_server.start()
    mlflow_server.thaw()


def test_a_stopped_mlflow_server_loses_no_vote_and_gets_each_feedback_once(mlflow_server, on_server):
    cfg = on_server
    run_id, rows = traced_run(cfg, 4, "outage")
    w = review_widget(run_id, reviewer="carol", cfg=cfg)
    vote_for(w, 0, "candidate")
    assert w.state["feedback"]["pending"] == 0

    mlflow_server.kill()
    try:
        for i, want in ((1, "primary"), (2, "tie")):
            t0 = time.monotonic()
            vote_for(w, i, want, note=f"offline {i}")
            spent = time.monotonic() - t0
            assert spent <= cfg.mlflow_timeout_s + SLACK_S, f"a vote waited {spent:.1f} s on a stopped MLflow"
        state = w.state
        assert state["feedback"]["pending"] == 4  # two votes, two traces each
        assert "kept in the spool" in state["sync_error"] and "\n" not in state["sync_error"]
        assert state["tally"]["reviewed"] == 3  # the votes count while MLflow is away
    finally:
        mlflow_server.start()

    # Back: the next open sends what waited; opening again sends nothing twice.
    back = review_widget(run_id, reviewer="carol", cfg=cfg)
    assert back.state["feedback"]["pending"] == 0 and back.session.index == 3
    vote_for(back, 3, "skip")
    review_widget(run_id, reviewer="carol", cfg=cfg)
    wanted = ["candidate", "primary", "tie", "skip"]
    for i, row in enumerate(rows):
        for side in SIDES:
            found = preferences(cfg, row[f"{side}_trace_id"])
            assert [(a.source.source_id, a.value) for a in found] == [("carol", wanted[i])]
    assert preferences(cfg, rows[1]["primary_trace_id"])[0].rationale == "offline 1"


def test_a_feedback_whose_answer_was_lost_is_not_logged_twice(mlflow_server, on_server):
    """The server freezes after taking the request: the vote's budget runs out, the
    feedback lands once the server wakes up, and the next vote finds it instead of
    logging it again."""
    cfg = on_server
    rows = traced_rows(cfg, 2, "lost-answer")
    w = review_widget(rows, reviewer="dave", cfg=cfg)
    trace = rows[0]["primary_trace_id"]
    with tracking.command(cfg):  # the vote shares this budget, pinged while the server answers
        tracking.client(cfg).search_experiments(max_results=1)
        mlflow_server.freeze()
        try:
            t0 = time.monotonic()
            vote_for(w, 0, "primary")
            assert time.monotonic() - t0 <= cfg.mlflow_timeout_s + SLACK_S
        finally:
            mlflow_server.thaw()
    assert w.state["feedback"]["pending"] == 2 and "did not answer" in w.state["sync_error"]
    # The request the frozen server had taken is served now: the feedback lands on its own.
    deadline = time.monotonic() + 60
    while not preferences(cfg, trace) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [a.value for a in preferences(cfg, trace)] == ["primary"]

    vote_for(w, 1, "tie")
    assert w.state["feedback"]["pending"] == 0 and w.state["sync_error"] == ""
    for i, want in enumerate(["primary", "tie"]):
        for side in SIDES:
            found = preferences(cfg, rows[i][f"{side}_trace_id"])
            assert [(a.source.source_id, a.value) for a in found] == [("dave", want)]
