"""Each reviewer's own append-only file: their votes first, then what MLflow got of them.

``<home>/reviews/<review key>/<reviewer>.jsonl``, one JSON object a line, flushed and
fsynced before anything else happens, so a vote survives a crash or an MLflow outage:

* ``{"type": "verdict", ...the verdict..., "traces": {"primary": id, "candidate": id}}``
* ``{"type": "feedback", "vote_id", "trace_id", "assessment_id", "status": "shipped" | "dropped", "why"}``:
  the feedback of that vote on that trace is in MLflow (or can never be: its trace is gone).

A torn last line (a crash mid-write) is skipped. Reviews from before reviewers had files
of their own were kept in ``<home>/reviews/<review key>.jsonl``; it is still read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .verdicts import ReviewVerdict, reviewer_slug


@dataclass(frozen=True)
class SpooledVote:
    """A vote as spooled, with the traces of its case at the time of the vote."""

    verdict: ReviewVerdict
    traces: dict = field(default_factory=dict)


def _lines(path: Path):
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            yield json.loads(line)
        except ValueError:  # a torn last line from a crash mid-write
            continue


def _votes(path: Path) -> list[SpooledVote]:
    return [
        SpooledVote(ReviewVerdict.from_dict(d), dict(d.get("traces") or {}))
        for d in _lines(path)
        if d.get("type") == "verdict"
    ]


def _append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


class ReviewSpool:
    """One reviewer's spool for one review.

    Parameters
    ----------
    folder : Path
        ``<home>/reviews``.
    key : str
        The review key (the shadow run id, or a digest of the cases).
    reviewer : str
        Whose file this is.
    """

    def __init__(self, folder: Path, key: str, reviewer: str):
        self.folder, self.key, self.reviewer = Path(folder), key, reviewer
        self.path = self.folder / key / f"{reviewer_slug(reviewer)}.jsonl"
        self.legacy_path = self.folder / f"{key}.jsonl"
        self.votes: list[SpooledVote] = []
        self.marks: dict[tuple[str, str], dict] = {}
        self.read()

    def read(self) -> None:
        """(Re)load this reviewer's votes, in the order they were cast, and the feedback marks."""
        legacy = [s for s in _votes(self.legacy_path) if s.verdict.reviewer == self.reviewer]
        self.votes = sorted(legacy + _votes(self.path), key=lambda s: s.verdict.at)
        self.marks = {
            (d.get("vote_id", ""), d.get("trace_id", "")): d for d in _lines(self.path) if d.get("type") == "feedback"
        }

    def others(self) -> list[ReviewVerdict]:
        """The verdicts other reviewers spooled on this machine for the same review."""
        found = [s.verdict for s in _votes(self.legacy_path) if s.verdict.reviewer != self.reviewer]
        folder = self.folder / self.key
        if folder.is_dir():
            for path in sorted(folder.glob("*.jsonl")):
                if path != self.path:
                    found += [s.verdict for s in _votes(path) if s.verdict.reviewer != self.reviewer]
        return found

    def append_vote(self, verdict: ReviewVerdict, *, run_id: str | None, traces: dict) -> None:
        record = {"type": "verdict", "key": self.key, "run_id": run_id, **verdict.as_dict(), "traces": traces}
        _append(self.path, record)
        self.votes.append(SpooledVote(verdict, dict(traces)))

    def mark(self, vote_id: str, trace_id: str, assessment_id: str, status: str, why: str = "") -> None:
        """Record that a vote's feedback on a trace is in MLflow (``shipped``) or never can be (``dropped``)."""
        record = {
            "type": "feedback",
            "vote_id": vote_id,
            "trace_id": trace_id,
            "assessment_id": assessment_id,
            "status": status,
            "why": why,
        }
        _append(self.path, record)
        self.marks[(vote_id, trace_id)] = record
