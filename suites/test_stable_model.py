"""Stable model (migration step 1): the reference — the model and engine you serve today — answers
the suite and reproduces itself. Run with the pair you are about to compare; only the reference
is judged here.

* every prompt answered (prompts over the context limit must be rejected, not answered);
* the reference against itself (same prompts, shuffled order, a different batch split) is
  equivalent by the same layered rule as the pair, with the same confidence bound.
"""

import pytest

pytestmark = pytest.mark.migration_step("stable-model")

PROMPT_FILES = ("prompts/chat.jsonl", "prompts/code.jsonl", "prompts/reasoning.jsonl",
                "prompts/multilingual.jsonl", "prompts/structured.jsonl", "prompts/long_context.jsonl")


@pytest.mark.parity_prompts(*PROMPT_FILES)
def test_reference_answers(engine_pair, parity_request):
    ref = engine_pair.run(parity_request).reference
    assert ref.ok, f"{engine_pair.reference.name} rejected {parity_request.label()}: {ref.error}"
    assert ref.token_ids, f"{engine_pair.reference.name} returned no tokens for {parity_request.label()}"


def test_reference_reproduces_itself(engine_pair):
    engine_pair.assert_self_consistent("reference")
