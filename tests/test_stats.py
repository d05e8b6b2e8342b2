"""Unit tests for pytest_engineparity.checks.stats, checked against scipy's exact tests and simulation."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_engineparity.checks.stats import (
    default_min_samples,
    equivalence_rate_verdict,
    paired_accuracy,
    percentile_ci,
    proportion_interval,
    proportion_lower_bound,
    ratio_ci,
    regression_verdict,
)

# --------------------------------------------------------------------------------------------
# proportions


@pytest.mark.parametrize("s, n", [(0, 5), (3, 3), (12, 12), (7, 20), (95, 100), (1, 1000)])
def test_bounds_match_scipy_exact(s: int, n: int) -> None:
    one = sps.binomtest(s, n, alternative="greater").proportion_ci(confidence_level=0.95, method="exact")
    assert proportion_lower_bound(s, n) == pytest.approx(one.low, abs=1e-12)
    two = sps.binomtest(s, n).proportion_ci(confidence_level=0.90, method="exact")
    assert proportion_interval(s, n, 0.90) == pytest.approx((two.low, two.high), abs=1e-12)


def test_bounds_edge_cases() -> None:
    assert proportion_lower_bound(0, 0) == 0.0
    assert proportion_interval(0, 0) == (0.0, 1.0)
    assert proportion_lower_bound(3, 3) == pytest.approx(0.05 ** (1 / 3))
    with pytest.raises(ValueError):
        proportion_lower_bound(4, 3)
    with pytest.raises(ValueError):
        proportion_lower_bound(1, 3, confidence=1.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_bound_properties(sn: tuple[int, int], conf: float) -> None:
    s, n = sn
    lb = proportion_lower_bound(s, n, conf)
    lo, hi = proportion_interval(s, n, conf)
    assert 0.0 <= lb <= s / n <= 1.0
    assert lo <= s / n <= hi
    assert lb >= lo - 1e-12  # one-sided bound spends all of alpha on one side
    if s < n:
        assert proportion_lower_bound(s + 1, n, conf) > lb  # monotone in successes
    assert proportion_lower_bound(s, n, min(conf + 0.005, 0.999)) <= lb + 1e-12  # more confidence, lower bound


# --------------------------------------------------------------------------------------------
# equivalence rate


def test_three_of_three_does_not_pass() -> None:
    v = equivalence_rate_verdict(3, 3, min_rate=0.90)
    assert not v.passed
    assert v.lower_bound == pytest.approx(0.368, abs=1e-3)
    assert v.min_n_all_equivalent == 29


def test_twenty_nine_of_twenty_nine_passes_but_28_does_not() -> None:
    assert equivalence_rate_verdict(29, 29, 0.90).passed
    assert not equivalence_rate_verdict(28, 28, 0.90).passed


def test_rate_message() -> None:
    v = equivalence_rate_verdict(12, 12)
    # not enough evidence is inconclusive, never fail: it says what would settle it and the power
    assert v.verdict == "inconclusive" and not v.passed
    assert v.message.startswith("inconclusive (not shown either way): 12/12 equivalent, 95% lower bound 0.779 < 0.90")
    assert "17 more prompts, all equivalent, would settle it" in v.message and "29 prompts suffice" in v.message
    assert "power at this size 0%" in v.message
    assert equivalence_rate_verdict(0, 0).message.startswith("inconclusive: no prompts compared")
    assert not equivalence_rate_verdict(0, 0).passed
    assert "can never be shown" in equivalence_rate_verdict(50, 50, min_rate=1.0).message


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 120).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([0.5, 0.8, 0.9, 0.95]))
def test_more_needed_is_minimal(sn: tuple[int, int], min_rate: float) -> None:
    s, n = sn
    v = equivalence_rate_verdict(s, n, min_rate)
    assert v.passed == (v.more_needed == 0)
    m = v.more_needed
    assert m is not None
    assert equivalence_rate_verdict(s + m, n + m, min_rate).passed
    if m > 0:
        assert not equivalence_rate_verdict(s + m - 1, n + m - 1, min_rate).passed


# --------------------------------------------------------------------------------------------
# latency ratio


def lognormal(seed: int, n: int, scale: float = 1.0, sigma: float = 0.1) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(scale), sigma, n)


def test_ratio_ci_is_fast_and_deterministic() -> None:
    r, c = lognormal(1, 500), lognormal(2, 500, 1.2)
    ratio_ci(r, c, "p99", n_resamples=200)  # warm-up (imports, allocation)
    t0 = time.perf_counter()
    a = ratio_ci(r, c, "p99", n_resamples=2000, seed=7)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"ratio_ci took {elapsed:.3f}s"
    b = ratio_ci(r, c, "p99", n_resamples=2000, seed=7)
    assert a == b
    assert a.low < a.ratio < a.high
    assert a.ratio == pytest.approx(np.quantile(c, 0.99) / np.quantile(r, 0.99))


def test_ratio_ci_matches_scipy_bootstrap() -> None:
    r, c = lognormal(3, 400, sigma=0.3), lognormal(4, 300, 1.1, sigma=0.3)
    ours = ratio_ci(r, c, "mean", n_resamples=4000, seed=0)
    ref = sps.bootstrap((r, c), lambda x, y, axis: np.mean(y, axis=axis) / np.mean(x, axis=axis),
                        n_resamples=4000, method="percentile", vectorized=True, rng=np.random.default_rng(0))
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=0.01)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=0.01)


def test_ratio_ci_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown statistic"):
        ratio_ci([1.0] * 50, [1.0] * 50, "p100")
    with pytest.raises(ValueError, match="finite"):
        ratio_ci([1.0, float("nan")] * 25, [1.0] * 50)
    with pytest.raises(ValueError, match="> 0"):
        ratio_ci([0.0] * 50, [1.0] * 50)


def test_default_min_samples() -> None:
    assert [default_min_samples(s) for s in ("mean", "p50", "p95", "p99", "p99.9")] == [30, 30, 60, 300, 3000]


def test_twenty_percent_p99_regression_fails() -> None:
    ref, cand = lognormal(10, 500), lognormal(11, 500, scale=1.2)
    v = regression_verdict(ref, cand, "p99", max_ratio=1.10)
    assert v.verdict == "fail", v.message
    assert v.ci is not None and v.ci.low > 1.10
    assert "lies above 1.10: candidate is slower" in v.message
    # and not by luck of one draw: power over 40 draws (fewer resamples to stay fast)
    fails = sum(regression_verdict(lognormal(2 * s, 500), lognormal(2 * s + 1, 500, 1.2), "p99",
                                   n_resamples=400, seed=s).verdict == "fail" for s in range(40))
    assert fails >= 34


def test_same_distribution_false_alarm_rate_at_most_5_percent() -> None:
    verdicts = [regression_verdict(lognormal(1000 + 2 * s, 500), lognormal(1001 + 2 * s, 500), "p99",
                                   n_resamples=400, seed=s).verdict for s in range(200)]
    assert verdicts.count("fail") <= 10
    assert verdicts.count("pass") >= 150  # and it does say "pass", not just "not fail"


@pytest.mark.parametrize("stat, n", [("p50", 20), ("p99", 250)])
def test_small_samples_are_inconclusive(stat: str, n: int) -> None:
    v = regression_verdict(lognormal(5, n), lognormal(6, n, 2.0), stat)
    assert v.verdict == "inconclusive" and v.ci is None
    assert v.more_samples_needed == default_min_samples(stat) - n
    assert f"needs at least {default_min_samples(stat)} per engine" in v.message


def test_straddling_ci_is_inconclusive_with_a_sample_estimate() -> None:
    ref, cand = lognormal(20, 60, sigma=0.3), lognormal(21, 60, 1.12, sigma=0.3)
    v = regression_verdict(ref, cand, "p50")
    assert v.verdict == "inconclusive", v.message
    assert v.ci is not None and v.ci.low <= 1.10 <= v.ci.high
    assert v.more_samples_needed is not None and v.more_samples_needed > 0
    assert f"need about {v.more_samples_needed} more samples per engine" in v.message
    # the estimate is in the right ballpark: at that size the CI half-width is about the distance
    n2 = 60 + v.more_samples_needed
    big = ratio_ci(lognormal(22, n2, sigma=0.3), lognormal(23, n2, 1.12, sigma=0.3), "p50")
    half_now = math.log(v.ci.high / v.ci.low) / 2
    half_then = math.log(big.high / big.low) / 2
    assert half_then == pytest.approx(half_now * math.sqrt(60 / n2), rel=0.35)


def test_clear_pass() -> None:
    v = regression_verdict(lognormal(30, 500), lognormal(31, 500, 0.95), "p50")
    assert v.verdict == "pass" and v.passed
    assert "lies below 1.10: no regression" in v.message


# --------------------------------------------------------------------------------------------
# SLA percentile


def test_percentile_ci_median_of_100_uses_ranks_40_and_61() -> None:
    p = percentile_ci(np.arange(1, 101), 0.5)  # the classic table entry
    assert (p.low, p.high) == (40.0, 61.0)
    assert p.coverage >= 0.95


def test_percentile_ci_needs_enough_samples_for_a_p99_upper_bound() -> None:
    p = percentile_ci(lognormal(1, 200), 0.99)
    assert p.high is None and p.low is not None
    assert p.meets(100.0) is None
    p = percentile_ci(lognormal(1, 1000), 0.99)
    assert p.low is not None and p.high is not None and p.low <= p.estimate <= p.high
    assert p.meets(p.high) is True and p.meets(p.low * 0.99) is False
    with pytest.raises(ValueError, match="0.99 for p99"):
        percentile_ci([1.0, 2.0], 99)


def test_percentile_ci_coverage_by_simulation() -> None:
    true_p90 = math.log(10.0)  # exponential(1)
    hits = 0
    for seed in range(400):
        p = percentile_ci(np.random.default_rng(seed).exponential(1.0, 120), 0.9)
        assert p.low is not None and p.high is not None
        hits += p.low <= true_p90 <= p.high
    assert hits / 400 >= 0.93


# --------------------------------------------------------------------------------------------
# paired accuracy


def graded(seed: int, n: int, acc: float) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < acc


def test_ten_point_drop_on_300_items_is_worse() -> None:
    ref = graded(1, 300, 0.75)
    cand = ref.copy()
    right = np.flatnonzero(ref)
    cand[np.random.default_rng(2).choice(right, 30, replace=False)] = False
    v = paired_accuracy(list(ref), list(cand))
    assert v.verdict == "worse", v.message
    assert (v.b, v.c) == (30, 0)
    assert v.drop == pytest.approx(0.10)
    assert v.drop_low > 0.01
    assert v.message.startswith("worse: ")


def test_identical_outcomes_are_equivalent() -> None:
    ref = graded(3, 300, 0.7)
    v = paired_accuracy(ref, ref.copy())
    assert v.verdict == "equivalent", v.message
    assert v.mcnemar_p == 1.0 and v.drop == 0.0 and v.drop_high < 0.01


def test_twenty_items_are_inconclusive() -> None:
    ref = graded(4, 20, 0.7)
    v = paired_accuracy(ref, ref.copy())
    assert v.verdict == "inconclusive"
    assert v.items_needed is not None and 200 <= v.items_needed <= 350
    assert v.message.startswith("inconclusive") and f"need about {v.items_needed} items" in v.message
    assert v.power_if_equal < 0.5


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 200))
def test_pvalues_match_scipy_exact(b: int, c: int, same: int) -> None:
    assume(b + c + same > 0)
    ref = [True] * b + [False] * c + [True] * (same // 2) + [False] * (same - same // 2)
    cand = [False] * b + [True] * c + [True] * (same // 2) + [False] * (same - same // 2)
    v = paired_accuracy(ref, cand, max_drop=0.0)
    if b + c:
        assert v.mcnemar_p == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue, abs=1e-12)
        # "worse" is the one-sided exact McNemar test
        assert v.p_worse == pytest.approx(sps.binomtest(b, b + c, 0.5, alternative="greater").pvalue, abs=1e-12)
    else:
        assert v.mcnemar_p == 1.0
    n = len(ref)
    for acc_ci, k in ((v.ref_ci, sum(ref)), (v.cand_ci, sum(cand))):
        exact = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert acc_ci == pytest.approx((exact.low, exact.high), abs=1e-12)
    assert v.drop_low <= v.drop <= v.drop_high


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 300), st.sampled_from([0.01, 0.03, 0.05]))
def test_verdict_agrees_with_the_interval(b: int, c: int, same: int, margin: float) -> None:
    n = b + c + same
    assume(n > 0)
    v = paired_accuracy([True] * b + [False] * c + [True] * same, [False] * b + [True] * c + [True] * same, margin)
    assume(abs(v.drop_high - margin) > 1e-9 and abs(v.drop_low - margin) > 1e-9)
    worse = v.p_worse < v.alpha and v.drop >= margin
    assert (v.verdict == "worse") == worse
    assert (v.verdict == "equivalent") == (not worse and v.drop_high < margin)


def test_non_inferiority_type_one_error_at_the_margin() -> None:
    # true drop exactly at the margin (8% lost vs 3% gained): "equivalent" must be rare (<= ~alpha)
    rng = np.random.default_rng(0)
    n, margin, wrongly_equivalent = 300, 0.05, 0
    for _ in range(400):
        cell = rng.choice(3, size=n, p=[0.08, 0.03, 0.89])  # 0: lost, 1: gained, 2: same (right)
        v = paired_accuracy(cell != 1, cell != 0, max_drop=margin)
        wrongly_equivalent += v.verdict == "equivalent"
    assert wrongly_equivalent / 400 <= 0.075


def test_paired_input_validation() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_accuracy([True], [True, False])
    with pytest.raises(ValueError, match="no items"):
        paired_accuracy([], [])
