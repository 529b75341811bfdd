"""The candidate's share of a human review's wins, and how low it may really be.

Per case, the votes of every reviewer (their latest on that case) are averaged with
candidate = 1, tie = 0.5, primary = 0 (skips left out); the share is the mean over the
cases that have a vote. Its lower 95% bound comes from a percentile bootstrap over cases
(cases, not votes, are the unit: two reviewers of one case are not two samples), widened
by sqrt(n / (n - 1)): the plain percentile interval is too narrow for the few dozen cases
a review has (measured: with no real preference, 40 cases, a bound at 0.5 passed 6.8% of
reviews instead of 2.5%; widened, 3.1%, the rest being the votes' discreteness).

The bound used is the lower of that and the Wilson bound of the share (a score in [0, 1]
with mean p varies at most as a win/loss vote does, so Wilson's interval is never too
narrow): when every voted case scored alike the bootstrap collapses to a point, and two
cases voted "candidate" must not read as a certain win.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..review.tally import wilson_interval
from ..review.verdicts import ReviewVerdict
from ..shadow.stats import bootstrap_ci

_SCORE = {"candidate": 1.0, "tie": 0.5, "primary": 0.0}
RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class WinShare:
    """The candidate's win share over the voted cases, with its 95% bootstrap interval."""

    share: float
    low: float
    high: float
    cases: int

    def __str__(self) -> str:
        return f"win share {self.share:.2f} [{self.low:.2f}, {self.high:.2f}] over {self.cases} cases"


def case_scores(verdicts: Iterable[ReviewVerdict]) -> list[float]:
    """Each voted case's mean score (each reviewer's latest vote on it; skips left out)."""
    latest: dict[tuple[str, str], ReviewVerdict] = {}
    for v in sorted(verdicts, key=lambda v: v.at):
        latest[(v.reviewer, str(v.case_id))] = v
    per_case: dict[str, list[float]] = {}
    for (_, case), v in latest.items():
        if v.winner in _SCORE:
            per_case.setdefault(case, []).append(_SCORE[v.winner])
    return [sum(s) / len(s) for s in per_case.values()]


def win_share(scores: list[float], *, resamples: int = RESAMPLES, seed: int = SEED) -> WinShare | None:
    """The mean of ``scores`` with a percentile bootstrap interval (None without scores)."""
    if not scores:
        return None
    x = np.asarray(scores, dtype=float)
    n = len(x)
    if n == 1:  # one case says nothing about the spread
        return WinShare(float(x[0]), 0.0, 1.0, 1)
    mean, low, high = bootstrap_ci(x, resamples=resamples, seed=seed)
    widen = np.sqrt(n / (n - 1))
    wilson_low, wilson_high = wilson_interval(float(x.sum()), n)
    return WinShare(
        mean,
        float(max(0.0, min(mean - widen * (mean - low), wilson_low))),
        float(min(1.0, max(mean + widen * (high - mean), wilson_high))),
        n,
    )
