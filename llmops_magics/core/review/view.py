"""What the review widget shows, as one JSON-ready dict (the widget's ``state`` trait).

The view renders this and nothing else, so every rule behind it is tested without a browser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .layout import KEYS, other_side, word_diff
from .verdicts import vote_words

if TYPE_CHECKING:
    from .session import ReviewSession


def _last_vote(s: ReviewSession) -> dict | None:
    lv = s.last
    if lv is None:
        return None
    return {
        "case_id": str(lv.case_id),
        "vote": lv.vote,
        "winner": lv.winner,
        "text": (
            f"last vote, case id {lv.case_id}: {vote_words(lv)}; left was "
            f"{s.side_label(lv.left)}, right was {s.side_label(other_side(lv.left))}"
        ),
    }


def session_state(s: ReviewSession) -> dict:
    """Everything a view shows: the case (blind until voted), the reviewer, tallies, errors."""
    case = s.current
    v = s.verdict_for(case.id)
    left, right = word_diff(case.left_text, case.right_text)
    summary = s.summary()
    pending = len(s.sender.pending()) if s.sends_feedback else 0
    errors = [e for e in (s.sync_error, s.feedback_error) if e]
    return {
        "key": s.key,
        "run_id": s.run_id or "",
        "reviewer": s.reviewer,
        "index": s.index,
        "total": s.total,
        "position": s.index + 1,
        "done": s.done,
        "case": {
            "id": str(case.id),
            "input": case.input,
            "prompt": case.prompt,
            "left_segments": left,
            "right_segments": right,
            "revealed": v is not None,
            "left_label": s.side_label(case.left) if v else "Left",
            "right_label": s.side_label(case.right) if v else "Right",
            "vote": v.vote if v else "",
            "winner": v.winner if v else "",
            "note": v.note if v else "",
            "traced": bool(case.traces),
        },
        "last": _last_vote(s),
        "tally": s.tally().as_dict(),
        # Only worth a line once a second reviewer has voted.
        "summary": summary.as_dict() if len(summary.reviewers) > 1 else None,
        "feedback": {"pending": pending, "error": s.feedback_error or ""},
        "sync_error": " · ".join(errors),
        "keys": sorted(KEYS),
        "spool": str(s.spool_path),
    }
