"""Semantic parity of the pair on the built-in prompt set (migration step 3: benchmark parity).

Each prompt runs once per engine, all prompts in one batch per engine. A prompt fails only on
hard evidence (one engine errors, or a token outside the other engine's top-k before the outputs
fork); whether forks stay rare and harmless is the suite-level gate, which passes only if the
one-sided lower confidence bound of the equivalence rate reaches --parity-min-equivalence.
"""

import pytest

pytestmark = pytest.mark.migration_step("benchmark-parity")

PROMPT_FILES = ("prompts/chat.jsonl", "prompts/code.jsonl", "prompts/reasoning.jsonl",
                "prompts/multilingual.jsonl", "prompts/structured.jsonl", "prompts/long_context.jsonl")


@pytest.mark.parity_prompts(*PROMPT_FILES)
def test_prompt_close(engine_pair, parity_request):
    engine_pair.assert_close(parity_request)


def test_suite_equivalence_rate(engine_pair):
    # covers every request the collected tests declared, each engine having run them as one batch
    engine_pair.assert_suite_equivalent()
