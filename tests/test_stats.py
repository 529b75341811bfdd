"""Statistics behind shadow verdicts, checked against cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmops_magics.core.shadow import stats
from llmops_magics.core.shadow.stats import Thresholds


def test_mcnemar_exact_matches_hand_computed_binomial():
    # Discordant pairs 1 vs 9: p = 2 * P(X <= 1), X ~ Bin(10, 0.5) = 2 * 11/1024.
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    # A balanced table has no evidence at all; no discordant pairs neither.
    assert stats.mcnemar_exact(5, 5) == 1.0
    assert stats.mcnemar_exact(0, 0) == 1.0
    # 0 vs 6 is the smallest all-one-way table significant at 5%: 2 / 64.
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 / 32)


def test_binomial_test_known_values():
    assert stats.binomial_test(10, 10) == pytest.approx(2 / 1024)
    assert stats.binomial_test(5, 10) == 1.0
    assert stats.binomial_test(0, 0) == 1.0


def test_clopper_pearson_rule_of_three():
    low, high = stats.clopper_pearson(0, 100)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.025 ** (1 / 100))  # exact for k = 0
    low, high = stats.clopper_pearson(50, 100)
    assert low < 0.5 < high and high - low < 0.25


def test_paired_bootstrap_interval_covers_a_known_difference():
    rng = np.random.default_rng(1)
    primary = rng.normal(0.0, 1.0, 200)
    candidate = primary + 0.3 + rng.normal(0, 0.1, 200)  # true mean difference 0.3
    est, low, high = stats.bootstrap_ci(candidate - primary, seed=0)
    assert low < 0.3 < high
    assert high - low < 0.1, "pairing removes the shared noise: the interval is narrow"
    # The unpaired view of the same data cannot see the difference this sharply.
    assert est == pytest.approx(np.mean(candidate - primary))


def test_bootstrap_is_reproducible_with_its_seed():
    values = np.linspace(0, 1, 30)
    assert stats.bootstrap_ci(values, seed=3) == stats.bootstrap_ci(values, seed=3)


def test_differing_check_verdicts():
    t = Thresholds()
    assert stats.differing_check([False] * 80, t).verdict == "equivalent"
    worse = stats.differing_check([True] * 30 + [False] * 50, t)
    assert worse.verdict == "worse" and "30 of 80" in worse.reason
    few = stats.differing_check([False] * 10, t)
    assert few.verdict == "inconclusive"
    assert few.more_cases is not None and 50 < few.more_cases < 80
    assert f"about {few.more_cases} more cases" in few.reason
    # The projection is right: that many more identical cases do decide it.
    assert stats.differing_check([False] * (10 + few.more_cases), t).verdict == "equivalent"


def test_paired_rate_check_worse_when_candidate_breaks_format():
    t = Thresholds()
    primary = [True] * 20
    candidate = [False] * 8 + [True] * 12
    check = stats.paired_rate_check("format validity", primary, candidate, t, higher_is_better=True)
    assert check.verdict == "worse"
    assert check.p_value == pytest.approx(2 / 256)
    better = stats.paired_rate_check("format validity", candidate, primary, t, higher_is_better=True)
    assert better.verdict == "better"
    # Refusals: fewer is better.
    refusal = stats.paired_rate_check(
        "refusal rate", [True] * 8 + [False] * 12, [False] * 20, t, higher_is_better=False
    )
    assert refusal.verdict == "better"


def test_paired_rate_check_inconclusive_says_how_many_more():
    t = Thresholds()
    check = stats.paired_rate_check("format validity", [True] * 10, [False] * 3 + [True] * 7, t, higher_is_better=True)
    assert check.verdict == "inconclusive"
    assert check.more_cases and "more cases would decide it" in check.reason


def test_similarity_and_length_checks():
    t = Thresholds()
    assert stats.similarity_check("edit similarity", [1.0] * 20, 0.9, t).verdict == "equivalent"
    assert stats.similarity_check("edit similarity", [0.2, 0.3, 0.25] * 10, 0.9, t).verdict == "worse"
    noisy = stats.similarity_check("edit similarity", [1.0, 0.75] * 3, 0.9, t)
    assert noisy.verdict == "inconclusive" and noisy.more_cases
    assert stats.length_check([1.0, 1.05, 0.97] * 10, t).verdict == "equivalent"
    longer = stats.length_check([2.0, 2.2, 1.9] * 10, t)
    assert longer.verdict == "worse" and "longer" in longer.reason


def test_judge_check():
    t = Thresholds()
    assert stats.judge_check([1] * 12 + [0] * 3, t).verdict == "better"
    assert stats.judge_check([-1] * 12 + [1], t).verdict == "worse"
    assert stats.judge_check([0] * 40, t).verdict == "equivalent"


def test_latency_check_relative_change():
    t = Thresholds()
    base = np.full(30, 1.0)
    assert stats.latency_check(base, base * 2.0, t).verdict == "worse"
    assert stats.latency_check(base, base * 0.5, t).verdict == "better"
    assert stats.latency_check(base, base * 1.01, t).verdict == "equivalent"


def test_overall_verdict_and_reasons():
    t = Thresholds()
    eq = stats.differing_check([False] * 80, t)
    bad = stats.paired_rate_check("format validity", [True] * 20, [False] * 20, t, higher_is_better=True)
    slow = stats.latency_check([1.0] * 10, [3.0] * 10, t)
    v = stats.overall([eq, bad, slow])
    assert v.label == "worse"
    assert any(r.startswith("format validity: worse") for r in v.reasons)
    assert stats.overall([eq, slow]).label == "equivalent", "latency is reported, it does not decide"
    unsure = stats.differing_check([False] * 10, t)
    v = stats.overall([eq, unsure])
    assert v.label == "inconclusive" and "more cases" in v.reasons[0]
    assert v.check("identical outputs") is eq


def test_cases_needed_finds_the_smallest():
    assert stats.cases_needed(lambda m: m >= 137, 10) == 137
    assert stats.cases_needed(lambda m: False, 10, limit=1000) is None
    assert math.isfinite(stats.cases_needed(lambda m: m > 11, 10))
