"""Request rendering and termination parity (migration step 3: benchmark parity).

Did both engines see the same prompt, and do they stop the same way? A chat template applied on
one side only or in another version, BOS added twice, an EOS list read on one side only: the
answers often stay fluent, so the semantic gate can pass them. Here (see
``pytest_engineparity.checks.rendering``):

- a pre-flight: a handful of chat and completion prompts, rendered by both engines;
- per prompt, the prompt token ids each engine used (or its reported prompt token count), a
  difference shown aligned at the first differing token and named (BOS doubled, template differs);
- over every request the suite declared: the same (check ``prompt-parity``), then termination
  (check ``termination-parity``): the EOS each engine honours, special tokens in output text,
  and paired tests of finish_reason (stopped vs ran to max_tokens) and output length.

The prompts are the semantic-parity set, so they ride the same suite batch.
"""

import pytest

pytestmark = pytest.mark.migration_step("benchmark-parity")

PROMPT_FILES = ("prompts/chat.jsonl", "prompts/code.jsonl", "prompts/reasoning.jsonl",
                "prompts/multilingual.jsonl", "prompts/structured.jsonl", "prompts/long_context.jsonl")


def test_rendering_preflight(engine_pair):
    engine_pair.assert_rendering_preflight()


@pytest.mark.parity_prompts(*PROMPT_FILES)
def test_prompt_rendered_alike(engine_pair, parity_request):
    check = engine_pair.assert_prompt_rendered_alike(parity_request)
    if check.status == "unchecked":
        pytest.skip(check.why)


@pytest.mark.parity_prompts(*PROMPT_FILES)
def test_prompt_parity(engine_pair, parity_requests):
    # every request the collected tests declared, each engine having run them as one batch
    result = engine_pair.assert_prompt_parity()
    if result.verdict == "skip":
        pytest.skip(result.detail)


@pytest.mark.parity_prompts(*PROMPT_FILES)
def test_termination_parity(engine_pair, parity_requests):
    engine_pair.assert_termination_parity()
