"""Verdict calibration: planted data with a known truth, over many seeds.

Each seed plants ``N`` questions "what is the capital of CountryK?". A question has a
difficulty shared by both sides: the chance an answer names the right city is drawn
from a Beta with mean 0.9 and concentration 0.5 (most questions easy, a few hard).
Each side answers right with that chance, independently; a planted drop scales the
candidate's chance by 0.7 / 0.9 (pass rate 0.9 -> 0.7). The candidate words every answer
differently ("CityK is the capital of CountryK." vs "The capital of CountryK is CityK."),
so its behaviour changes in every case while its pass rate does not. The scorer is a
real ``@scorer``: does the answer name the expected city.

What a user relies on, checked over ``SEEDS`` seeds:

* with no real difference the scorer check calls better or worse at most ``alpha`` of
  the time (allowing binomial slack: the 99th percentile of Binomial(SEEDS, alpha));
* the reworded candidate is ``changed`` and ``equivalent`` in most seeds. Not all: the
  label also needs the scorer's 95% interval of the paired difference inside ±0.05, and
  at N = 400 with about 6% discordant pairs its half-width is about 0.024, so a seed whose
  observed difference strays past about 0.026 by chance is inconclusive (and about 2.5%
  of seeds make McNemar's false call, which Holm's correction then mostly withholds);
  measured: 185 of 200 seeds (10 inconclusive, 5 false calls of the check, 1 left by
  Holm's correction); the test asks for 85%;
* a planted drop of the pass rate is ``worse`` in at least 95% of seeds (measured: 200
  of 200).

The same for a numeric scorer (a 0-1 score: the question's quality shared by both sides
plus independent noise, sd 0.1, per side; a planted drop of 0.1). Measured: 11 of 200
false calls of the check (the percentile bootstrap runs a little over alpha), 3 left
by Holm's correction, 189 of 200 equivalent; the drop is worse in every seed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from mlflow.genai.scorers import scorer
from scipy.stats import binom

from llmops_magics.core.shadow import stats
from llmops_magics.core.shadow.compare import edit_similarity, is_refusal
from llmops_magics.core.shadow.scorers import preflight, score
from llmops_magics.core.shadow.stats import Thresholds
from llmops_magics.core.shadow.verdict import verdicts

SEEDS = 200
N = 400
T = Thresholds()
# False better/worse calls allowed out of SEEDS: the 99th percentile of Binomial(SEEDS,
# alpha) (18 of 200), so a check whose true rate is exactly alpha fails this 1% of the time.
SLACK = int(binom.ppf(0.99, SEEDS, T.alpha))
PRIMARY = "The capital of Country{k} is {city}."
REWORDED = (
    "{city} is the capital of Country{k}.",
    "Country{k}'s capital city is {city}.",
    "It is {city}, Country{k}'s capital.",
)


def names_the_city(outputs: str, expectations: dict) -> bool:
    return expectations["city"] in re.findall(r"\w+", outputs)


names_the_city_scorer = scorer(name="names_the_city")(names_the_city)


def plant(seed: int, candidate_scale: float = 1.0, n: int = N) -> list[dict]:
    """The rows of one seed: both answers as text, and each case's expected city."""
    rng = np.random.default_rng(seed)
    chance = rng.beta(0.9 * 0.5, 0.1 * 0.5, n)
    right_p = rng.random(n) < chance
    right_c = rng.random(n) < chance * candidate_scale
    wording = rng.integers(0, len(REWORDED), n)
    rows = []
    for k in range(n):
        city, wrong = f"City{k}", f"City{k + n}"
        p = PRIMARY.format(k=k, city=city if right_p[k] else wrong)
        c = REWORDED[wording[k]].format(k=k, city=city if right_c[k] else wrong)
        rows.append(
            {
                "id": k,
                "prompt": f"What is the capital of Country{k}?",
                "primary_output": p,
                "candidate_output": c,
                "expectations": {"city": city},
                "exact_match": p == c,
            }
        )
    return rows


def built_in_checks(rows: list[dict], *, change: bool = True) -> list[stats.Check]:
    """The refusal check and (``change``) the change checks, on the compare stage's metrics.

    The quality label never reads the change checks, so the tests of the label alone
    leave them out (they cost two bootstraps per seed).
    """
    p = [r["primary_output"] for r in rows]
    c = [r["candidate_output"] for r in rows]
    same = [r["exact_match"] for r in rows]
    refusal = stats.paired_rate_check(
        "refusal rate", [is_refusal(a) for a in p], [is_refusal(b) for b in c], T, higher_is_better=False
    )
    if not change:
        return [refusal]
    return [
        stats.differing_check([not s for s in same], T),
        stats.similarity_check("edit similarity", [edit_similarity(a, b) for a, b in zip(p, c)], 0.9, T),
        stats.length_check([(len(b) + 1) / (len(a) + 1) for a, b in zip(p, c)], T),
        refusal,
    ]


def binary_check(rows: list[dict]) -> stats.Check:
    passes = {
        side: [names_the_city(r[f"{side}_output"], r["expectations"]) for r in rows]
        for side in ("primary", "candidate")
    }
    same = [r["exact_match"] for r in rows]
    return stats.binary_scorer_check(
        "names_the_city", passes["primary"], passes["candidate"], T, margin=T.scorer_margin, same_output=same
    )


def tally(outcomes: list[tuple]) -> dict:
    return {key: sum(1 for o in outcomes if o == key) for key in set(outcomes)}


@pytest.fixture(scope="module")
def no_real_difference():
    """Per seed: (scorer check verdict, quality label, change) of the reworded candidate."""
    out = []
    for seed in range(SEEDS):
        rows = plant(seed)
        check = binary_check(rows)
        quality, change = verdicts(rows, built_in_checks(rows) + [check], T)
        out.append((check.verdict, quality.label, change.label))
    return out


def test_no_real_difference_is_rarely_called_better_or_worse(no_real_difference):
    false_check = sum(1 for v, _, _ in no_real_difference if v in ("better", "worse"))
    false_label = sum(1 for _, label, _ in no_real_difference if label in ("better", "worse"))
    assert false_check <= SLACK, f"{false_check} of {SEEDS} seeds: the check's false better/worse rate exceeds alpha"
    assert false_label <= false_check, "Holm's correction never adds a call"


def test_reworded_candidate_with_the_same_pass_rate_is_changed_and_equivalent(no_real_difference):
    changes = {change for _, _, change in no_real_difference}
    assert changes == {"changed"}, "every answer is worded differently: behaviour changed in every seed"
    both = sum(1 for _, label, change in no_real_difference if (label, change) == ("equivalent", "changed"))
    assert both >= 0.85 * SEEDS, tally(no_real_difference)


def test_planted_drop_of_the_pass_rate_is_worse():
    labels = []
    for seed in range(SEEDS):
        rows = plant(seed, candidate_scale=0.7 / 0.9)
        quality, _ = verdicts(rows, built_in_checks(rows, change=False) + [binary_check(rows)], T)
        labels.append(quality.label)
    assert labels.count("worse") >= 0.95 * SEEDS, tally(labels)
    assert quality.check("scorer names_the_city").verdict == "worse"


def numeric_scores(seed: int, drop: float = 0.0, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    quality = rng.beta(2, 2, n)
    return quality + rng.normal(0, 0.1, n), quality - drop + rng.normal(0, 0.1, n)


def numeric_label(seed: int, drop: float = 0.0) -> tuple[str, str]:
    rows = plant(seed)  # reworded answers: their refusals, as above
    p, c = numeric_scores(seed, drop)
    check = stats.numeric_scorer_check("quality", p, c, T, margin=T.scorer_margin)
    quality, _ = verdicts(rows, built_in_checks(rows, change=False) + [check], T)
    return check.verdict, quality.label


def test_numeric_scorer_calibration():
    null = [numeric_label(seed) for seed in range(SEEDS)]
    false_check = sum(1 for v, _ in null if v in ("better", "worse"))
    assert false_check <= SLACK, f"{false_check} of {SEEDS} false better/worse calls"
    # Equivalence is easy here (interval half-width about 0.014 against a margin of
    # 0.05): every seed without a false call is equivalent.
    assert sum(1 for _, label in null if label == "equivalent") >= 0.9 * SEEDS, tally(null)
    # A drop of 0.1 is seven standard errors: half the seeds show it as well as all.
    dropped = [numeric_label(seed, drop=0.1)[1] for seed in range(SEEDS // 2)]
    assert dropped.count("worse") >= 0.95 * len(dropped), tally(dropped)


def test_one_seed_through_score_gives_the_same_check():
    """The calibrated statistics are the ones ``score()`` reaches through MLflow's Scorer."""
    rows = plant(0, n=100)
    scored = score(preflight([names_the_city_scorer], len(rows), None), None, rows, progress=False)
    (check,) = scored.checks
    assert check == binary_check(rows)
    assert scored.rows[0]["primary_score.names_the_city"] == names_the_city(
        rows[0]["primary_output"], rows[0]["expectations"]
    )
