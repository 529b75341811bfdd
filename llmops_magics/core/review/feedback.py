"""Votes become MLflow feedback on the traces of their case, after the spool has them.

Each vote gives one feedback on each trace of its case (the primary's and the candidate's
generation), ties and skips too:

* name ``preference``; value the side preferred in real terms (``primary``,
  ``candidate``, ``tie``, ``skip``), never the blind left/right;
* source ``HUMAN`` with the reviewer's id; rationale the reviewer's note;
* metadata: which side this trace is and how it fared (``won`` / ``lost`` / ``tie`` /
  ``skip``), the blind vote and layout, the case, the run, the review key, the vote id.

**Exactly once.** Each (vote, trace) has a fixed assessment id (a digest of the review
key, the vote id and the trace id). When MLflow confirms, the spool records it; a
feedback not confirmed stays pending and is sent at the next vote or open. One that may
have landed without an answer (a timeout, or sent by an earlier process) is looked up by
its id first, and the store refuses a second copy of an id anyway.

**A changed vote** is a new feedback that ``overrides`` the reviewer's previous one on
that trace (MLflow marks the old one invalid and keeps it): the UI shows each reviewer's
current preference, with the history behind it. Votes are sent in the order they were
cast, so the feedback a vote overrides is always in MLflow before it.

**Bounded.** All of a vote's MLflow calls share the command's budget; at most
:data:`PER_SEND` feedbacks go per vote or open, so a long backlog drains over a few votes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import Settings
from ...errors import TrackingError
from ..tracking import HUMAN, FeedbackTargetMissing, feedback_exists, log_feedback
from ..tracking import assessment_id as make_assessment_id
from .layout import SIDES
from .spool import ReviewSpool
from .verdicts import ReviewVerdict

FEEDBACK_NAME = "preference"
PER_SEND = 64


def outcome(winner: str, side: str) -> str:
    """How the side of a trace fared in a vote: ``won``, ``lost``, ``tie`` or ``skip``."""
    if winner in SIDES:
        return "won" if winner == side else "lost"
    return winner


@dataclass(frozen=True)
class PendingFeedback:
    """One vote's feedback on one trace, not yet confirmed by MLflow."""

    verdict: ReviewVerdict
    side: str
    trace_id: str
    assessment_id: str
    overrides: str | None


@dataclass(frozen=True)
class SendReport:
    """What one send did: confirmed now, still pending, dropped (trace gone), and why not all."""

    sent: int
    pending: int
    dropped: int
    error: str | None

    def text(self) -> str:
        if self.error is None:
            return ""
        if self.pending:
            return (
                f"feedback of {self.pending} vote-trace pair(s) kept in the spool, sent at the next vote: {self.error}"
            )
        return self.error


class FeedbackSender:
    """Sends one reviewer's spooled votes to the traces of their cases as MLflow feedback.

    Parameters
    ----------
    spool : ReviewSpool
        The reviewer's spool: the votes to send and the marks of what was sent.
    key : str
        The review key (part of every assessment id).
    run_id : str or None
        The shadow run, recorded in the metadata.
    cfg : Settings
    """

    def __init__(self, spool: ReviewSpool, *, key: str, run_id: str | None, cfg: Settings):
        self.spool, self.key, self.run_id, self.cfg = spool, key, run_id, cfg
        # May have landed without a confirmation (sent before a timeout, or by an earlier
        # process: nothing is known of its attempts): looked up before it is sent again.
        self._unsure: set[str] = {p.assessment_id for p in self.pending()}

    def pending(self) -> list[PendingFeedback]:
        """Every (vote, trace) the spool has no mark for, in the order the votes were cast."""
        out: list[PendingFeedback] = []
        last: dict[tuple[str, str], str | None] = {}  # (case, trace) -> the reviewer's feedback in force
        for spooled in self.spool.votes:
            v = spooled.verdict
            for side in SIDES:
                trace_id = spooled.traces.get(side)
                if not trace_id:
                    continue
                aid = make_assessment_id(self.key, v.vote_id, trace_id)
                where = (str(v.case_id), trace_id)
                mark = self.spool.marks.get((v.vote_id, trace_id))
                if mark is None:
                    out.append(PendingFeedback(v, side, trace_id, aid, last.get(where)))
                    last[where] = aid
                elif mark.get("status") == "shipped":
                    last[where] = aid
        return out

    def _metadata(self, p: PendingFeedback) -> dict:
        v = p.verdict
        return {
            "side": p.side,
            "outcome": outcome(v.winner, p.side),
            "blind_vote": v.vote,
            "shown_left": v.left,
            "case_id": v.case_id,
            "run_id": self.run_id or "",
            "review_key": self.key,
            "vote_id": v.vote_id,
            "voted_at": v.at,
        }

    def _send_one(self, p: PendingFeedback) -> None:
        v = p.verdict
        if p.assessment_id in self._unsure and feedback_exists(p.trace_id, p.assessment_id, self.cfg):
            return
        self._unsure.add(p.assessment_id)
        log_feedback(
            p.trace_id,
            name=FEEDBACK_NAME,
            value=v.winner,
            source_id=v.reviewer,
            source_type=HUMAN,
            rationale=v.note or None,
            metadata=self._metadata(p),
            assessment_id=p.assessment_id,
            overrides=p.overrides,
            cfg=self.cfg,
        )

    def send(self, limit: int = PER_SEND) -> SendReport:
        """Send what is pending (at most ``limit``), oldest first; stop at the first refusal.

        Call inside one :func:`~llmops_magics.core.tracking.command` per vote or open:
        a down MLflow then costs one budget, whatever the backlog.
        """
        todo = self.pending()
        if not todo:
            return SendReport(0, 0, 0, None)
        sent = dropped = 0
        error = None
        for p in todo[:limit]:
            try:
                try:
                    self._send_one(p)
                except FeedbackTargetMissing:
                    if p.overrides is None:
                        raise
                    # The feedback it replaces is gone (deleted in the UI): log it on its own.
                    self._send_one(PendingFeedback(p.verdict, p.side, p.trace_id, p.assessment_id, None))
            except FeedbackTargetMissing as e:
                self.spool.mark(p.verdict.vote_id, p.trace_id, p.assessment_id, "dropped", str(e))
                dropped += 1
                error = f"{e}: that vote's feedback is not logged (the vote is kept)"
                continue
            except TrackingError as e:  # MLflow away (MlflowUnavailable) or refusing: the rest waits
                error = str(e)
                break
            self.spool.mark(p.verdict.vote_id, p.trace_id, p.assessment_id, "shipped")
            self._unsure.discard(p.assessment_id)
            sent += 1
        left = len(todo) - sent - dropped
        if left and error is None:
            error = f"{left} more to send (at most {limit} per vote)"
        return SendReport(sent, left, dropped, error)
