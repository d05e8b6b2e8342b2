"""The TensorRT-LLM adapter against the contract double at four TensorRT-LLM versions, each pinned
to its facts file (``pytest_engineparity/engines/data/trtllm-<series>.json``, read from
TensorRT-LLM's source).

The double plays the version named by ``TRTLLM_DOUBLE_VERSION`` (tests/trtllm_double/tensorrt_llm/
_versions.py); each test here imports it afresh at that version. Outputs are real: the double
generates with transformers on the embedded SmolLM2 weights. Nothing here has run against a real
TensorRT-LLM install.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from pytest_engineparity.engines.base import STOP_TOKEN_IDS_AND_TEXT, EngineSpec, EngineSpecError
from pytest_engineparity.engines.trtllm import NON_PRODUCTION_TIMINGS, TRTLLMEngine, version_series
from pytest_engineparity.types import GenerationRequest

HERE = Path(__file__).resolve().parent
DOUBLE_DIR = HERE / "trtllm_double"
FACTS_DIR = HERE.parent / "pytest_engineparity" / "engines" / "data"

# the version each series is played at: the pinned version of its facts file; main's version.py
# was not read (facts: version_file null), so a 1.3 pre-release stands for it
VERSIONS = {"0.17": "0.17.0.post1", "1.0": "1.0.0rc4", "1.2": "1.2.0rc2", "main": "1.3.0rc0"}
ONE_X = ("1.0", "1.2", "main")
PROMPT = "The capital of France is"


def facts(series: str) -> dict[str, Any]:
    return json.loads((FACTS_DIR / f"trtllm-{series}.json").read_text())["facts"]


def _purge() -> None:
    for name in [m for m in sys.modules if m == "tensorrt_llm" or m.startswith("tensorrt_llm.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def hf_dir() -> Path:
    from pytest_engineparity.models import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="module")
def tok(hf_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(hf_dir))


@pytest.fixture(scope="module", params=list(VERSIONS), ids=[f"trtllm-{s}" for s in VERSIONS])
def double(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """(series, the tensorrt_llm double imported at that series' version)."""
    import torch

    series = request.param
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _purge()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRTLLM_DOUBLE_VERSION", VERSIONS[series])
        mp.syspath_prepend(str(DOUBLE_DIR))
        import tensorrt_llm

        assert Path(tensorrt_llm.__file__).is_relative_to(DOUBLE_DIR)
        try:
            yield series, tensorrt_llm
        finally:
            _purge()
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ckpt_engine(double: tuple[str, Any], hf_dir: Path) -> Iterator[tuple[str, TRTLLMEngine, Any]]:
    """The adapter on the checkpoint (PyTorch backend), started at this version (1.x only)."""
    series, _ = double
    if series not in ONE_X:
        pytest.skip("the adapter refuses tensorrt_llm before 1.0 (test_pre_1_0_is_refused...)")
    eng = TRTLLMEngine(EngineSpec(kind="trtllm", target=str(hf_dir), args={"max_seq_len": 512}))
    info = eng.start()
    try:
        yield series, eng, info
    finally:
        eng.close()


# -- the double is the version its facts describe ----------------------------------------------------


def test_double_reports_the_facts_version(double: tuple[str, Any]) -> None:
    series, trt = double
    pinned = facts(series)["version_file"]["value"]
    assert version_series(trt.__version__) == series
    if pinned is not None:
        assert trt.__version__ == pinned


def test_tensorrt_engine_module_exists_as_the_facts_say(double: tuple[str, Any]) -> None:
    series, trt = double
    said = facts(series)["llm_classes"]["value"]
    exists = str(said.get("tensorrt_llm._tensorrt_engine.LLM") or said.get("tensorrt_llm._tensorrt_engine")).startswith("exists")
    if exists:
        from tensorrt_llm._tensorrt_engine import LLM  # noqa: F401
    else:
        with pytest.raises(ImportError, match="tensorrt_llm._tensorrt_engine"):
            import tensorrt_llm._tensorrt_engine  # noqa: F401
        # and the one LLM class is the TensorRT one (it builds engines)
        assert trt.LLM._backend == "tensorrt"


def test_sampling_params_fields_follow_the_facts(double: tuple[str, Any]) -> None:
    import dataclasses

    series, trt = double
    fields = {f.name for f in dataclasses.fields(trt.SamplingParams)}
    value = facts(series)["sampling_params_fields"]["value"]
    if series == "0.17":  # no logprobs field: return_log_probs (facts inferred_from_callers)
        assert "logprobs" not in fields and "return_log_probs" in fields and "beam_width" in fields
        assert any(x.startswith("return_log_probs") for x in value["inferred_from_callers"])
        return
    assert "logprobs" in fields
    if "fields" in value:  # read directly (1.0, 1.2): the double's fields are a subset of the real ones
        real = {f.split(" ")[0] for f in value["fields"]}
        assert fields <= real, fields - real
        assert "max_tokens (32)" in value["fields"] and trt.SamplingParams().max_tokens == 32


def test_completion_output_logprobs_default_to_an_empty_list(double: tuple[str, Any]) -> None:
    series, _ = double
    from tensorrt_llm.executor.result import CompletionOutput

    if series != "0.17":  # 0.17's result.py is not in the facts
        assert "default []" in facts(series)["completion_output"]["value"]["CompletionOutput"]["logprobs"]
    assert CompletionOutput(index=0).logprobs == []


def test_greedy_rule_follows_the_facts(double: tuple[str, Any]) -> None:
    series, trt = double
    sp = trt.SamplingParams(temperature=0.0)
    if series in ("0.17", "1.0"):
        # 1.0: greedy from top_k / top_p alone, the temperature ignored
        assert "temperature ignored" in facts("1.0")["sampling_params_fields"]["value"]["greedy"]
        assert sp._greedy_decoding and trt.SamplingParams(temperature=0.7)._greedy_decoding
        assert not trt.SamplingParams(temperature=0.7, top_p=0.9)._greedy_decoding
    else:
        assert "temperature==0" in " ".join(facts("1.2")["sampling_params_fields"]["value"]["new_vs_1.0"])
        assert sp._greedy_decoding and not trt.SamplingParams(temperature=0.7)._greedy_decoding


# -- the adapter: version floor, capabilities, behaviour per version -----------------------------------


def test_pre_1_0_is_refused_at_start_with_found_and_needed(double: tuple[str, Any], hf_dir: Path) -> None:
    series, trt = double
    if series != "0.17":
        pytest.skip("only tensorrt_llm before 1.0 is refused")
    eng = TRTLLMEngine(EngineSpec(kind="trtllm", target=str(hf_dir)))
    with pytest.raises(EngineSpecError) as err:
        eng.start()
    msg = str(err.value)
    assert f"tensorrt_llm {VERSIONS['0.17']}" in msg and "needs tensorrt_llm >= 1.0" in msg
    assert "_tensorrt_engine" in msg
    assert eng._llm is None  # refused before anything was loaded


def test_capabilities_per_version_follow_the_facts(ckpt_engine: tuple[str, TRTLLMEngine, Any]) -> None:
    series, _, info = ckpt_engine
    caps = info.details["capabilities"]
    lp_fact = facts(series)["logprobs_limits"]["value"]["pytorch_backend"]
    if series == "1.0":
        assert "top-1" in lp_fact and caps["logprobs_top_k"] == 1
    else:
        assert "top-k" in lp_fact and caps["logprobs_top_k"] == 20
    seed_fact = facts(series)["seed_per_request"]["value"]["pytorch_backend"]
    assert caps["seeds_honoured"] is (series == "main")
    assert (seed_fact is False) is (series != "main")
    assert caps["truncate_prompt_tokens_ids"] is False and caps["truncate_prompt_tokens_text"] is True
    assert "used as given" in facts(series)["truncate_prompt_tokens"]["value"]["application"]
    assert caps["stop_strings"] == STOP_TOKEN_IDS_AND_TEXT and caps["production_timings"] is True
    assert info.details["tensorrt_llm_series"] == series and info.version == VERSIONS[series]


def test_logprobs_are_asked_within_what_the_version_returns(ckpt_engine: tuple[str, TRTLLMEngine, Any]) -> None:
    series, eng, _ = ckpt_engine
    from tensorrt_llm import _double_runtime

    start = len(_double_runtime.CALLS)
    [c] = eng.generate([GenerationRequest(prompt=PROMPT, max_tokens=4, logprobs=5)])
    (sent,) = [x for name, x in _double_runtime.CALLS[start:] if name == "generate_async"]
    assert c.ok and c.logprobs is not None and len(c.logprobs) == len(c.token_ids) == 4
    if series == "1.0":  # only the sampled token's logprob: asked for 1, no alternatives
        assert sent["sampling_params"].logprobs == 1
        assert all(lp.top == {} and lp.logprob is not None for lp in c.logprobs)
    else:
        assert sent["sampling_params"].logprobs == 5
        assert all(len(lp.top) == 5 and lp.token_id in lp.top for lp in c.logprobs)


def test_seeds_per_version(ckpt_engine: tuple[str, TRTLLMEngine, Any]) -> None:
    series, eng, _ = ckpt_engine
    req = GenerationRequest(prompt=PROMPT, max_tokens=12, temperature=2.0, seed=7, logprobs=None)
    first, second = eng.generate([req]), eng.generate([req])
    assert first[0].ok and second[0].ok
    if series == "main":
        assert first[0].token_ids == second[0].token_ids and first[0].warnings == []
    else:  # the PyTorch sampler of 1.0-1.2 draws from one generator: the seed does not reproduce
        assert first[0].token_ids != second[0].token_ids
        assert any("seed 7 not honoured" in w for w in first[0].warnings)


def test_truncate_prompt_tokens_on_ids_is_ignored_and_not_claimed(ckpt_engine: tuple[str, TRTLLMEngine, Any],
                                                                  tok: Any) -> None:
    _, eng, _ = ckpt_engine
    ids = tuple(tok.encode("Numbers: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"))
    text = "Numbers: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
    by_ids, by_text = eng.generate([
        GenerationRequest(prompt_token_ids=ids, max_tokens=2, truncate_prompt_tokens=4, logprobs=None),
        GenerationRequest(prompt=text, max_tokens=2, truncate_prompt_tokens=4, logprobs=None)])
    assert by_ids.ok and by_ids.prompt_token_count == len(ids) > 4  # the whole prompt, as TensorRT-LLM used it
    assert any("truncate_prompt_tokens=4 ignored" in w for w in by_ids.warnings)
    assert by_text.ok and by_text.prompt_token_count == 4 and by_text.warnings == []


def test_stop_strings_and_ignore_eos_per_version(ckpt_engine: tuple[str, TRTLLMEngine, Any], tok: Any) -> None:
    series, eng, _ = ckpt_engine
    [plain] = eng.generate([GenerationRequest(prompt=PROMPT, max_tokens=8, ignore_eos=True, logprobs=None)])
    ids = plain.token_ids
    stop_word = tok.decode([ids[2]])  # a whole token the model generates
    assert tok.encode(stop_word) == [ids[2]] and stop_word not in tok.decode(ids[:2])
    # the start of a longer token: the token-level stop words never match it, only the text path can
    j = next(i for i in range(1, len(ids)) if len(tok.decode([ids[i]]).strip()) >= 3)
    mid = tok.decode([ids[j]])[:2]
    assert mid not in tok.decode(ids[:j]) and tok.encode(mid) != [ids[j]]
    on_token, in_text, kept_going = eng.generate([
        GenerationRequest(prompt=PROMPT, max_tokens=8, stop=(stop_word,), logprobs=None),
        GenerationRequest(prompt=PROMPT, max_tokens=8, stop=(mid,), logprobs=None),
        GenerationRequest(prompt=PROMPT, max_tokens=8, stop=(stop_word,), ignore_eos=True, logprobs=None),
    ])
    before = tok.decode(ids[:2])
    # token level: the stop word's tokens are trimmed from the ids, the text ends before it
    assert (on_token.finish_reason, on_token.stop_reason, on_token.token_ids) == ("stop", stop_word, ids[:2])
    assert on_token.text == before
    # text level (every 1.x): the text is cut inside a token; the ids are not trimmed
    assert "text_level" in facts(series)["stop_semantics"]["value"]
    assert (in_text.finish_reason, in_text.stop_reason, in_text.text) == ("stop", mid, tok.decode(ids[:j]))
    assert in_text.token_ids == ids[:j + 1]
    # ignore_eos: main drops the stop words (the text path still cuts, the ids keep the stop token);
    # 1.2 keeps them (token level trims)
    dropped = facts(series)["ignore_eos"]["value"].get("stop_words_dropped_with_ignore_eos")
    assert kept_going.finish_reason == "stop" and kept_going.stop_reason == stop_word and kept_going.text == before
    if series == "main":
        assert dropped is True and kept_going.token_ids == ids[:3]
    else:
        assert dropped in (False, None) and kept_going.token_ids == ids[:2]


def test_over_length_message_prints_the_length_as_a_float(ckpt_engine: tuple[str, TRTLLMEngine, Any],
                                                          tok: Any, hf_dir: Path) -> None:
    series, _, _ = ckpt_engine
    assert facts(series)["overlength_error_llmapi"]["value"]["prompt_length_printed_as_float"] is True
    eng = TRTLLMEngine(EngineSpec(kind="trtllm", target=str(hf_dir), args={"max_num_tokens": 16}))
    eng.start()
    try:
        ids = tuple(tok.encode(" ".join(["word"] * 30))[:20])
        [c] = eng.generate([GenerationRequest(prompt_token_ids=ids, max_tokens=2, logprobs=None)])
    finally:
        eng.close()
    assert c.error_type == "ValueError"
    assert c.error == "The sum of prompt length (20.0), query length (0) should not exceed max_num_tokens (16)"
    assert c.prompt_token_count == 20


def test_engine_dir_with_gathered_logits_says_its_timings_are_not_production(
        double: tuple[str, Any], hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    series, _ = double
    if series not in ONE_X:
        pytest.skip("the adapter refuses tensorrt_llm before 1.0")
    from trtllm_engine_dirs import make_engine_dir

    root = tmp_path_factory.mktemp(f"engines-{series}")
    gathered = make_engine_dir(root / "gathered", hf_dir, gather_generation_logits=True, version=VERSIONS[series])
    plain = make_engine_dir(root / "plain", hf_dir, gather_generation_logits=False, version=VERSIONS[series])
    infos = {}
    for name, target in (("gathered", gathered), ("plain", plain)):
        eng = TRTLLMEngine(EngineSpec(kind="trtllm", target=str(target)))
        infos[name] = eng.start()
        try:
            [c] = eng.generate([GenerationRequest(prompt=PROMPT, max_tokens=2, logprobs=2)])
            assert c.ok and ((c.logprobs is not None) is (name == "gathered"))
        finally:
            eng.close()
    g, p = infos["gathered"].details, infos["plain"].details
    assert g["capabilities"]["production_timings"] is False and g["latency_path"] == NON_PRODUCTION_TIMINGS
    assert NON_PRODUCTION_TIMINGS in g["capabilities"]["notes"]
    assert g["capabilities"]["logprobs_top_k"] == 20 and g["capabilities"]["seeds_honoured"] is True
    assert p["capabilities"]["production_timings"] is True and p["latency_path"] == "production"
    assert p["capabilities"]["logprobs_top_k"] == 0
    assert "gather_generation_logits" in facts(series)["gather_generation_logits"]["value"][
        "llm_arg" if series != "main" else "tensorrt_llm_api"]


def test_versions_cover_every_facts_file() -> None:
    assert sorted(p.stem.removeprefix("trtllm-") for p in FACTS_DIR.glob("trtllm-*.json")) == sorted(VERSIONS)
