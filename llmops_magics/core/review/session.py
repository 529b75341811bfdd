"""Blind A/B review of a shadow comparison: the state machine behind the review widget.

Plain Python, so it runs (and is tested) without a browser. The parts live by noun:
:mod:`.layout` (blind order, votes, word diff, keys), :mod:`.verdicts` (one vote),
:mod:`.spool` (each reviewer's local file), :mod:`.run_record` (tables and metrics on the
shadow run), :mod:`.feedback` (votes as MLflow feedback on the traces), :mod:`.tally` and
:mod:`.agreement` (win rates, Krippendorff's alpha), :mod:`.view` (the widget's state).

* **Reviewers.** Each reviewer (``reviewer=``, else the OS user) has their own queue: their
  own spool, their own table on the run, and resumes at their own first unreviewed case.
  Other reviewers' verdicts (from their spools on this machine and from the run) are read
  at open and :meth:`ReviewSession.refresh`, for the summary: per-reviewer win rates and
  the agreement between reviewers.
* **Order of writes.** A vote is appended to the reviewer's spool first (flushed and
  fsynced), then, within one MLflow budget per vote: the reviewer's verdicts table and the
  summary metrics on the run, then the vote as feedback on both traces of its case. A
  failure keeps the vote in the spool and says so in one line; the tables are rewritten
  whole at the next vote and pending feedback is sent at the next vote or open.
* **Resume.** A new session for the same key and reviewer merges the spool and the run's
  tables (the later verdict per case wins) and starts at the first unreviewed case.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ...config import Settings, settings
from ...errors import BadInput, TrackingError
from ..tracking import command, current_user, describe, public_uri
from .feedback import FeedbackSender, SendReport
from .layout import KEYS, SIDES, VOTES, ReviewCase, blind_left, case_from_row, winner_of, word_diff
from .run_record import CASES_ARTIFACT, VERDICTS_ARTIFACT, read_verdicts, write_verdicts
from .run_record import rows_from_run as _rows_from_run
from .spool import ReviewSpool
from .tally import Z95, Summary, Tally, summarize, tally, wilson_interval
from .verdicts import ReviewVerdict, by_reviewer, reviewer_id
from .verdicts import now as _now
from .view import session_state

__all__ = [
    "CASES_ARTIFACT",
    "KEYS",
    "SIDES",
    "VERDICTS_ARTIFACT",
    "VOTES",
    "Z95",
    "ReviewCase",
    "ReviewSession",
    "ReviewVerdict",
    "Summary",
    "Tally",
    "blind_left",
    "open_review",
    "review_key",
    "rows_from_run",
    "tally",
    "wilson_interval",
    "winner_of",
    "word_diff",
]


def review_key(rows: list[dict], run_id: str | None) -> str:
    """The run id, or for an unlogged comparison a digest of its cases and outputs."""
    if run_id:
        return run_id
    h = hashlib.sha256()
    # Sorted: the same cases in another order are the same review.
    for item in sorted(json.dumps([str(r["id"]), r["primary_output"], r["candidate_output"]]) for r in rows):
        h.update(item.encode())
    return "local-" + h.hexdigest()[:16]


def _reviewer() -> str:
    # The MLflow user first (whose name the feedback carries in the MLflow UI), then the OS's.
    try:
        return current_user()
    except Exception:  # no user database in some containers
        return ""


class ReviewSession:
    """One reviewer's blind A/B review over shadow rows, persisted as it goes.

    Parameters
    ----------
    rows : list of dict
        Shadow rows with ``id``, ``input``, ``prompt``, ``primary_output``,
        ``candidate_output`` and, when the generations were traced, ``primary_trace_id``
        and ``candidate_trace_id``.
    run_id : str, optional
        The shadow run; verdicts are written to it and resumed from it.
    seed : int
        Seeds the blind layout (with the run id and case id) and the agreement bootstrap.
    primary, candidate : str
        Labels shown when a side is revealed.
    reviewer : str, optional
        Whose queue this is; recorded with each verdict and as the feedback's source.
        The OS user by default.
    sync : bool
        Write to MLflow: verdicts to the run, feedback to the traces (the local spool is
        always written).
    auto_advance : bool
        After a vote, go to the next unreviewed case.
    """

    def __init__(
        self,
        rows: list[dict],
        *,
        run_id: str | None = None,
        seed: int = 0,
        primary: str = "primary",
        candidate: str = "candidate",
        reviewer: str | None = None,
        sync: bool = True,
        auto_advance: bool = True,
        cfg: Settings | None = None,
    ):
        if not rows:
            raise BadInput("nothing to review: the shadow result has no cases")
        missing = [k for k in ("id", "primary_output", "candidate_output") if k not in rows[0]]
        if missing:
            raise BadInput(f"rows lack {', '.join(missing)}: give ShadowResult rows")
        self.cfg = cfg or settings()
        self.run_id = run_id
        self.key = review_key(rows, run_id)
        self.seed = seed
        self.labels = {"primary": primary, "candidate": candidate}
        self.reviewer = reviewer_id(_reviewer() if reviewer is None else reviewer)
        self.sync = sync and bool(run_id)
        self.sends_feedback = sync
        self.auto_advance = auto_advance
        self.cases = [case_from_row(r, self.key, seed) for r in rows]
        self._pos = {str(c.id): i for i, c in enumerate(self.cases)}
        self.verdicts: dict[str, ReviewVerdict] = {}
        self.others: dict[str, dict[str, ReviewVerdict]] = {}
        self.last: ReviewVerdict | None = None
        self.sync_error: str | None = None
        self.feedback_error: str | None = None
        self.feedback_report: SendReport | None = None
        self._summary: Summary | None = None
        self.spool = ReviewSpool(self.cfg.home / "reviews", self.key, self.reviewer)
        self.refresh()
        self.index = self.first_unreviewed() if self.first_unreviewed() is not None else 0

    # ------------------------------------------------------------ persistence

    @property
    def spool_path(self) -> Path:
        """This reviewer's spool file."""
        return self.spool.path

    def refresh(self) -> None:
        """Read every reviewer's verdicts again (spools, the run) and send pending feedback.

        One MLflow budget for all of it: a down server costs at most that, and says so in
        :attr:`sync_error` / :attr:`feedback_error`.
        """
        self.spool.read()
        self.sender = FeedbackSender(self.spool, key=self.key, run_id=self.run_id, cfg=self.cfg)
        with command(self.cfg):
            self._load()
            self._send_feedback()

    def _load(self) -> None:
        own = [s.verdict for s in self.spool.votes]
        others = self.spool.others()
        if self.sync:
            try:
                recorded = read_verdicts(self.run_id, self.cfg)
            except TrackingError as e:
                self.sync_error = str(e)
            else:
                own += [v for v in recorded if v.reviewer == self.reviewer]
                others += [v for v in recorded if v.reviewer != self.reviewer]
        ids = list(self._pos)
        self.verdicts = by_reviewer(own, ids).get(self.reviewer, {})
        self.others = {r: cases for r, cases in by_reviewer(others, ids).items() if r != self.reviewer}
        self._summary = None

    def _ordered(self, verdicts: dict[str, ReviewVerdict]) -> list[ReviewVerdict]:
        return [verdicts[str(c.id)] for c in self.cases if str(c.id) in verdicts]

    def _push_mlflow(self) -> None:
        own = self._ordered(self.verdicts)
        everyone = own + [v for name in sorted(self.others) for v in self._ordered(self.others[name])]
        try:
            # bounded: MLflow's own retries would freeze the view for minutes
            write_verdicts(self.run_id, self.reviewer, own, everyone, self.summary(), self.cfg)
            self.sync_error = None
        except Exception as e:
            # The verdict is already in the spool; the next vote rewrites the whole table.
            self.sync_error = (
                f"saved locally ({self.spool_path}); MLflow at {public_uri(self.cfg.resolved_tracking_uri)} "
                f"refused: {describe(e)}"
            )

    def _send_feedback(self) -> None:
        if not self.sends_feedback:
            return
        self.feedback_report = self.sender.send()
        self.feedback_error = self.feedback_report.text() or None

    # ------------------------------------------------------------ navigation and votes

    @property
    def current(self) -> ReviewCase:
        return self.cases[self.index]

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def done(self) -> bool:
        return len(self.verdicts) == self.total

    def verdict_for(self, case_id) -> ReviewVerdict | None:
        return self.verdicts.get(str(case_id))

    def first_unreviewed(self, start: int = 0) -> int | None:
        """Index of the first case without a verdict at or after ``start`` (wrapping)."""
        n = self.total
        for k in range(n):
            i = (start + k) % n
            if str(self.cases[i].id) not in self.verdicts:
                return i
        return None

    def move(self, step: int) -> ReviewCase:
        """Go ``step`` cases forward (negative: back), staying within the cases."""
        self.index = min(self.total - 1, max(0, self.index + int(step)))
        return self.current

    def go(self, index: int) -> ReviewCase:
        if not 0 <= index < self.total:
            raise BadInput(f"case index {index} is out of range: 0 to {self.total - 1}")
        self.index = index
        return self.current

    def vote(self, vote: str, note: str = "") -> ReviewVerdict:
        """Record a vote on the current case, persist it, and (by default) move on.

        Returns the verdict, whose ``winner`` and ``left`` reveal the blind layout.
        """
        case = self.current
        v = ReviewVerdict(case.id, vote, winner_of(vote, case.left), case.left, str(note or ""), self.reviewer, _now())
        self.spool.append_vote(v, run_id=self.run_id, traces=case.traces)
        self.verdicts[str(case.id)] = v
        self.last = v
        self._summary = None
        with command(self.cfg):  # one MLflow budget for all of this vote's calls
            if self.sync:
                self._push_mlflow()
            self._send_feedback()
        if self.auto_advance:
            nxt = self.first_unreviewed(self.index + 1)
            if nxt is not None:
                self.index = nxt
        return v

    def press(self, key: str, note: str = ""):
        """Act on one key of :data:`KEYS` (``n``, focusing the note, stays in the view)."""
        if key not in KEYS:
            raise BadInput(f"key {key!r} does nothing here: use 1, 2, 3, s or the arrow keys")
        action, arg = KEYS[key]
        return self.vote(arg, note) if action == "vote" else self.move(arg)

    def tally(self) -> Tally:
        """This reviewer's tally."""
        return tally(self.verdicts.values(), self.total)

    def summary(self) -> Summary:
        """Every reviewer's tally, the pooled tally and the agreement between reviewers."""
        if self._summary is None:
            everyone = {**self.others, self.reviewer: self.verdicts}
            self._summary = summarize(everyone, self.total, seed=self.seed)
        return self._summary

    # ------------------------------------------------------------ views

    def side_label(self, side: str) -> str:
        return f"{side} ({self.labels[side]})"

    def state(self) -> dict:
        """Everything a view shows, as JSON-ready data (the widget's one state trait)."""
        return session_state(self)

    def __repr__(self) -> str:
        return f"<ReviewSession {self.key} by {self.reviewer}: {self.tally().text()}>"


def rows_from_run(run_id: str, cfg: Settings | None = None) -> tuple[list[dict], dict]:
    """A shadow run's case rows (from its ``cases.json`` table) and its tags."""
    return _rows_from_run(run_id, cfg or settings())


def open_review(
    source, *, seed: int = 0, reviewer: str | None = None, sync: bool = True, cfg: Settings | None = None
) -> ReviewSession:
    """Open (or resume) one reviewer's blind review of a shadow comparison.

    Parameters
    ----------
    source : ShadowResult, str or list of dict
        A shadow result, the MLflow run id of a shadow comparison (its cases are read
        back from the run, so a later session can resume), or shadow rows.
    seed : int
        Seeds the blind layout.
    reviewer : str, optional
        Whose queue to open; recorded with each verdict and as the source of the
        feedback on the traces. The OS user by default.
    sync : bool
        Write verdicts to MLflow as well as the local spool: to the run (when there is
        one) and as feedback on the traces of each case (when the rows name them).

    Returns
    -------
    ReviewSession
        Positioned at the reviewer's first unreviewed case, earlier verdicts loaded.
    """
    cfg = cfg or settings()
    if isinstance(source, str):
        rows, tags = rows_from_run(source, cfg)
        return ReviewSession(
            rows,
            run_id=source,
            seed=seed,
            reviewer=reviewer,
            sync=sync,
            cfg=cfg,
            primary=tags.get("llmops.primary", "primary"),
            candidate=tags.get("llmops.candidate", "candidate"),
        )
    if isinstance(source, list):
        return ReviewSession(source, seed=seed, reviewer=reviewer, sync=sync, cfg=cfg)
    rows = getattr(source, "rows", None)
    if rows is None:
        raise BadInput(f"cannot review a {type(source).__name__}: give a ShadowResult, a shadow run id or rows")
    return ReviewSession(
        rows,
        run_id=getattr(source, "run_id", None),
        seed=seed,
        reviewer=reviewer,
        sync=sync,
        primary=getattr(source, "primary", "primary"),
        candidate=getattr(source, "candidate", "candidate"),
        cfg=cfg,
    )
