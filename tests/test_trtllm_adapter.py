"""The TensorRT-LLM adapter against the ``tensorrt_llm`` contract double (tests/trtllm_double).

The double implements only the surface of shared/engines/TENSORRT_LLM.md and generates with
transformers on the embedded SmolLM2 weights, so outputs here are real model outputs. The adapter
runs in process, except in ``test_through_worker_process``, which runs it in the real worker.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import trtllm_engine_dirs as engine_dirs

from pytest_engineparity.engines.base import EngineSpec, EngineSpecError
from pytest_engineparity.engines.trtllm import TRTLLMEngine, map_logprobs, sampling_kwargs
from pytest_engineparity.types import EngineInfo, GenerationRequest

HERE = Path(__file__).resolve().parent
DOUBLE_DIR = HERE / "trtllm_double"
REPO_ROOT = HERE.parent
DOUBLE_VERSION = "1.2.1"

MAX_SEQ_LEN = 256
MAX_INPUT_LEN = 192
CKPT_MAX_SEQ_LEN = 48

PROMPT = "The capital of France is"
YES_NO = ({"role": "user", "content": "Reply with one word: yes or no. Is the sky blue?"},)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pytest_engineparity.models import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="module")
def trtllm() -> Iterator[Any]:
    """The contract double importable as ``tensorrt_llm`` for this module only.

    torch runs single-threaded here: on a small shared CPU box two OpenMP threads fighting other
    processes made each forward pass 20x slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.syspath_prepend(str(DOUBLE_DIR))
            import tensorrt_llm

            assert Path(tensorrt_llm.__file__).is_relative_to(DOUBLE_DIR)
            yield tensorrt_llm
    finally:
        torch.set_num_threads(threads)
        for name in [m for m in sys.modules if m == "tensorrt_llm" or m.startswith("tensorrt_llm.")]:
            del sys.modules[name]


def make_engine_dir(root: Path, hf_dir: Path, *, gather_generation_logits: bool = True,
                    tokenizer_files: bool = True, version: str = DOUBLE_VERSION) -> Path:
    """An engine directory for the double with this module's small build limits."""
    return engine_dirs.make_engine_dir(root, hf_dir, gather_generation_logits=gather_generation_logits,
                                       tokenizer_files=tokenizer_files, version=version,
                                       max_seq_len=MAX_SEQ_LEN, max_input_len=MAX_INPUT_LEN)


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory, hf_dir: Path) -> Path:
    return make_engine_dir(tmp_path_factory.mktemp("engine") / "smollm2-engine", hf_dir)


def calls_since(trtllm: Any, mark: int, what: str) -> list[dict[str, Any]]:
    from tensorrt_llm import _double_runtime

    return [c for name, c in _double_runtime.CALLS[mark:] if name == what]


def mark(trtllm: Any) -> int:
    from tensorrt_llm import _double_runtime

    return len(_double_runtime.CALLS)


@dataclasses.dataclass
class Started:
    """A started adapter, what start() returned, and the LLM constructor call the double saw."""

    engine: TRTLLMEngine
    info: EngineInfo
    llm_calls: list


def start_engine(trtllm: Any, spec: EngineSpec) -> Started:
    eng = TRTLLMEngine(spec)
    start = mark(trtllm)
    info = eng.start()
    return Started(eng, info, calls_since(trtllm, start, "LLM"))


@pytest.fixture(scope="module")
def trt(trtllm: Any, engine_dir: Path, hf_dir: Path) -> Iterator[Started]:
    """The adapter on the engine directory, started once (model loaded once) for the module."""
    started = start_engine(trtllm, EngineSpec(kind="trtllm", target=str(engine_dir), tokenizer=str(hf_dir)))
    yield started
    started.engine.close()


@pytest.fixture(scope="module")
def torch_ckpt(trtllm: Any, hf_dir: Path) -> Iterator[Started]:
    """The adapter on the Hugging Face checkpoint (PyTorch backend), with a small max_seq_len."""
    started = start_engine(trtllm, EngineSpec(kind="trtllm", target=str(hf_dir),
                                              args={"max_seq_len": CKPT_MAX_SEQ_LEN}))
    yield started
    started.engine.close()


@pytest.fixture(scope="module")
def reference(hf_dir: Path) -> Any:
    """Plain transformers on the same weights: greedy by full forward passes (no KV cache)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()

    class Reference:
        tokenizer = tok

        def prompt_ids(self, request: GenerationRequest) -> list[int]:
            if request.messages is not None:
                text = tok.apply_chat_template([dict(m) for m in request.messages], tokenize=False,
                                               add_generation_prompt=True)
                return list(tok(text, add_special_tokens=False)["input_ids"])
            if request.prompt_token_ids is not None:
                return list(request.prompt_token_ids)
            return list(tok(request.prompt)["input_ids"])

        @torch.inference_mode()
        def greedy(self, ids: list[int], n: int) -> list[int]:
            out: list[int] = []
            for _ in range(n):
                nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                out.append(nxt)
            return out

        @torch.inference_mode()
        def logprobs(self, ids: list[int], out: list[int]) -> Any:
            logits = model(torch.tensor([ids + out])).logits[0, len(ids) - 1:len(ids) + len(out) - 1]
            return torch.log_softmax(logits.float(), dim=-1)

    return Reference()


# -- validate: cheap checks, no tensorrt_llm ----------------------------------------------------------


def test_adapter_module_imports_nothing_heavy() -> None:
    code = ("import sys; import pytest_engineparity.engines.trtllm, pytest_engineparity.engines.enginedir;"
            " print(sorted(m for m in ('torch', 'transformers', 'tensorrt_llm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.stdout.strip() == "[]"


def test_validate_missing_target_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-engine"
    with pytest.raises(EngineSpecError, match="does not exist") as err:
        TRTLLMEngine.validate(EngineSpec(kind="trtllm", target=str(missing)))
    assert str(missing) in str(err.value)
    with pytest.raises(EngineSpecError, match="needs target"):
        TRTLLMEngine.validate(EngineSpec(kind="trtllm"))


@pytest.mark.parametrize("case", ["file", "no-config", "corrupt-config", "missing-key", "missing-rank",
                                  "no-tokenizer", "bad-tokenizer", "model-in-args"])
def test_validate_explains_broken_targets(tmp_path: Path, hf_dir: Path, case: str) -> None:
    target = tmp_path / "target"
    tokenizer = None
    args: dict[str, Any] = {}
    expected: list[str]
    if case == "file":
        target.write_text("x")
        expected = [str(target), "not a directory"]
    elif case == "no-config":
        target.mkdir()
        expected = [str(target), "no config.json"]
    elif case == "corrupt-config":
        make_engine_dir(target, hf_dir)
        (target / "config.json").write_text('{"version": "1.2.1", "pretrained_config": {')
        expected = [str(target / "config.json"), "line 1 column"]
    elif case == "missing-key":
        make_engine_dir(target, hf_dir)
        cfg = json.loads((target / "config.json").read_text())
        del cfg["build_config"]["max_seq_len"]
        (target / "config.json").write_text(json.dumps(cfg))
        expected = [str(target / "config.json"), "build_config.max_seq_len"]
    elif case == "missing-rank":
        make_engine_dir(target, hf_dir)
        (target / "rank0.engine").unlink()
        expected = [str(target), "rank0.engine"]
    elif case == "no-tokenizer":
        make_engine_dir(target, hf_dir, tokenizer_files=False)
        expected = [str(target), "no tokenizer files", "set tokenizer"]
    elif case == "bad-tokenizer":
        make_engine_dir(target, hf_dir)
        tokenizer = str(tmp_path / "no-tokenizer-here")
        expected = [tokenizer, "tokenizer"]
    else:
        make_engine_dir(target, hf_dir)
        args = {"model": "/elsewhere"}
        expected = ["args.model is not allowed", "target"]
    with pytest.raises(EngineSpecError) as err:
        TRTLLMEngine.validate(EngineSpec(kind="trtllm", target=str(target), tokenizer=tokenizer, args=args))
    for part in expected:
        assert part in str(err.value)


# -- detection: engine dir -> TensorRT class, checkpoint -> PyTorch class ----------------------------


def test_engine_dir_loads_with_tensorrt_engine_class(trt: Started, engine_dir: Path, hf_dir: Path) -> None:
    (call,) = trt.llm_calls
    assert call["class"] == "tensorrt_llm._tensorrt_engine.LLM"
    assert call["model"] == str(engine_dir) and call["tokenizer"] == str(hf_dir)
    # the engine was built with gather_generation_logits, so the adapter asks for it (logprobs)
    assert call["gather_generation_logits"] is True
    info = trt.info
    assert info.kind == "trtllm" and info.version == DOUBLE_VERSION
    assert (info.limits.max_model_len, info.limits.max_input_len, info.limits.max_batch_size) == (
        MAX_SEQ_LEN, MAX_INPUT_LEN, 8)
    d = info.details
    assert d["backend"] == "tensorrt" and d["llm_class"] == "tensorrt_llm._tensorrt_engine.LLM"
    assert (d["dtype"], d["architecture"], d["tp_size"], d["pp_size"]) == ("float32", "LlamaForCausalLM", 1, 1)
    assert d["logprobs_available"] is True and "warnings" not in d


def test_checkpoint_loads_with_pytorch_class(torch_ckpt: Started, hf_dir: Path) -> None:
    (call,) = torch_ckpt.llm_calls
    assert call["class"] == "tensorrt_llm.LLM"
    assert call["model"] == str(hf_dir) and call["max_seq_len"] == CKPT_MAX_SEQ_LEN
    assert "gather_generation_logits" not in call  # a TensorRT-backend setting
    info = torch_ckpt.info
    assert info.details["backend"] == "pytorch" and info.details["llm_class"] == "tensorrt_llm.LLM"
    assert info.limits.max_model_len == CKPT_MAX_SEQ_LEN
    assert info.details["dtype"] == "float32"
    # the EOS set it stops on: the tokenizer's eos_token_id (SamplingParams._setup), declared
    from transformers import AutoTokenizer

    assert info.details["eos_token_ids"] == [AutoTokenizer.from_pretrained(str(hf_dir)).eos_token_id]


def test_engine_built_by_other_version_is_reported(trtllm: Any, tmp_path: Path, hf_dir: Path) -> None:
    target = make_engine_dir(tmp_path / "old", hf_dir, version="0.17.0.post1", gather_generation_logits=False)
    eng = TRTLLMEngine(EngineSpec(kind="trtllm", target=str(target)))  # tokenizer files in the dir
    start = mark(trtllm)
    info = eng.start()
    try:
        (call,) = calls_since(trtllm, start, "LLM")
        assert call["tokenizer"] == str(target)
        # built without gather_generation_logits: the adapter must not ask for it
        assert "gather_generation_logits" not in call
        assert info.details["logprobs_available"] is False
        assert any("0.17.0.post1" in w and DOUBLE_VERSION in w for w in info.details["warnings"])
        [c] = eng.generate([GenerationRequest(prompt=PROMPT, max_tokens=3, logprobs=2)])
        assert c.ok and len(c.token_ids) == 3 and c.logprobs is None
        assert any("gather_generation_logits" in w for w in c.warnings)
        (sent,) = calls_since(trtllm, start, "generate_async")
        assert sent["sampling_params"].logprobs is None
    finally:
        eng.close()


# -- spec errors at start --------------------------------------------------------------------------------


def test_invalid_llm_argument_names_the_key(trtllm: Any, engine_dir: Path, hf_dir: Path) -> None:
    eng = TRTLLMEngine(EngineSpec(kind="trtllm", target=str(engine_dir), tokenizer=str(hf_dir),
                                  args={"max_sequence_length": 64}))
    with pytest.raises(EngineSpecError) as err:
        eng.start()
    msg = str(err.value)
    assert "'max_sequence_length'" in msg and f"tensorrt_llm {DOUBLE_VERSION}" in msg
    assert "tensorrt_llm._tensorrt_engine.LLM" in msg


def test_build_config_on_checkpoint_is_explained(trtllm: Any, hf_dir: Path) -> None:
    eng = TRTLLMEngine(EngineSpec(kind="trtllm", target=str(hf_dir), args={"build_config": {"max_seq_len": 64}}))
    with pytest.raises(EngineSpecError) as err:
        eng.start()
    msg = str(err.value)
    assert "tensorrt_llm._tensorrt_engine" in msg  # the library's own pointer
    assert "trtllm-build" in msg and str(hf_dir) in msg  # the adapter's hint


def test_old_tensorrt_llm_is_named_in_the_error(trtllm: Any) -> None:
    import types

    from pytest_engineparity.engines.trtllm import _TensorRTLLMAPI

    @dataclasses.dataclass(kw_only=True)
    class OldSamplingParams:  # no top_k, no seed
        max_tokens: int = 32
        temperature: float = 1.0
        top_p: float = 1.0
        stop: Any = None

    # a 1.x whose SamplingParams lacks fields the adapter needs
    odd = types.SimpleNamespace(__version__="1.0.0", SamplingParams=OldSamplingParams, __file__="/odd/tensorrt_llm")
    with pytest.raises(EngineSpecError, match=r"tensorrt_llm 1\.0\.0 .*without top_k, seed"):
        _TensorRTLLMAPI(odd, "odd-trt")
    # anything before 1.0 is refused by its version, with the version needed
    old = types.SimpleNamespace(__version__="0.9.0", SamplingParams=OldSamplingParams, __file__="/old/tensorrt_llm")
    with pytest.raises(EngineSpecError, match=r"tensorrt_llm 0\.9\.0 \(at /old/tensorrt_llm\) is too old.*>= 1\.0"):
        _TensorRTLLMAPI(old, "old-trt")


# -- generation ------------------------------------------------------------------------------------------


def test_greedy_matches_transformers(trt: Started, reference: Any) -> None:
    requests = [
        GenerationRequest(prompt=PROMPT, max_tokens=10, logprobs=None),
        GenerationRequest(messages=({"role": "user", "content": "Name a color."},), max_tokens=10, logprobs=None),
        GenerationRequest(prompt_token_ids=tuple(reference.tokenizer("Once upon a time")["input_ids"]),
                          max_tokens=10, logprobs=None),
    ]
    progress: list[tuple[int, int, int]] = []
    results = trt.engine.generate(requests, lambda d, t, n: progress.append((d, t, n)))
    for req, c in zip(requests, results, strict=True):
        ids = reference.prompt_ids(req)
        expected = reference.greedy(ids, req.max_tokens)
        assert c.ok, c.error
        assert c.token_ids == expected
        assert c.text == reference.tokenizer.decode(expected, skip_special_tokens=True)
        assert c.token_texts == [reference.tokenizer.decode([t]) for t in expected]
        assert c.prompt_token_count == len(ids) and c.prompt_token_ids == list(ids)  # RequestOutput's own
        assert c.finish_reason == ("length" if len(expected) == req.max_tokens else "stop")
        assert c.stop_reason is None and c.warnings == [] and c.logprobs is None
        t = c.timings
        assert t.source == "engine-stream" and len(t.token_times) == len(c.token_ids)
        assert t.ttft == t.token_times[0] and t.token_times == sorted(t.token_times) and t.ttft <= t.e2e
    assert progress[-1] == (3, 3, sum(len(c.token_ids) for c in results))
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)


def test_every_request_field_reaches_sampling_params(trtllm: Any, trt: Started, reference: Any) -> None:
    covered = {"max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_token_ids",
               "include_stop_str_in_output", "ignore_eos", "min_tokens", "logprobs", "truncate_prompt_tokens"}
    inputs = {"prompt", "messages", "prompt_token_ids", "id"}
    assert {f.name for f in dataclasses.fields(GenerationRequest)} == covered | inputs, \
        "a GenerationRequest field was added: map it in trtllm.sampling_kwargs and check it here"
    sampled = GenerationRequest(prompt=PROMPT, max_tokens=6, temperature=0.7, top_p=0.9, top_k=20, seed=7,
                                stop=("zzz",), stop_token_ids=(49151,), include_stop_str_in_output=True,
                                ignore_eos=True, min_tokens=2, logprobs=3, truncate_prompt_tokens=4)
    greedy = GenerationRequest(messages=YES_NO, max_tokens=3, logprobs=None)
    start = mark(trtllm)
    first = trt.engine.generate([sampled, greedy])
    again = trt.engine.generate([sampled])
    sent = calls_since(trtllm, start, "generate_async")
    by_prompt = {json.dumps(c["inputs"]) if not isinstance(c["inputs"], str) else c["inputs"]: c for c in sent[:2]}
    sp = by_prompt[PROMPT]["sampling_params"]
    assert by_prompt[PROMPT]["streaming"] is True
    assert (sp.max_tokens, sp.temperature, sp.top_p, sp.top_k, sp.seed) == (6, 0.7, 0.9, 20, 7)
    assert (sp.stop, sp.stop_token_ids, sp.include_stop_str_in_output) == (["zzz"], [49151], True)
    # facts ignore_eos: SamplingParams keeps end_id = EOS; the executor request gets -1
    assert (sp.ignore_eos, sp.end_id, sp.min_tokens) == (True, reference.tokenizer.eos_token_id, 2)
    assert (sp.logprobs, sp.truncate_prompt_tokens, sp.add_special_tokens) == (3, 4, True)
    # greedy: temperature, top_p and top_k left None; chat rendered by the template, no extra specials
    chat_text = reference.tokenizer.apply_chat_template(list(YES_NO), tokenize=False, add_generation_prompt=True)
    gp = by_prompt[chat_text]["sampling_params"]
    assert (gp.temperature, gp.top_p, gp.top_k, gp.seed, gp.logprobs) == (None, None, None, None, None)
    assert (gp.add_special_tokens, gp.max_tokens, gp.ignore_eos) == (False, 3, False)
    # and the engine acted on them
    c = first[0]
    assert c.prompt_token_count == 4  # truncate_prompt_tokens: the last 4 tokens
    assert sent[0]["inputs"] == PROMPT and len(c.token_ids) == 6 and c.finish_reason == "length"
    assert c.token_ids == again[0].token_ids  # same seed, same sample
    assert len(c.logprobs) == 6 and all(len(lp.top) == 3 for lp in c.logprobs)


def test_token_id_prompt_is_passed_as_ints(trtllm: Any, trt: Started) -> None:
    start = mark(trtllm)
    ids = (504, 3575, 282, 4649, 314)
    [c] = trt.engine.generate([GenerationRequest(prompt_token_ids=ids, max_tokens=2, logprobs=None)])
    (sent,) = calls_since(trtllm, start, "generate_async")
    assert sent["inputs"] == [504, 3575, 282, 4649, 314]
    assert c.ok and c.prompt_token_count == 5


def test_stop_string_and_stop_token(trt: Started, reference: Any) -> None:
    ids = reference.prompt_ids(GenerationRequest(prompt=PROMPT))
    expected = reference.greedy(ids, 6)  # " Paris", ".", "\n", ...
    stop_tok = expected[1]
    stop_str = reference.tokenizer.decode([stop_tok])
    plain, kept, by_id = trt.engine.generate([
        GenerationRequest(prompt=PROMPT, max_tokens=6, stop=(stop_str,), logprobs=None),
        GenerationRequest(prompt=PROMPT, max_tokens=6, stop=(stop_str,), include_stop_str_in_output=True,
                          logprobs=None),
        GenerationRequest(prompt=PROMPT, max_tokens=6, stop_token_ids=(stop_tok,), logprobs=None),
    ])
    assert (plain.token_ids, plain.finish_reason, plain.stop_reason) == (expected[:1], "stop", stop_str)
    assert not plain.text.endswith(stop_str)
    assert (kept.token_ids, kept.stop_reason) == (expected[:2], stop_str) and kept.text.endswith(stop_str)
    assert (by_id.token_ids, by_id.finish_reason, by_id.stop_reason) == (expected[:1], "stop", stop_tok)
    assert len(plain.timings.token_times) == 1  # trimmed stop tokens have no timestamps


def test_ignore_eos_and_min_tokens(trt: Started, reference: Any) -> None:
    natural, ignored, minimum = trt.engine.generate([
        GenerationRequest(messages=YES_NO, max_tokens=8, logprobs=None),
        GenerationRequest(messages=YES_NO, max_tokens=8, ignore_eos=True, logprobs=None),
        GenerationRequest(messages=YES_NO, max_tokens=8, min_tokens=4, logprobs=None),
    ])
    assert natural.finish_reason == "stop" and natural.stop_reason is None and len(natural.token_ids) < 4
    assert ignored.finish_reason == "length" and len(ignored.token_ids) == 8
    assert ignored.token_ids[:len(natural.token_ids)] == natural.token_ids
    assert len(minimum.token_ids) >= 4 and reference.tokenizer.eos_token_id not in minimum.token_ids[:4]
    assert all(c.warnings == [] for c in (natural, ignored, minimum))  # stopping early is not clamping


def test_logprobs_match_transformers(trt: Started, reference: Any) -> None:
    req = GenerationRequest(prompt=PROMPT, max_tokens=5, logprobs=3)
    [c] = trt.engine.generate([req])
    assert c.ok and len(c.logprobs) == len(c.token_ids) == 5
    ref = reference.logprobs(reference.prompt_ids(req), c.token_ids)
    for pos, lp in enumerate(c.logprobs):
        assert lp.token_id == c.token_ids[pos]
        assert math.isclose(lp.logprob, float(ref[pos, lp.token_id]), abs_tol=1e-4)
        top3 = ref[pos].topk(3)
        assert sorted(lp.top) == sorted(int(i) for i in top3.indices)
        assert lp.top[lp.token_id] == lp.logprob  # greedy: the chosen token is the best one
        assert lp.decoded[lp.token_id] == reference.tokenizer.decode([lp.token_id])


def test_map_logprobs_both_shapes() -> None:
    class Logprob:  # the contract's Logprob(logprob, rank)
        def __init__(self, logprob: float, rank: int) -> None:
            self.logprob, self.rank = logprob, rank

    dicts = [{5: Logprob(-0.1, 1), 9: Logprob(-2.5, 2), 7: Logprob(-4.0, 3)},
             {8: Logprob(-3.0, 4), 1: Logprob(-0.2, 1)}]
    mapped = map_logprobs(dicts, [5, 8], k=2, decode=lambda t: f"<{t}>")
    assert (mapped[0].token_id, mapped[0].logprob, mapped[0].top) == (5, -0.1, {5: -0.1, 9: -2.5})
    # a sampled token outside the top-k keeps its logprob but is not listed among the top-k
    assert (mapped[1].logprob, mapped[1].top, mapped[1].decoded) == (-3.0, {1: -0.2}, {1: "<1>"})
    floats = map_logprobs([-0.5, -1.25], [3, 4], k=5)
    assert [(t.token_id, t.logprob, t.top) for t in floats] == [(3, -0.5, {}), (4, -1.25, {})]


def test_sampling_kwargs_greedy_leaves_sampling_unset() -> None:
    kw = sampling_kwargs(GenerationRequest(prompt="x", max_tokens=3, logprobs=None))
    assert kw == {"max_tokens": 3}
    kw = sampling_kwargs(GenerationRequest(prompt="x", temperature=1.0, top_k=0), logprobs=5)
    assert (kw["temperature"], kw["top_p"], kw["top_k"], kw["logprobs"]) == (1.0, 1.0, None, 5)


# -- limits ----------------------------------------------------------------------------------------------


def test_over_length_fails_only_that_request(trt: Started, reference: Any) -> None:
    long_ids = tuple(reference.tokenizer(" ".join(["word"] * 400))["input_ids"][:180])
    requests = [
        GenerationRequest(prompt=PROMPT, max_tokens=4, logprobs=None),
        GenerationRequest(prompt_token_ids=long_ids, max_tokens=100, logprobs=None),  # 180 + 100 > 256
        GenerationRequest(prompt_token_ids=long_ids + long_ids[:20], max_tokens=1, logprobs=None),  # > 192
        GenerationRequest(prompt="Hello", max_tokens=4, logprobs=None),
    ]
    ok1, too_long, too_wide, ok2 = trt.engine.generate(requests)
    assert ok1.ok and ok2.ok and len(ok1.token_ids) == len(ok2.token_ids) == 4
    # facts overlength_error_llmapi: the prompt length is printed as a float (prompt_len / cp_size)
    assert too_long.error == ("The sum of prompt length (180.0) and query length (0) max_tokens (100)"
                              " should not exceed max_seq_len (256)")
    assert (too_long.error_type, too_long.finish_reason, too_long.prompt_token_count) == ("ValueError", "error", 180)
    # past max_input_len the executor refuses it at enqueue: RequestError, that request only
    assert too_wide.error_type == "RequestError" and "200" in too_wide.error and str(MAX_INPUT_LEN) in too_wide.error
    assert too_wide.token_ids == [] and too_wide.prompt_token_count == 200


def test_clamped_max_tokens_is_a_warning(torch_ckpt: Started, reference: Any, caplog: pytest.LogCaptureFixture) -> None:
    req = GenerationRequest(prompt=PROMPT, max_tokens=5000, ignore_eos=True, logprobs=None)
    p = len(reference.prompt_ids(req))
    with caplog.at_level("WARNING", logger="tensorrt_llm"):
        [c] = torch_ckpt.engine.generate([req])
    room = CKPT_MAX_SEQ_LEN - p
    assert c.ok and c.finish_reason == "length" and len(c.token_ids) == room
    assert c.warnings == [f"max_tokens 5000 clamped by the engine: produced {room} tokens"
                          f" (prompt {p} tokens, max_seq_len {CKPT_MAX_SEQ_LEN})"]
    assert any("5000" in r.getMessage() for r in caplog.records)  # the engine's own warning
    # a request that simply reaches its max_tokens is not clamped
    [d] = torch_ckpt.engine.generate([GenerationRequest(prompt=PROMPT, max_tokens=3, ignore_eos=True, logprobs=None)])
    assert d.finish_reason == "length" and len(d.token_ids) == 3 and d.warnings == []


def test_tokenize_without_special_tokens(trt: Started, reference: Any) -> None:
    assert trt.engine.tokenize("Hello world") == reference.tokenizer.encode("Hello world", add_special_tokens=False)


def test_older_sampling_params_fail_the_request_by_name(trt: Started, monkeypatch: pytest.MonkeyPatch) -> None:
    api = trt.engine._api
    monkeypatch.setattr(api, "sampling_fields", api.sampling_fields - {"truncate_prompt_tokens"})
    ok, old = trt.engine.generate([GenerationRequest(prompt=PROMPT, max_tokens=2, logprobs=None),
                               GenerationRequest(prompt=PROMPT, max_tokens=2, truncate_prompt_tokens=3,
                                                 logprobs=None)])
    assert ok.ok
    assert old.error_type == "UnsupportedParameter"
    assert f"tensorrt_llm {DOUBLE_VERSION}" in old.error and "'truncate_prompt_tokens'" in old.error


# -- the real worker process -----------------------------------------------------------------------------


def test_through_worker_process(trt: Started, engine_dir: Path, hf_dir: Path, tmp_path: Path) -> None:
    from pytest_engineparity.runtime.client import EngineWorker

    spec = EngineSpec(kind="trtllm", target=str(engine_dir), tokenizer=str(hf_dir), name="trt-worker",
                      env={"PYTHONPATH": os.pathsep.join([str(DOUBLE_DIR), str(REPO_ROOT)]),
                           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                      start_timeout=120, request_timeout=120)
    requests = [GenerationRequest(prompt=PROMPT, max_tokens=6, logprobs=2),
                GenerationRequest(prompt=PROMPT, max_tokens=MAX_SEQ_LEN, logprobs=None)]
    worker = EngineWorker(spec, log_dir=str(tmp_path))
    try:
        info = worker.start()
        assert info.details["llm_class"] == "tensorrt_llm._tensorrt_engine.LLM"
        assert info.version == DOUBLE_VERSION and info.limits.max_model_len == MAX_SEQ_LEN
        remote = worker.generate(requests)
        tokens = worker.tokenize("Hello world")
    finally:
        worker.close()
    local = trt.engine.generate(requests)
    assert remote[0].ok and remote[0].token_ids == local[0].token_ids and remote[0].text == local[0].text
    assert [lp.to_dict()["top"] for lp in remote[0].logprobs] == [lp.to_dict()["top"] for lp in local[0].logprobs]
    assert remote[0].timings.source == "engine-stream" and len(remote[0].timings.token_times) == 6
    assert remote[1].error_type == "ValueError" and "should not exceed max_seq_len (256)" in remote[1].error
    assert tokens == trt.engine.tokenize("Hello world")


def test_declared_eos_set_follows_the_version(tmp_path: Path) -> None:
    """1.x stops on the tokenizer's eos_token_id only; main also on the generation config's other
    eos ids (added as stop words by SamplingParams._setup): the set the adapter declares."""
    from pytest_engineparity.engines.trtllm import _eos_ids, _generation_eos

    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [128001, 128008, 128009]}))
    tok = type("Tok", (), {"eos_token_id": 128009})()
    assert _eos_ids(tok) == [128009]
    assert _eos_ids(tok, _generation_eos(None, tmp_path)) == [128001, 128008, 128009]
    assert _generation_eos(tmp_path / "missing") == [] and _eos_ids(type("T", (), {"eos_token_id": None})()) is None
