"""Statistics behind a shadow verdict: paired bootstrap intervals, exact tests, verdicts.

Every check turns paired per-case values into one of four verdicts:

* ``equivalent``: the 95% interval lies inside the tolerance the user set;
* ``better`` / ``worse``: an exact test (McNemar, binomial) or the interval says the
  candidate differs, and in which direction;
* ``inconclusive``: neither yet; the check says about how many more cases, at the
  effect seen so far, would decide it.

Thresholds are a frozen dataclass with documented defaults so a call (and its MLflow
run) records exactly what "equivalent" meant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

VERDICTS = ("equivalent", "better", "worse", "inconclusive")


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
    bootstrap : int
        Bootstrap resamples (2000).
    seed : int
        Seed of the bootstrap, so a verdict is reproducible.
    """

    alpha: float = 0.05
    max_differing_rate: float = 0.05
    min_edit_similarity: float = 0.90
    min_embedding_similarity: float = 0.95
    length_ratio_margin: float = 0.20
    rate_margin: float = 0.05
    judge_margin: float = 0.10
    latency_margin: float = 0.20
    bootstrap: int = 2000
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    ``kind`` is ``quality`` (decides the overall verdict) or ``performance`` (reported).
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

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        return d


@dataclass(frozen=True)
class Verdict:
    """The overall verdict and the checks that made it."""

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
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    est = float(stat(arr))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    stats = np.array([stat(arr[i]) for i in idx]) if arr.ndim > 1 else stat(arr[idx], axis=1)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return est, float(low), float(high)


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
    return Check("identical outputs", "quality", verdict, rate, (low, high), reason, None, more, n)


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
    return Check(name, "quality", verdict, est, (low, high), reason, None, more, n)


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
    return Check("length ratio", "quality", verdict, est, (low, high), reason, None, more, n)


def paired_rate_check(
    name: str,
    primary: Sequence[bool],
    candidate: Sequence[bool],
    t: Thresholds,
    *,
    higher_is_better: bool,
) -> Check:
    """A binary property on both sides (refusal, valid format): exact McNemar.

    ``equivalent`` needs the disagreeing share's upper 95% bound within ``rate_margin``
    (the rate difference can be no larger than the disagreeing share).
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
    if pval < t.alpha:
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


def judge_check(preferences: Sequence[int], t: Thresholds) -> Check:
    """Judge preferences (+1 candidate, -1 primary, 0 tie): exact binomial on the wins."""
    prefs = np.asarray(preferences, dtype=float)
    n = len(prefs)
    wins, losses = int(np.sum(prefs > 0)), int(np.sum(prefs < 0))
    pval = binomial_test(wins, wins + losses)
    est, low, high = bootstrap_ci(prefs, resamples=t.bootstrap, alpha=t.alpha, seed=t.seed + 5)
    m = t.judge_margin
    counts = f"candidate preferred in {wins}, primary in {losses}, ties {n - wins - losses}"
    more = None
    if pval < t.alpha:
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


def overall(checks: Sequence[Check]) -> Verdict:
    """Combine quality checks: any worse -> worse; all equivalent -> equivalent;
    some better and none worse or inconclusive -> better; else inconclusive.

    Performance checks are reported with their reasons but do not decide: on a shared
    machine latency moves with the neighbours' load, not only with the model.
    """
    quality = [c for c in checks if c.kind == "quality"]
    by = {v: [c for c in quality if c.verdict == v] for v in VERDICTS}
    if by["worse"]:
        label, decisive = "worse", by["worse"]
    elif quality and len(by["equivalent"]) == len(quality):
        label, decisive = "equivalent", quality
    elif by["better"] and not by["inconclusive"]:
        label, decisive = "better", by["better"]
    else:
        label, decisive = "inconclusive", by["inconclusive"] or quality
    reasons = [f"{c.name}: {c.verdict}: {c.reason}" for c in decisive]
    reasons += [f"{c.name} (not deciding): {c.verdict}: {c.reason}" for c in checks if c.kind != "quality"]
    return Verdict(label, tuple(reasons), tuple(checks))
