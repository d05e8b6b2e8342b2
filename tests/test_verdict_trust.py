"""Verdicts you can trust (issue 15): not enough evidence is inconclusive (with what would settle
it), never fail; identical answers on the shipped task set come out equivalent; a behaviour both
engines share is not a failure; the composition bounds the run's false alarms.

Driven through the real fixture object and families on recorded completions (no engine runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_engineparity.checks.quality import load_tasks
from pytest_engineparity.checks.verdicts import Check
from pytest_engineparity.config import build_config
from pytest_engineparity.pair import EnginePair, make_recorder
from pytest_engineparity.report import build_steps, error_control, exit_blocks, overall_verdict
from pytest_engineparity.session import ParitySession
from pytest_engineparity.types import Completion, GenerationRequest

TASKS = Path(__file__).resolve().parent.parent / "suites" / "tasks"


def make_pair(tmp_path, **cli):
    cfg = build_config({"engine_pair": "hf,hf", **cli}, {}, {}, str(tmp_path))
    s = ParitySession(cfg)
    return s, EnginePair(s, make_recorder(s, "benchmark-parity", "test_verdict_trust::node"))


def put(session, requests, ref_texts, cand_texts, aux=False):
    """Completions as the engines would have returned them (token ids included: exact layer)."""
    session.register(requests, aux=aux)
    for r, a, b in zip(requests, ref_texts, cand_texts):
        k = r.key()
        session.results["reference"][k] = Completion(text=a, token_ids=[ord(ch) for ch in a], finish_reason="stop")
        session.results["candidate"][k] = Completion(text=b, token_ids=[ord(ch) for ch in b], finish_reason="stop")


def test_identical_answers_on_the_shipped_task_set_are_equivalent(tmp_path):
    s, pair = make_pair(tmp_path)
    sets = load_tasks(TASKS)
    items = [it for ts in sets for it in ts.items]
    answers = [f"answer {i}" for i in range(len(items))]
    put(s, [it.request for it in items], answers, answers, aux=True)
    results = pair.assert_quality_parity(TASKS)
    pooled = results[-1]
    assert pooled.task == "all" and pooled.stats.n == 300
    assert pooled.verdict == "equivalent", pooled.stats.message
    checks = {c.name: c for c in s.checks}
    assert checks["quality:all"].verdict == "pass" and checks["quality:all"].numbers["gating"] is True
    # per task (60 items) the margin cannot always be shown; that is a non-gating finding
    assert all(not checks[f"quality:{ts.name}"].numbers["gating"] for ts in sets)
    assert build_steps(s.checks)[2].verdict == "PASS"


def test_an_undersized_suite_is_inconclusive_with_the_number_needed_not_fail(tmp_path):
    s, pair = make_pair(tmp_path)
    reqs = [GenerationRequest(prompt=f"p{i}", max_tokens=4) for i in range(12)]
    put(s, reqs, [f"same {i}" for i in range(12)], [f"same {i}" for i in range(12)])
    v = pair.assert_suite_equivalent(requests=reqs)  # does not raise: no difference was measured
    assert v.verdict == "inconclusive"
    [check] = [c for c in s.checks if c.name == "equivalence-rate"]
    assert check.verdict == "inconclusive"
    assert "17 more prompts, all equivalent, would settle it" in check.detail and "power at this size" in check.detail
    steps = build_steps(s.checks)
    verdict, reason = overall_verdict(steps)
    assert verdict == "inconclusive" and "not enough evidence" in reason
    assert exit_blocks(verdict, "block", steps) and not exit_blocks(verdict, "pass", steps)


def test_a_rate_shown_below_the_bound_fails(tmp_path):
    s, pair = make_pair(tmp_path)
    reqs = [GenerationRequest(prompt=f"q{i}", max_tokens=4) for i in range(120)]
    # 30 of 120 fork at token 0 with no logprobs and unrelated text: 90/120 equivalent
    cand = [f"same {i}" if i >= 30 else "zzzz completely different" for i in range(120)]
    put(s, reqs, [f"same {i}" for i in range(120)], cand)
    s.similarity.update({r.key(): 0.0 for r in reqs[:30]})
    with pytest.raises(AssertionError, match="shown below 0.90"):
        pair.assert_suite_equivalent(requests=reqs)
    assert overall_verdict(build_steps(s.checks))[0] == "fail"


def test_shared_findings_and_warnings_do_not_fail_a_step():
    checks = [Check("benchmark-parity", "truncation-side", "shared", "both engines ignore truncate_prompt_tokens"),
              Check("benchmark-parity", "truncation-limits", "warn", "limits differ"),
              Check("benchmark-parity", "equivalence-rate", "pass", "")]
    steps = build_steps(checks)
    assert steps[2].verdict == "PASS" and overall_verdict(steps)[0] == "pass"
    assert "both engines ignore" in steps[2].worst or "limits differ" in steps[2].worst


def test_error_control_counts_the_decisions_and_states_the_bound():
    checks = [Check("canary", f"g{i}", "pass", "", {"alpha_fail": 0.005}) for i in range(6)]
    ec = error_control(checks, 0.05, 10)
    assert ec["decisions"] == 6 and ec["family_wise_bound"] == pytest.approx(0.03)
    ec = error_control(checks * 2, 0.05, 10)
    assert ec["family_wise_bound"] == pytest.approx(0.06) and "raise it" in ec["note"]
