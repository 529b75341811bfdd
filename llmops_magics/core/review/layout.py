"""What a reviewer sees: the blind layout of a case, the word diff, the keys.

* **Blind order.** Per case, which side shows on the left is a coin flip seeded by
  ``(review key, seed, case id)``: reproducible for a seed, independent of the order
  cases are visited, and different between runs so a reviewer cannot learn a layout.
* **Votes** are ``left`` / ``right`` / ``tie`` / ``skip`` and map back to ``primary`` /
  ``candidate`` / ``tie`` / ``skip`` with the layout the vote was cast on.
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass

from ...errors import BadInput

VOTES = ("left", "right", "tie", "skip")
SIDES = ("primary", "candidate")
# Keyboard of the review view; the view forwards these keys and the session acts on them.
KEYS = {
    "1": ("vote", "left"),
    "2": ("vote", "right"),
    "3": ("vote", "tie"),
    "s": ("vote", "skip"),
    "ArrowLeft": ("move", -1),
    "ArrowRight": ("move", 1),
    "ArrowUp": ("move", -1),
    "ArrowDown": ("move", 1),
}
# Where a shadow row names the trace of each side's generation (None: not traced).
TRACE_COLUMNS = {"primary": "primary_trace_id", "candidate": "candidate_trace_id"}


def blind_left(key: str, seed: int, case_id) -> str:
    """Which side (``primary`` / ``candidate``) shows on the left for one case."""
    rng = random.Random(f"{key}|{seed}|{case_id}")
    return "primary" if rng.random() < 0.5 else "candidate"


def other_side(side: str) -> str:
    return "candidate" if side == "primary" else "primary"


def winner_of(vote: str, left: str) -> str:
    """Map a blind vote back to ``primary`` / ``candidate`` / ``tie`` / ``skip``."""
    if vote not in VOTES:
        raise BadInput(f"unknown vote {vote!r}: choose one of {', '.join(VOTES)}")
    if left not in SIDES:
        raise BadInput(f"left side must be primary or candidate, not {left!r}")
    if vote in ("tie", "skip"):
        return vote
    return left if vote == "left" else other_side(left)


_TOKEN = re.compile(r"\s+|[^\s]+")


def word_diff(a: str, b: str) -> tuple[list[list], list[list]]:
    """Word-level diff of two texts as ``[text, changed]`` segments per side.

    Whitespace is kept as its own tokens so joining a side's segments gives its text
    back exactly; the renderer puts each segment in a span with ``textContent``.
    """
    ta, tb = _TOKEN.findall(a or ""), _TOKEN.findall(b or "")
    left: list[list] = []
    right: list[list] = []

    def add(segs, text, changed):
        if not text:
            return
        if segs and segs[-1][1] == changed:
            segs[-1][0] += text
        else:
            segs.append([text, changed])

    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        same = op == "equal"
        add(left, "".join(ta[i1:i2]), not same)
        add(right, "".join(tb[j1:j2]), not same)
    return left, right


@dataclass(frozen=True)
class ReviewCase:
    """One case as the reviewer sees it: the blind layout, both outputs, their traces."""

    id: object
    input: str
    prompt: str
    primary_output: str
    candidate_output: str
    left: str  # "primary" or "candidate"
    primary_trace_id: str | None = None
    candidate_trace_id: str | None = None

    @property
    def right(self) -> str:
        return other_side(self.left)

    @property
    def left_text(self) -> str:
        return self.primary_output if self.left == "primary" else self.candidate_output

    @property
    def right_text(self) -> str:
        return self.candidate_output if self.left == "primary" else self.primary_output

    @property
    def traces(self) -> dict[str, str]:
        """The trace id of each side that has one (``{}`` for an untraced comparison)."""
        found = {"primary": self.primary_trace_id, "candidate": self.candidate_trace_id}
        return {side: tid for side, tid in found.items() if tid}


def _trace_id(row: dict, side: str) -> str | None:
    value = row.get(TRACE_COLUMNS[side])
    # A table read back from MLflow may hold NaN or "" where a side had no trace.
    return value if isinstance(value, str) and value else None


def case_from_row(row: dict, key: str, seed: int) -> ReviewCase:
    """A :class:`ReviewCase` from one shadow row (its layout drawn from key, seed and id)."""
    return ReviewCase(
        row["id"],
        str(row.get("input", "")),
        str(row.get("prompt", row.get("input", ""))),
        str(row["primary_output"]),
        str(row["candidate_output"]),
        blind_left(key, seed, row["id"]),
        _trace_id(row, "primary"),
        _trace_id(row, "candidate"),
    )
