"""Input drift: how many requests of a bucket are far from every baseline request.

In the embedder's space (unit vectors, cosine distance), each baseline request's
distance to its nearest *other* baseline request gives the baseline's own spread; the
95th percentile of those is the "far" threshold (:func:`far_threshold`). A bucket whose
requests resemble the baseline has about 5% of them beyond it; a new kind of request
raises that share. The share is reported with its Wilson interval, and tested with a
one-sided test whose null distribution counts that the threshold itself was estimated
from a finite baseline (:func:`_far_p`); Holm's correction across buckets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..shadow.stats import holm
from .decay import normal_isf, wilson

QUANTILE = 0.95
EXAMPLES = 3
# Rows per matrix product: a (chunk x baseline) float32 block stays a few MB.
_CHUNK = 1024


@dataclass(frozen=True)
class DriftPoint:
    """One bucket's input drift.

    ``far_share`` is the share of the bucket's requests beyond the baseline's far
    threshold (about 0.05 when nothing moved), ``ci`` its 95% Wilson interval,
    ``p_value`` the one-sided p that it exceeds the baseline's own far share (None when
    the bucket or the baseline is too small), ``adjusted_p`` Holm's across buckets;
    ``examples`` index the bucket's rows: up to 3 far requests closest to the centre of
    the bucket's far requests, the most typical first.
    """

    bucket: int
    n: int
    far_share: float
    ci: tuple[float, float]
    p_value: float | None
    adjusted_p: float | None
    flagged: bool
    mean_chars: float
    examples: tuple[int, ...]


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32); a zero row stays zero."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # A zero vector stays zero: its distance to everything is 1.
    return x / np.where(norms > 0, norms, 1.0)


def _nearest(query: np.ndarray, ref: np.ndarray, *, skip_self: bool = False) -> np.ndarray:
    """Cosine distance of each query row to its nearest row of ``ref`` (chunked products).

    ``skip_self``: ``query`` is ``ref``; a row's own similarity does not count."""
    out = np.empty(len(query), dtype=np.float64)
    for i in range(0, len(query), _CHUNK):
        sims = query[i : i + _CHUNK] @ ref.T
        if skip_self:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + i] = -np.inf
        out[i : i + _CHUNK] = 1.0 - sims.max(axis=1)
    return np.clip(out, 0.0, 2.0)


def _rank(n: int) -> int:
    """1-based rank of the order statistic used as the threshold among ``n`` values."""
    return min(n, max(1, math.ceil(QUANTILE * n)))


def far_threshold(baseline: np.ndarray) -> float:
    """The baseline's 95th percentile of nearest-neighbour cosine distance, each request
    measured to the OTHER baseline requests.

    The percentile is an order statistic (the ``ceil(0.95 n)``-th smallest), not an
    interpolation, so the share of future requests beyond it has a known distribution
    under "nothing changed" (:func:`_far_p`).

    Parameters
    ----------
    baseline : array of shape (n, dim)
        Embeddings of the baseline requests (normalized here); n >= 2.
    """
    base = unit(baseline)
    if len(base) < 2:
        return math.inf
    dist = np.sort(_nearest(base, base, skip_self=True))
    return float(dist[_rank(len(base)) - 1])


def _far_p(far: int, n: int, baseline_n: int) -> float:
    """One-sided p-value of ``far`` or more of ``n`` requests beyond the threshold when
    nothing changed.

    Were the threshold the true 95th percentile, ``far`` would be Binomial(n, 0.05).
    It is the r-th smallest of ``baseline_n`` distances, so the chance that a new request
    lies beyond it is itself random: Beta(baseline_n - r + 1, r) (the order statistic of
    uniforms, as in conformal prediction), and ``far`` is beta-binomial. Every bucket is
    judged against the same threshold; a plain binomial would read a threshold that
    happened to land low as drift in every bucket at once (measured on clusters on the
    sphere, 13 buckets of 30-60 requests, 500 stable seeds, any flag for a stated 5%:
    binomial 5.8% with a 300-request baseline and 18% with 100; beta-binomial 3.2% and 2.6%).
    The baseline's distances are leave-one-out, not independent draws; the same
    measurement over tight, loose and uneven clusters (baselines of 60 and 600) stayed
    at 1.7-5.3% over 300 seeds each.
    """
    from scipy.special import betaln, gammaln  # deferred: scipy takes seconds to import

    if far <= 0:
        return 1.0
    r = _rank(baseline_n)
    a, b = baseline_n - r + 1, r
    # The beta-binomial tail summed from its log pmf: scipy.stats' betabinom.sf costs a
    # millisecond a call in overhead alone.
    k = np.arange(far, n + 1)
    log_pmf = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + betaln(k + a, n - k + b) - betaln(a, b)
    return float(min(1.0, np.exp(log_pmf).sum()))


def input_drift(
    baseline: np.ndarray, buckets: Sequence[np.ndarray], chars: Sequence[Sequence[int]], *, alpha: float = 0.05
) -> list[DriftPoint]:
    """Per bucket, the share of requests far from every baseline request.

    Parameters
    ----------
    baseline : array of shape (n, dim)
        Embeddings of the baseline requests (a sample of them: :func:`drift_sample`).
    buckets : sequence of arrays of shape (m_i, dim)
        Embeddings of each tested bucket's requests (the buckets after the baseline).
    chars : sequence of sequences of int
        Each bucket's request lengths in characters (all its requests, or the same rows).
    alpha : float
        Level of the test, after Holm's correction across buckets.

    Returns
    -------
    list of DriftPoint
        One per bucket, in order. A bucket with no request, or a baseline of fewer than
        two, gets a NaN share and no test.
    """
    base = unit(baseline)
    threshold = far_threshold(base)
    z = normal_isf(alpha / 2)
    dim = base.shape[1]
    rows = [unit(b) if len(b) else np.zeros((0, dim), np.float32) for b in buckets]
    # One chunked product for every bucket at once: many small products cost more in
    # call overhead than in arithmetic.
    every = np.vstack(rows) if rows else np.zeros((0, dim), np.float32)
    far_all = _nearest(every, base) > threshold if len(every) and not math.isinf(threshold) else None
    ends = np.cumsum([len(x) for x in rows])
    points = []
    for i, x in enumerate(rows):
        lengths = np.asarray(chars[i] if i < len(chars) else [], dtype=float)
        mean_chars = float(lengths.mean()) if len(lengths) else math.nan
        if not len(x) or far_all is None:
            points.append(DriftPoint(i, len(x), math.nan, (0.0, 1.0), None, None, False, mean_chars, ()))
            continue
        far = far_all[ends[i] - len(x) : ends[i]]
        k = int(far.sum())
        p = _far_p(k, len(x), len(base))
        points.append(
            DriftPoint(i, len(x), k / len(x), wilson(k, len(x), z), p, None, False, mean_chars, _typical(x, far))
        )
    return _holm(points, alpha)


def _typical(x: np.ndarray, far: np.ndarray) -> tuple[int, ...]:
    """Up to :data:`EXAMPLES` far rows closest to the centre of the far rows, closest first."""
    idx = np.flatnonzero(far)
    if not len(idx):
        return ()
    centre = x[idx].mean(axis=0)
    sims = x[idx] @ centre
    order = np.argsort(-sims, kind="stable")[:EXAMPLES]
    return tuple(int(i) for i in idx[order])


def _holm(points: list[DriftPoint], alpha: float) -> list[DriftPoint]:
    tested = [i for i, p in enumerate(points) if p.p_value is not None]
    adjusted = holm([float(points[i].p_value) for i in tested])
    for i, adj in zip(tested, adjusted):
        points[i] = dataclasses.replace(points[i], adjusted_p=adj, flagged=bool(adj < alpha))
    return points


def drift_sample(
    indices_by_bucket: Sequence[Sequence[int]],
    baseline: Sequence[int],
    *,
    seed: int = 0,
    max_baseline: int = 2000,
    max_per_bucket: int = 300,
) -> tuple[list[int], list[list[int]]]:
    """A bounded, reproducible sample of the rows to embed: ``(baseline, per bucket)``.

    Each list keeps at most its bound, drawn without replacement and kept in the order
    given. Each list draws from its own seeded stream (the seed and its position), so a
    bucket's sample does not change when another bucket gains traces.
    """

    def pick(rows: Sequence[int], bound: int, stream: int) -> list[int]:
        rows = list(rows)
        if len(rows) <= bound:
            return rows
        keep = np.random.default_rng([seed, stream]).choice(len(rows), size=bound, replace=False)
        return [rows[j] for j in sorted(keep)]

    return pick(baseline, max_baseline, 0), [pick(b, max_per_bucket, i + 1) for i, b in enumerate(indices_by_bucket)]
