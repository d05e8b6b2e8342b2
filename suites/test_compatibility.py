"""Driver/engine compatibility and the candidate's baseline (migration step 2: staging-compile).

* The machine fingerprint (GPUs, driver, CUDA, engine packages) is taken and recorded.
* Each engine of the pair that is a TensorRT-LLM engine directory is checked against this machine
  with its build sidecar (``engineparity fingerprint --engine-dir DIR`` on the build machine):
  GPU architecture or TensorRT / TensorRT-LLM version changed -> rebuild required; driver older
  than at build time or below the CUDA minimum -> fail; driver newer -> a baseline comparison is
  required. Engines that are not engine directories (vLLM, transformers, a server) skip, saying so.
* With ``--parity-baseline=DIR`` the candidate (the engine being migrated to; with one engine,
  that engine) is compared with ``DIR/candidate/baseline.json``: per prompt (hard changes), the
  suite's equivalence rate, and latency. ``--parity-baseline-update`` rewrites it instead.
"""

import pytest

pytestmark = pytest.mark.migration_step("staging-compile")

PROMPT_FILES = ("prompts/chat.jsonl", "prompts/code.jsonl", "prompts/reasoning.jsonl",
                "prompts/multilingual.jsonl", "prompts/structured.jsonl", "prompts/long_context.jsonl")


def test_machine_fingerprint_taken(engine_pair):
    engine_pair.record_machine_fingerprint()


@pytest.mark.parametrize("role", ["reference", "candidate"])
def test_engine_dir_compatible_with_this_machine(engine_pair, role):
    res = engine_pair.engine_dir_compatibility(role)
    if res.skip_reason:
        pytest.skip(res.skip_reason)
    engine_pair.assert_engine_dir_compatible(role)


def test_driver_change_is_compared_with_a_baseline(engine_pair):
    checked = [r for r in ("reference", "candidate") if not engine_pair.engine_dir_compatibility(r).skip_reason]
    if not checked:
        pytest.skip("no TensorRT-LLM engine directory in the pair: no build-time driver to compare with")
    if not engine_pair.assert_driver_change_compared():
        pytest.skip("the driver did not change since the engine was built (or the build record has none)")


def _need_baseline(engine_pair):
    if engine_pair.baseline_dir() is None:
        pytest.skip("no --parity-baseline=DIR: the candidate is not compared with a saved baseline")


@pytest.mark.parity_prompts(*PROMPT_FILES)
def test_candidate_prompt_matches_baseline(engine_pair, parity_request):
    _need_baseline(engine_pair)
    engine_pair.assert_prompt_matches_baseline(parity_request, "candidate")


def test_candidate_outputs_match_baseline(engine_pair):
    _need_baseline(engine_pair)
    engine_pair.assert_matches_baseline("candidate")


def test_candidate_latency_matches_baseline(engine_pair):
    _need_baseline(engine_pair)
    if engine_pair.assert_latency_matches_baseline("candidate") is None:
        pytest.skip("--parity-baseline-update: the baseline was rewritten, nothing to compare")
