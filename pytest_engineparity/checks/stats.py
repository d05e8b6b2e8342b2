"""Statistics behind the verdicts: pure functions over numbers (numpy + scipy, no engine).

* Equivalence *rate* over many prompts: a one-sided Clopper-Pearson lower bound must clear the
  required rate, so 3/3 does not pass a 90 % gate (its lower bound is 0.37).
* Latency regression: a bootstrap CI of ``stat(candidate) / stat(reference)``; the verdict is
  ``fail`` only when the whole CI lies above the allowed ratio, ``pass`` when it lies wholly below,
  and ``inconclusive`` (with an estimate of the samples needed) when it straddles.
* SLA percentiles: a distribution-free CI from order statistics.
* Paired accuracy (same items, both engines graded): exact McNemar test on the discordant pairs
  plus a one-sided non-inferiority test (Tango's score test for a paired difference) against an
  allowed drop, TOST style.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
from scipy import stats as _st

__all__ = [
    "proportion_lower_bound",
    "proportion_interval",
    "EquivalenceRateVerdict",
    "equivalence_rate_verdict",
    "RatioCI",
    "ratio_ci",
    "RegressionVerdict",
    "regression_verdict",
    "run_level_regression",
    "is_step_clocked",
    "default_min_samples",
    "PercentileCI",
    "percentile_ci",
    "PairedAccuracyVerdict",
    "paired_accuracy",
    "Samples",
]

#: latency samples in seconds: a list, tuple or 1-D numpy array
Samples = Union[Sequence[float], "np.ndarray[Any, Any]"]
#: per-item correctness: a list of bools or a boolean numpy array
Outcomes = Union[Sequence[bool], "np.ndarray[Any, Any]"]


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes!r}, n={n!r}")


# --------------------------------------------------------------------------------------------
# proportions


def proportion_lower_bound(successes: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson (exact) lower confidence bound of a binomial proportion.

    ``n == 0`` gives 0.0 (nothing is known).
    """
    _check_confidence(confidence)
    _check_counts(successes, n)
    if n == 0 or successes == 0:
        return 0.0
    return float(_st.beta.ppf(1.0 - confidence, successes, n - successes + 1))


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval; equals ``binomtest(...).proportion_ci("exact")``."""
    _check_confidence(confidence)
    _check_counts(successes, n)
    if n == 0:
        return (0.0, 1.0)
    a = (1.0 - confidence) / 2.0
    lo = 0.0 if successes == 0 else float(_st.beta.ppf(a, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(_st.beta.ppf(1.0 - a, successes + 1, n - successes))
    return (lo, hi)


@dataclass(frozen=True)
class EquivalenceRateVerdict:
    """Three-way verdict on the equivalence rate against ``min_rate``:

    * ``pass``: the one-sided lower confidence bound (``confidence``) reaches ``min_rate``;
    * ``fail``: the rate is shown below ``min_rate`` (exact binomial test of H0 rate >= min_rate,
      p = P(X <= observed | n, min_rate) < ``alpha_fail``, the family-wise alpha share);
    * ``inconclusive``: neither; ``more_needed`` and ``power`` say what would settle it.
    """

    passed: bool
    n_equivalent: int
    n: int
    rate: float  # observed; 0.0 when n == 0
    lower_bound: float  # one-sided Clopper-Pearson
    min_rate: float
    confidence: float
    min_n_all_equivalent: Optional[int]  # smallest n that passes when every prompt is equivalent
    more_needed: Optional[int]  # further prompts, all equivalent, that would make this pass
    message: str
    verdict: str = "inconclusive"  # "pass" | "fail" | "inconclusive"
    p_fail: float = 1.0  # P(X <= observed | n, min_rate): evidence the rate is below min_rate
    alpha_fail: float = 0.05
    power_at_0_98: float = 0.0  # P(pass) at this n if the true rate were 0.98

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _min_n_all_equivalent(min_rate: float, confidence: float) -> Optional[int]:
    """Smallest n with lower_bound(n, n) >= min_rate (lower_bound(n, n) = (1-confidence)**(1/n))."""
    if min_rate >= 1.0:
        return None
    if min_rate <= 0.0:
        return 0
    n = max(1, math.ceil(math.log(1.0 - confidence) / math.log(min_rate)))
    while n > 1 and proportion_lower_bound(n - 1, n - 1, confidence) >= min_rate:  # float guard
        n -= 1
    while proportion_lower_bound(n, n, confidence) < min_rate:
        n += 1
    return n


def _more_needed(s: int, n: int, min_rate: float, confidence: float) -> Optional[int]:
    """Smallest m >= 0 with lower_bound(s + m, n + m) >= min_rate, or None when impossible."""
    if min_rate >= 1.0:
        return None
    if proportion_lower_bound(s, n, confidence) >= min_rate:
        return 0
    hi = 1
    while proportion_lower_bound(s + hi, n + hi, confidence) < min_rate:
        hi *= 2
        if hi > 10**9:  # pragma: no cover - only for min_rate absurdly close to 1
            return None
    lo = hi // 2  # fails at lo (or lo == 0 fails, checked above)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if proportion_lower_bound(s + mid, n + mid, confidence) >= min_rate:
            hi = mid
        else:
            lo = mid
    return hi


def pass_probability(n: int, true_rate: float, min_rate: float, confidence: float) -> float:
    """P(the lower bound reaches ``min_rate``) at ``n`` prompts if the true rate is ``true_rate``."""
    if n <= 0:
        return 0.0
    xs = [x for x in range(n + 1) if proportion_lower_bound(x, n, confidence) >= min_rate]
    if not xs:
        return 0.0
    return float(_st.binom.sf(min(xs) - 1, n, true_rate))


def equivalence_rate_verdict(n_equivalent: int, n: int, min_rate: float = 0.90,
                             confidence: float = 0.95, alpha_fail: float = 0.05) -> EquivalenceRateVerdict:
    """Pass if the one-sided lower confidence bound of the equivalence rate is >= ``min_rate``;
    fail only if the rate is shown to be below it (at ``alpha_fail``); else inconclusive.

    ``12/12 equivalent, 95% lower bound 0.779 < 0.90: inconclusive, need at least 29 prompts``.
    """
    _check_confidence(confidence)
    _check_counts(n_equivalent, n)
    if not 0.0 <= min_rate <= 1.0:
        raise ValueError(f"min_rate must be in [0, 1], got {min_rate!r}")
    if not 0.0 < alpha_fail < 0.5:
        raise ValueError(f"alpha_fail must be in (0, 0.5), got {alpha_fail!r}")
    lb = proportion_lower_bound(n_equivalent, n, confidence)
    rate = n_equivalent / n if n else 0.0
    passed = n > 0 and lb >= min_rate
    p_fail = float(_st.binom.cdf(n_equivalent, n, min_rate)) if n > 0 else 1.0
    failed = n > 0 and not passed and p_fail < alpha_fail
    min_n = _min_n_all_equivalent(min_rate, confidence)
    more = 0 if passed else _more_needed(n_equivalent, n, min_rate, confidence)
    power = pass_probability(n, 0.98, min_rate, confidence) if n > 0 else 0.0
    conf = f"{confidence * 100:g}%"
    head = f"{n_equivalent}/{n} equivalent, {conf} lower bound {lb:.3f}"
    if n == 0:
        msg = f"inconclusive: no prompts compared; need at least {min_n} prompts all equivalent for {min_rate:.2f}"
    elif passed:
        msg = f"{head} >= {min_rate:.2f}"
    elif failed:
        msg = (f"{head} < {min_rate:.2f}, and the rate is shown below {min_rate:.2f} "
               f"(p={p_fail:.2g} < {alpha_fail:g}): {n - n_equivalent} not equivalent")
    elif min_n is None:
        msg = f"inconclusive: {head} < {min_rate:.2f}; a required rate of 1.0 can never be shown with confidence"
    else:
        settle = (f"{more} more prompts, all equivalent, would settle it" if more is not None
                  else "no number of further prompts can settle it")
        msg = (f"inconclusive (not shown either way): {head} < {min_rate:.2f}, rate not shown below it "
               f"(p={p_fail:.2g}); {settle}; power at this size {power * 100:.0f}% for a pair whose "
               f"true rate is 0.98 (with none failing, {min_n} prompts suffice)")
    verdict = "pass" if passed else ("fail" if failed else "inconclusive")
    return EquivalenceRateVerdict(passed=passed, n_equivalent=n_equivalent, n=n, rate=rate,
                                  lower_bound=lb, min_rate=min_rate, confidence=confidence,
                                  min_n_all_equivalent=min_n, more_needed=more, message=msg,
                                  verdict=verdict, p_fail=p_fail, alpha_fail=alpha_fail, power_at_0_98=power)


# --------------------------------------------------------------------------------------------
# latency: bootstrap ratio of a statistic

_STAT_RE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def _parse_stat(stat: str) -> Optional[float]:
    """``"mean"`` -> None; ``"p50"`` -> 0.5; ``"p99.9"`` -> 0.999; anything else raises."""
    s = stat.strip().lower()
    if s == "mean":
        return None
    if s == "median":
        return 0.5
    m = _STAT_RE.match(s)
    if m:
        q = float(m.group(1)) / 100.0
        if 0.0 < q < 1.0:
            return q
    raise ValueError(f"unknown statistic {stat!r}: use 'mean', 'median' or a percentile such as 'p50', 'p99', 'p99.9'")


def _as_samples(x: Samples, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if a.size == 0:
        raise ValueError(f"{what}: no samples")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: samples must be finite (got NaN or inf)")
    if np.any(a < 0):
        raise ValueError(f"{what}: latencies must be >= 0")
    return a


def _stat_rows(x: np.ndarray, q: Optional[float]) -> np.ndarray:
    """The statistic of each row of a 2-D array (or of a 1-D array)."""
    if q is None:
        return np.asarray(x.mean(axis=-1), dtype=float)
    return np.asarray(np.quantile(x, q, axis=-1), dtype=float)


def _bootstrap_stat(x: np.ndarray, q: Optional[float], n_resamples: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``n_resamples`` bootstrap replicates of the statistic, vectorised in bounded chunks."""
    n = x.size
    rows = max(1, 4_000_000 // n)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        stop = min(n_resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = _stat_rows(x[idx], q)
    return out


@dataclass(frozen=True)
class RatioCI:
    """Bootstrap CI (percentile method) of ``stat(candidate) / stat(reference)``."""

    stat: str
    ratio: float
    low: float
    high: float
    confidence: float
    ref_value: float
    cand_value: float
    n_ref: int
    n_cand: int
    n_resamples: int
    fail_low: Optional[float] = None  # one-sided lower bound at the fail decision's alpha
    alpha_fail: Optional[float] = None
    runs: Optional[tuple] = None  # (reference runs, candidate runs) when whole runs were resampled

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cluster_bootstrap(x: np.ndarray, groups: Sequence[Any], q: Optional[float], n_resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Two-stage bootstrap: resample whole runs (with replacement), then requests within each
    chosen run. Run-to-run variation (a warm cache, a noisy neighbour, clocks) enters the CI
    instead of being mistaken for a difference between engines."""
    labels = np.asarray(list(groups))
    runs = [x[labels == g] for g in dict.fromkeys(labels.tolist())]
    k = len(runs)
    sizes = {r.size for r in runs}
    if len(sizes) == 1:  # equal runs (the usual case): vectorised, in bounded chunks
        m = sizes.pop()
        table = np.stack(runs)
        out = np.empty(n_resamples)
        rows = max(1, 4_000_000 // (k * m))
        for start in range(0, n_resamples, rows):
            stop = min(n_resamples, start + rows)
            pick = rng.integers(0, k, size=(stop - start, k))
            idx = rng.integers(0, m, size=(stop - start, k, m))
            out[start:stop] = _stat_rows(table[pick[:, :, None], idx].reshape(stop - start, k * m), q)
        return out
    out = np.empty(n_resamples)
    for b in range(n_resamples):
        pick = rng.integers(0, k, size=k)
        parts = [runs[i][rng.integers(0, runs[i].size, size=runs[i].size)] for i in pick]
        out[b] = _stat_rows(np.concatenate(parts)[None, :], q)[0]
    return out


def ratio_ci(ref_samples: Samples, cand_samples: Samples, stat: str = "p50",
             confidence: float = 0.95, n_resamples: int = 2000, seed: Optional[int] = 0,
             alpha_fail: Optional[float] = None, ref_groups: Optional[Sequence[Any]] = None,
             cand_groups: Optional[Sequence[Any]] = None) -> RatioCI:
    """Bootstrap CI of ``stat(cand) / stat(ref)``, resampling the two samples independently; with
    ``ref_groups`` / ``cand_groups`` (the run each sample came from, two or more runs on a side)
    whole runs are resampled first (``_cluster_bootstrap``).

    ``stat`` is ``"mean"``, ``"median"`` or ``"pNN"`` (``"p50"``, ``"p99"``, ``"p99.9"``).
    Vectorised: 500 + 500 samples with 2000 resamples take a few tens of milliseconds.
    """
    _check_confidence(confidence)
    if n_resamples < 100:
        raise ValueError(f"n_resamples must be >= 100, got {n_resamples!r}")
    q = _parse_stat(stat)
    r = _as_samples(ref_samples, "reference")
    c = _as_samples(cand_samples, "candidate")
    r_val, c_val = float(_stat_rows(r, q)), float(_stat_rows(c, q))
    if r_val <= 0:
        raise ValueError(f"reference {stat} is {r_val}: a ratio needs it > 0")
    rng = np.random.default_rng(seed)

    def groups_ok(g: Optional[Sequence[Any]], x: np.ndarray) -> bool:
        return g is not None and len(g) == x.size and len(set(g)) >= 2

    clustered = groups_ok(ref_groups, r) and groups_ok(cand_groups, c)
    if clustered:
        br = _cluster_bootstrap(r, ref_groups, q, n_resamples, rng)  # type: ignore[arg-type]
        bc = _cluster_bootstrap(c, cand_groups, q, n_resamples, rng)  # type: ignore[arg-type]
    else:
        br = _bootstrap_stat(r, q, n_resamples, rng)
        bc = _bootstrap_stat(c, q, n_resamples, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(br > 0, bc / np.where(br > 0, br, 1.0), np.inf)
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(ratios, [a, 1.0 - a])
    fail_low = None
    if alpha_fail is not None:
        # an extreme tail (alpha / gates) is not read off a few thousand replicates: a normal
        # approximation on the log-ratio replicates is stable there
        lr = np.log(ratios[np.isfinite(ratios) & (ratios > 0)])
        if lr.size >= 2:
            fail_low = float(np.exp(lr.mean() - float(_st.norm.ppf(1.0 - alpha_fail)) * lr.std(ddof=1)))
    runs = (len(set(ref_groups)), len(set(cand_groups))) if clustered else None  # type: ignore[arg-type]
    return RatioCI(stat=stat, ratio=c_val / r_val, low=float(lo), high=float(hi),
                   confidence=confidence, ref_value=r_val, cand_value=c_val, n_ref=r.size,
                   n_cand=c.size, n_resamples=n_resamples, fail_low=fail_low, alpha_fail=alpha_fail, runs=runs)


def default_min_samples(stat: str) -> int:
    """Fewest samples per engine for a meaningful bootstrap of ``stat``.

    At least 30, and at least 3 samples beyond the percentile on its rarer side: p50 -> 30,
    p95 -> 60, p99 -> 300, p99.9 -> 3000.
    """
    q = _parse_stat(stat)
    if q is None:
        return 30
    tail = min(q, 1.0 - q)
    return max(30, math.ceil(3.0 / tail - 1e-9))


@dataclass(frozen=True)
class RegressionVerdict:
    """``pass`` / ``fail`` / ``inconclusive`` for one latency statistic."""

    verdict: Literal["pass", "fail", "inconclusive"]
    stat: str
    max_ratio: float
    confidence: float
    n_ref: int
    n_cand: int
    min_samples: int
    ci: Optional[RatioCI]  # None when there were too few samples to compute one
    more_samples_needed: Optional[int]  # per engine, for an inconclusive verdict; None if unknown
    message: str

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def ratio(self) -> Optional[float]:
        return self.ci.ratio if self.ci is not None else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def step_clock_guard(v: "RegressionVerdict", samples: Sequence[float], side: str, metric: str) -> "RegressionVerdict":
    """Samples of one in-process batch share the engine's step clock: when they take few distinct
    values they are one measurement repeated, not independent samples; no verdict from them."""
    import dataclasses

    distinct = len({round(float(x), 6) for x in samples})
    if samples and distinct < max(2, len(samples) // 2) and v.verdict != "inconclusive":
        return dataclasses.replace(
            v, verdict="inconclusive", more_samples_needed=None,
            message=f"{v.message}; but the {side}'s {len(samples)} {metric} samples take only {distinct} "
                    "distinct value(s): requests of one batch share the engine's step clock, so they are "
                    "not independent samples")
    return v


def is_step_clocked(samples: Sequence[float]) -> bool:
    """Whether samples take so few distinct values (fewer than half) that they are one measurement
    repeated: the requests of one in-process batch share the engine's step clock."""
    distinct = len({round(float(x), 6) for x in samples})
    return bool(samples) and distinct < max(2, len(samples) // 2)


def run_level_regression(ref_runs: Sequence[Sequence[float]], cand_runs: Sequence[Sequence[float]], stat: str,
                         max_ratio: float, confidence: float = 0.95,
                         alpha_fail: Optional[float] = None) -> "RegressionVerdict":
    """Slowdown verdict when each run is one measurement (samples of a run share a step clock):
    the statistic is taken per run, and the ratio's CI is a Welch t-interval on the log of the
    per-run statistics, the runs being the independent units (as throughput's CI is). ``pass``
    when the CI lies below ``max_ratio``; ``fail`` when the one-sided bound at ``alpha_fail`` lies
    above it; ``inconclusive`` otherwise, with the runs per engine that would settle it."""
    q = _parse_stat(stat)
    r = np.log([float(_stat_rows(_as_samples(x, "reference"), q)) for x in ref_runs])
    c = np.log([float(_stat_rows(_as_samples(x, "candidate"), q)) for x in cand_runs])
    nr, nc = r.size, c.size
    n_ref, n_cand = sum(len(x) for x in ref_runs), sum(len(x) for x in cand_runs)
    if nr < 2 or nc < 2 or not (np.all(np.isfinite(r)) and np.all(np.isfinite(c))):
        return RegressionVerdict("inconclusive", stat, max_ratio, confidence, n_ref, n_cand, 0, None, None,
                                 f"{stat}: the samples of each run share the engine's step clock, so each run is "
                                 f"one measurement: a CI needs at least 2 runs per engine (have {nr} and {nc}): "
                                 "--parity-latency-runs=3")
    d = float(c.mean() - r.mean())
    vr, vc = float(r.var(ddof=1)) / nr, float(c.var(ddof=1)) / nc
    se = math.sqrt(vr + vc)
    if se > 0:
        df = (vr + vc) ** 2 / ((vr ** 2 / (nr - 1) if vr else 0.0) + (vc ** 2 / (nc - 1) if vc else 0.0))
    else:
        df = float(nr + nc - 2)
    t = float(_st.t.ppf(1.0 - (1.0 - confidence) / 2.0, df))
    lo, hi = math.exp(d - t * se), math.exp(d + t * se)
    fail_low = math.exp(d - float(_st.t.ppf(1.0 - alpha_fail, df)) * se) if alpha_fail is not None else lo
    ratio = math.exp(d)
    ci = RatioCI(stat=stat, ratio=ratio, low=lo, high=hi, confidence=confidence,
                 ref_value=float(np.exp(r.mean())), cand_value=float(np.exp(c.mean())), n_ref=n_ref, n_cand=n_cand,
                 n_resamples=0, fail_low=fail_low, alpha_fail=alpha_fail, runs=(nr, nc))
    conf = f"{confidence * 100:g}%"
    head = (f"{stat} ratio {ratio:.3f} (geometric mean of per-run {stat}: {ci.cand_value:.4g}s / "
            f"{ci.ref_value:.4g}s), {conf} CI {lo:.3f}-{hi:.3f} (Welch t over runs: {nr} reference, {nc} "
            "candidate; the requests of one run share the engine's step clock, so the runs are the samples)")
    if hi <= max_ratio:
        return RegressionVerdict("pass", stat, max_ratio, confidence, n_ref, n_cand, 0, ci, None,
                                 f"{head} lies below {max_ratio:.2f}: no regression")
    if fail_low > max_ratio:
        return RegressionVerdict("fail", stat, max_ratio, confidence, n_ref, n_cand, 0, ci, None,
                                 f"{head} lies above {max_ratio:.2f}: slower")
    need = None
    gap = abs(math.log(max_ratio) - d)
    if gap > 0 and se > 0:
        s2 = vr * nr + vc * nc  # per-run variance, summed over the two sides
        for m in range(2, 10_001):
            if float(_st.t.ppf(1.0 - (1.0 - confidence) / 2.0, 2 * m - 2)) * math.sqrt(s2 / m) < gap:
                need = m
                break
    tail = (f"need about {need} runs per engine (--parity-latency-runs={need})" if need is not None
            else "the ratio sits at the threshold: more runs are unlikely to settle it")
    return RegressionVerdict("inconclusive", stat, max_ratio, confidence, n_ref, n_cand, 0, ci, None,
                             f"{head} straddles {max_ratio:.2f}: inconclusive, {tail}")


def _needed_more(ci: RatioCI, max_ratio: float) -> Optional[int]:
    """Samples per engine to add so the CI would clear ``max_ratio``, assuming the estimate stays
    put and the CI's half-width (log scale, on the side facing the threshold) shrinks as 1/sqrt(n).
    """
    est, thr = math.log(ci.ratio), math.log(max_ratio)
    dist = abs(thr - est)
    if dist < 1e-12 or not math.isfinite(ci.high) or ci.low <= 0:
        return None
    half = (math.log(ci.high) - est) if est < thr else (est - math.log(ci.low))
    if half <= 0:
        return None
    n_now = min(ci.n_ref, ci.n_cand)
    factor = (half / dist) ** 2
    if factor > 1e6:
        return None
    return max(1, math.ceil(n_now * factor) - n_now)


def regression_verdict(ref: Samples, cand: Samples, stat: str = "p50",
                       max_ratio: float = 1.10, confidence: float = 0.95,
                       min_samples: Optional[int] = None, n_resamples: int = 2000,
                       seed: Optional[int] = 0, alpha_fail: Optional[float] = None,
                       ref_groups: Optional[Sequence[Any]] = None,
                       cand_groups: Optional[Sequence[Any]] = None) -> RegressionVerdict:
    """Is the candidate's latency ``stat`` more than ``max_ratio`` times the reference's?

    ``fail`` only when the bootstrap CI of the ratio lies wholly above ``max_ratio`` (with
    ``alpha_fail``: when its one-sided lower bound at that alpha does, the family-wise share of
    one decision); ``pass``
    when it lies wholly below; otherwise ``inconclusive`` with "need about N more samples".
    Fewer than ``min_samples`` per engine (default :func:`default_min_samples`, e.g. 300 for p99)
    is ``inconclusive`` without a bootstrap.
    """
    _check_confidence(confidence)
    if not max_ratio > 0:
        raise ValueError(f"max_ratio must be > 0, got {max_ratio!r}")
    _parse_stat(stat)
    need = default_min_samples(stat) if min_samples is None else int(min_samples)
    n_ref, n_cand = len(ref), len(cand)
    conf = f"{confidence * 100:g}%"

    def verdict(v: Literal["pass", "fail", "inconclusive"], ci: Optional[RatioCI],
                more: Optional[int], msg: str) -> RegressionVerdict:
        return RegressionVerdict(verdict=v, stat=stat, max_ratio=max_ratio, confidence=confidence,
                                 n_ref=n_ref, n_cand=n_cand, min_samples=need, ci=ci,
                                 more_samples_needed=more, message=msg)

    if min(n_ref, n_cand) < need:
        return verdict("inconclusive", None, need - min(n_ref, n_cand),
                       f"{stat}: too few samples ({n_ref} reference, {n_cand} candidate); "
                       f"{stat} needs at least {need} per engine")
    ci = ratio_ci(ref, cand, stat=stat, confidence=confidence, n_resamples=n_resamples, seed=seed,
                  alpha_fail=alpha_fail, ref_groups=ref_groups, cand_groups=cand_groups)
    head = (f"{stat} ratio {ci.ratio:.3f} ({ci.cand_value:.4g}s / {ci.ref_value:.4g}s), "
            f"{conf} CI {ci.low:.3f}-{ci.high:.3f}")
    if ci.runs:
        head += f" (whole runs resampled: {ci.runs[0]} reference, {ci.runs[1]} candidate)"
    fail_bound = ci.fail_low if ci.fail_low is not None else ci.low
    if fail_bound > max_ratio:
        why = (f"; one-sided bound {fail_bound:.3f} at alpha {alpha_fail:g}" if ci.fail_low is not None else "")
        return verdict("fail", ci, None, f"{head} lies above {max_ratio:.2f}{why}: candidate is slower")
    if ci.high < max_ratio:
        return verdict("pass", ci, None, f"{head} lies below {max_ratio:.2f}: no regression")
    more = _needed_more(ci, max_ratio)
    tail = (f"need about {more} more samples per engine" if more is not None
            else "the estimate sits at the threshold: more samples are unlikely to settle it")
    return verdict("inconclusive", ci, more, f"{head} straddles {max_ratio:.2f}: {tail}")


# --------------------------------------------------------------------------------------------
# SLA percentile


@dataclass(frozen=True)
class PercentileCI:
    """Distribution-free CI of a population percentile from two order statistics.

    ``low`` / ``high`` are ``None`` when there are too few samples for that side (e.g. fewer than
    ~300 samples for a 95 % upper bound of p99). ``coverage`` is the exact binomial coverage.
    """

    q: float
    estimate: float
    low: Optional[float]
    high: Optional[float]
    confidence: float
    coverage: float
    n: int

    def meets(self, limit: float) -> Optional[bool]:
        """SLA check: True if the percentile is below ``limit`` with confidence (upper bound
        ≤ limit), False if it is above (lower bound > limit), None if undecided."""
        if self.high is not None and self.high <= limit:
            return True
        if self.low is not None and self.low > limit:
            return False
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile_ci(samples: Samples, q: float, confidence: float = 0.95) -> PercentileCI:
    """Two-sided, equal-tailed order-statistic CI for the ``q`` quantile (``q`` in (0, 1)).

    The count of samples below the true quantile is Binomial(n, q); the bounds are the order
    statistics whose ranks cut off at most (1 - confidence)/2 of that distribution on each side.
    """
    _check_confidence(confidence)
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1) (0.99 for p99), got {q!r}")
    x = np.sort(np.asarray(samples, dtype=float).ravel())
    n = x.size
    if n == 0:
        raise ValueError("percentile_ci: no samples")
    if not np.all(np.isfinite(x)):
        raise ValueError("percentile_ci: samples must be finite")
    a = (1.0 - confidence) / 2.0
    cdf = _st.binom.cdf(np.arange(n + 1), n, q)  # cdf[k] = P(B <= k)
    # lower: X_(r) with r - 1 = largest k where P(B <= k) <= a  (1-based rank r)
    lows = np.nonzero(cdf <= a)[0]
    r: Optional[int] = int(lows[-1]) + 1 if lows.size else None
    # upper: X_(s) with s - 1 = smallest k where P(B <= k) >= 1 - a, needing s <= n
    highs = np.nonzero(cdf[:n] >= 1.0 - a)[0]
    s: Optional[int] = int(highs[0]) + 1 if highs.size else None
    below = float(cdf[r - 1]) if r is not None else 0.0
    above = float(cdf[s - 1]) if s is not None else 1.0
    return PercentileCI(q=q, estimate=float(np.quantile(x, q)),
                        low=float(x[r - 1]) if r is not None else None,
                        high=float(x[s - 1]) if s is not None else None,
                        confidence=confidence, coverage=above - below, n=n)


# --------------------------------------------------------------------------------------------
# paired accuracy


def _tango_z(b: float, c: float, n: int, delta: float) -> float:
    """Tango's (1998) score statistic for H0: p_b - p_c = delta on paired binary data.

    ``b`` = items the reference got right and the candidate wrong, ``c`` = the reverse. With
    delta = 0 it reduces to McNemar's z = (b - c) / sqrt(b + c).
    """
    A = 2.0 * n
    B = -b - c + (2.0 * n - b + c) * delta
    C = -c * delta * (1.0 - delta)
    disc = max(B * B - 4.0 * A * C, 0.0)
    p_c = (math.sqrt(disc) - B) / (2.0 * A)  # restricted MLE of p_c
    var = n * (2.0 * p_c + delta * (1.0 - delta))
    num = b - c - n * delta
    if var <= 0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def _tango_bound(b: int, c: int, n: int, z: float) -> float:
    """The delta where Tango's z equals ``z`` (z is decreasing in delta): a confidence bound."""
    lo, hi = -1.0 + 1e-12, 1.0 - 1e-12
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if _tango_z(b, c, n, mid) > z:
            lo = mid
        else:
            hi = mid
    mid = (lo + hi) / 2.0
    return -1.0 if mid < -1.0 + 1e-9 else (1.0 if mid > 1.0 - 1e-9 else mid)


def _tango_null_var(p_b: float, p_c: float, delta: float) -> float:
    """Per-item variance of the paired difference under H0 (restricted MLE from proportions)."""
    A, B, C = 2.0, -p_b - p_c + (2.0 - p_b + p_c) * delta, -p_c * delta * (1.0 - delta)
    pc0 = (math.sqrt(max(B * B - 4.0 * A * C, 0.0)) - B) / (2.0 * A)
    return 2.0 * pc0 + delta * (1.0 - delta)


@dataclass(frozen=True)
class PairedAccuracyVerdict:
    """Candidate vs reference accuracy on the same graded items.

    ``drop`` = reference accuracy - candidate accuracy (positive: the candidate is worse);
    ``drop_low`` / ``drop_high`` = one-sided (1 - alpha) bounds from Tango's score test, so
    ``[drop_low, drop_high]`` is a (1 - 2 alpha) interval, as in TOST.
    """

    verdict: Literal["equivalent", "worse", "inconclusive"]
    n: int
    ref_correct: int
    cand_correct: int
    b: int  # reference right, candidate wrong
    c: int  # reference wrong, candidate right
    ref_accuracy: float
    cand_accuracy: float
    ref_ci: tuple[float, float]  # Clopper-Pearson, confidence 1 - alpha
    cand_ci: tuple[float, float]
    drop: float
    drop_low: float
    drop_high: float
    max_drop: float
    alpha: float
    mcnemar_p: float  # exact, two-sided: binomtest(b, b + c, 0.5)
    p_not_worse: float  # non-inferiority: H0 drop >= max_drop
    p_worse: float  # one-sided exact McNemar: H0 the candidate is not less accurate
    power_if_equal: float  # power of the non-inferiority test at this n if the true drop were 0
    items_needed: Optional[int]  # total items for 80 % power at the observed rates (inconclusive)
    message: str

    @property
    def power(self) -> float:
        return self.power_if_equal

    @property
    def needed(self) -> Optional[int]:
        return self.items_needed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _items_needed(p_b: float, p_c: float, margin: float, alpha: float, power: float = 0.80) -> Optional[int]:
    drop = p_b - p_c
    gap = abs(margin - drop)
    if gap < 1e-9:
        return None
    za, zb = _st.norm.ppf(1 - alpha), _st.norm.ppf(power)
    v0 = _tango_null_var(p_b, p_c, margin)
    v1 = max(p_b + p_c - drop * drop, 0.0)
    return int(math.ceil(float((za * math.sqrt(v0) + zb * math.sqrt(v1)) / gap) ** 2))


def paired_accuracy(ref_correct: Outcomes, cand_correct: Outcomes,
                    max_drop: float = 0.01, alpha: float = 0.05,
                    alpha_equivalence: Optional[float] = None) -> PairedAccuracyVerdict:
    """Compare paired per-item correctness of two engines.

    * ``worse``: the candidate is shown less accurate than the reference (one-sided exact McNemar,
      ``binomtest(b, b + c, 0.5, "greater")`` below ``alpha``, the family-wise alpha share of one
      decision) and its observed drop reaches ``max_drop`` (the drop the user allows). A measured
      difference beyond the user's bound, never a missed proof of equivalence;
    * ``equivalent``: the candidate is shown not worse by ``max_drop`` or more (one-sided Tango
      non-inferiority test at ``alpha_equivalence``, default ``alpha``);
    * ``inconclusive``: neither; the message says about how many items would settle it.
    """
    if len(ref_correct) != len(cand_correct):
        raise ValueError(f"ref_correct and cand_correct differ in length ({len(ref_correct)} vs {len(cand_correct)})")
    if not 0.0 <= max_drop < 1.0:
        raise ValueError(f"max_drop must be in [0, 1), got {max_drop!r}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    a_eq = alpha if alpha_equivalence is None else float(alpha_equivalence)
    if not 0.0 < a_eq < 0.5:
        raise ValueError(f"alpha_equivalence must be in (0, 0.5), got {alpha_equivalence!r}")
    r = np.asarray(ref_correct, dtype=bool)
    k = np.asarray(cand_correct, dtype=bool)
    n = int(r.size)
    if n == 0:
        raise ValueError("paired_accuracy: no items")
    b = int(np.sum(r & ~k))
    c = int(np.sum(~r & k))
    rc, kc = int(r.sum()), int(k.sum())
    conf = 1.0 - a_eq
    mcnemar_p = float(_st.binomtest(b, b + c, 0.5).pvalue) if b + c > 0 else 1.0
    p_drop = float(_st.binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c > 0 else 1.0
    z_a = float(_st.norm.ppf(1.0 - a_eq))
    drop = (b - c) / n
    drop_high = _tango_bound(b, c, n, -z_a)
    drop_low = _tango_bound(b, c, n, z_a)
    z_m = _tango_z(b, c, n, max_drop)
    p_not_worse = float(_st.norm.cdf(z_m))
    # power to show non-inferiority at this n if the engines were equally accurate, with the
    # observed rate of discordant items split evenly
    pd = (b + c) / n
    v0 = _tango_null_var(pd / 2, pd / 2, max_drop)
    if pd > 0:
        power = float(_st.norm.cdf((max_drop * math.sqrt(n) - z_a * math.sqrt(v0)) / math.sqrt(pd)))
    else:
        power = 1.0 if max_drop * math.sqrt(n) > z_a * math.sqrt(v0) else 0.0

    def pct(x: float) -> str:
        return f"{x * 100:.1f}%"

    head = (f"accuracy {pct(rc / n)} -> {pct(kc / n)} on {n} items (drop {pct(drop)}, "
            f"{(1 - 2 * a_eq) * 100:g}% CI {pct(drop_low)} to {pct(drop_high)}; "
            f"{b} lost, {c} gained, McNemar p={mcnemar_p:.3g})")
    items: Optional[int] = None
    if p_drop < alpha and drop >= max_drop:
        verdict: Literal["equivalent", "worse", "inconclusive"] = "worse"
        msg = (f"worse: {head}; the candidate is shown less accurate (one-sided McNemar p={p_drop:.3g} < {alpha:.3g}) "
               f"and lost at least the allowed {pct(max_drop)}")
    elif p_not_worse < a_eq:
        verdict = "equivalent"
        msg = f"equivalent: {head}; drop < {pct(max_drop)} shown (p={p_not_worse:.3g})"
    else:
        verdict = "inconclusive"
        # with no discordant items yet, plan for the margin itself, not a zero variance
        items = _items_needed(b / n, c / n, max_drop, a_eq)
        need = (f"need about {items} items" if items is not None
                else "the observed drop equals the margin: no sample size will settle it")
        msg = (f"inconclusive (neither worse nor shown within the margin): {need}; power at this size "
               f"{power * 100:.0f}% if the engines were equally accurate; {head}")
    return PairedAccuracyVerdict(
        verdict=verdict, n=n, ref_correct=rc, cand_correct=kc, b=b, c=c,
        ref_accuracy=rc / n, cand_accuracy=kc / n,
        ref_ci=proportion_interval(rc, n, conf), cand_ci=proportion_interval(kc, n, conf),
        drop=drop, drop_low=drop_low, drop_high=drop_high, max_drop=max_drop, alpha=alpha,
        mcnemar_p=mcnemar_p, p_not_worse=p_not_worse, p_worse=p_drop, power_if_equal=power,
        items_needed=items, message=msg)
