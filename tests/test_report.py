"""Report rendering on recorded data: verdict rules, table, JSON schema, HTML page, atomic writes."""

import json

import jsonschema
import pytest

from pytest_engineparity.report import (SCHEMA_VERSION, error_control, exit_blocks, atomic_write_text, build_steps, overall_verdict, schema,
                                        terminal_lines, write_html, write_json)
from pytest_engineparity.session import Check


def _doc(checks):
    steps = build_steps(checks)
    verdict, reason = overall_verdict(steps)
    return {"schema_version": SCHEMA_VERSION, "verdict": verdict, "reason": reason,
            "steps": [s.to_dict() for s in steps], "exit_blocks": exit_blocks(verdict, "block", steps),
            "error_control": error_control(checks, 0.05, 10),
            "engines": [], "environment": {"gpus": []}, "settings": {"similarity": 0.8}, "prompts": []}


def test_step_verdicts_and_overall():
    checks = [Check("benchmark-parity", "a", "pass"), Check("benchmark-parity", "b", "fail", "token 3 differs"),
              Check("canary", "c", "pass"), Check("cutover", "d", "skip")]
    steps = {s.step: s for s in build_steps(checks)}
    assert steps["benchmark-parity"].verdict == "FAIL" and steps["benchmark-parity"].worst == "b: token 3 differs"
    assert steps["canary"].verdict == "PASS" and steps["cutover"].verdict == "SKIPPED"
    assert overall_verdict(list(steps.values()))[0] == "fail"
    assert overall_verdict(build_steps([Check("canary", "c", "pass")])) == ("pass", "every step that ran passed")
    # nothing ran is never a pass
    assert overall_verdict(build_steps([]))[0] == "fail"


def test_terminal_table_has_every_step_and_the_overall_line():
    lines = terminal_lines(build_steps([Check("canary", "c", "fail", "x" * 300)]), ("fail", "step(s) failed: canary"))
    assert len(lines) == 1 + 5 + 1 and lines[-1].startswith("overall: FAIL")
    assert all(len(line) <= 100 for line in lines)


def test_json_and_html_written_and_valid(tmp_path):
    doc = _doc([Check("benchmark-parity", "equivalence-rate", "pass", "30/30", {"n": 30})])
    write_json(tmp_path / "r.json", doc)
    jsonschema.validate(json.loads((tmp_path / "r.json").read_text()), schema())
    write_html(tmp_path / "r.html", doc)
    page = (tmp_path / "r.html").read_text()
    assert "Verdict: PASS" in page and "equivalence-rate" in page


def test_schema_rejects_a_bad_verdict():
    doc = _doc([])
    doc["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema())


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text("old")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
