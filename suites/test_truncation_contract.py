"""The truncation contract of the pair (migration step 3: benchmark parity).

Each test is one family of edge cases, sent to both engines as one batch per engine and judged
case by case (see ``pytest_engineparity.checks.truncation``); each records its own named check:
``truncation-max-tokens``, ``truncation-stop``, ``truncation-eos``, ``truncation-overlength``,
``truncation-side`` and ``truncation-limits`` (the limits table of the report).
"""

import pytest

pytestmark = pytest.mark.migration_step("benchmark-parity")


def test_max_tokens(engine_pair):
    # output length <= max_tokens; exactly max_tokens and "length" with EOS ignored; same finish
    engine_pair.assert_max_tokens_contract()


def test_stop_strings_and_ids(engine_pair):
    # stop strings/ids taken from the reference's own greedy output: cut point, inclusion,
    # finish_reason "stop", stop_reason; multi-token, mid-token and overlapping stop strings
    engine_pair.assert_stop_contract()


def test_eos_ignore_eos_min_tokens(engine_pair):
    engine_pair.assert_eos_contract()


def test_prompt_length_limits(engine_pair):
    # prompts of exact token lengths just below, at and just above each engine's limit
    engine_pair.assert_prompt_limits()


def test_truncate_prompt_tokens_side(engine_pair):
    engine_pair.assert_truncation_side()


def test_limits_table(engine_pair):
    engine_pair.record_limits()
