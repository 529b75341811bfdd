"""Agreement between reviewers: Krippendorff's alpha for nominal data, with a bootstrap interval.

The data are one *unit* per case holding one value per reviewer who judged it
(``primary``, ``candidate`` or ``tie``); a skip, or no vote, is a missing value. In unit
``u`` with ``m_u`` values, ``m_uc`` of them in category ``c``, the coincidences are

    o_ck = sum_u (ordered pairs of values from different reviewers in u that are (c, k)) / (m_u - 1)

so each pairable value contributes exactly 1 in total. Units with ``m_u < 2`` hold no pair
and drop out, as the coefficient defines. With ``n_c = sum_k o_ck`` (the number of
pairable values in ``c``) and ``n = sum_c n_c``, and the nominal distance (0 for the same
category, 1 otherwise):

    D_o = (1 / n) * sum_{c != k} o_ck                    observed disagreement
    D_e = 1 / (n (n - 1)) * sum_{c != k} n_c n_k         disagreement expected by chance
    alpha = 1 - D_o / D_e = 1 - (n - 1) * sum_{c != k} o_ck / (n^2 - sum_c n_c^2)

Per unit, ``sum_{c != k} o_ck = (m_u^2 - sum_c m_uc^2) / (m_u - 1)``, so alpha needs only
each unit's category counts. alpha = 1 is perfect agreement, 0 agreement at chance level,
below 0 systematic disagreement. It is undefined (None) when ``D_e = 0``: every pairable
value in one category, where agreement cannot be told from chance.

Krippendorff, K. (2011). Computing Krippendorff's alpha-reliability. Annenberg School for
Communication, University of Pennsylvania.

The 95% interval is a seeded percentile bootstrap over cases: units are drawn with
replacement, alpha is recomputed, and draws where it is undefined are left out and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def unit_counts(units: Iterable[Iterable]) -> tuple[np.ndarray, list]:
    """Category counts of each pairable unit (``None`` values are missing).

    Returns
    -------
    counts : ndarray of shape (units, categories)
        ``m_uc`` for every unit with at least two values.
    categories : list
        The categories, in the order of the columns.
    """
    kept = [Counter(v for v in unit if v is not None) for unit in units]
    kept = [c for c in kept if sum(c.values()) >= 2]
    categories = sorted({value for c in kept for value in c}, key=str)
    counts = np.array([[c.get(cat, 0) for cat in categories] for c in kept], dtype=float).reshape(
        len(kept), len(categories)
    )
    return counts, categories


def _disagreement(counts: np.ndarray) -> np.ndarray:
    """``sum_{c != k} o_ck`` of each unit: (m_u^2 - sum_c m_uc^2) / (m_u - 1)."""
    m = counts.sum(axis=1)
    return (m * m - (counts * counts).sum(axis=1)) / (m - 1)


def _alpha(n_c: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """alpha from the category totals ``n_c`` (last axis) and ``sum_{c != k} o_ck``; NaN where undefined."""
    n = n_c.sum(axis=-1)
    expected = n * n - (n_c * n_c).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1.0 - (n - 1) * observed / expected, np.nan)


def krippendorff_alpha(units: Iterable[Iterable]) -> float | None:
    """Krippendorff's alpha for nominal values; None when undefined.

    Parameters
    ----------
    units : iterable of iterables
        One iterable of values per unit (case), one value per coder (reviewer);
        ``None`` is a missing value.
    """
    counts, _ = unit_counts(units)
    if not len(counts):
        return None
    value = float(_alpha(counts.sum(axis=0), _disagreement(counts).sum()))
    return None if np.isnan(value) else value


def alpha_interval(
    units: Iterable[Iterable], *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> tuple[tuple[float, float] | None, int]:
    """Percentile bootstrap interval of alpha over units, and how many draws were undefined.

    Returns
    -------
    interval : (low, high) or None
        None when no draw gave a defined alpha.
    undefined : int
        Draws left out because every value drawn was in one category.
    """
    counts, _ = unit_counts(units)
    u = len(counts)
    if u == 0:
        return None, resamples
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, u, size=(resamples, u))
    # weights[b, i]: how often unit i was drawn in resample b
    flat = (np.arange(resamples)[:, None] * u + draws).ravel()
    weights = np.bincount(flat, minlength=resamples * u).reshape(resamples, u).astype(float)
    alphas = _alpha(weights @ counts, weights @ _disagreement(counts))
    defined = alphas[~np.isnan(alphas)]
    if not len(defined):
        return None, resamples
    tail = (1 - level) / 2
    lo, hi = np.quantile(defined, [tail, 1 - tail])
    return (float(lo), float(hi)), int(resamples - len(defined))


@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha between reviewers over the cases two or more of them judged."""

    alpha: float | None
    ci: tuple[float, float] | None
    cases: int  # pairable cases: two or more non-skip verdicts
    values: int  # pairable values (n)
    reviewers: int
    resamples: int
    undefined_resamples: int

    def text(self) -> str:
        head = "agreement (Krippendorff's alpha, nominal, skips missing)"
        if not self.cases:
            return f"{head}: no case has two non-skip verdicts yet"
        if self.alpha is None:
            return f"{head}: undefined, every verdict on {self.cases} shared cases is the same category"
        ci = f" (95% bootstrap CI {self.ci[0]:.2f} to {self.ci[1]:.2f})" if self.ci else ""
        return f"{head} {self.alpha:.2f}{ci} over {self.cases} cases, {self.reviewers} reviewers"

    def as_dict(self) -> dict:
        return {
            "alpha": self.alpha,
            "ci_low": self.ci[0] if self.ci else None,
            "ci_high": self.ci[1] if self.ci else None,
            "cases": self.cases,
            "values": self.values,
            "reviewers": self.reviewers,
            "resamples": self.resamples,
            "undefined_resamples": self.undefined_resamples,
            "text": self.text(),
        }


def agreement(table: Mapping[str, Mapping[str, object]], *, seed: int = 0, resamples: int = RESAMPLES) -> Agreement:
    """Alpha and its bootstrap interval from ``{case: {reviewer: value or None}}``."""
    reviewers = {r for votes in table.values() for r in votes}
    units = [list(votes.values()) for votes in table.values()]
    counts, _ = unit_counts(units)
    alpha = krippendorff_alpha(units)
    ci, undefined = alpha_interval(units, resamples=resamples, seed=seed) if alpha is not None else (None, 0)
    return Agreement(alpha, ci, len(counts), int(counts.sum()), len(reviewers), resamples, undefined)
