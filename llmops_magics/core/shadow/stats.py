"""Statistics behind a shadow verdict: paired bootstrap intervals, exact tests, verdicts.

Every check turns paired per-case values into one of four verdicts:

* ``equivalent``: the 95% interval lies inside the tolerance the user set;
* ``better`` / ``worse``: an exact test (McNemar, binomial) or the interval says the
  candidate differs, and in which direction;
* ``inconclusive``: neither yet; the check says about how many more cases, at the
  effect seen so far, would decide it.

Checks are of three kinds, and two verdicts read them (:func:`change_verdict`,
:func:`overall`):

* ``change`` (identical outputs, edit and embedding similarity, length): how much the
  answers moved; they make the *change* verdict ``unchanged`` / ``changed`` /
  ``inconclusive``, never the quality label, so a candidate that answers differently
  and no worse can pass;
* ``quality`` (refusals, format validity, the pairwise judge, the user's scorers): the
  quality label, with Holm's correction across their p-values;
* ``performance`` (latency): reported, never deciding.

Thresholds are a frozen dataclass with documented defaults so a call (and its MLflow
run) records exactly what "equivalent" meant.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

VERDICTS = ("equivalent", "better", "worse", "inconclusive")
CHANGES = ("unchanged", "changed", "inconclusive")

# What a change check's verdict says about behaviour: the checks keep today's words
# (``verdict.check("identical outputs").verdict == "worse"``); the change verdict and the
# display speak of behaviour.
CHANGE_WORDS = {"equivalent": "unchanged", "worse": "changed", "better": "changed", "inconclusive": "inconclusive"}

# Below this many paired cases a percentile bootstrap interval is too narrow to trust (it
# covers the true mean well under 95% of the time, and a scorer that returns one constant
# gives a zero-width interval), so a numeric scorer check waits for more.
MIN_BOOTSTRAP_CASES = 20


class Margins(dict):
    """Per-scorer equivalence margins: a read-only, hashable dict, so ``Thresholds``
    stays frozen and hashable while ``json.dumps(thresholds.as_dict())`` still works."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("scorer margins are read-only: build new Thresholds with dataclasses.replace")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __hash__(self):
        return hash(tuple(sorted(self.items())))

    def __reduce__(self):  # copy and pickle rebuild it whole (item by item is refused)
        return (Margins, (dict(self),))


@dataclass(frozen=True)
class Thresholds:
    """What counts as equivalent; every field is an option of ``shadow()``.

    Attributes
    ----------
    alpha : float
        Significance level of the exact tests and 1 - coverage of the intervals (0.05).
    max_differing_rate : float
        Largest share of cases whose outputs may differ for "equivalent" (0.05).
    min_edit_similarity : float
        Mean normalized edit similarity needed for "equivalent" (0.90).
    min_embedding_similarity : float
        Mean embedding cosine similarity needed for "equivalent" (0.95).
    length_ratio_margin : float
        Mean candidate/primary length ratio within 1 +- this is "equivalent" (0.20).
    rate_margin : float
        Binary rates (refusal, format validity): equivalent when the share of cases
        where the two sides disagree is at most this (0.05).
    judge_margin : float
        Judge preference (+1 candidate, -1 primary, 0 tie) within +- this (0.10).
    latency_margin : float
        Relative latency change within +- this is "equivalent" (0.20).
    scorer_margin : float
        A scorer's pass rate or mean is "equivalent" when the 95% interval of the paired
        difference (candidate - primary) lies within +- this (0.05), unless
        ``scorer_margins`` names the scorer.
    scorer_margins : mapping of str to float
        Margins per scorer name (``--threshold scorer.NAME=0.1``); a check of one
        feedback of a scorer, ``NAME/feedback``, takes its own entry, else its scorer's.
    bootstrap : int
        Bootstrap resamples (2000).
    seed : int
        Seed of the bootstrap, so a verdict is reproducible.
    max_cost_ratio : float or None
        The candidate may cost at most this many times the primary per 1,000 requests:
        the verdict is ``worse`` when the lower 95% bound of the cost ratio exceeds it
        (:mod:`.cost`). None (the default): the cost is reported and never decides.
    """

    alpha: float = 0.05
    max_differing_rate: float = 0.05
    min_edit_similarity: float = 0.90
    min_embedding_similarity: float = 0.95
    length_ratio_margin: float = 0.20
    rate_margin: float = 0.05
    judge_margin: float = 0.10
    latency_margin: float = 0.20
    scorer_margin: float = 0.05
    scorer_margins: Mapping[str, float] = field(default_factory=Margins)
    bootstrap: int = 2000
    seed: int = 0
    max_cost_ratio: float | None = None

    def __post_init__(self):
        # A plain dict given by a caller becomes read-only and hashable.
        object.__setattr__(self, "scorer_margins", Margins(self.scorer_margins or {}))

    def margin_for(self, name: str) -> float:
        """The equivalence margin of scorer check ``name`` (``NAME`` or ``NAME/feedback``)."""
        for key in (name, name.split("/", 1)[0]):
            if key in self.scorer_margins:
                return float(self.scorer_margins[key])
        return self.scorer_margin

    def as_dict(self) -> dict:
        d = asdict(self)
        d["scorer_margins"] = dict(self.scorer_margins)
        if d["max_cost_ratio"] is None:  # unset: the logged thresholds read as before cost existed
            del d["max_cost_ratio"]
        return d


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    ``kind`` is ``change`` (decides the change verdict), ``quality`` (decides the quality
    label) or ``performance`` (reported). ``adjusted_p`` is the Holm-adjusted p-value of
    a quality check, set when the label is reached.
    """

    name: str
    kind: str
    verdict: str
    estimate: float
    ci: tuple[float, float] | None
    reason: str
    p_value: float | None = None
    more_cases: int | None = None
    n: int = 0
    adjusted_p: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        return d


@dataclass(frozen=True)
class Verdict:
    """A verdict (the quality label, or the change), its reasons, and every check."""

    label: str
    reasons: tuple[str, ...]
    checks: tuple[Check, ...] = field(default_factory=tuple)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}: have {', '.join(c.name for c in self.checks)}")


# ---------------------------------------------------------------- intervals and tests


def bootstrap_ci(
    values: Sequence[float],
    stat: Callable = np.mean,
    *,
    resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval of ``stat`` over cases: ``(estimate, low, high)``.

    ``values`` may be 2-D (cases x columns) for paired statistics such as a ratio of
    means; the same cases are drawn for every column, which keeps the pairing.
    """
    if len(values) == 0:
        return (math.nan, math.nan, math.nan)
    est, stats = _resampled(values, stat, resamples, seed)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return est, float(low), float(high)


def _resampled(values: Sequence[float], stat: Callable, resamples: int, seed: int) -> tuple[float, np.ndarray]:
    """``stat`` of the cases and of each seeded bootstrap resample of them."""
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    est = float(stat(arr))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    stats = np.array([stat(arr[i]) for i in idx]) if arr.ndim > 1 else stat(arr[idx], axis=1)
    return est, stats


def bootstrap_p(values: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> float:
    """Two-sided bootstrap p-value of "the mean of ``values`` is 0" (paired differences).

    Twice the share of resampled means on the far side of 0, counted with the +1 of
    Davison and Hinkley so it is never exactly 0; it is below ``alpha`` about when the
    percentile interval of the same resamples (same seed) excludes 0.
    """
    if len(values) == 0:
        return 1.0
    return p_of_zero(_resampled(values, np.mean, resamples, seed)[1])


def p_of_zero(means: np.ndarray) -> float:
    """Two-sided bootstrap p-value that the mean is 0, from resampled means (never below 1 / (B + 1))."""
    tail = min(int(np.sum(means <= 0)), int(np.sum(means >= 0)))
    return float(min(1.0, 2 * (tail + 1) / (len(means) + 1)))


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test p-value (sum of outcomes no likelier than ``k``)."""
    if n == 0:
        return 1.0
    from scipy.stats import binomtest  # deferred: scipy takes seconds to import

    return float(binomtest(k, n, p, alternative="two-sided").pvalue)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar p-value from the discordant pairs ``b`` and ``c``.

    Under "no difference" each discordant pair is a fair coin, so this is the two-sided
    binomial test of ``b`` successes in ``b + c`` trials at 0.5.
    """
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binom  # deferred: scipy takes seconds to import

    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import beta  # deferred: scipy takes seconds to import

    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def tango_interval(only_primary: int, only_candidate: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Tango's score interval of a paired difference of rates, candidate - primary.

    ``only_primary`` / ``only_candidate`` are the discordant pairs (yes on one side
    only) among ``n`` pairs. The interval holds every difference ``d`` whose score
    statistic ``(c - b - n d) / sqrt(n (2 q(d) + d (1 - d)))`` is within the normal
    quantile, ``q(d)`` being the restricted maximum-likelihood estimate of the
    primary-only share (Tango 1998). Unlike a Wald or bootstrap interval it is not
    zero-width when no pair disagrees: with none of ``n``, it is ``±z²/(n + z²)``.
    """
    if n <= 0:
        return (-1.0, 1.0)
    from scipy.stats import norm  # deferred: scipy takes seconds to import

    z = float(norm.isf(alpha / 2))
    b, c = only_primary, only_candidate
    est = (c - b) / n

    def score(d: float) -> float:
        # q(d): root of 2n q^2 + B q + C = 0 (Tango's constrained estimate).
        big_b = -c - b + (2 * n - c + b) * d
        big_c = -b * d * (1 - d)
        q = (math.sqrt(max(big_b * big_b - 8 * n * big_c, 0.0)) - big_b) / (4 * n)
        num = c - b - n * d
        var = n * (2 * q + d * (1 - d))
        if num == 0:
            return 0.0
        return num / math.sqrt(var) if var > 0 else math.copysign(math.inf, num)

    def solve(target: float, lo: float, hi: float) -> float:
        # score() falls as d rises: keep score(lo) > target >= score(hi).
        for _ in range(60):
            mid = (lo + hi) / 2
            if score(mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = -1.0 if score(-1.0) <= z else solve(z, -1.0, est)
    high = 1.0 if score(1.0) >= -z else solve(-z, est, 1.0)
    return low, high


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given.

    The i-th smallest of m p-values is multiplied by m - i + 1, and each adjusted value
    is at least the one before it in that order (capped at 1). A hypothesis is rejected
    at level ``alpha`` when its adjusted p-value is below ``alpha``: the family-wise
    error rate stays at ``alpha`` whatever the dependence between the tests.
    """
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def cases_needed(decides: Callable[[int], bool], n: int, *, limit: int = 1_000_000) -> int | None:
    """Smallest ``m > n`` for which ``decides(m)`` holds, assuming the effect stays as seen.

    ``decides`` must be monotone in ``m`` (more cases never undo a decision); None when
    even ``limit`` cases would not decide it (the effect sits on the margin).
    """
    hi = max(n + 1, 2)
    while not decides(hi):
        if hi >= limit:
            return None
        hi = min(limit, hi * 2)
    lo = n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if decides(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _more(needed: int | None, n: int) -> int | None:
    return None if needed is None else max(1, needed - n)


def _more_for_mean(n: int, est: float, low: float, high: float, bound: float) -> int | None:
    # Interval half-widths shrink as 1/sqrt(n): how many cases until the interval, kept
    # centred on the estimate, clears ``bound``?
    half = max(est - low, high - est)
    distance = abs(est - bound)
    if distance <= 1e-12 or half <= 0:
        return None
    needed = math.ceil(n * (half / distance) ** 2)
    return _more(needed if needed > n else n + 1, n)


def _fmt_more(more: int | None) -> str:
    if more is None:
        return "the effect sits on the margin: more cases would not decide it"
    return f"about {more} more cases would decide it"


# ---------------------------------------------------------------- the checks

_SAME = "outputs identical in all {n} cases: same outputs, same values"


def _all_same(same_output: Sequence[bool] | None, n: int) -> bool:
    return same_output is not None and n > 0 and len(same_output) == n and all(bool(x) for x in same_output)


def differing_check(differs: Sequence[bool], t: Thresholds) -> Check:
    """Share of cases whose outputs differ, against ``max_differing_rate``."""
    n, k = len(differs), int(sum(bool(d) for d in differs))
    low, high = clopper_pearson(k, n, t.alpha)
    rate, tol = (k / n if n else 0.0), t.max_differing_rate
    more = None
    if high <= tol:
        verdict = "equivalent"
        reason = f"{k} of {n} outputs differ (95% CI {low:.0%} to {high:.0%}, tolerance {tol:.0%})"
    elif low > tol:
        verdict = "worse"
        reason = f"{k} of {n} outputs differ ({rate:.0%}, 95% CI {low:.0%} to {high:.0%}; tolerance {tol:.0%})"
    else:
        verdict = "inconclusive"
        if rate < tol:
            needed = cases_needed(lambda m: clopper_pearson(round(rate * m), m, t.alpha)[1] <= tol, n)
        elif rate > tol:
            needed = cases_needed(lambda m: clopper_pearson(round(rate * m), m, t.alpha)[0] > tol, n)
        else:
            needed = None
        more = _more(needed, n)
        reason = f"{k} of {n} outputs differ (95% CI {low:.0%} to {high:.0%}, tolerance {tol:.0%}); {_fmt_more(more)}"
    return Check("identical outputs", "change", verdict, rate, (low, high), reason, None, more, n)


def similarity_check(
    name: str, values: Sequence[float], minimum: float, t: Thresholds, *, seed_offset: int = 0
) -> Check:
    """Mean similarity of the two sides' outputs against a minimum."""
    n = len(values)
    est, low, high = bootstrap_ci(values, resamples=t.bootstrap, alpha=t.alpha, seed=t.seed + seed_offset)
    more = None
    if low >= minimum:
        verdict, reason = "equivalent", f"mean {est:.3f} (95% CI {low:.3f} to {high:.3f}) at least {minimum:.2f}"
    elif high < minimum:
        verdict, reason = "worse", f"mean {est:.3f} (95% CI {low:.3f} to {high:.3f}) below {minimum:.2f}"
    else:
        verdict = "inconclusive"
        more = _more_for_mean(n, est, low, high, minimum)
        reason = f"mean {est:.3f} (95% CI {low:.3f} to {high:.3f}) around {minimum:.2f}; {_fmt_more(more)}"
    return Check(name, "change", verdict, est, (low, high), reason, None, more, n)


def length_check(ratios: Sequence[float], t: Thresholds) -> Check:
    """Mean candidate/primary length ratio against 1 +- ``length_ratio_margin``."""
    n, m = len(ratios), t.length_ratio_margin
    est, low, high = bootstrap_ci(ratios, resamples=t.bootstrap, alpha=t.alpha, seed=t.seed + 3)
    band = f"1 ± {m:.2f}"
    more = None
    if 1 - m <= low and high <= 1 + m:
        verdict, reason = "equivalent", f"mean ratio {est:.2f} (95% CI {low:.2f} to {high:.2f}) within {band}"
    elif low > 1 + m or high < 1 - m:
        word = "longer" if est > 1 else "shorter"
        verdict = "worse"
        reason = f"candidate answers {word}: mean ratio {est:.2f} (95% CI {low:.2f} to {high:.2f}) outside {band}"
    else:
        verdict = "inconclusive"
        bound = 1 + m if est >= 1 else 1 - m
        more = _more_for_mean(n, est, low, high, bound)
        reason = f"mean ratio {est:.2f} (95% CI {low:.2f} to {high:.2f}) vs {band}; {_fmt_more(more)}"
    return Check("length ratio", "change", verdict, est, (low, high), reason, None, more, n)


def paired_rate_check(
    name: str,
    primary: Sequence[bool],
    candidate: Sequence[bool],
    t: Thresholds,
    *,
    higher_is_better: bool,
    same_output: Sequence[bool] | None = None,
) -> Check:
    """A binary property on both sides (refusal, valid format): exact McNemar.

    ``equivalent`` needs the disagreeing share's upper 95% bound within ``rate_margin``
    (the rate difference can be no larger than the disagreeing share), or both sides'
    outputs identical in every case (``same_output``): a property of the output is then
    the same on both sides by construction, however few the cases.
    """
    p = np.asarray(primary, dtype=bool)
    c = np.asarray(candidate, dtype=bool)
    n = len(p)
    only_p, only_c = int(np.sum(p & ~c)), int(np.sum(~p & c))
    diff = (only_c - only_p) / n if n else 0.0
    pval = mcnemar_exact(only_p, only_c)
    disagree = only_p + only_c
    _, d_high = clopper_pearson(disagree, n, t.alpha)
    rates = f"primary {p.mean():.0%} vs candidate {c.mean():.0%}" if n else "no cases"
    more = None
    if _all_same(same_output, n):
        verdict, reason = "equivalent", f"{rates}; {_SAME.format(n=n)}"
    elif pval < t.alpha:
        up = diff > 0
        verdict = "better" if up == higher_is_better else "worse"
        reason = f"{rates} (McNemar exact p={pval:.3g}, {only_p} vs {only_c} discordant)"
    elif d_high <= t.rate_margin:
        verdict = "equivalent"
        reason = (
            f"{rates}; sides disagree on {disagree} of {n} (95% upper bound {d_high:.0%} within {t.rate_margin:.0%})"
        )
    else:
        verdict = "inconclusive"
        a, b = only_p / n, only_c / n

        def decides(m: int) -> bool:
            bp, cp = round(a * m), round(b * m)
            return mcnemar_exact(bp, cp) < t.alpha or clopper_pearson(bp + cp, m, t.alpha)[1] <= t.rate_margin

        more = _more(cases_needed(decides, n), n)
        reason = f"{rates} (McNemar exact p={pval:.3g}); {_fmt_more(more)}"
    return Check(name, "quality", verdict, diff, None, reason, pval, more, n)


def judge_check(preferences: Sequence[int], t: Thresholds, *, same_output: Sequence[bool] | None = None) -> Check:
    """Judge preferences (+1 candidate, -1 primary, 0 tie): exact binomial on the wins.

    With both sides' outputs identical in every case (``same_output``) the judge compared
    an answer with itself: any preference is position or sampling noise, so the check
    is ``equivalent``.
    """
    prefs = np.asarray(preferences, dtype=float)
    n = len(prefs)
    wins, losses = int(np.sum(prefs > 0)), int(np.sum(prefs < 0))
    pval = binomial_test(wins, wins + losses)
    est, low, high = bootstrap_ci(prefs, resamples=t.bootstrap, alpha=t.alpha, seed=t.seed + 5)
    m = t.judge_margin
    counts = f"candidate preferred in {wins}, primary in {losses}, ties {n - wins - losses}"
    more = None
    if _all_same(same_output, n):
        verdict, reason = "equivalent", f"{counts}; {_SAME.format(n=n)}"
    elif pval < t.alpha:
        verdict = "better" if wins > losses else "worse"
        reason = f"{counts} (binomial exact p={pval:.3g})"
    elif -m <= low and high <= m:
        verdict, reason = (
            "equivalent",
            f"{counts}; mean preference {est:+.2f} (95% CI {low:+.2f} to {high:+.2f}) within ±{m:.2f}",
        )
    else:
        verdict = "inconclusive"
        win_rate, loss_rate = wins / n, losses / n

        def decides(k: int) -> bool:
            return binomial_test(round(win_rate * k), round(win_rate * k) + round(loss_rate * k)) < t.alpha

        more = _more(cases_needed(decides, n), n) if wins != losses else _more_for_mean(n, est, low, high, m)
        reason = f"{counts} (binomial exact p={pval:.3g}); {_fmt_more(more)}"
    return Check("judge preference", "quality", verdict, est, (low, high), reason, pval, more, n)


def binary_scorer_check(
    name: str,
    primary: Sequence[bool],
    candidate: Sequence[bool],
    t: Thresholds,
    *,
    margin: float,
    same_output: Sequence[bool] | None = None,
    left_out: int = 0,
) -> Check:
    """A pass/fail scorer on both sides of each case: paired pass rates (pass is better).

    ``better`` / ``worse``: exact McNemar on the discordant pairs. ``equivalent``: Tango's
    95% interval of the paired difference of pass rates (candidate - primary) lies
    within ``±margin``, or the outputs are identical in every case (``same_output``).
    ``left_out`` cases had no value on one side; they are named in the reason.
    """
    p = np.asarray(primary, dtype=bool)
    c = np.asarray(candidate, dtype=bool)
    n = len(p)
    only_p, only_c = int(np.sum(p & ~c)), int(np.sum(~p & c))
    diff = (only_c - only_p) / n if n else 0.0
    pval = mcnemar_exact(only_p, only_c)
    low, high = tango_interval(only_p, only_c, n, t.alpha)
    rates = f"passes primary {p.mean():.0%} vs candidate {c.mean():.0%}" if n else "no case scored on both sides"
    stats = (
        f"{rates}, difference {diff:+.1%} (95% CI {low:+.1%} to {high:+.1%}, margin ±{margin:.1%}; "
        f"McNemar exact p={pval:.3g}, {only_p} vs {only_c} discordant)"
    )
    more = None
    if _all_same(same_output, n):
        verdict, reason = "equivalent", f"{rates}; {_SAME.format(n=n)}"
    elif pval < t.alpha:
        verdict, reason = ("better" if diff > 0 else "worse"), stats
    elif -margin <= low and high <= margin:
        verdict, reason = "equivalent", stats
    else:
        verdict = "inconclusive"
        a, b = (only_p / n, only_c / n) if n else (0.0, 0.0)

        def decides(m: int) -> bool:
            bp, cp = round(a * m), round(b * m)
            lo, hi = tango_interval(bp, cp, m, t.alpha)
            return mcnemar_exact(bp, cp) < t.alpha or (-margin <= lo and hi <= margin)

        more = _more(cases_needed(decides, n), n) if n else None
        reason = f"{stats}; {_fmt_more(more)}"
    return Check(f"scorer {name}", "quality", verdict, diff, (low, high), _left_out(reason, left_out), pval, more, n)


def numeric_scorer_check(
    name: str,
    primary: Sequence[float],
    candidate: Sequence[float],
    t: Thresholds,
    *,
    margin: float,
    same_output: Sequence[bool] | None = None,
    left_out: int = 0,
) -> Check:
    """A numeric scorer on both sides of each case: paired differences of the score
    (higher is better), with the seeded paired bootstrap.

    ``better`` / ``worse``: the bootstrap p-value of a zero mean difference is below
    ``alpha``. ``equivalent``: the 95% interval of the mean difference (candidate -
    primary) lies within ``±margin``, or the outputs are identical in every case. Below
    :data:`MIN_BOOTSTRAP_CASES` paired cases the bootstrap is not trusted either way.
    """
    d = np.asarray(candidate, dtype=float) - np.asarray(primary, dtype=float)
    n = len(d)
    seed = t.seed + 11
    if n:
        # One set of resamples for the interval and the p-value (same as bootstrap_ci and
        # bootstrap_p with this seed), so the two agree.
        est, means = _resampled(d, np.mean, t.bootstrap, seed)
        low, high = (float(x) for x in np.quantile(means, [t.alpha / 2, 1 - t.alpha / 2]))
        pval = p_of_zero(means)
        means = f"mean primary {np.mean(primary):.3g} vs candidate {np.mean(candidate):.3g}"
    else:
        est, low, high, pval, means = 0.0, math.nan, math.nan, 1.0, "no case scored on both sides"
    stats = (
        f"{means}, difference {est:+.3g} (95% CI {low:+.3g} to {high:+.3g}, margin ±{margin:.3g}; "
        f"bootstrap p={pval:.3g})"
    )
    more = None
    if _all_same(same_output, n):
        verdict, reason = "equivalent", f"{means}; {_SAME.format(n=n)}"
    elif n < MIN_BOOTSTRAP_CASES:
        verdict, more = "inconclusive", MIN_BOOTSTRAP_CASES - n
        reason = f"{stats}; a bootstrap of fewer than {MIN_BOOTSTRAP_CASES} cases is not trusted: {_fmt_more(more)}"
    elif pval < t.alpha:
        verdict, reason = ("better" if est > 0 else "worse"), stats
    elif -margin <= low and high <= margin:
        verdict, reason = "equivalent", stats
    else:
        verdict = "inconclusive"
        # Either the interval clears 0 (a difference) or it fits in the margin, whichever
        # comes first at the effect seen.
        options = [_more_for_mean(n, est, low, high, 0.0)]
        if abs(est) < margin:
            options.append(_more_for_mean(n, est, low, high, math.copysign(margin, est)))
        found = [m for m in options if m is not None]
        more = min(found) if found else None
        reason = f"{stats}; {_fmt_more(more)}"
    ci = None if math.isnan(low) else (low, high)
    return Check(f"scorer {name}", "quality", verdict, est, ci, _left_out(reason, left_out), pval, more, n)


def _left_out(reason: str, left_out: int) -> str:
    if not left_out:
        return reason
    cases = "case" if left_out == 1 else "cases"
    return f"{reason}; {left_out} {cases} left out (no value on one side)"


def latency_check(primary_s: Sequence[float], candidate_s: Sequence[float], t: Thresholds) -> Check:
    """Relative change of mean latency (candidate / primary - 1), paired bootstrap."""
    pairs = np.column_stack([np.asarray(primary_s, float), np.asarray(candidate_s, float)])
    n = len(pairs)

    def rel(a):
        base = a[:, 0].mean()
        return a[:, 1].mean() / base - 1 if base > 0 else 0.0

    est, low, high = bootstrap_ci(pairs, rel, resamples=t.bootstrap, alpha=t.alpha, seed=t.seed + 7)
    m = t.latency_margin
    more = None
    if -m <= low and high <= m:
        verdict, reason = "equivalent", f"{est:+.0%} (95% CI {low:+.0%} to {high:+.0%}) within ±{m:.0%}"
    elif low > m:
        verdict, reason = "worse", f"candidate slower by {est:.0%} (95% CI {low:+.0%} to {high:+.0%})"
    elif high < -m:
        verdict, reason = "better", f"candidate faster by {-est:.0%} (95% CI {low:+.0%} to {high:+.0%})"
    else:
        verdict = "inconclusive"
        more = _more_for_mean(n, est, low, high, m if est >= 0 else -m)
        reason = f"{est:+.0%} (95% CI {low:+.0%} to {high:+.0%}) vs ±{m:.0%}; {_fmt_more(more)}"
    return Check("latency", "performance", verdict, est, (low, high), reason, None, more, n)


def overall(checks: Sequence[Check], *, alpha: float = 0.05, identical: bool = False) -> Verdict:
    """The quality label, from the quality checks only (refusals, format, judge, scorers).

    First Holm's correction across the quality checks' p-values (:func:`with_holm`): a
    check whose adjusted p-value is not below ``alpha`` cannot be better or worse. Then:
    any worse -> worse; all equivalent -> equivalent; some better and none inconclusive
    -> better; else inconclusive.

    Two sides whose outputs are identical case by case (``identical``) are equivalent
    however few the cases: same outputs, same scores. With no quality check at all the
    label follows the change verdict: unchanged -> equivalent (the same answers cannot
    differ in quality), otherwise inconclusive (nothing says whether the change is for
    the worse). ``shadow()`` always runs the refusal check, so it always has one.

    Change checks decide the change (:func:`change_verdict`); performance checks are
    reported with their reasons but do not decide: on a shared machine latency moves
    with the neighbours' load, not only with the model. The verdict carries every check
    (the quality ones with their adjusted p-values).
    """
    checks = with_holm(checks, alpha)
    quality = [c for c in checks if c.kind == "quality"]
    by = {v: [c for c in quality if c.verdict == v] for v in VERDICTS}
    reasons: list[str] = []
    if identical:
        label = "equivalent"
        reasons.append(f"identical outputs: {_SAME.format(n=_cases(checks))}")
        decisive: list[Check] = []
    elif not quality:
        change = change_verdict(checks)
        label = "equivalent" if change.label == "unchanged" else "inconclusive"
        reasons += change.reasons
        reasons.append(f"no quality check ran: the label follows the behaviour, {change.label}")
        decisive = []
    elif by["worse"]:
        label, decisive = "worse", by["worse"]
    elif len(by["equivalent"]) == len(quality):
        label, decisive = "equivalent", quality
    elif by["better"] and not by["inconclusive"]:
        label, decisive = "better", by["better"]
    else:
        label, decisive = "inconclusive", by["inconclusive"] or quality
    reasons += [f"{c.name}: {c.verdict}: {c.reason}" for c in decisive]
    reasons += [f"{c.name} (not deciding): {c.verdict}: {c.reason}" for c in checks if c.kind == "performance"]
    return Verdict(label, tuple(reasons), tuple(checks))


def change_verdict(checks: Sequence[Check], *, identical: bool = False) -> Verdict:
    """How much behaviour moved, from the change checks (identical outputs, similarity,
    length): ``unchanged`` when the outputs are identical case by case or every change
    check is equivalent; ``changed`` when any of them shows a difference; else
    ``inconclusive``. The verdict carries every check."""
    change = [c for c in checks if c.kind == "change"]
    moved = [c for c in change if c.verdict in ("worse", "better")]
    line = lambda c: f"{c.name}: {CHANGE_WORDS[c.verdict]}: {c.reason}"  # noqa: E731
    if identical:
        label, reasons = "unchanged", [f"identical outputs: outputs identical in all {_cases(checks)} cases"]
    elif moved:
        label, reasons = "changed", [line(c) for c in moved]
    elif change and all(c.verdict == "equivalent" for c in change):
        label, reasons = "unchanged", [line(c) for c in change]
    else:
        unsure = [c for c in change if c.verdict == "inconclusive"]
        label = "inconclusive"
        reasons = [line(c) for c in unsure] if unsure else ["no change check ran"]
    return Verdict(label, tuple(reasons), tuple(checks))


def with_holm(checks: Sequence[Check], alpha: float) -> list[Check]:
    """``checks`` with Holm's correction across the quality checks' p-values.

    Each quality check with a p-value gets its ``adjusted_p``; a better or worse call
    whose adjusted p-value is not below ``alpha`` becomes inconclusive, and its reason
    says so and how many more cases would make it significant at its Holm level
    (normal approximation: a test statistic grows with the square root of the cases).
    Other checks are returned as they are.
    """
    tested = [i for i, c in enumerate(checks) if c.kind == "quality" and c.p_value is not None]
    if not tested:
        return list(checks)
    ps = [float(checks[i].p_value) for i in tested]
    adjusted = holm(ps)
    m = len(tested)
    rank = {i: r for r, i in enumerate(sorted(range(m), key=lambda j: ps[j]))}
    out = list(checks)
    for j, i in enumerate(tested):
        c = dataclasses.replace(checks[i], adjusted_p=adjusted[j])
        if c.verdict in ("better", "worse") and adjusted[j] >= alpha:
            level = alpha / (m - rank[j])
            more = _more_for_p(c.n, ps[j], level)
            c = dataclasses.replace(
                c,
                verdict="inconclusive",
                more_cases=more,
                reason=(
                    f"{c.reason}; {c.verdict} alone, but not after Holm's correction over {m} quality checks "
                    f"(adjusted p={adjusted[j]:.3g}, not below {alpha:g}); {_fmt_more(more)}"
                ),
            )
        out[i] = c
    return out


def _more_for_p(n: int, p: float, level: float) -> int | None:
    # A test statistic grows as sqrt(n) at a fixed effect: how many cases until it
    # reaches the normal quantile of ``level``?
    if n <= 0 or not 0 < p < 1:
        return None
    from scipy.stats import norm  # deferred: scipy takes seconds to import

    z_now, z_need = float(norm.isf(p / 2)), float(norm.isf(level / 2))
    needed = math.ceil(n * (z_need / z_now) ** 2)
    return _more(max(needed, n + 1), n)


def _cases(checks: Sequence[Check]) -> int:
    return max((c.n for c in checks), default=0)
