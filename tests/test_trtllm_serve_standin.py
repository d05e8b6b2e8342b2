"""The OpenAI adapter, and the plugin, against the trtllm-serve stand-in (tests/trtllm_serve_standin.py):
trtllm-serve's HTTP behaviour per TensorRT-LLM's source, over the tensorrt_llm contract double,
serving real completions from the embedded model.

Two modes, as trtllm-serve runs: a compiled engine without ``gather_generation_logits``
(``--backend tensorrt``: strict schema, ``logprobs > 1`` refused, no token ids) and the PyTorch
backend (top-k logprobs). Plus a 0.17 server (no stream_options, no logprobs at all).
"""

from __future__ import annotations

import importlib.util

import json
import math
import shutil
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

pytest.importorskip("fastapi", reason="the trtllm-serve stand-in runs on FastAPI (installed with vllm)")

from trtllm_serve_standin import running_standin, write_engine_dir  # noqa: E402

from pytest_engineparity.engines.base import EngineSpec  # noqa: E402
from pytest_engineparity.engines.openai import OpenAIEngine  # noqa: E402
from pytest_engineparity.types import GenerationRequest  # noqa: E402

SUITES = Path(__file__).resolve().parent.parent / "suites"
PROMPT = "The capital of France is"
CHAT = ({"role": "user", "content": "What is the capital of France?"},)


@pytest.fixture(scope="module")
def hf(model_dir: str) -> Path:
    return Path(model_dir)


@pytest.fixture(scope="module")
def engine_dir(hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_engine_dir(tmp_path_factory.mktemp("engine") / "smollm2-engine", hf)


@pytest.fixture(scope="module")
def engine_url(engine_dir: Path, hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """trtllm-serve on a compiled engine built without gather_generation_logits (1.2.1)."""
    log = tmp_path_factory.mktemp("standin") / "engine.log"
    with running_standin(engine_dir, backend="tensorrt", tokenizer=hf, log_path=log) as url:
        yield url


@pytest.fixture(scope="module")
def pytorch_url(hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("standin") / "pytorch.log"
    with running_standin(hf, backend="pytorch", log_path=log) as url:
        yield url


@pytest.fixture(scope="module")
def greedy(hf: Path) -> Any:
    """Greedy ids from plain transformers (KV cache), for the outputs the servers must give."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf))
    lm = AutoModelForCausalLM.from_pretrained(str(hf), dtype=torch.float32).eval()

    @torch.inference_mode()
    def run(ids: list[int], n: int) -> list[int]:
        out: list[int] = []
        step, past = torch.tensor([ids]), None
        for _ in range(n):
            res = lm(input_ids=step, past_key_values=past, use_cache=True)
            past, nxt = res.past_key_values, int(res.logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            out.append(nxt)
            step = torch.tensor([[nxt]])
        return out

    run.tokenizer = tok  # type: ignore[attr-defined]
    return run


def started(url: str, tokenizer: Any = None, **args: Any) -> OpenAIEngine:
    spec = EngineSpec(kind="openai", target=url + "/v1", tokenizer=str(tokenizer) if tokenizer else None,
                      args=args, request_timeout=120)
    OpenAIEngine.validate(spec)
    eng = OpenAIEngine(spec)
    eng.start()
    return eng


# -- the stand-in is trtllm-serve, by hand ---------------------------------------------------------------


def test_engine_mode_answers_as_trtllm_serve(engine_url: str) -> None:
    card = httpx.get(engine_url + "/v1/models").json()["data"][0]
    assert card["owned_by"] == "tensorrt_llm" and card["id"] == "smollm2-engine" and "max_model_len" not in card
    assert httpx.get(engine_url + "/version").json() == {"version": "1.2.1"}
    assert httpx.get(engine_url + "/health").status_code == 200
    assert httpx.post(engine_url + "/tokenize", json={"prompt": "x"}).status_code == 404  # no such route
    base = {"model": "smollm2-engine", "prompt": PROMPT, "max_tokens": 4, "temperature": 0}
    # unknown field: the validation handler's {"error": "<text>"}
    r = httpx.post(engine_url + "/v1/completions", json={**base, "return_token_ids": True})
    assert r.status_code == 400 and list(r.json()) == ["error"]
    assert "extra_forbidden" in r.json()["error"] and "return_token_ids" in r.json()["error"]
    # logprobs > 1 without gather_generation_logits: the handler's flat ErrorResponse
    r = httpx.post(engine_url + "/v1/completions", json={**base, "logprobs": 5})
    assert r.status_code == 400 and r.json() == {
        "object": "error", "type": "BadRequestError", "param": None, "code": 400,
        "message": "`logprobs` must be 1 or `gather_generation_logits` must be `True` to use `logprobs` > 1"}
    r = httpx.post(engine_url + "/v1/chat/completions",
                   json={"model": "m", "messages": list(CHAT), "logprobs": True, "top_logprobs": 2})
    assert r.status_code == 400 and "`gather_generation_logits` must be `True` to use `top_logprobs`" in r.json()["message"]
    # logprobs=1: the sampled token's only; no token ids in the choice
    choice = httpx.post(engine_url + "/v1/completions", json={**base, "logprobs": 1}).json()["choices"][0]
    assert choice["token_ids"] is None and choice["text"]
    assert len(choice["logprobs"]["token_logprobs"]) == 4 and choice["logprobs"]["top_logprobs"] == []
    # ids only with detokenize=false, and then no text
    choice = httpx.post(engine_url + "/v1/completions", json={**base, "detokenize": False}).json()["choices"][0]
    assert choice["text"] == "" and len(choice["token_ids"]) == 4
    # over-length: the LLM API's text, the prompt length printed as a float, flat error
    r = httpx.post(engine_url + "/v1/completions", json={**base, "prompt": list(range(100, 2100)), "max_tokens": 100})
    assert r.status_code == 400 and r.json()["message"] == (
        "The sum of prompt length (2000.0) and query length (0) max_tokens (100) should not exceed max_seq_len (2048)")


# -- the OpenAI adapter probes what the server gives and asks only for that -------------------------------


BATCH = [
    GenerationRequest(prompt=PROMPT, max_tokens=6, id="text"),
    GenerationRequest(messages=CHAT, max_tokens=8, id="chat"),
    GenerationRequest(prompt_token_ids=(504, 3575, 282, 4649, 314), max_tokens=5, id="ids"),
    GenerationRequest(prompt=PROMPT, max_tokens=6, logprobs=None, id="no-logprobs"),
]


def expected_ids(greedy: Any, req: GenerationRequest) -> list[int]:
    tok = greedy.tokenizer
    if req.messages is not None:
        ids = tok(tok.apply_chat_template(list(req.messages), tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"]
    elif req.prompt_token_ids is not None:
        ids = list(req.prompt_token_ids)
    else:
        ids = tok(req.prompt)["input_ids"]
    return greedy(ids, req.max_tokens)


def test_adapter_on_a_compiled_engine_asks_only_what_it_gives(engine_url: str, hf: Path, greedy: Any) -> None:
    eng = started(engine_url, tokenizer=hf)
    try:
        caps = eng.info.details["capabilities"]  # type: ignore[union-attr]
        assert (caps["token_ids"], caps["logprobs_top_k"], caps["tokenize"]) == (False, 1, True)
        assert eng.info.details["flavor"] == "trtllm" and eng.info.version == "1.2.1"  # type: ignore[union-attr]
        assert caps["truncate_prompt_tokens_ids"] is False and caps["seeds_honoured"] is False
        probes = eng.info.details["probes"]  # type: ignore[union-attr]
        assert any(p.startswith("logprobs=20 refused (HTTP 400): `logprobs` must be 1") for p in probes)
        assert any(p.startswith("logprobs=1 accepted") for p in probes)
        # what each request carries: never logprobs > 1 or top_logprobs, never a vLLM-only field
        bodies = [eng.build_request(r)[1] for r in BATCH]
        assert [b.get("logprobs") for b in bodies] == [1, True, 1, None]
        assert not any("top_logprobs" in b or "return_token_ids" in b for b in bodies)
        out = eng.generate(BATCH)
    finally:
        eng.close()
    for req, c in zip(BATCH, out):
        want = expected_ids(greedy, req)
        assert c.ok, f"{req.id}: {c.error}"
        assert c.text == greedy.tokenizer.decode(want, skip_special_tokens=True), req.id
        assert c.prompt_token_count and c.prompt_token_count > 0  # from the usage chunk
        if req.logprobs is not None:
            # the sampled tokens' texts map to exactly one id each: the ids are recovered, with the
            # end id an EOS stop keeps in the output (its text is skipped)
            eos = [greedy.tokenizer.eos_token_id] if c.finish_reason == "stop" and c.stop_reason is None else []
            assert c.token_ids == want + eos, req.id
            assert any("recovered from the logprob token texts" in w for w in c.warnings)
            assert all(lp.top == {lp.token_id: lp.logprob} or lp.top == {} for lp in c.logprobs)
        else:
            assert c.token_ids == [] and any("sent no token ids" in w for w in c.warnings)


def test_adapter_without_a_tokenizer_gets_text_only(engine_url: str) -> None:
    eng = started(engine_url)
    try:
        caps = eng.info.details["capabilities"]  # type: ignore[union-attr]
        assert caps["tokenize"] is False and any("set tokenizer" in n for n in caps["notes"])
        [c] = eng.generate([GenerationRequest(prompt=PROMPT, max_tokens=5)])
    finally:
        eng.close()
    assert c.ok and c.text and c.token_ids == [] and c.logprobs is None
    assert any("set a tokenizer in the engine spec" in w for w in c.warnings)


def test_adapter_on_the_pytorch_backend_gets_top_k_logprobs(pytorch_url: str, hf: Path, greedy: Any) -> None:
    eng = started(pytorch_url, tokenizer=hf)
    try:
        caps = eng.info.details["capabilities"]  # type: ignore[union-attr]
        assert caps["logprobs_top_k"] == 20 and caps["token_ids"] is False
        req = GenerationRequest(prompt=PROMPT, max_tokens=6, logprobs=5)
        assert eng.build_request(req)[1]["logprobs"] == 5
        chat = GenerationRequest(messages=CHAT, max_tokens=6, logprobs=3)
        assert eng.build_request(chat)[1]["top_logprobs"] == 3
        [c, d] = eng.generate([req, chat])
    finally:
        eng.close()
    assert c.ok and c.token_ids == expected_ids(greedy, req)
    for comp in (c, d):
        assert comp.logprobs is not None and len(comp.logprobs) == len(comp.token_ids)
        for lp in comp.logprobs:  # alternatives keyed by id through the tokenizer; ambiguous texts left out
            assert lp.token_id in lp.top and 1 <= len(lp.top) <= 5
            assert lp.top[lp.token_id] == max(lp.top.values())  # greedy: the pick is the best one
            assert all(math.isfinite(v) for v in lp.top.values())


def test_adapter_on_trtllm_serve_0_17(engine_dir: Path, hf: Path, tmp_path: Path) -> None:
    old = write_engine_dir(tmp_path / "smollm2-017", hf, version="0.17.0.post1")
    with running_standin(old, backend="tensorrt", tokenizer=hf, version="0.17.0.post1",
                         log_path=tmp_path / "log") as url:
        r = httpx.post(url + "/v1/completions", json={"model": "m", "prompt": "x", "stream": True,
                                                      "stream_options": {"include_usage": True}})
        assert r.status_code == 400 and r.json()["object"] == "error"  # 0.17: flat, whatever the cause
        assert "stream_options is not supported" in r.json()["message"]
        eng = started(url, tokenizer=hf)
        try:
            d = eng.info.details  # type: ignore[union-attr]
            caps = d["capabilities"]
            assert caps["logprobs_top_k"] == 0 and caps["ignore_eos"] is False
            assert caps["truncate_prompt_tokens_text"] is False and "stream_options refused" in " ".join(d["probes"])
            body = eng.build_request(GenerationRequest(prompt=PROMPT, max_tokens=4))[1]
            assert "stream_options" not in body and "logprobs" not in body
            [c] = eng.generate([GenerationRequest(prompt=PROMPT, max_tokens=4)])
        finally:
            eng.close()
    assert c.ok and c.text and c.prompt_token_count is None  # no usage without stream_options


# -- end to end through the plugin: vLLM-CPU against trtllm-serve on a compiled engine ---------------------


def _e2e(pytester: pytest.Pytester, url: str, hf: Path, report: str, *files: str) -> tuple[Any, dict]:
    # find_spec, not importorskip: importing vllm into this process is slow, and a second import
    # after pytester restored sys.modules fails in torch ("already registered as an opaque type")
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("the reference engine is vLLM-CPU")
    shutil.copytree(SUITES, pytester.path / "suites")
    pytester.makefile(".toml", engines=f"""
        [engines.trtllm-serve]
        kind = "openai"
        base_url = "{url}/v1"
        tokenizer = "{hf}"
    """)
    result = pytester.runpytest_subprocess(
        "suites/test_semantic_parity.py", *files, "--engine-pair=vllm,trtllm-serve", "--engine-config=engines.toml",
        f"--parity-report={report}", "--parity-noise-floor=false", "-p", "no:cacheprovider", timeout=1500)
    return result, json.loads((pytester.path / report).read_text())


@pytest.mark.slow
def test_vllm_against_trtllm_serve_on_a_compiled_engine_passes(pytester: pytest.Pytester, engine_url: str,
                                                               hf: Path) -> None:
    result, doc = _e2e(pytester, engine_url, hf, "r.json", "suites/test_rendering_parity.py")
    assert result.ret == 0, result.stdout.str()[-6000:]
    assert doc["verdict"] == "pass"
    # rendering and termination with a candidate that returns text only: prompt parity by
    # usage counts; the server's usage counts the EOS it generated (trtllm-serve keeps the end id)
    # and vLLM's ids list it: both are taken off, so the same answers have the same lengths
    checks = {c["name"]: c for s in doc["steps"] for c in s["checks"]}
    assert checks["prompt-parity"]["verdict"] == "pass" and checks["rendering-preflight"]["verdict"] == "pass"
    term = checks["termination-parity"]["numbers"]
    assert checks["termination-parity"]["verdict"] == "pass", checks["termination-parity"]["detail"]
    assert term["length_basis"] == {"ids": 0, "count": 120, "text": 0, "none": 0}
    assert 0.98 <= term["length_ratio"] <= 1.02
    engines = {e["role"]: e for e in doc["engines"]}
    cand = engines["candidate"]["capabilities"]
    assert (cand["token_ids"], cand["logprobs_top_k"], cand["tokenize"]) == (False, 1, True)
    assert cand["source"].startswith("probed at start")
    ref = engines["reference"]["capabilities"]
    assert ref["token_ids"] is True and ref["logprobs_top_k"] >= 5
    step = {s["step"]: s for s in doc["steps"]}["benchmark-parity"]
    rate = next(c for c in step["checks"] if c["name"] == "equivalence-rate")
    assert rate["verdict"] == "pass" and rate["numbers"]["lower_bound"] >= 0.90 and rate["numbers"]["n"] == 120
    assert sum(rate["numbers"]["layers"].values()) > 0
    layers = [tuple(p["comparison"]["layers"]) for p in doc["prompts"]]
    assert all(layers), "every comparison says which layers ran"
    # ids were recovered from the logprob texts: the token layer ran; closeness could not (top-1 only)
    assert all(p["comparison"]["layers"][0] in ("token-ids", "text") for p in doc["prompts"])
    assert not any("logprob-closeness" in lay for lay in layers)
    forked = [p for p in doc["prompts"] if not p["comparison"]["exact"]]
    assert all("closeness not checked" in p["comparison"]["reason"] for p in forked)
    assert all(p["comparison"]["layers_note"] for p in forked)


@pytest.mark.slow
def test_the_same_server_with_degraded_weights_fails(pytester: pytest.Pytester, hf: Path, tmp_path: Path) -> None:
    broken = write_engine_dir(tmp_path / "smollm2-engine-broken", hf, perturb=0.15, seed=1)
    with running_standin(broken, backend="tensorrt", tokenizer=hf, log_path=tmp_path / "log") as url:
        result, doc = _e2e(pytester, url, hf, "broken.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-4000:]
    step = {s["step"]: s for s in doc["steps"]}["benchmark-parity"]
    assert step["verdict"] == "fail"
    rate = next(c for c in step["checks"] if c["name"] == "equivalence-rate")
    assert rate["verdict"] == "fail" and rate["numbers"]["n_equivalent"] < 60
    result.stdout.fnmatch_lines(["*suite equivalence gate failed*"])


@pytest.mark.slow
def test_two_text_only_servers_without_a_tokenizer_are_judged_not_failed(pytester: pytest.Pytester,
                                                                         engine_url: str) -> None:
    """Issue 16, points 9 and 10: two identical servers with no /tokenize route and no tokenizer in
    either engine's spec. Identical texts are equivalent (exact as text); the truncation families
    that need token ids report inconclusive with the one-line fix, never fail."""
    shutil.copytree(SUITES, pytester.path / "suites")
    lines = (SUITES / "prompts" / "chat.jsonl").read_text().splitlines()[:8]
    pytester.makefile(".jsonl", prompts="\n".join(lines))
    pytester.makefile(".toml", engines=f"""
        [engines.one]
        kind = "openai"
        base_url = "{engine_url}/v1"

        [engines.two]
        kind = "openai"
        base_url = "{engine_url}/v1"
    """)
    result = pytester.runpytest_subprocess(
        "suites/test_semantic_parity.py", "suites/test_truncation_contract.py", "--engine-pair=one,two",
        "--engine-config=engines.toml", "--parity-prompts=prompts.jsonl", "--parity-noise-floor=false",
        "--parity-min-equivalence=0.5", "--parity-inconclusive=pass", "--parity-report=r.json",
        "-p", "no:cacheprovider", timeout=1500)
    doc = json.loads((pytester.path / "r.json").read_text())
    checks = {c["name"]: c for s in doc["steps"] for c in s["checks"]}
    assert not [c for c in checks.values() if c["verdict"] in ("fail", "error")], result.stdout.str()[-5000:]
    assert result.ret == 0, result.stdout.str()[-5000:]
    for p in doc["prompts"]:
        assert p["comparison"]["equivalent"] and p["comparison"]["exact"], p["comparison"]["reason"]
        assert p["comparison"]["layers"] == ["text"] and p["comparison"]["reason"].startswith("exact match as text")
    for name in ("truncation-max-tokens", "truncation-overlength", "truncation-side"):
        assert checks[name]["verdict"] == "inconclusive", checks[name]
        assert "no tokenizer" in checks[name]["detail"] and "set tokenizer =" in checks[name]["detail"]
    caps = [e["capabilities"] for e in doc["engines"]]
    assert all(c["token_ids"] is False and c["tokenize"] is False for c in caps)
