"""One vote and the tables of votes: who voted what on which case, and when.

A verdict records the layout it was cast on, so a later seed change cannot re-map old
votes. Verdicts sort in time order by ``at`` (ISO 8601 UTC with microseconds): when the
same reviewer voted twice on a case, the later vote is their verdict.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

COLUMNS = ("case_id", "vote", "winner", "left", "note", "reviewer", "at")
ANONYMOUS = "anonymous"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ReviewVerdict:
    """One vote, with the layout it was cast on and what it means."""

    case_id: object
    vote: str  # left | right | tie | skip
    winner: str  # primary | candidate | tie | skip
    left: str  # the side that was on the left
    note: str = ""
    reviewer: str = ""
    at: str = ""  # ISO 8601 UTC, microseconds: sorts in time order

    @property
    def vote_id(self) -> str:
        """Names this one vote (reviewer, case, time): a changed vote is another vote."""
        return hashlib.sha256(f"{self.reviewer}|{self.case_id}|{self.at}".encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ReviewVerdict:
        """From a spool line or a table row (unknown keys ignored; no reviewer -> anonymous)."""
        found = {k: d[k] for k in COLUMNS if k in d}
        found["reviewer"] = reviewer_id(found.get("reviewer"))
        return cls(**found)


def reviewer_id(name) -> str:
    """The id a reviewer is recorded under (``anonymous`` when there is no name)."""
    return str(name) if name else ANONYMOUS


def reviewer_slug(reviewer: str) -> str:
    """A file and metric name for a reviewer: the id when it is safe, else a cleaned id + digest."""
    clean = _UNSAFE.sub("_", reviewer).strip("._") or ANONYMOUS
    if clean == reviewer:
        return clean
    return f"{clean[:40]}-{hashlib.sha256(reviewer.encode()).hexdigest()[:8]}"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def vote_words(v: ReviewVerdict) -> str:
    return {"primary": "primary preferred", "candidate": "candidate preferred", "tie": "tie", "skip": "skipped"}[
        v.winner
    ]


def by_reviewer(verdicts: Iterable[ReviewVerdict], case_ids: Iterable[str]) -> dict[str, dict[str, ReviewVerdict]]:
    """Each reviewer's latest verdict per case, for the cases of this review only."""
    known = set(case_ids)
    out: dict[str, dict[str, ReviewVerdict]] = {}
    for v in sorted(verdicts, key=lambda v: v.at):
        if str(v.case_id) in known:
            out.setdefault(v.reviewer, {})[str(v.case_id)] = v
    return out


def _json_safe(value):
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def to_table(verdicts: Iterable[ReviewVerdict]) -> dict:
    """Verdicts as an MLflow table (``{"columns", "data"}``: the UI shows it as a table)."""
    return {"columns": list(COLUMNS), "data": [[_json_safe(getattr(v, c)) for c in COLUMNS] for v in verdicts]}


def from_table(table: dict | None) -> list[ReviewVerdict]:
    if not table:
        return []
    cols = table["columns"]
    return [ReviewVerdict.from_dict(dict(zip(cols, row))) for row in table["data"]]
