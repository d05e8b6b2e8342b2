"""The rendering pre-flight runs at session start, before the first test, through the plugin (issue
17): both engines up, the pre-flight requests ride the first batch with the suite's prompts, and a
mismatch is shown once, plainly, at the top; the summary at the end has the family's lines.

Two real engine workers with scripted outputs (``tests/scripted_engine.py``): no model is loaded,
so this runs in seconds. The same on real engines: ``tests/test_rendering_e2e.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SUITE = """
import pytest
from pytest_engineparity.types import GenerationRequest

pytestmark = pytest.mark.migration_step("benchmark-parity")
REQS = [GenerationRequest(prompt=f"question {i}", max_tokens=4, id=f"q{i}") for i in range(3)]

@pytest.mark.parametrize("req", REQS, ids=lambda r: r.id)
def test_close(engine_pair, req):
    engine_pair.assert_close(req)

def test_rendering_preflight(engine_pair):
    engine_pair.assert_rendering_preflight()
"""


def engines(candidate_args: str) -> str:
    path = json.dumps(str(HERE))
    return "".join(f'[engines.{name}]\nkind = "scripted_engine:ScriptedEngine"\nenv = {{ PYTHONPATH = {path} }}\n'
                   f"args = {{ default = \"ok\"{args} }}\n" for name, args in (("ref", ""), ("cand", candidate_args)))


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, candidate_args: str, noise_floor: str = "false"):
    # the adapter is named module:Class: importable by pytest itself too, not only by its workers
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", engines=engines(candidate_args))
    return pytester.runpytest_subprocess("--engine-pair=ref,cand", "--engine-config=engines.toml",
                                         f"--parity-noise-floor={noise_floor}", "--parity-report=r.json", "-p",
                                         "no:cacheprovider", timeout=120)


def test_a_template_difference_is_shown_once_at_the_top_before_any_test_runs(pytester, monkeypatch):
    result = run(pytester, monkeypatch, ', chat_prefix = "<|system|>You are helpful.\\n"')
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    top = out.index("engine parity: pre-flight")
    assert top < out.index("test_suite.py")  # before the first test's progress line
    head = [ln for ln in out.splitlines() if ln.startswith("rendering pre-flight (5 chat and completion requests)")]
    assert len(head) == 1 and ": FAIL: the engines render prompts differently: 3/5 requests" in head[0]
    assert "chat template differs: 3" in head[0]
    # shown once at the top, before the first test; the failure repeats it later, and so does the
    # short test summary where pytest does not truncate it (it never does when $CI is set)
    section = out[top:out.index("test_suite.py")]
    assert section.count("rendering/preflight-chat (chat): chat template differs") == 1
    # the suite's prompts rode the same first batch: one batch per engine for suite + pre-flight
    doc = json.loads((pytester.path / "r.json").read_text())
    for e in doc["engines"]:
        assert e["batches"][0]["requests"] == 3 + 5 and e["starts"] == 1
    checks = {c["name"]: c for s in doc["steps"] for c in s["checks"]}
    assert checks["rendering-preflight"]["verdict"] == "fail"
    assert checks["rendering-preflight"]["numbers"]["rode_suite_batch"] is True
    assert doc["rendering"]["preflight"]["verdict"] == "fail"
    assert "rendering pre-flight: fail: the engines render prompts differently" in out.split("engine parity ===")[-1]


def test_a_pair_that_renders_alike_passes_the_preflight_and_says_so_at_the_top(pytester, monkeypatch):
    # with the noise floor on: the self-runs ride the pre-flight too, before the first test
    result = run(pytester, monkeypatch, "", noise_floor="true")
    out = result.stdout.str()
    assert result.ret == 0, out[-3000:]
    assert "could not run" not in out
    result.stdout.fnmatch_lines(["prompts: 3, exact: 3, equivalent: 3, reference noise floor 3/3, candidate noise floor 3/3"])
    assert out.count("rendering pre-flight (5 chat and completion requests): PASS: every checked request "
                     "rendered alike: 5/5 (5 by count)") == 1
    result.assert_outcomes(passed=4)
