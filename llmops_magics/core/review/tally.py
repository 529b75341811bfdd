"""Counting verdicts: one reviewer's tally, and the summary across reviewers.

* **Tally.** Candidate win rate = candidate wins / (candidate wins + primary wins): ties
  and skips are left out of the rate (as in a sign test, and as the judge check of a
  shadow verdict does) and reported beside it. The 95% interval is the Wilson score
  interval, which stays inside [0, 1] and behaves at 0 or n wins and small n, where the
  normal (Wald) interval collapses to a point.
* **Summary.** Each reviewer's tally, the pooled tally of every vote (votes on the same
  case by different reviewers are not independent, so read the per-reviewer intervals
  first), and the agreement between reviewers (:mod:`.agreement`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .agreement import RESAMPLES, Agreement, agreement
from .verdicts import ReviewVerdict

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95% by default); (0, 1) when n = 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Tally:
    """Counts of verdicts and the candidate's win rate with its 95% Wilson interval."""

    candidate_wins: int
    primary_wins: int
    ties: int
    skips: int
    total: int

    @property
    def reviewed(self) -> int:
        return self.candidate_wins + self.primary_wins + self.ties + self.skips

    @property
    def decided(self) -> int:
        return self.candidate_wins + self.primary_wins

    @property
    def win_rate(self) -> float | None:
        """Candidate wins / decided votes (ties and skips left out); None before any."""
        return self.candidate_wins / self.decided if self.decided else None

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.candidate_wins, self.decided)

    @property
    def progress(self) -> float:
        return self.reviewed / self.total if self.total else 1.0

    def rate_text(self) -> str:
        if self.win_rate is None:
            return "candidate win rate: no decided votes yet"
        lo, hi = self.ci
        return f"candidate win rate {self.win_rate:.0%} (95% Wilson CI {lo:.0%} to {hi:.0%})"

    def text(self) -> str:
        return (
            f"{self.rate_text()} · candidate {self.candidate_wins}, primary {self.primary_wins}, "
            f"ties {self.ties}, skips {self.skips} · {self.reviewed} of {self.total} reviewed"
        )

    def as_dict(self) -> dict:
        lo, hi = self.ci
        return {
            "candidate_wins": self.candidate_wins,
            "primary_wins": self.primary_wins,
            "ties": self.ties,
            "skips": self.skips,
            "reviewed": self.reviewed,
            "total": self.total,
            "decided": self.decided,
            "win_rate": self.win_rate,
            "ci_low": lo,
            "ci_high": hi,
            "text": self.text(),
        }


def tally(verdicts: Iterable[ReviewVerdict], total: int) -> Tally:
    """Count verdicts (one per case) into a :class:`Tally`."""
    winners = [v.winner for v in verdicts]
    return Tally(
        winners.count("candidate"), winners.count("primary"), winners.count("tie"), winners.count("skip"), total
    )


@dataclass(frozen=True)
class Summary:
    """Every reviewer's verdicts on one comparison.

    Attributes
    ----------
    total : int
        Cases in the comparison.
    reviewers : dict of str to Tally
        Each reviewer who voted, by id.
    pooled : Tally
        Every reviewer's votes counted together (its ``total`` is cases x reviewers).
    agreement : Agreement or None
        Between reviewers; None with fewer than two.
    """

    total: int
    reviewers: dict[str, Tally]
    pooled: Tally
    agreement: Agreement | None

    def lines(self) -> list[str]:
        out = [
            f"{name}: {t.rate_text()} · {t.reviewed} of {t.total} reviewed (ties {t.ties}, skips {t.skips})"
            for name, t in self.reviewers.items()
        ]
        if self.agreement is not None:
            out.append(self.agreement.text())
        return out

    def text(self) -> str:
        if not self.reviewers:
            return "no verdicts yet"
        head = (
            f"{len(self.reviewers)} reviewer{'s' if len(self.reviewers) != 1 else ''}, all votes: {self.pooled.text()}"
        )
        return "\n".join([head, *self.lines()])

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "reviewers": {name: t.as_dict() for name, t in self.reviewers.items()},
            "pooled": self.pooled.as_dict(),
            "agreement": self.agreement.as_dict() if self.agreement else None,
            "lines": self.lines(),
            "text": self.text(),
        }


def summarize(
    verdicts: Mapping[str, Mapping[str, ReviewVerdict]], total: int, *, seed: int = 0, resamples: int = RESAMPLES
) -> Summary:
    """A :class:`Summary` from ``{reviewer: {case id: verdict}}`` over ``total`` cases.

    Reviewers without a verdict are left out. Agreement treats a skip as a missing value.
    """
    voted = {name: dict(cases) for name, cases in sorted(verdicts.items()) if cases}
    per = {name: tally(cases.values(), total) for name, cases in voted.items()}
    pooled = tally([v for cases in voted.values() for v in cases.values()], total * max(1, len(voted)))
    together = None
    if len(voted) >= 2:
        table: dict[str, dict[str, object]] = {}
        for name, cases in voted.items():
            for case_id, v in cases.items():
                table.setdefault(case_id, {})[name] = None if v.winner == "skip" else v.winner
        together = agreement(table, seed=seed, resamples=resamples)
    return Summary(total, per, pooled, together)
