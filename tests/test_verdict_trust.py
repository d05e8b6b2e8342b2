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
from pytest_engineparity.types import GenerationRequest

TASKS = Path(__file__).resolve().parent.parent / "suites" / "tasks"


HERE = Path(__file__).resolve().parent


def scripted_pair(tmp_path, ref_replies: dict, cand_replies: dict, default: str = "ok", **cli):
    """A session over two real engines (the scripted adapter, each in its worker process)."""
    import json

    def table(name: str, replies: dict) -> str:
        return (f'[engines.{name}]\nkind = "scripted_engine:ScriptedEngine"\n'
                f'env = {{ PYTHONPATH = {json.dumps(str(HERE))} }}\n'
                f'args = {{ default = {json.dumps(default)}, replies = {{ '
                + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in replies.items()) + " } }\n")

    (tmp_path / "engines.toml").write_text(table("ref", ref_replies) + table("cand", cand_replies))
    cfg = build_config({"engine_pair": "ref,cand", "engine_config": str(tmp_path / "engines.toml"),
                        "noise_floor": "false", **cli}, {}, {}, str(tmp_path))
    s = ParitySession(cfg)
    return s, EnginePair(s, make_recorder(s, "benchmark-parity", "test_verdict_trust::node"))


@pytest.fixture
def closing():
    sessions = []
    yield sessions.append
    for s in sessions:
        s.close()


def test_identical_answers_on_the_shipped_task_set_are_equivalent(tmp_path, closing):
    """Both engines give the same answer to every one of the 300 shipped items (each engine runs
    them as one batch in its worker): the pooled verdict is equivalent at the default margin."""
    sets = load_tasks(TASKS)
    items = [it for ts in sets for it in ts.items]
    s, pair = scripted_pair(tmp_path, {}, {}, default="42")
    closing(s)
    results = pair.assert_quality_parity(TASKS)
    pooled = results[-1]
    assert pooled.task == "all" and pooled.stats.n == len(items) == 300
    assert pooled.stats.b == pooled.stats.c == 0
    assert pooled.verdict == "equivalent", pooled.stats.message
    checks = {c.name: c for c in s.checks}
    assert checks["quality:all"].verdict == "pass" and checks["quality:all"].numbers["gating"] is True
    # per task (60 items) the margin cannot always be shown; that is a non-gating finding
    assert all(not checks[f"quality:{ts.name}"].numbers["gating"] for ts in sets)
    assert build_steps(s.checks)[2].verdict == "PASS"
    assert [h.starts for h in s.handles] == [1, 1]


def test_an_undersized_suite_is_inconclusive_with_the_number_needed_not_fail(tmp_path, closing):
    reqs = [GenerationRequest(prompt=f"p{i}", max_tokens=16) for i in range(12)]
    s, pair = scripted_pair(tmp_path, {}, {}, default="the same answer")
    closing(s)
    v = pair.assert_suite_equivalent(requests=reqs)  # does not raise: no difference was measured
    assert v.verdict == "inconclusive"
    [check] = [c for c in s.checks if c.name == "equivalence-rate"]
    assert check.verdict == "inconclusive"
    assert "17 more prompts, all equivalent, would settle it" in check.detail and "power at this size" in check.detail
    steps = build_steps(s.checks)
    verdict, reason = overall_verdict(steps)
    assert verdict == "inconclusive" and "not enough evidence" in reason
    assert exit_blocks(verdict, "block", steps) and not exit_blocks(verdict, "pass", steps)


def test_a_rate_shown_below_the_bound_fails(tmp_path, closing):
    """30 of 120 answers differ completely (no logprobs, unrelated text): 90/120 is shown below
    0.90 and fails; the same engines agreeing everywhere would pass."""
    reqs = [GenerationRequest(prompt=f"q{i}", max_tokens=40) for i in range(120)]
    ref = {r.prompt: f"The capital of country {i} is its largest city." for i, r in enumerate(reqs)}
    cand = dict(ref)
    for r in reqs[:30]:
        cand[r.prompt] = "zq xv 9 kk pp"
    s, pair = scripted_pair(tmp_path, ref, cand)
    closing(s)
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
