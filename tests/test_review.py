"""The blind A/B review: layout, votes, tally, persistence and resume, without a browser.

The persistence and resume tests run on a real shadow comparison (vLLM, the default
model against a LoRA candidate, MLflow sqlite); the layout and tally tests use rows
built here, since they check the bookkeeping, not a model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import llmops_magics
from llmops_magics.core.review.session import (
    ReviewSession,
    Tally,
    blind_left,
    open_review,
    wilson_interval,
    winner_of,
    word_diff,
)
from llmops_magics.errors import BadInput

QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "What is 2 + 2?"]


@pytest.fixture(scope="module")
def shadow_result(lora_adapter):
    return llmops_magics.shadow(
        QUESTIONS,
        primary="default",
        candidate=str(lora_adapter),
        max_tokens=16,
        name="review-test",
        adapter_mode="lora",
    )


def synthetic_rows(n: int) -> list[dict]:
    return [
        {
            "id": i,
            "input": f"q{i}",
            "prompt": f"q{i}",
            "primary_output": f"primary answer {i}",
            "candidate_output": f"candidate answer {i}",
        }
        for i in range(n)
    ]


def test_blind_layout_is_reproducible_per_seed_and_independent_of_order():
    rows = synthetic_rows(40)
    a = ReviewSession(rows, seed=1, sync=False)
    b = ReviewSession(rows, seed=1, sync=False)
    c = ReviewSession(rows, seed=2, sync=False)
    backwards = ReviewSession(list(reversed(rows)), seed=1, sync=False)
    layout = {case.id: case.left for case in a.cases}
    assert layout == {case.id: case.left for case in b.cases}
    assert layout == {case.id: case.left for case in backwards.cases}
    assert layout != {case.id: case.left for case in c.cases}
    # A coin per case, not one side always left.
    assert 10 <= sum(v == "primary" for v in layout.values()) <= 30
    # The texts follow the layout.
    for case in a.cases:
        primary_text = case.left_text if case.left == "primary" else case.right_text
        assert primary_text == f"primary answer {case.id}"


def test_votes_map_back_to_primary_and_candidate():
    assert winner_of("left", "primary") == "primary"
    assert winner_of("right", "primary") == "candidate"
    assert winner_of("left", "candidate") == "candidate"
    assert winner_of("right", "candidate") == "primary"
    assert winner_of("tie", "candidate") == "tie" and winner_of("skip", "primary") == "skip"

    s = ReviewSession(synthetic_rows(12), seed=5, sync=False)
    for i in range(12):
        case = s.current
        choice = "left" if i % 2 == 0 else "right"
        # Prefer whichever side holds the candidate on even cases, the primary on odd ones.
        wanted = "candidate" if i % 2 == 0 else "primary"
        shown = case.left if choice == "left" else case.right
        v = s.vote(choice)
        assert v.winner == shown and v.left == case.left
        assert s.verdict_for(case.id).winner == shown
        assert (wanted == shown) == (v.winner == wanted)
    assert s.done and s.tally().reviewed == 12


def test_tally_and_wilson_interval_match_hand_computed_numbers():
    t = Tally(candidate_wins=7, primary_wins=3, ties=2, skips=1, total=20)
    assert t.decided == 10 and t.reviewed == 13
    assert t.win_rate == pytest.approx(0.7)
    # Wilson 95%, 7 of 10: centre (0.7 + z²/20) / (1 + z²/10), half-width
    # z·sqrt(0.021 + z²/400) / (1 + z²/10), z = 1.95996: 0.3968 to 0.8922.
    lo, hi = t.ci
    assert lo == pytest.approx(0.39678, abs=1e-4) and hi == pytest.approx(0.89221, abs=1e-4)
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.43449), abs=1e-4)
    assert wilson_interval(5, 5) == pytest.approx((0.56551, 1.0), abs=1e-4)
    empty = Tally(0, 0, 3, 1, 4)
    assert empty.win_rate is None and empty.ci == (0.0, 1.0)
    assert "no decided votes yet" in empty.text() and "ties 3" in empty.text()
    assert "70% (95% Wilson CI 40% to 89%)" in t.text()


def test_keys_drive_the_session_and_bad_input_is_one_clear_line():
    s = ReviewSession(synthetic_rows(3), seed=0, sync=False, auto_advance=False)
    s.press("ArrowRight")
    assert s.index == 1
    s.press("ArrowLeft"), s.press("ArrowLeft")
    assert s.index == 0
    v = s.press("3")
    assert v.winner == "tie" and s.index == 0  # no auto-advance here
    with pytest.raises(BadInput, match="unknown vote 'up': choose one of left, right, tie, skip"):
        s.vote("up")
    with pytest.raises(BadInput, match="key 'x' does nothing here"):
        s.press("x")
    with pytest.raises(BadInput, match="nothing to review"):
        ReviewSession([])
    with pytest.raises(BadInput, match="cannot review a int"):
        open_review(42)


def test_word_diff_marks_changed_words_and_keeps_the_texts():
    a = "The capital of France is Paris."
    b = "The capital of France is Lyon, I think."
    left, right = word_diff(a, b)
    assert "".join(t for t, _ in left) == a and "".join(t for t, _ in right) == b
    assert [t for t, changed in left if changed] == ["Paris."]
    assert [t for t, changed in right if changed] == ["Lyon, I think."]
    assert word_diff("same", "same") == ([["same", False]], [["same", False]])


def test_verdicts_go_to_spool_then_mlflow_and_reveal_the_side(shadow_result):
    from llmops_magics.core.tracking import client

    s = shadow_result.review(seed=3, reviewer="alice").session
    assert s.run_id == shadow_result.run_id and s.index == 0
    first = s.current
    state = s.state()
    assert state["case"]["left_label"] == "Left" and not state["case"]["revealed"]
    v = s.vote("left", note="more precise")
    assert v.winner == first.left
    # The reveal names the sides with the models' labels.
    assert f"left was {first.left} (" in s.state()["last"]["text"]
    s.go(0)
    assert s.state()["case"]["revealed"] and s.state()["case"]["left_label"].startswith(first.left)

    # The verdict lines (marks of the feedback sent to the case's traces may follow them).
    lines = [json.loads(x) for x in s.spool_path.read_text().splitlines()]
    lines = [x for x in lines if x["type"] == "verdict"]
    assert lines[-1]["case_id"] == first.id and lines[-1]["note"] == "more precise"
    assert lines[-1]["reviewer"] == "alice" and lines[-1]["run_id"] == shadow_result.run_id

    c = client()
    local = c.download_artifacts(shadow_result.run_id, "review/verdicts.json")
    table = json.loads(open(local).read())
    assert table["columns"][:3] == ["case_id", "vote", "winner"]
    assert [r[:3] for r in table["data"]] == [[first.id, "left", first.left]]
    metrics = c.get_run(shadow_result.run_id).data.metrics
    assert metrics["review.reviewed"] == 1
    assert metrics["review.candidate_win_rate"] == (1.0 if first.left == "candidate" else 0.0)

    # The shadow traced both generations of the case: the vote is feedback on each trace.
    row = next(r for r in shadow_result.rows if r["id"] == first.id)
    for side in ("primary", "candidate"):
        trace = c.get_trace(row[f"{side}_trace_id"])
        found = [a for a in trace.info.assessments if a.name == "preference"]
        assert [(a.source.source_type, a.source.source_id, a.value, a.rationale) for a in found] == [
            ("HUMAN", "alice", first.left, "more precise")
        ]
        assert found[0].metadata["side"] == side and found[0].metadata["outcome"] == (
            "won" if side == first.left else "lost"
        )


RESUME = r"""
import json, sys
from llmops_magics import open_review
s = open_review(sys.argv[1], seed=3)
before = {k: v.winner for k, v in s.verdicts.items()}
start = s.index
s.vote("tie", note="from the second kernel")
print(json.dumps({"before": before, "start": start, "after": s.tally().as_dict()}))
"""


def test_a_new_process_resumes_where_the_review_stopped(shadow_result, llmops_home):
    s = open_review(shadow_result, seed=3)
    s.go(0)
    s.vote("right")
    reviewed = dict(s.verdicts)
    expected_start = s.first_unreviewed()
    assert expected_start is not None

    env = {**os.environ, "LLMOPS_HOME": str(llmops_home)}
    out = subprocess.run(
        [sys.executable, "-c", RESUME, shadow_result.run_id], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before"] == {k: v.winner for k, v in reviewed.items()}
    assert seen["start"] == expected_start
    assert seen["after"]["reviewed"] == len(reviewed) + 1 and seen["after"]["ties"] >= 1

    # Back here, a fresh session sees the other process's verdict too.
    again = open_review(shadow_result, seed=3)
    assert len(again.verdicts) == len(reviewed) + 1
    assert again.verdict_for(shadow_result.rows[expected_start]["id"]).note == "from the second kernel"


def test_mlflow_alone_is_enough_to_resume_and_an_outage_keeps_the_spool(shadow_result, tmp_path):
    from servers import free_port

    from llmops_magics import configure

    base = open_review(shadow_result, seed=3)
    n = len(base.verdicts)
    assert n >= 1
    # Another machine: an empty spool, the same MLflow store.
    elsewhere = configure(home=tmp_path / "other-home", tracking_uri=base.cfg.resolved_tracking_uri)
    from_mlflow = open_review(shadow_result, seed=3, cfg=elsewhere)
    assert {k: v.winner for k, v in from_mlflow.verdicts.items()} == {k: v.winner for k, v in base.verdicts.items()}

    # MLflow down: the vote is kept locally and the view says so in one line.
    down = configure(home=tmp_path / "down-home", tracking_uri=f"http://127.0.0.1:{free_port()}")
    offline = ReviewSession(shadow_result.rows, run_id=shadow_result.run_id, seed=3, cfg=down)
    assert "does not answer" in offline.sync_error
    offline.vote("skip")
    assert "saved locally" in offline.sync_error and "\n" not in offline.sync_error
    assert offline.spool_path.read_text().count('"vote": "skip"') == 1


def test_unknown_run_id_is_one_clear_line():
    with pytest.raises(BadInput, match="no MLflow run 'no-such-run'"):
        open_review("no-such-run")


def test_two_reviewers_keep_their_own_queues_through_the_widget(tmp_path):
    from llmops_magics import configure
    from llmops_magics.widgets.review import ReviewWidget

    cfg = configure(home=tmp_path / "home")
    rows = synthetic_rows(4)

    def send(widget, **content):
        # What a message from the browser reaches: the comm's handler, then the widget's.
        widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})
        assert not widget.state["error"], widget.state["error"]

    ann = ReviewWidget(ReviewSession(rows, reviewer="ann", cfg=cfg))
    for _ in range(4):
        send(ann, action="vote", choice="tie")
    ben = ReviewWidget(ReviewSession(rows, reviewer="ben", cfg=cfg))
    assert ben.state["reviewer"] == "ben" and ben.state["tally"]["reviewed"] == 0
    send(ben, action="vote", choice="tie")
    send(ben, action="key", key="ArrowLeft")
    assert ben.state["index"] == 0
    send(ben, action="go", index=1)
    send(ben, action="vote", choice="tie")
    send(ben, action="vote", choice="skip")
    assert ann.state["tally"]["reviewed"] == 4 and ben.state["tally"]["reviewed"] == 3

    # Each resumes their own queue; each has a spool of their own.
    assert ReviewSession(rows, reviewer="ben", cfg=cfg).index == 3
    assert ReviewSession(rows, reviewer="ann", cfg=cfg).done
    assert ann.session.spool_path != ben.session.spool_path
    # Every shared verdict is a tie: alpha cannot tell agreement from chance, and says so.
    assert ann.state["summary"] is None  # ann's view has not read ben's votes yet
    send(ann, action="refresh")
    summary = ann.state["summary"]
    assert set(summary["reviewers"]) == {"ann", "ben"}
    assert summary["agreement"]["alpha"] is None and summary["agreement"]["cases"] == 2
    assert "undefined" in summary["lines"][-1]
    assert summary["pooled"]["reviewed"] == 7 and summary["pooled"]["total"] == 8
