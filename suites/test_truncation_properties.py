"""Property-based edge cases across the pair (benchmark parity): Hypothesis draws requests
(unicode / code / whitespace prompts, max_tokens, min_tokens, ignore_eos, stop strings) and the
truncation contract must hold on both engines alike. On failure Hypothesis shrinks to a minimal
request and prints it as a ``GenerationRequest(...)`` you can paste into a test to re-run.

Each example is one call per engine (the requests are drawn at run time), so the example count
is small; raise it with ``--hypothesis-profile`` or ``ENGINEPARITY_PROPERTY_EXAMPLES``.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings

from pytest_engineparity import strategies as eps
from pytest_engineparity.session import ParityMismatch

pytestmark = pytest.mark.migration_step("benchmark-parity")
EXAMPLES = int(os.environ.get("ENGINEPARITY_PROPERTY_EXAMPLES", "12"))


def contract_violations(req, c, name):
    """What one engine's completion breaks of the request's own contract."""
    out = []
    if not c.ok:
        return out
    n = len(c.token_ids)
    if n > req.max_tokens:
        out.append(f"{name}: {n} tokens > max_tokens {req.max_tokens}")
    if c.finish_reason == "length" and req.ignore_eos and n != req.max_tokens:
        out.append(f"{name}: finish 'length' with ignore_eos after {n} tokens, not max_tokens {req.max_tokens}")
    if c.finish_reason not in ("stop", "length"):
        out.append(f"{name}: finish_reason {c.finish_reason!r}")
    if isinstance(c.stop_reason, str):
        if req.include_stop_str_in_output and not c.text.endswith(c.stop_reason):
            out.append(f"{name}: stop string {c.stop_reason!r} not kept although include_stop_str_in_output")
        if not req.include_stop_str_in_output and c.stop_reason in c.text:
            out.append(f"{name}: stop string {c.stop_reason!r} leaked into the text")
    if not req.include_stop_str_in_output:
        leaked = [s for s in req.stop if s in c.text]
        if leaked:
            out.append(f"{name}: text contains stop string(s) {leaked}")
    return out


@given(req=eps.requests(kind="text", max_tokens=(1, 24)))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_truncation_contract_holds_on_both(engine_pair, req):
    res = engine_pair.run(req)
    r, c = res.reference, res.candidate
    problems = contract_violations(req, r, res.ref_name) + contract_violations(req, c, res.cand_name)
    if r.ok != c.ok:
        problems.append(f"one engine rejected the request: {res.ref_name} {r.error!r}, {res.cand_name} {c.error!r}")
    elif r.ok and res.comparison.exact and r.finish_reason != c.finish_reason:
        problems.append(f"same tokens, different finish_reason: {r.finish_reason} vs {c.finish_reason}")
    if problems:
        raise ParityMismatch("truncation contract broken:\n  " + "\n  ".join(problems) + "\n" + res.explain())
