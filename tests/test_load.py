"""The load plan, its seeded schedule, the per-request numbers, the output-length check, the
per-level slowdown and capacity-at-SLO verdicts, the report section, and the managed-server
plumbing: on synthetic and recorded data, no engine (``test_load_e2e.py`` runs real servers)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import time
from types import SimpleNamespace

import jsonschema
import pytest

from pytest_engineparity.checks import load as L
from pytest_engineparity.config import ConfigError, LoadPlan, build_config, parse_load_plan
from pytest_engineparity.engines.base import EngineSpec, EngineSpecError
from pytest_engineparity.engines.registry import adapter_class, load_client
from pytest_engineparity.engines.serving import ManagedServer, ServerStartError, cli_flags, process_tree
from pytest_engineparity.report import schema
from pytest_engineparity.sla import parse_sla
from pytest_engineparity.types import Completion, GenerationRequest, Timings

# --------------------------------------------------------------------------------------------
# the plan


def test_plan_parses_both_sweeps_and_settings():
    p = parse_load_plan("concurrency=1,8,32")
    assert (p.mode, p.levels, p.requests, p.output, p.runs, p.good, p.stats) == ("concurrency", (1, 8, 32), None, None, 1, 0.9,
                                                                                 ("p50",))
    assert [p.label(x) for x in p.levels] == ["concurrency=1", "concurrency=8", "concurrency=32"]
    r = parse_load_plan(" rate=2, 4,8/s ; requests=40;output=16;input=128;runs=3;good=0.95;stats=p50,P99.9")
    assert (r.mode, r.levels, r.requests, r.output, r.input, r.runs, r.good, r.stats) == (
        "rate", (2.0, 4.0, 8.0), 40, 16, 128, 3, 0.95, ("p50", "p99.9"))
    assert r.label(2.0) == "rate=2/s"


@pytest.mark.parametrize("raw, why", [
    ("", "empty plan"),
    ("concurrency=1,x", "level 'x' is not an integer"),
    ("concurrency=4,1", "distinct and increasing"),
    ("rate=0/s", "must be > 0"),
    ("concurrency=1;rate=2", "not both"),
    ("requests=30", "no load levels"),
    ("concurrency=1;output=0", "output must be >= 1"),
    ("concurrency=1;good=1.5", "good"),
    ("concurrency=1;speed=3", "unknown key 'speed'"),
    ("concurrency=1;stats=p50,mean", "'mean' is not a percentile"),
    ("concurrency", "is not KEY=VALUE"),
])
def test_bad_plans_name_the_option(raw, why):
    with pytest.raises(ConfigError, match="--parity-load") as exc:
        parse_load_plan(raw)
    assert why in str(exc.value)


def test_plan_is_parsed_once_into_the_config():
    cfg = build_config({"load": "concurrency=1,4"}, {}, {}, ".")
    assert isinstance(cfg.load, LoadPlan) and cfg.load.levels == (1, 4)
    assert build_config({}, {}, {}, ".").load is None
    with pytest.raises(ConfigError, match=r"--parity-load: .*\(from \[tool.engineparity\] load\)"):
        build_config({}, {}, {"load": "rate=fast"}, ".")


def test_bad_plan_on_the_command_line_exits_4(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--engine-pair=vllm-serve,vllm-serve", "--parity-load=concurrency=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "--parity-load: concurrency level '0' must be > 0" in errors[0], result.stderr.lines


# --------------------------------------------------------------------------------------------
# schedule and workload

REQS = [GenerationRequest(prompt=f"p{i}", max_tokens=8, id=f"r{i}") for i in range(5)]


def test_schedule_is_the_same_for_the_same_seed_and_differs_by_level():
    a = L.schedule(REQS, 12, "concurrency", 4, seed=3)
    assert a == L.schedule(REQS, 12, "concurrency", 4, seed=3)
    order, offsets, conc = a
    assert conc == 4 and offsets == [0.0] * 12 and len(order) == 12
    # every prompt is used before any is repeated (a reshuffled pass each time)
    assert sorted(r.id for r in order[:5]) == sorted(r.id for r in REQS)
    assert L.schedule(REQS, 12, "concurrency", 8, seed=3)[0] != order


def test_rate_schedule_is_poisson_and_uncapped():
    order, offsets, conc = L.schedule(REQS, 4000, "rate", 8.0, seed=0)
    assert conc == 4000 and offsets[0] == 0.0 and offsets == sorted(offsets)
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    assert abs(sum(gaps) / len(gaps) - 1 / 8.0) < 0.01  # exponential gaps with mean 1/rate
    assert L.schedule(REQS, 4000, "rate", 8.0, seed=0)[1] == offsets
    with pytest.raises(ValueError):
        L.schedule([], 3, "rate", 1.0, seed=0)


def test_requests_per_level_defaults():
    assert L.requests_per_level(parse_load_plan("concurrency=1,4")) == 32
    assert L.requests_per_level(parse_load_plan("concurrency=1,8,32")) == 128
    assert L.requests_per_level(parse_load_plan("rate=2,4/s")) == 32
    assert L.requests_per_level(parse_load_plan("rate=2,4/s;requests=50")) == 50


def test_workload_shapes_declared_requests_and_synthesizes_otherwise():
    plan = parse_load_plan("concurrency=1;output=16")
    reqs, desc = L.workload(REQS, plan, tokenize=None, seed=0)
    assert desc["source"] == "declared" and all(r.logprobs is None for r in reqs)
    assert all((r.max_tokens, r.min_tokens, r.ignore_eos) == (16, 16, True) for r in reqs)
    plain, _ = L.workload(REQS, parse_load_plan("concurrency=1"), tokenize=None, seed=0)
    assert [r.max_tokens for r in plain] == [8] * 5 and not any(r.ignore_eos for r in plain)

    vocab = list(range(100, 400))
    synth, desc = L.workload([], parse_load_plan("concurrency=1;input=20;output=4"), tokenize=lambda t: vocab, seed=1)
    assert desc["source"] == "synthetic" and desc["input_tokens"] == 20
    assert all(len(r.prompt_token_ids) == 20 and (r.max_tokens, r.min_tokens, r.ignore_eos) == (4, 4, True)
               for r in synth)
    again, _ = L.workload([], parse_load_plan("concurrency=1;input=20;output=4"), tokenize=lambda t: vocab, seed=1)
    assert again == synth

    def no_tokenizer(text):
        raise RuntimeError("no /tokenize")

    words, desc = L.workload([], parse_load_plan("concurrency=1;input=10"), tokenize=no_tokenizer, seed=0)
    assert words[0].prompt and len(words[0].prompt.split()) == 10 and "no tokenizer" in desc["description"]


# --------------------------------------------------------------------------------------------
# per-request numbers and the length check


def _done(ttft: float, gap: float, n: int, chunk: int = 1, tail: float = 0.001, ok: bool = True) -> Completion:
    if not ok:
        return Completion.failed("overloaded", "http_503")
    times = [ttft + gap * (i // chunk) for i in range(n)]
    return Completion(text="x" * n, token_ids=list(range(n)), finish_reason="length",
                      timings=Timings(ttft=ttft, e2e=times[-1] + tail, token_times=times, source="client-stream"))


def test_request_numbers_follow_vllm_bench_serve():
    s = L.sample_from_completion(_done(0.2, 0.05, 6, chunk=2, tail=0.01))
    # chunks of two tokens: ITL is one gap per chunk, not a zero gap inside it
    assert s.itl == pytest.approx([0.05, 0.05])
    # TPOT = (e2e - ttft) / (n - 1) with e2e the end of the stream
    assert s.tpot == pytest.approx((0.2 + 0.10 + 0.01 - 0.2) / 5)
    assert (s.ttft, s.output_tokens) == (0.2, 6)
    assert L.sample_from_completion(_done(0.2, 0.05, 1)).tpot is None
    assert not L.sample_from_completion(_done(0, 0, 0, ok=False)).ok


def test_length_check_refuses_throughput_from_short_outputs():
    fixed = [L.shaped(r, 8) for r in REQS]
    good = L.length_check(fixed, [_done(0.1, 0.01, 8) for _ in fixed])
    assert good["usable"] and "exactly the 8 tokens" in good["note"]
    short = L.length_check(fixed, [_done(0.1, 0.01, 8)] * 4 + [_done(0.1, 0.01, 3)])
    assert not short["usable"] and short["wrong"] == [{"index": 4, "asked": 8, "produced": 3}]
    assert "ignore_eos / min_tokens not honoured" in short["note"]
    loose = L.length_check(REQS, [_done(0.1, 0.01, 3) for _ in REQS])
    assert loose["usable"] and "may stop at EOS" in loose["note"]


# --------------------------------------------------------------------------------------------
# verdicts on synthetic levels


def _level(plan, level, ref_ttft, cand_ttft, n=40, gap=0.02, cand_short=0, cand_failed=0):
    reqs = [L.shaped(REQS[i % 5], 8) for i in range(n)]

    def outs(base, short=0, failed=0):
        res = []
        for i in range(n):
            jitter = 1.0 + 0.05 * ((i * 37) % 97) / 97  # spread: distinct samples
            if i < failed:
                res.append(_done(0, 0, 0, ok=False))
            else:
                res.append(_done(base * jitter, gap * jitter, 3 if i >= n - short else 8))
        return res

    runs = {"reference": [(outs(ref_ttft), n * 0.1)], "candidate": [(outs(cand_ttft, cand_short, cand_failed), n * 0.1)]}
    return L.level_from_runs(plan, level, reqs, [0.0] * n, int(level), runs, {"reference": "ref", "candidate": "cand"})


def _measurement(plan, levels):
    return L.LoadMeasurement(plan, levels=levels, names={"reference": "ref", "candidate": "cand"},
                             workload={"description": "synthetic"})


def test_slowdown_fails_only_at_the_loaded_level():
    plan = parse_load_plan("concurrency=1,4;output=8")
    quiet, loaded = _level(plan, 1, 0.1, 0.1), _level(plan, 4, 0.1, 0.6)
    v1 = L.level_slowdown(quiet, 1.5, alpha_fail=0.005 / 12, stats=("p50", "p90"))
    v4 = L.level_slowdown(loaded, 1.5, alpha_fail=0.005 / 12, stats=("p50", "p90"))
    assert v1.verdict == "pass" and v1.name == "load:slowdown@concurrency=1"
    assert v4.verdict == "fail" and "slower on ttft p50" in v4.message
    few = L.level_slowdown(_level(plan, 4, 0.1, 0.11, n=10), 1.5)
    assert few.verdict == "inconclusive" and "need about 20 more requests" in few.message


def test_capacity_pass_fail_inconclusive_and_skip():
    plan = parse_load_plan("concurrency=1,4,8;output=8")
    sla = parse_sla("ttft_p90<=300ms")
    same = _measurement(plan, [_level(plan, c, 0.1, 0.1) for c in (1, 4, 8)])
    res = L.capacity(same, sla, 1.5)
    assert res.verdict == "pass" and (res.reference, res.candidate, res.ratio) == (8, 8, 1.0)
    assert res.censored == {"reference": True, "candidate": True} and "add higher levels" in res.message

    # the candidate surely misses from concurrency=4 on, where the reference meets the SLA
    worse = _measurement(plan, [_level(plan, 1, 0.1, 0.1), _level(plan, 4, 0.1, 0.6), _level(plan, 8, 0.2, 0.9)])
    res = L.capacity(worse, sla, 1.5)
    assert res.verdict == "fail" and (res.reference, res.candidate) == (8, 1) and res.ratio == pytest.approx(1 / 8)
    assert "at concurrency=4 the candidate surely misses the SLA" in res.message

    # a miss by the point estimate only (the CI straddles the bound): inconclusive, says what settles it
    edge = _measurement(plan, [_level(plan, 1, 0.1, 0.1), _level(plan, 4, 0.1, 0.29, n=12), _level(plan, 8, 0.1, 0.3)])
    res = L.capacity(edge, sla, 1.5)
    assert res.verdict == "inconclusive" and "requests=N" in res.message

    # within the allowed ratio: the candidate's capacity 4 vs the reference's 8 with max 2x
    half = _measurement(plan, [_level(plan, 1, 0.1, 0.1), _level(plan, 4, 0.1, 0.1), _level(plan, 8, 0.1, 0.6)])
    assert L.capacity(half, sla, 2.0).verdict == "pass"

    nothing = _measurement(plan, [_level(plan, c, 0.5, 0.5) for c in (1, 4, 8)])
    res = L.capacity(nothing, sla, 1.5)
    assert res.verdict == "inconclusive" and "the reference meets the SLA at no level" in res.message
    assert L.capacity(same, [], 1.5).verdict == "skip"


def test_capacity_counts_goodput_share_and_unusable_throughput():
    plan = parse_load_plan("concurrency=1,4;output=8;good=0.9")
    failing = _measurement(plan, [_level(plan, 1, 0.1, 0.1), _level(plan, 4, 0.1, 0.1, cand_failed=20)])
    res = L.capacity(failing, parse_sla("e2e_p50<=2s"), 1.5)
    assert res.verdict == "fail" and "goodput share 50%" in res.message
    short = _measurement(plan, [_level(plan, 1, 0.1, 0.1, cand_short=5)])
    st = L.level_status(short.levels[0].candidate, parse_sla("throughput>=1tok/s"), 0.9)
    assert st["meets"] is False and "throughput not usable" in st["why"]
    section = short.levels[0].candidate.summary(parse_sla("e2e_p50<=2s"), 0.95)
    assert section["throughput_tok_s"] is None and section["goodput"]["goodput_req_s"] is None


def test_section_is_valid_json_renders_curves_and_terminal_lines():
    plan = parse_load_plan("concurrency=1,4;output=8")
    m = _measurement(plan, [_level(plan, 1, 0.1, 0.1), _level(plan, 4, 0.1, 0.6)])
    bounds = parse_sla("ttft_p90<=300ms")
    sec = L.summary(m, bounds, 0.95)
    sec["slowdown"] = [L.level_slowdown(lm, 1.5).to_dict() for lm in m.levels]
    sec["capacity"] = L.capacity(m, bounds, 1.5).to_dict()
    doc = json.loads(json.dumps({"load": sec}))
    jsonschema.validate(doc["load"], {**schema()["properties"]["load"], "$defs": schema()["$defs"]})
    lv = doc["load"]["levels"][1]["engines"]["candidate"]["metrics"]["ttft"]
    assert lv["p50_ci"][0] <= lv["p50"] <= lv["p50_ci"][1]
    page = L.html_section(doc)
    assert page.count('<svg class="load-curve"') == 4 and 'data-kind="throughput"' in page
    ttft_svg = page.split('data-kind="latency-ttft"')[1].split("</svg>")[0]
    assert 'class="curve-reference"' in ttft_svg and 'class="curve-candidate"' in ttft_svg
    assert 'class="sla-bound"' in ttft_svg and "ttft_p90&lt;=300ms" in ttft_svg
    lines = L.terminal_lines(doc)
    assert lines[1].lstrip().startswith("concurrency=1") and "slowdown fail" in lines[2]
    assert lines[-1].startswith("  capacity: fail")
    skipped = L.summary(L.LoadMeasurement(plan, skipped="in-process"), bounds, 0.95)
    assert L.terminal_lines({"load": skipped}) == ["load sweep skipped: in-process"]


class _View:
    def __init__(self, role, kind, transport):
        self.role, self.name = role, kind
        self.spec = EngineSpec(kind=kind, target="/m", name=kind)
        self.capabilities = SimpleNamespace(transport=transport)

    @property
    def info(self):
        raise AssertionError("an in-process engine is never started for a load sweep")


def test_in_process_engines_are_skipped_with_the_reason():
    ctx = SimpleNamespace(cfg=SimpleNamespace(seed=0, warmup=2), single_engine=False,
                          reference=_View("reference", "vllm", "in-process"), candidate=_View("candidate", "hf", "in-process"))
    m = L.measure_load(ctx, parse_load_plan("concurrency=1,4"))
    assert m.skipped and "in-process engines cannot be loaded concurrently" in m.skipped and "vllm, hf" in m.skipped
    assert load_client(EngineSpec(kind="hf", target="/m"), None) is None


# --------------------------------------------------------------------------------------------
# managed servers (a tiny stand-in HTTP server; no engine)

FAKE_SERVER = textwrap.dedent('''
    import http.server, json, subprocess, sys, time
    port, delay, child = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "child"
    if child:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("loading", flush=True)
    time.sleep(delay)

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"data": [{"id": "m"}]}).encode() if self.path == "/v1/models" else b"ok"
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a):
            pass

    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


@pytest.fixture
def fake_server(tmp_path):
    path = tmp_path / "fake_server.py"
    path.write_text(FAKE_SERVER)
    return path


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_managed_server_waits_for_readiness_and_leaves_no_process(fake_server, tmp_path):
    srv = ManagedServer("fake", lambda port: [sys.executable, str(fake_server), port, "0.5", "child"],
                        log_dir=str(tmp_path))
    base = srv.start(timeout=30)
    assert base == f"http://127.0.0.1:{srv.port}" and srv.ready_seconds >= 0.5
    tree = process_tree(srv.proc.pid)
    assert len(tree) == 2  # the server and the child it spawned
    srv.stop(grace=2)
    time.sleep(0.2)
    assert not any(_alive(p) for p in tree)
    srv.stop()  # twice is fine


def test_managed_server_failures_carry_the_log_tail(fake_server, tmp_path):
    dead = ManagedServer("dead", lambda port: [sys.executable, "-c", "print('no such model'); raise SystemExit(3)"],
                         log_dir=str(tmp_path / "a"))
    with pytest.raises(ServerStartError, match=r"(?s)exited with status 3 before it was ready.*no such model"):
        dead.start(timeout=30)
    slow = ManagedServer("slow", lambda port: [sys.executable, str(fake_server), port, "60", "-"],
                         log_dir=str(tmp_path / "b"))
    t0 = time.monotonic()
    with pytest.raises(ServerStartError, match=r"(?s)not ready after 1 s.*loading"):
        slow.start(timeout=1)
    assert time.monotonic() - t0 < 10 and slow.proc is None


# --------------------------------------------------------------------------------------------
# the managed kinds' command lines (nothing started)


def test_cli_flags():
    assert cli_flags({"max_num_seqs": 1, "enforce_eager": True, "x": False, "y": None, "l": [1, 2],
                      "d": {"a": 1}}) == ["--max-num-seqs", "1", "--enforce-eager", "--l", "1", "2", "--d", '{"a": 1}']
    assert cli_flags({"max_batch_size": 8}, dashes=False) == ["--max_batch_size", "8"]


def test_vllm_serve_command_splits_client_and_server_args(model_dir):
    cls = adapter_class("vllm-serve")
    spec = EngineSpec(kind="vllm-serve", target=model_dir, name="s",
                      args={**cls.CAPABILITIES.embedded_args, "max_num_seqs": 1, "concurrency": 4,
                            "server_args": ["--seed", "1"]})
    cls.validate(spec)
    argv = cls(spec).command(1234)
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--port") + 1] == "1234" and argv[argv.index("--served-model-name") + 1] == "model"
    assert "--enforce-eager" in argv and argv[argv.index("--max-num-seqs") + 1] == "1" and argv[-2:] == ["--seed", "1"]
    assert "--concurrency" not in argv  # a client arg: the openai adapter's
    assert cls.capabilities(spec).transport == "http"
    for bad, msg in (({"port": 1}, "chosen by the adapter"), ({"concurrency": 0}, "concurrency"),
                     ({"server_args": "--x"}, "list of strings")):
        with pytest.raises(EngineSpecError, match=msg):
            cls.validate(EngineSpec(kind="vllm-serve", target=model_dir, args=bad))


def test_trtllm_serve_command_picks_the_backend(tmp_path, model_dir):
    cls = adapter_class("trtllm-serve")
    engine = tmp_path / "engine"
    engine.mkdir()
    (engine / "config.json").write_text(json.dumps({"build_config": {}, "pretrained_config": {}}))
    argv = cls(EngineSpec(kind="trtllm-serve", target=str(engine), tokenizer=model_dir,
                          args={"max_batch_size": 8})).command(99)
    assert argv[:4] == [sys.executable, "-m", "tensorrt_llm.commands.serve", str(engine)]
    assert argv[argv.index("--backend") + 1] == "tensorrt" and argv[argv.index("--max_batch_size") + 1] == "8"
    hf = cls(EngineSpec(kind="trtllm-serve", target=model_dir, args={"command": ["python", "standin.py"]})).command(99)
    assert hf[:3] == ["python", "standin.py", model_dir] and hf[hf.index("--backend") + 1] == "pytorch"
    old = cls(EngineSpec(kind="trtllm-serve", target=str(engine), args={"backend": ""})).command(99)
    assert "--backend" not in old
    with pytest.raises(EngineSpecError, match="not a directory"):
        cls.validate(EngineSpec(kind="trtllm-serve", target=str(tmp_path / "missing")))
    assert os.path.isdir(model_dir)


def test_the_suite_skips_in_process_engines_with_the_reason(pytester, monkeypatch):
    """The real suite file, two in-process engines (the scripted adapter): the load test is
    skipped saying why, never measured; the report's load section says the same."""
    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    suites = pytester.path / "suites"
    suites.mkdir()
    shutil.copy(os.path.join(os.path.dirname(here), "suites", "test_latency_sla.py"), suites)
    table = (f'kind = "scripted_engine:ScriptedEngine"\nenv = {{ PYTHONPATH = {json.dumps(here)} }}\n')
    pytester.makefile(".toml", engines=f"[engines.ref]\n{table}\n[engines.cand]\n{table}")
    result = pytester.runpytest_subprocess("suites", "--engine-pair=ref,cand", "--engine-config=engines.toml",
                                           "--parity-load=concurrency=1,4", "--parity-report=r.json", "-rs",
                                           "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["SKIPPED*load:sweep: in-process engines cannot be loaded concurrently*ref, cand*"
                                 "use a server kind*"])
    assert result.ret == 0, result.stdout.str()
    doc = json.loads((pytester.path / "r.json").read_text())
    jsonschema.validate(doc, schema())
    assert doc["load"]["skipped"].startswith("in-process engines cannot be loaded concurrently")


def test_trtllm_serve_kind_runs_the_stand_in_and_leaves_no_process(model_dir):
    """The managed ``trtllm-serve`` kind with ``args.command`` pointed at the project's stand-in
    (trtllm-serve's HTTP behaviour over the tensorrt_llm double; not TensorRT-LLM): start, the
    composed openai path, a scheduled load through ``load_client``, stop with nothing left."""
    pytest.importorskip("fastapi", reason="the trtllm-serve stand-in runs on FastAPI (installed with vllm)")
    here = os.path.dirname(os.path.abspath(__file__))
    cls = adapter_class("trtllm-serve")
    spec = EngineSpec(kind="trtllm-serve", target=model_dir, name="standin", start_timeout=300, request_timeout=120,
                      args={"command": [sys.executable, os.path.join(here, "trtllm_serve_standin.py")]},
                      env={"PYTHONPATH": here + os.pathsep + os.path.dirname(here), "OMP_NUM_THREADS": "1"})
    cls.validate(spec)
    old = {k: os.environ.get(k) for k in spec.env}
    os.environ.update(spec.env)  # the worker would run with the spec's env
    eng = cls(spec)
    try:
        info = eng.start()
        assert info.kind == "trtllm-serve" and info.details["flavor"] == "trtllm"
        assert info.details["server_command"][info.details["server_command"].index("--backend") + 1] == "pytorch"
        reqs = [GenerationRequest(prompt=f"Count to {i}:", max_tokens=4, min_tokens=4, ignore_eos=True, logprobs=None)
                for i in range(4)]
        assert [len(c.timings.token_times) for c in eng.generate(reqs[:2])] == [4, 4]
        client = cls.load_client(spec, info)
        try:
            outs = client.generate_scheduled(reqs, [0.0, 0.05, 0.1, 0.15], 2)
        finally:
            client.close()
        assert all(o.ok and len(o.timings.token_times) == 4 for o in outs)
        tree = process_tree(info.details["server_pid"])
    finally:
        eng.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    time.sleep(0.3)
    assert not any(_alive(p) for p in tree)
