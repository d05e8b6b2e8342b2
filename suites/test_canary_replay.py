"""Canary (migration step 4): replay production traffic on both engines and compare error rates,
quality and latency on that sample.

Give your captured traffic with --parity-prompts=FILE.jsonl (OpenAI request bodies, completions or
chat, one per line) and --parity-sample=0.10 for a 10 % seeded sample. Without --parity-prompts
the built-in prompts/traffic-sample.jsonl is replayed.
"""

import pytest

pytestmark = [pytest.mark.migration_step("canary"), pytest.mark.parity_prompts("prompts/traffic-sample.jsonl")]


def test_replayed_request_close(engine_pair, parity_request):
    engine_pair.assert_close(parity_request)


def test_error_rate_not_worse(engine_pair, parity_requests):
    engine_pair.assert_error_rate_parity(parity_requests)


def test_quality_on_replayed_traffic(engine_pair, parity_requests):
    engine_pair.assert_suite_equivalent(requests=parity_requests, name="canary-equivalence-rate")
