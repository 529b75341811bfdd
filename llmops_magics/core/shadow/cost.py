"""Cost of 1,000 requests per side of a comparison, the difference and the ratio with
their 95% bootstrap intervals, and the ``cost ratio`` check (``max_cost_ratio``).

Each side is priced by :func:`..cost.lookup_price` (its ref as typed, then label, then
name; ``--price`` over ``Settings.prices``) and costed from the tokens and the batch wall
time measured in this comparison (:func:`..cost.cost_of`).

The interval is over CASES, not batches: each side runs all its cases as ONE batch
(batch composition changes greedy outputs on vLLM, so a side is never split), so there is
one wall time per side and nothing to resample "over batches". A batch's wall time is
apportioned to its cases by their completion tokens (for token prices each case has its
own cost anyway), and cases are resampled paired across sides: the same draw of cases
for the primary and the candidate. Without a price on both sides the difference is in
seconds per 1,000 requests.

``max_cost_ratio`` fails the quality verdict (``worse``) only when the LOWER 95% bound
of candidate cost / primary cost exceeds the limit: a cost shown above the limit. With an
hourly price the bound must exceed the limit times ``1 + latency_margin``: each side's
cost then rests on one measured wall time, whose noise no resampling of cases shows. A
ratio whose interval straddles the limit is reported, never decides; without the
threshold the cost is reported and never decides either. The check decides even when
the outputs are identical: the same answers can cost more (a slower serving config).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import BadInput
from ..cost import Cost, Price, cost_of, lookup_price, money, request_costs, request_seconds
from .sides import ROLES
from .stats import Check, Thresholds, Verdict

CHECK = "cost ratio"


@dataclass(frozen=True)
class CostComparison:
    """Both sides' cost of 1,000 requests and the candidate - primary difference.

    ``unit`` is ``$`` when both sides are priced, ``s`` (wall seconds) otherwise; the
    difference, its interval and the ratio are in that unit (None when a side has no
    wall time and no token price).
    """

    primary: Cost
    candidate: Cost
    unit: str
    diff: float | None = None
    diff_ci: tuple[float, float] | None = None
    ratio: float | None = None
    ratio_ci: tuple[float, float] | None = None

    @property
    def priced(self) -> bool:
        return self.unit == "$"

    def line(self) -> str:
        """``cost / 1,000 requests: primary $0.42 · candidate $0.61 (+$0.19, 95% CI +$0.12 to +$0.27)``."""
        if self.priced:
            sides = f"primary {self.primary} · candidate {self.candidate}"
            diff = ""
            if self.diff is not None:
                diff = f" ({money(self.diff, sign=True)}"
                if self.diff_ci is not None:
                    lo, hi = self.diff_ci
                    diff += f", 95% CI {money(lo, sign=True)} to {money(hi, sign=True)}"
                diff += ")"
            return f"cost / 1,000 requests: {sides}{diff}"
        priced = [r for r in ROLES if getattr(self, r).per_1k is not None]
        head = "per 1,000 requests (no price)" if not priced else "per 1,000 requests (not both sides priced)"
        sides = [f"{r} {_unpriced(getattr(self, r))}" for r in ROLES]
        line = f"{head}: {' · '.join(sides)}"
        if self.diff is not None and self.diff_ci is not None:
            lo, hi = self.diff_ci
            line += f" ({self.diff:+,.0f} s, 95% CI {lo:+,.0f} to {hi:+,.0f} s)"
        if priced:  # one side priced: its dollars still say something
            line += "; " + ", ".join(f"{r} {money(getattr(self, r).per_1k)}" for r in priced)
        return line

    def metrics(self) -> dict:
        """MLflow metrics: ``cost_per_1k.*`` when priced, else ``tokens_per_1k.*`` and ``seconds_per_1k.*``."""
        out: dict = {}
        for role in ROLES:
            c: Cost = getattr(self, role)
            if c.per_1k is not None:
                out[f"cost_per_1k.{role}"] = c.per_1k
            if not self.priced:
                out[f"tokens_per_1k.{role}_in"] = c.tokens_in_per_1k
                out[f"tokens_per_1k.{role}_out"] = c.tokens_out_per_1k
                if c.seconds_per_1k is not None:
                    out[f"seconds_per_1k.{role}"] = c.seconds_per_1k
        if self.diff is not None:
            prefix = "cost_per_1k" if self.priced else "seconds_per_1k"
            out[f"{prefix}.diff"] = self.diff
            if self.diff_ci is not None:
                out[f"{prefix}.diff_low"], out[f"{prefix}.diff_high"] = self.diff_ci
            if self.ratio is not None:
                out[f"{prefix}.ratio"] = self.ratio
        return out

    def params(self) -> dict:
        """MLflow params: the price applied to each side, as written ("" when none)."""
        return {
            f"{role}_price": (getattr(self, role).price.text if getattr(self, role).price else "") for role in ROLES
        }


def _unpriced(c: Cost) -> str:
    """A side's tokens and seconds, whether or not it has a price."""
    return str(dataclasses.replace(c, per_1k=None))


def side_prices(prices: Mapping[str, str], sides) -> dict[str, Price | None]:
    """Each side's price by role: its ref as typed, then label, then name."""
    return {s.role: lookup_price(prices, (s.model.ref, s.model.label, s.model.name)) for s in sides}


def require_prices(prices: Mapping[str, str], sides, t: Thresholds) -> None:
    """Refuse, before anything runs, a ``max_cost_ratio`` that no price can decide."""
    if t.max_cost_ratio is None:
        return
    found = side_prices(prices, sides)
    missing = [s for s in sides if found[s.role] is None]
    if missing:
        s = missing[0]
        raise BadInput(
            f"max_cost_ratio compares prices: no price for the {s.role} {s.model.ref} "
            f"(add --price '{s.model.ref}=2.50/h' or LlmopsMagics.prices)"
        )


def compare_cost(
    rows: Sequence[dict],
    batch_s: Mapping[str, float],
    prices: Mapping[str, Price | None],
    t: Thresholds,
) -> CostComparison:
    """Each side's cost of 1,000 requests and the paired bootstrap of the difference.

    Parameters
    ----------
    rows : list of dict
        The comparison's per-case rows (``{side}_tokens_in`` / ``{side}_tokens_out``).
    batch_s : mapping
        Role -> wall seconds of that side's one batch (0 or missing: unknown).
    prices : mapping
        Role -> :class:`..cost.Price` or None.
    t : Thresholds
        ``bootstrap``, ``alpha`` and ``seed`` of the intervals.
    """
    tokens = {r: ([x[f"{r}_tokens_in"] for x in rows], [x[f"{r}_tokens_out"] for x in rows]) for r in ROLES}
    costs = {r: cost_of(prices.get(r), *tokens[r], batch_s.get(r)) for r in ROLES}
    priced = all(costs[r].per_1k is not None for r in ROLES)
    if priced:
        per_case = {r: request_costs(prices[r], *tokens[r], batch_s.get(r)) for r in ROLES}
    else:
        per_case = {r: request_seconds(tokens[r][1], batch_s.get(r)) for r in ROLES}
    out = CostComparison(costs["primary"], costs["candidate"], "$" if priced else "s")
    if any(per_case[r] is None for r in ROLES) or not rows:
        return out
    p, c = per_case["primary"] * 1000, per_case["candidate"] * 1000
    diff_ci, ratio_ci = paired_intervals(p, c, t)
    ratio = float(c.mean() / p.mean()) if p.mean() > 0 else None
    return dataclasses.replace(
        out, diff=float(c.mean() - p.mean()), diff_ci=diff_ci, ratio=ratio, ratio_ci=ratio_ci if ratio else None
    )


def paired_intervals(primary: np.ndarray, candidate: np.ndarray, t: Thresholds) -> tuple[tuple, tuple]:
    """Percentile bootstrap intervals of mean(candidate) - mean(primary) and of their ratio,
    cases resampled paired (the same draw for both sides)."""
    n = len(primary)
    rng = np.random.default_rng(t.seed + 11)
    idx = rng.integers(0, n, size=(t.bootstrap, n))
    mp, mc = primary[idx].mean(axis=1), candidate[idx].mean(axis=1)
    q = [t.alpha / 2, 1 - t.alpha / 2]
    diff = tuple(float(x) for x in np.quantile(mc - mp, q))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(mp > 0, mc / np.where(mp > 0, mp, 1.0), np.inf)
    ratio = tuple(float(x) for x in np.quantile(ratios, q))
    return diff, ratio


def cost_check(cc: CostComparison, t: Thresholds) -> Check | None:
    """The ``cost ratio`` check when ``max_cost_ratio`` is set (None otherwise)."""
    limit = t.max_cost_ratio
    if limit is None:
        return None
    n = cc.primary.requests
    if not cc.priced or cc.ratio is None or cc.ratio_ci is None:
        reason = f"no cost ratio: {cc.line()} (limit {limit:g}x)"
        return Check(CHECK, "quality", "inconclusive", float("nan"), None, reason, None, None, n)
    low, high = cc.ratio_ci
    # An hourly price costs a side by its ONE measured wall time, whose run-to-run noise
    # the interval over cases cannot see: above the limit only beyond the latency margin.
    timed = any(side.price is not None and side.price.hourly for side in (cc.primary, cc.candidate))
    bar = limit * (1 + t.latency_margin) if timed else limit
    if low > bar:
        verdict, reason = "worse", f"costs {cc.ratio:.2g}x the primary (limit {limit:g}x)"
    elif high <= limit:
        verdict, reason = "equivalent", f"costs {cc.ratio:.2g}x the primary (within the limit {limit:g}x)"
    else:
        verdict = "inconclusive"
        reason = f"costs {cc.ratio:.2g}x the primary: not shown above the limit {limit:g}x (decides only above it)"
        if timed and low > limit:
            reason += f"; hourly prices time one batch per side, so it decides above {bar:.3g}x"
    return Check(CHECK, "quality", verdict, cc.ratio, (low, high), reason, None, None, n)


def with_cost_check(verdict: Verdict, check: Check | None) -> Verdict:
    """``verdict`` with the cost check among its checks (before latency); a cost shown
    above the limit makes the label ``worse``, anything else leaves the label as it is."""
    if check is None:
        return verdict
    checks = list(verdict.checks)
    at = len(checks) - 1 if checks and checks[-1].kind == "performance" else len(checks)
    checks.insert(at, check)
    line = f"{check.name}: {check.verdict}: {check.reason}"
    if check.verdict == "worse":
        reasons = (line, *verdict.reasons) if verdict.label != "worse" else (*verdict.reasons, line)
        return Verdict("worse", reasons, tuple(checks))
    return Verdict(verdict.label, (*verdict.reasons, line), tuple(checks))
