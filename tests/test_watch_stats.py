"""The statistics of ``%llm_watch`` alone (no MLflow): decay flags, canary verdicts and
input drift, each calibrated on planted data.

Calibration means two things here: over many seeds with no real change, the share of
seeds with any false alarm stays at the stated rate (alpha = 0.05) plus two standard
errors; and a planted change of the size the issue names is found where it was planted.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pytest

from llmops_magics.core.watch.canary import compare_groups, group_verdicts, lower_higher, pick_control
from llmops_magics.core.watch.decay import (
    baseline_buckets,
    bucket_of,
    buckets,
    compare_bucket,
    flag,
    interval,
    newcombe,
)
from llmops_magics.core.watch.drift import drift_sample, far_threshold, input_drift
from llmops_magics.errors import BadInput

ALPHA = 0.05
SEEDS = 500


def _allowed(seeds: int, rate: float = ALPHA) -> float:
    """The stated rate plus two standard errors of a share over ``seeds`` seeds."""
    return rate + 2 * math.sqrt(rate * (1 - rate) / seeds)


def _ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=timezone.utc).timestamp() * 1000)


# ---------------------------------------------------------------- buckets


def test_a_day_bucket_starts_exactly_at_midnight_utc():
    bkts = buckets(_ms(2026, 12, 4, 18), _ms(2026, 12, 6, 1), "day")
    assert [b.label for b in bkts] == ["2026-12-04", "2026-12-05", "2026-12-06"]
    midnight = _ms(2026, 12, 5)
    assert bkts[1].start_ms == midnight and bkts[0].end_ms == midnight
    assert bkts[1].end_ms - bkts[1].start_ms == 86_400_000
    got = bucket_of([midnight - 1, midnight, midnight + 86_400_000 - 1, _ms(2026, 12, 3), _ms(2026, 12, 7)], bkts)
    assert got.tolist() == [0, 1, 1, -1, -1]


def test_week_buckets_are_iso_weeks_starting_monday():
    # 2026-12-31 is a Thursday: its ISO week is 2026-W53, which runs Monday 28 Dec to Sunday 3 Jan.
    bkts = buckets(_ms(2026, 12, 31, 12), _ms(2027, 1, 5), "week")
    assert [b.label for b in bkts] == ["2026-W53", "2027-W01"]
    assert bkts[0].start_ms == _ms(2026, 12, 28) and bkts[1].start_ms == _ms(2027, 1, 4)
    assert bucket_of([_ms(2027, 1, 3, 23, 59), _ms(2027, 1, 4)], bkts).tolist() == [0, 1]


def test_hour_buckets_and_a_bad_size():
    bkts = buckets(_ms(2026, 12, 31, 22, 30), _ms(2027, 1, 1, 0, 1), "hour")
    assert [b.label for b in bkts] == ["2026-12-31 22:00", "2026-12-31 23:00", "2027-01-01 00:00"]
    assert buckets(5, 5, "day") == []
    with pytest.raises(BadInput, match="month"):
        buckets(0, 1, "month")


def test_the_baseline_is_the_leading_buckets_holding_a_third():
    assert baseline_buckets([10, 10, 10, 10, 10, 10]) == 2
    assert baseline_buckets([40, 1, 1]) == 1
    assert baseline_buckets([0, 0]) == 0


def test_the_baseline_never_takes_every_bucket_with_traffic():
    # a third is reached only by the last bucket: it stays out, so something is tested
    assert baseline_buckets([1, 1, 1, 30]) == 3
    assert baseline_buckets([1, 0, 0, 30, 0]) == 3  # the last non-empty bucket is tested
    assert baseline_buckets([10, 10]) == 1
    # one bucket with traffic (--since 1d --by day): nothing can be tested, the caller says so
    assert baseline_buckets([40, 0]) == 1 and baseline_buckets([0, 40]) == 2


# ---------------------------------------------------------------- decay


def _days(seed: int, *, drop_at: int | None = None) -> tuple[list[int], list[list], list[list]]:
    """20 daily buckets of 30-60 traces: a pass/fail scorer at 0.9 (0.5 from ``drop_at``)
    and a numeric scorer drawn from Beta(8, 2) (skewed, as bounded scores are)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(30, 61, size=20).tolist()
    rate = [
        [bool(v) for v in rng.random(c) < (0.5 if drop_at is not None and d >= drop_at else 0.9)]
        for d, c in enumerate(counts)
    ]
    mean = [rng.beta(8, 2, size=c).tolist() for c in counts]
    return counts, rate, mean


def _watch(counts, scorers: dict[str, list[list]]):
    first = baseline_buckets(counts)
    comparisons = []
    for name, per_day in scorers.items():
        base = [v for day in per_day[:first] for v in day]
        comparisons += [compare_bucket(name, d, base, per_day[d], alpha=ALPHA) for d in range(first, len(per_day))]
    return first, flag(comparisons, alpha=ALPHA)


@pytest.mark.parametrize("which", ["both", "rate", "mean"])
def test_stable_days_give_false_flags_at_most_at_the_stated_rate(which):
    alarms = 0
    for seed in range(SEEDS):
        counts, rate, mean = _days(seed)
        scorers = {"both": {"passes": rate, "score": mean}, "rate": {"passes": rate}, "mean": {"score": mean}}[which]
        first, comps = _watch(counts, scorers)
        assert 5 <= first <= 8 and len(comps) == len(scorers) * (20 - first)
        alarms += any(c.flagged for c in comps)
    assert alarms / SEEDS <= _allowed(SEEDS), f"{alarms} of {SEEDS} stable seeds had a false flag"


def test_a_drop_from_90_to_50_percent_is_flagged_from_its_day():
    seeds = 50
    early = 0
    for seed in range(seeds):
        counts, rate, mean = _days(seed, drop_at=12)
        first, comps = _watch(counts, {"passes": rate, "score": mean})
        flagged = {c.bucket for c in comps if c.flagged and c.name == "passes"}
        assert set(range(12, 20)) <= flagged, f"seed {seed}: days {sorted(set(range(12, 20)) - flagged)} not flagged"
        early += bool(flagged - set(range(12, 20))) or any(c.flagged for c in comps if c.name == "score")
    # Before day 12 nothing changed: a flag there is a false alarm, allowed at the stated rate.
    assert early / seeds <= _allowed(seeds), f"{early} of {seeds} seeds flagged a day before the drop"
    counts, rate, _ = _days(0, drop_at=12)
    first, comps = _watch(counts, {"passes": rate})
    assert min(c.bucket for c in comps if c.flagged) == 12
    day12 = next(c for c in comps if c.bucket == 12)
    assert day12.kind == "rate" and day12.diff < -0.2 and day12.diff_ci[1] < 0 and day12.adjusted_p < ALPHA


def test_a_numeric_drop_is_flagged_by_welch():
    rng = np.random.default_rng(3)
    base = rng.beta(8, 2, 300).tolist()
    worse = compare_bucket("score", 9, base, (rng.beta(8, 2, 40) - 0.1).tolist())
    better = compare_bucket("score", 10, base, (rng.beta(8, 2, 40) + 0.1).tolist())
    [w, b] = flag([worse, better])
    assert w.kind == "mean" and w.flagged and w.diff_ci[1] < 0 and w.p_worse < 1e-4
    assert not b.flagged and b.p_worse > 0.99  # higher is better: a rise is never a flag


def test_values_mix_none_and_bools_and_too_few_are_never_flagged():
    c = compare_bucket("s", 1, [True, 1.0, 0.5, None], [False, None])
    assert c.kind == "mean" and c.n == 1 and c.baseline_n == 3 and c.p_worse is None and c.diff_ci is None
    r = compare_bucket("s", 2, [True] * 3, [False])  # one value is enough to test a rate
    assert r.kind == "rate" and r.n == 1 and 0.05 < r.p_worse < 0.5
    empty = compare_bucket("s", 3, [True] * 50, [None, None])
    assert empty.n == 0 and empty.p_worse is None and math.isnan(empty.estimate)
    flagged = flag([c, r, empty])
    assert [x.flagged for x in flagged] == [False, False, False] and flagged[0].adjusted_p is None
    with pytest.raises(BadInput, match="bool or a number"):
        compare_bucket("s", 1, ["yes"], [True])


def test_two_constant_sides_are_not_a_certain_difference():
    # two traces rated 4 against a baseline of 5s: no estimate of the noise, so no test (was p = 0)
    gap = compare_bucket("stars", 5, [5.0] * 50, [4.0, 4.0])
    assert gap.kind == "mean" and gap.diff == -1 and gap.p_worse is None and gap.diff_ci is None
    assert not flag([gap])[0].flagged
    same = compare_bucket("stars", 5, [5.0] * 50, [5.0, 5.0])
    assert same.p_worse == 0.5 and same.diff_ci == (0.0, 0.0)
    # one side with spread is enough: Welch on that side's variance, with its few degrees of freedom
    spread = compare_bucket("stars", 5, [5.0] * 50, [4.0, 3.0])
    assert spread.p_worse is not None and 0.0 < spread.p_worse < 0.25
    assert spread.diff_ci[0] < -1.5 < spread.diff_ci[1]


def test_the_rate_test_agrees_with_its_interval():
    # The p-value inverts the interval: p below alpha/2 exactly when the 95% interval is below 0.
    for k1, n1 in [(20, 40), (30, 40), (33, 40), (36, 40), (40, 40), (0, 5)]:
        c = compare_bucket("p", 0, [True] * 270 + [False] * 30, [True] * k1 + [False] * (n1 - k1))
        assert (c.p_worse < ALPHA / 2) == (c.diff_ci[1] < 0), (k1, n1, c)
    low, high = newcombe(0, 10, 0, 10, 1.96)
    assert low < 0 < high  # no pass on either side still leaves room both ways


def test_interval_of_volume_rows():
    kind, est, (low, high) = interval([True, True, False, None])
    assert kind == "rate" and est == pytest.approx(2 / 3) and 0 < low < est < high < 1
    kind, est, ci = interval([1.0, 2.0, 3.0])
    assert kind == "mean" and est == 2.0 and ci[0] < 2.0 < ci[1]
    assert interval([4.0])[2] is None and interval([])[2] is None


# ---------------------------------------------------------------- canary


def test_a_canary_at_60_percent_against_90_is_worse():
    rng = np.random.default_rng(0)
    control = (rng.random(200) < 0.9).tolist()
    canary = (rng.random(200) < 0.6).tolist()
    [c] = group_verdicts([compare_groups("passes", control, canary, control_label="v1", canary_label="v2")])
    assert c.verdict == "worse" and c.kind == "rate" and c.ci[1] < -0.15 and c.adjusted_p < 1e-6
    assert c.reason.startswith("pass rate v2 0.") and "v1 0." in c.reason


@pytest.mark.parametrize("kind", ["rate", "mean"])
def test_equal_variants_are_rarely_better_or_worse(kind):
    words: Counter = Counter()
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        if kind == "rate":
            control, canary = (rng.random(200) < 0.9).tolist(), (rng.random(200) < 0.9).tolist()
        else:
            control, canary = rng.beta(8, 2, 200).tolist(), rng.beta(8, 2, 200).tolist()
        check = compare_groups("s", control, canary, control_label="a", canary_label="b", seed=seed)
        words[group_verdicts([check])[0].verdict] += 1
    assert (words["better"] + words["worse"]) / SEEDS <= _allowed(SEEDS), words
    assert words["equivalent"] + words["inconclusive"] >= 0.9 * SEEDS, words
    if kind == "mean":  # the spread of a Beta(8, 2) mean over 200 traces is well inside ±0.05
        assert words["equivalent"] >= 0.85 * SEEDS, words


def test_inconclusive_says_what_the_volume_can_detect():
    rng = np.random.default_rng(1)
    c = compare_groups(
        "p", (rng.random(60) < 0.9).tolist(), (rng.random(60) < 0.85).tolist(), control_label="a", canary_label="b"
    )
    assert c.verdict == "inconclusive" and c.mdd is not None and 0.05 < c.mdd < 0.3
    assert f"±{c.mdd:.2f}" in c.reason and "80% power" in c.reason
    few = compare_groups("m", [0.5] * 10, [0.4] * 10, control_label="a", canary_label="b")
    assert few.verdict == "inconclusive" and few.ci is None and "too few" in few.reason


def test_a_small_real_difference_inside_the_margin_is_still_worse_and_says_so():
    rng = np.random.default_rng(2)
    control = rng.beta(8, 2, 20_000).tolist()
    canary = (rng.beta(8, 2, 20_000) - 0.01).tolist()
    [c] = group_verdicts([compare_groups("score", control, canary, control_label="a", canary_label="b")])
    assert c.verdict == "worse" and -0.05 < c.ci[0] < c.ci[1] < 0 and "inside ±0.05" in c.reason


def test_holm_across_scorers_can_take_a_verdict_back():
    rng = np.random.default_rng(4)
    # One scorer just significant alone (p ~ 0.03), one with no difference: after Holm over 2, not significant.
    checks = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        a = compare_groups(
            "x",
            (rng.random(400) < 0.8).tolist(),
            (rng.random(400) < 0.74).tolist(),
            control_label="a",
            canary_label="b",
        )
        if 0.025 < a.p_value < 0.05 and a.verdict == "worse":
            checks = [a, compare_groups("y", [True] * 100, [True] * 100, control_label="a", canary_label="b")]
            break
    assert checks, "no seed gave a borderline difference"
    final = group_verdicts(checks)
    assert final[0].verdict == "inconclusive" and final[0].adjusted_p == pytest.approx(2 * checks[0].p_value)
    assert "Holm-adjusted over 2 checks" in final[0].reason


def test_pick_control():
    assert pick_control({"v1": 950, "v2": 50}) == ("v1", ["v2"])
    assert pick_control({"a": 10, "b": 10, "c": 3}) == ("a", ["b", "c"])
    assert pick_control({"v1": 950, "v2": 50, "v3": 40}, canary="v3") == ("v1", ["v3"])
    assert pick_control({"v1": 950, "v2": 50}, canary="v1") == ("v2", ["v1"])
    with pytest.raises(BadInput, match="v9"):
        pick_control({"v1": 3, "v2": 4}, canary="v9")
    with pytest.raises(BadInput, match="nothing to compare"):
        pick_control({"v1": 3, "v2": 0})


def test_without_a_named_canary_the_lower_group_is_named_whichever_was_the_control():
    rng = np.random.default_rng(0)
    worse = (rng.random(200) < 0.6).tolist()
    good = (rng.random(200) < 0.9).tolist()
    # equal sizes: the control is "a" by name, and it is the worse one: the check reads "better"
    control, [other] = pick_control({"a": 200, "b": 200})
    [c] = group_verdicts([compare_groups("passes", worse, good, control_label=control, canary_label=other)])
    assert (c.control, c.verdict) == ("a", "better")
    assert lower_higher(c) == ("a", "b")
    [named] = group_verdicts([compare_groups("passes", good, worse, control_label="b", canary_label="a")])
    assert named.verdict == "worse" and lower_higher(named) == ("a", "b")
    [same] = group_verdicts([compare_groups("passes", good, good, control_label="a", canary_label="b")])
    assert same.verdict in ("equivalent", "inconclusive") and lower_higher(same) is None


# ---------------------------------------------------------------- drift


def _topics(rng, k: int, dim: int = 64) -> np.ndarray:
    c = rng.normal(size=(k, dim))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _requests(rng, centres: np.ndarray, n: int, noise: float = 0.6) -> np.ndarray:
    """``n`` unit vectors around randomly chosen topic centres."""
    x = centres[rng.integers(0, len(centres), n)] + noise * rng.normal(size=(n, centres.shape[1])) / math.sqrt(
        centres.shape[1]
    )
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _drift_days(seed: int, *, new_at: int | None = None):
    """A baseline of 300 requests on 8 topics, then 13 buckets of 30-60 requests; from
    ``new_at`` a third of each bucket is a ninth topic (rows at the end of the bucket)."""
    rng = np.random.default_rng(seed)
    centres = _topics(rng, 9)
    base = _requests(rng, centres[:8], 300)
    days, new_rows = [], []
    for d in range(13):
        n = int(rng.integers(30, 61))
        fresh = n // 3 if new_at is not None and d >= new_at else 0
        days.append(np.vstack([_requests(rng, centres[:8], n - fresh), _requests(rng, centres[8:], fresh)]))
        new_rows.append(set(range(n - fresh, n)))
    return base, days, new_rows


def test_stable_inputs_give_false_drift_flags_at_most_at_the_stated_rate():
    alarms = 0
    for seed in range(SEEDS):
        base, days, _ = _drift_days(seed)
        points = input_drift(base, days, [[100] * len(d) for d in days], alpha=ALPHA)
        assert len(points) == 13 and all(p.p_value is not None for p in points)
        alarms += any(p.flagged for p in points)
    assert alarms / SEEDS <= _allowed(SEEDS), f"{alarms} of {SEEDS} stable seeds flagged drift"


def test_a_new_topic_is_drift_from_its_bucket_and_the_examples_come_from_it():
    seeds, early = 50, 0
    for seed in range(seeds):
        base, days, new_rows = _drift_days(seed, new_at=8)
        chars = [[80] * (len(d) - len(new_rows[i])) + [200] * len(new_rows[i]) for i, d in enumerate(days)]
        points = input_drift(base, days, chars, alpha=ALPHA)
        assert all(p.flagged for p in points[8:]), (seed, [round(p.far_share, 2) for p in points])
        for p in points[8:]:
            assert p.far_share > 0.25 and p.ci[0] > 0.05 and p.mean_chars > 80
            assert len(p.examples) == 3 and set(p.examples) <= new_rows[p.bucket], (seed, p)
        assert points[0].mean_chars == 80
        # Before bucket 8 nothing changed: a flag there is a false alarm, allowed at the stated rate.
        early += any(p.flagged for p in points[:8])
    assert early / seeds <= _allowed(seeds), f"{early} of {seeds} seeds flagged drift before the new topic"


def test_far_threshold_is_the_baselines_own_95th_percentile():
    rng = np.random.default_rng(0)
    base = _requests(rng, _topics(rng, 4), 400)
    t = far_threshold(base)
    sims = base @ base.T
    np.fill_diagonal(sims, -np.inf)
    nearest = 1 - sims.max(axis=1)
    assert np.mean(nearest > t) == pytest.approx(0.05, abs=0.003)
    assert far_threshold(base[:1]) == math.inf


def test_drift_on_thousands_of_requests_is_fast():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2000, 384)).astype(np.float32)
    days = [rng.normal(size=(300, 384)).astype(np.float32) for _ in range(20)]
    start = time.perf_counter()
    points = input_drift(base, days, [[50] * 300] * 20)
    assert time.perf_counter() - start < 1.0 and len(points) == 20


def test_an_empty_bucket_and_a_tiny_baseline_are_not_tested():
    rng = np.random.default_rng(0)
    base = _requests(rng, _topics(rng, 3), 50)
    [empty, full] = input_drift(base, [np.zeros((0, 64)), base[:10]], [[], [5] * 10])
    assert empty.n == 0 and empty.p_value is None and not empty.flagged and math.isnan(empty.far_share)
    assert full.far_share == 0 and full.p_value == 1.0  # its own rows are at distance 0
    [tiny] = input_drift(base[:1], [base[1:5]], [[1] * 4])
    assert tiny.p_value is None and not tiny.flagged


def test_drift_sample_is_bounded_reproducible_and_stable_per_bucket():
    by_bucket = [list(range(0, 500)), list(range(500, 520)), list(range(520, 1520))]
    base, per = drift_sample(by_bucket, list(range(5000)), seed=7, max_baseline=100, max_per_bucket=50)
    assert len(base) == 100 and base == sorted(base) and set(base) <= set(range(5000))
    assert [len(p) for p in per] == [50, 20, 50] and per[1] == by_bucket[1]
    assert drift_sample(by_bucket, list(range(5000)), seed=7, max_baseline=100, max_per_bucket=50) == (base, per)
    grown = [by_bucket[0], by_bucket[1], list(range(520, 3000))]
    assert drift_sample(grown, list(range(5000)), seed=7, max_baseline=100, max_per_bucket=50)[1][0] == per[0]
    assert drift_sample(by_bucket, list(range(5000)), seed=8, max_baseline=100, max_per_bucket=50)[0] != base
