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


# ---------------------------------------------------------------- scorers, Holm, two verdicts


def test_holm_matches_a_hand_computation():
    # Sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to
    # 0.06 (an adjusted p-value never falls below the one before it); capped at 1.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.6, 0.2]) == pytest.approx([0.6, 0.4])
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0] and stats.holm([]) == []


def test_tango_interval_of_a_paired_difference():
    # No discordant pair: the score interval is ±z²/(n + z²), not a zero-width one.
    z2 = 1.959963984540054**2
    assert stats.tango_interval(0, 0, 3) == pytest.approx((-z2 / (3 + z2), z2 / (3 + z2)), abs=1e-9)
    assert stats.tango_interval(0, 0, 80)[1] == pytest.approx(z2 / (80 + z2), abs=1e-9)
    low, high = stats.tango_interval(40, 60, 1000)  # difference +0.02
    assert low < 0.02 < high and (low, high) == pytest.approx((0.0004, 0.0401), abs=5e-4), "close to Wald here"
    assert stats.tango_interval(5, 0, 5)[0] == -1.0 and stats.tango_interval(0, 5, 5)[1] == 1.0
    # Coverage of the true difference (+0.05) over simulated tables: about 95%.
    rng = np.random.default_rng(0)
    tables = rng.multinomial(50, [0.05, 0.10, 0.45, 0.40], size=1000)
    covered = sum(lo <= 0.05 <= hi for lo, hi in (stats.tango_interval(b, c, 50) for b, c, _, _ in tables))
    assert 0.93 <= covered / 1000 <= 0.97


def test_binary_scorer_check_verdicts():
    t = Thresholds()
    worse = stats.binary_scorer_check("polite", [True] * 30, [False] * 8 + [True] * 22, t, margin=0.05)
    assert worse.name == "scorer polite" and worse.verdict == "worse" and worse.p_value == pytest.approx(2 / 256)
    assert worse.estimate == pytest.approx(-8 / 30) and worse.ci[1] < 0
    assert stats.binary_scorer_check("polite", [False] * 8 + [True] * 22, [True] * 30, t, margin=0.05).verdict == (
        "better"
    )
    # 10 of 400 discordant each way: no difference, interval within ±0.05.
    p = [True] * 10 + [False] * 10 + [True] * 380
    c = [False] * 10 + [True] * 10 + [True] * 380
    eq = stats.binary_scorer_check("polite", p, c, t, margin=0.05)
    assert eq.verdict == "equivalent" and -0.05 <= eq.ci[0] and eq.ci[1] <= 0.05
    # With a tighter margin the interval is too wide, for now.
    tight = stats.binary_scorer_check("polite", p, c, t, margin=0.02, left_out=3)
    assert tight.verdict == "inconclusive" and "3 cases left out (no value on one side)" in tight.reason
    assert f"about {tight.more_cases} more cases would decide it" in tight.reason
    # The projection holds: that many more cases at the same shares decide it.
    m = 400 + tight.more_cases
    k = round(10 / 400 * m)
    p, c = [True] * k + [False] * k + [True] * (m - 2 * k), [False] * k + [True] * k + [True] * (m - 2 * k)
    assert stats.binary_scorer_check("polite", p, c, t, margin=0.02).verdict == "equivalent"


def test_numeric_scorer_check_verdicts():
    t = Thresholds()
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 100)
    noise = rng.normal(0, 0.02, 100)
    assert stats.numeric_scorer_check("quality", base, base + noise, t, margin=0.05).verdict == "equivalent"
    worse = stats.numeric_scorer_check("quality", base, base - 0.2 + noise, t, margin=0.05)
    assert worse.verdict == "worse" and worse.ci[1] < 0 and worse.p_value < 0.01
    # The p-value and the interval come from the same resamples as bootstrap_p / bootstrap_ci.
    assert worse.p_value == stats.bootstrap_p(base - 0.2 + noise - base, seed=t.seed + 11)
    few = stats.numeric_scorer_check("quality", [0.5] * 5, [0.5] * 5, t, margin=0.05)
    assert few.verdict == "inconclusive" and few.more_cases == 15 and "fewer than 20 cases" in few.reason
    same = stats.numeric_scorer_check("quality", [0.5] * 5, [0.9] * 5, t, margin=0.05, same_output=[True] * 5)
    assert same.verdict == "equivalent" and "outputs identical in all 5 cases" in same.reason


def test_holm_withholds_a_call_significant_only_alone():
    t = Thresholds()
    # 0 vs 6 discordant of 20: McNemar p = 2/64, better alone; with a second quality check
    # (p = 1) Holm's adjusted p is 2 x 2/64 = 0.0625.
    fmt = stats.paired_rate_check("format validity", [False] * 6 + [True] * 14, [True] * 20, t, higher_is_better=True)
    refusal = stats.paired_rate_check("refusal rate", [False] * 20, [False] * 20, t, higher_is_better=False)
    assert fmt.verdict == "better" and refusal.p_value == 1.0
    v = stats.overall([fmt, refusal], alpha=t.alpha)
    held = v.check("format validity")
    assert held.verdict == "inconclusive" and held.adjusted_p == pytest.approx(0.0625)
    assert "not after Holm's correction over 2 quality checks" in held.reason and v.label == "inconclusive"
    # The projection holds: at the same shares, that many more cases pass Holm's level.
    m = 20 + held.more_cases
    bigger = stats.paired_rate_check(
        "format validity",
        [False] * round(0.3 * m) + [True] * (m - round(0.3 * m)),
        [True] * m,
        t,
        higher_is_better=True,
    )
    assert 2 * bigger.p_value < t.alpha
    # A call strong enough survives: 0 vs 8 gives 2/256, adjusted 1/64.
    strong = stats.paired_rate_check(
        "format validity", [False] * 8 + [True] * 12, [True] * 20, t, higher_is_better=True
    )
    v = stats.overall([strong, refusal], alpha=t.alpha)
    assert v.check("format validity").verdict == "better" and v.check("format validity").adjusted_p == 2 / 128
    assert v.label == "inconclusive", "better needs no inconclusive quality check: 0 of 20 refusals cannot say"
    settled = stats.paired_rate_check("refusal rate", [False] * 80, [False] * 80, t, higher_is_better=False)
    assert stats.overall([strong, settled], alpha=t.alpha).label == "better"


def _rows(outputs: list[tuple[str, str]]) -> list[dict]:
    from llmops_magics.core.shadow.compare import edit_similarity

    return [
        {
            "id": i,
            "prompt": f"question {i}",
            "primary_output": p,
            "candidate_output": c,
            "exact_match": p == c,
            "edit_similarity": edit_similarity(p, c),
            "embedding_similarity": 1.0 if p == c else 0.8,
            "length_ratio": (len(c) + 1) / (len(p) + 1),
            "primary_refused": False,
            "candidate_refused": False,
            "primary_latency_s": 0.1,
            "candidate_latency_s": 0.1,
        }
        for i, (p, c) in enumerate(outputs)
    ]


def test_identical_outputs_are_unchanged_and_equivalent_however_few_the_cases():
    from llmops_magics.core.shadow.verdict import checks, verdicts

    t = Thresholds()
    rows = _rows([("Paris.", "Paris."), ("Rome.", "Rome."), ("Oslo.", "Oslo.")])
    found = checks(rows, t, has_format=False, has_judge=False)
    quality, change = verdicts(rows, found, t)
    assert (quality.label, change.label) == ("equivalent", "unchanged")
    # The rule lives in the paired check: a property of the same output is the same.
    refusal = quality.check("refusal rate")
    assert refusal.verdict == "equivalent" and "outputs identical in all 3 cases" in refusal.reason
    # The differing share of 0 of 3 still says what it knows about other inputs.
    assert change.check("identical outputs").verdict == "inconclusive"
    assert change.reasons == ("identical outputs: outputs identical in all 3 cases",)


def test_a_different_and_no_worse_candidate_is_changed_and_equivalent():
    from llmops_magics.backends.base import Sampling
    from llmops_magics.core.shadow.result import ShadowResult
    from llmops_magics.core.shadow.verdict import checks, verdicts

    t = Thresholds()
    rows = _rows([(f"The answer is {i}.", f"{i} is the answer.") for i in range(80)])
    found = checks(rows, t, has_format=False, has_judge=False)
    quality, change = verdicts(rows, found, t)
    assert (quality.label, change.label) == ("equivalent", "changed"), quality.reasons + change.reasons
    assert quality.check("identical outputs").verdict == "worse", "the check keeps its words"
    assert change.reasons[0].startswith("identical outputs: changed: 80 of 80 outputs differ")
    result = ShadowResult("s", "a", "b", rows, quality, {}, {}, Sampling(), t, change_verdict=change)
    assert (result.label, result.change) == ("equivalent", "changed")
    bundle = result._repr_mimebundle_()
    assert bundle["text/plain"].startswith("verdict: EQUIVALENT · behaviour: CHANGED")
    assert "behaviour: identical outputs: changed" in bundle["text/plain"]
    assert "EQUIVALENT</b> · behaviour: <b" in bundle["text/html"] and "CHANGED" in bundle["text/html"]
    assert str(result).startswith("EQUIVALENT · CHANGED: shadow s")


def test_change_verdict_and_a_label_without_quality_checks():
    t = Thresholds()
    far = stats.similarity_check("edit similarity", [0.2, 0.3] * 10, 0.9, t)
    near = stats.similarity_check("edit similarity", [1.0] * 20, 0.9, t)
    unsure = stats.similarity_check("edit similarity", [1.0, 0.75] * 3, 0.9, t)
    assert stats.change_verdict([far, near]).label == "changed"
    assert stats.change_verdict([near]).label == "unchanged"
    assert stats.change_verdict([near, unsure]).label == "inconclusive"
    assert stats.change_verdict([]).reasons == ("no change check ran",)
    # No quality check at all: the label follows the change, and says so.
    assert stats.overall([near]).label == "equivalent"
    v = stats.overall([far])
    assert (
        v.label == "inconclusive" and v.reasons[-1] == "no quality check ran: the label follows the behaviour, changed"
    )
