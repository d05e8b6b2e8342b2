"""Rollback readiness (migration step 5: cutover).

After cutover the reference (the old engine) stays as the rollback target. This suite checks
that it still answers every prompt (a rejection both engines share, e.g. an over-length prompt,
counts as an answer) and, with ``--parity-baseline=DIR``, that it still matches its own baseline
``DIR/reference/baseline.json`` when one exists (``--parity-baseline-update`` records it).
With one engine (baseline-only mode) there is no separate rollback target: the suite skips.
"""

import pytest

pytestmark = pytest.mark.migration_step("cutover")

PROMPT_FILES = ("prompts/chat.jsonl", "prompts/code.jsonl", "prompts/reasoning.jsonl",
                "prompts/multilingual.jsonl", "prompts/structured.jsonl", "prompts/long_context.jsonl")


def _need_rollback_target(engine_pair):
    if engine_pair.single_engine:
        pytest.skip("baseline-only mode (one engine): no separate reference to roll back to")


def _need_reference_baseline(engine_pair):
    _need_rollback_target(engine_pair)
    path = engine_pair.baseline_file("reference")
    if path is None:
        pytest.skip("no --parity-baseline=DIR: the reference is not compared with a saved baseline")
    if not path.exists() and engine_pair.baseline_mode != "update":
        pytest.skip(f"no reference baseline at {path}: record one with --parity-baseline-update")


@pytest.mark.parity_prompts(*PROMPT_FILES)
def test_reference_still_answers(engine_pair, parity_request):
    _need_rollback_target(engine_pair)
    engine_pair.assert_still_answers(parity_request, "reference")


def test_reference_outputs_match_baseline(engine_pair):
    _need_reference_baseline(engine_pair)
    engine_pair.assert_matches_baseline("reference")


def test_reference_latency_matches_baseline(engine_pair):
    _need_reference_baseline(engine_pair)
    if engine_pair.assert_latency_matches_baseline("reference") is None:
        pytest.skip("--parity-baseline-update: the baseline was rewritten, nothing to compare")
