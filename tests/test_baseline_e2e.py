"""Baselines and compatibility end to end: pytest on the shipped suites (suites/test_compatibility.py,
suites/test_rollback_readiness.py) in a pytester subprocess.

The slow test starts real transformers engines on the embedded model (3 prompts, 8 tokens): save a
baseline, re-run unchanged, re-run with a broken candidate, corrupt the file. The others start no
engine: the compatibility checks read engine directories and the machine only.
"""

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from pytest_engineparity.runtime.fingerprint import write_sidecar
from pytest_engineparity.report import schema

HERE = Path(__file__).resolve().parent
SUITES = HERE.parent / "suites"
DATA = HERE / "data"

PROMPTS = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 8, "id": "capital"},
    {"prompt": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", "max_tokens": 8, "id": "fib"},
    {"messages": [{"role": "user", "content": "Tom has 5 apples and gives away 2. How many are left?"}],
     "max_tokens": 8, "id": "apples"},
]

ENGINES = """
[engines.reference]
kind = "hf"

[engines.current]
kind = "hf"

[engines.degraded]
kind = "hf"
args = { perturb_weights = 0.15, perturb_seed = 1 }
"""


def _report(path: Path) -> dict:
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, schema())
    return doc


def _checks(doc: dict, step: str) -> dict:
    s = {s["step"]: s for s in doc["steps"]}[step]
    return {c["name"]: c for c in s["checks"]}


def _setup(pytester: pytest.Pytester) -> None:
    shutil.copytree(SUITES, pytester.path / "suites")
    (pytester.path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    (pytester.path / "engines.toml").write_text(ENGINES)


@pytest.mark.slow
def test_baseline_round_trip_with_real_engines(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    common = ["suites/test_compatibility.py", "suites/test_rollback_readiness.py", "--engine-config=engines.toml",
              "--parity-prompts=p.jsonl", "--parity-noise-floor=false", "--parity-baseline=bl",
              "--parity-min-equivalence=0.3", "-p", "no:cacheprovider", "-rs",
              # 3 prompts cannot settle latency: inconclusive, which must not block this round trip
              "--parity-inconclusive=pass"]

    # 1. save: both roles' baselines are written
    r = pytester.runpytest_subprocess("--engine-pair=reference,current", "--parity-baseline-update",
                                      "--parity-report=save.json", *common, timeout=1500)
    assert r.ret == 0, r.stdout.str()[-3000:]
    cand = json.loads((pytester.path / "bl" / "candidate" / "baseline.json").read_text())
    ref = json.loads((pytester.path / "bl" / "reference" / "baseline.json").read_text())
    assert cand["schema_version"] == 1 and cand["role"] == "candidate" and ref["role"] == "reference"
    assert sorted(p["id"] for p in cand["prompts"]) == ["apples", "capital", "fib"]
    assert cand["engine"]["name"] == "current" and cand["fingerprint"]["packages"]["transformers"]
    assert all(p["completion"]["token_ids"] and p["completion"]["logprobs"] for p in cand["prompts"])
    assert "candidate baseline-written" in _checks(_report(pytester.path / "save.json"), "staging-compile")

    # 2. unchanged: passes, and says the latency comparison is inconclusive on 3 requests
    r = pytester.runpytest_subprocess("--engine-pair=reference,current", "--parity-report=same.json",
                                      "--parity-html=same.html", *common, timeout=1500)
    assert r.ret == 0, r.stdout.str()[-3000:]
    doc = _report(pytester.path / "same.json")
    checks = _checks(doc, "staging-compile")
    assert checks["candidate baseline-outputs"]["verdict"] == "pass"
    assert "3/3 equivalent" in checks["candidate baseline-outputs"]["detail"]
    assert checks["candidate baseline-fingerprint"]["verdict"] == "pass"
    assert checks["candidate baseline-latency"]["verdict"] == "inconclusive"
    assert "too few samples" in checks["candidate baseline-latency"]["detail"]
    assert doc["verdict"] == "inconclusive" and doc["exit_blocks"] is False
    assert _checks(doc, "cutover")["reference baseline-outputs"]["verdict"] == "pass"
    assert doc["baseline"]["roles"]["candidate"]["outputs"]["n_exact"] == 3
    html = (pytester.path / "same.html").read_text()
    assert "Compatibility and baselines" in html and "candidate baseline" in html

    # 3. a changed candidate (15 % weight noise): staging-compile fails with the diff; the
    #    reference, unchanged, still matches its own baseline (cutover passes)
    r = pytester.runpytest_subprocess("--engine-pair=reference,degraded", "--parity-report=changed.json", *common,
                                      timeout=1500)
    out = r.stdout.str()
    assert r.ret == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    assert "candidate vs its baseline" in out and "first divergence at token" in out
    assert "    baseline | " in out and "    now      | " in out
    assert "spec.args.perturb_weights none → 0.15" in out
    doc = _report(pytester.path / "changed.json")
    steps = {s["step"]: s["verdict"] for s in doc["steps"]}
    # the reference still matches its own baseline; only its latency (3 requests) is unsettled
    assert steps["staging-compile"] == "fail" and steps["cutover"] == "inconclusive"
    assert _checks(doc, "cutover")["reference baseline-outputs"]["verdict"] == "pass"
    assert _checks(doc, "staging-compile")["candidate baseline-outputs"]["verdict"] == "fail"
    r.stdout.fnmatch_lines(["*staging-compile*FAIL*", "*cutover*INCONCLUSIVE*", "overall: FAIL*"])

    # 4. a corrupt baseline: an error naming the file (no engine needs to start for it)
    path = pytester.path / "bl" / "candidate" / "baseline.json"
    path.write_text(path.read_text()[:300])
    r = pytester.runpytest_subprocess("--engine-pair=reference,current", "suites/test_compatibility.py",
                                      "--engine-config=engines.toml", "--parity-prompts=p.jsonl",
                                      "--parity-baseline=bl", "-p", "no:cacheprovider", timeout=1500)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.stdout.fnmatch_lines([f"*BaselineError: {path}: is corrupt (not valid JSON*--parity-baseline-update*"])
    assert "starting reference engine" not in r.stdout.str()


def test_missing_baseline_fails_and_says_how_to_create_it(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    r = pytester.runpytest_subprocess("--engine-pair=reference,current", "suites/test_compatibility.py",
                                      "--engine-config=engines.toml", "--parity-prompts=p.jsonl",
                                      "--parity-baseline=bl", "-p", "no:cacheprovider", timeout=120)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    where = pytester.path / "bl" / "candidate" / "baseline.json"
    r.stdout.fnmatch_lines([f"*BaselineError: {where}: no candidate baseline: record one with"
                            f" --parity-baseline-update (pytest --parity-baseline={pytester.path / 'bl'}*"])
    assert "starting reference engine" not in r.stdout.str()  # decided before any engine starts


def test_pair_without_engine_dirs_skips_compatibility(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    r = pytester.runpytest_subprocess("--engine-pair=vllm,hf", "suites/test_compatibility.py", "-rs",
                                      "--parity-report=r.json", "-p", "no:cacheprovider", timeout=120)
    assert r.ret == 0, r.stdout.str()[-3000:]
    r.stdout.fnmatch_lines([
        "*SKIPPED*the reference engine 'vllm' is a vllm engine, not a TensorRT-LLM engine directory*",
        "*SKIPPED*the candidate engine 'hf' is a hf engine, not a TensorRT-LLM engine directory*",
        "*SKIPPED*no TensorRT-LLM engine directory in the pair*",
        "*SKIPPED*no --parity-baseline=DIR*",
    ])
    doc = _report(pytester.path / "r.json")
    checks = _checks(doc, "staging-compile")
    assert checks["machine-fingerprint"]["verdict"] == "pass"
    assert {s["step"]: s["verdict"] for s in doc["steps"]}["staging-compile"] == "pass"
    assert doc["baseline"]["fingerprint_summary"]
    assert all(e["starts"] == 0 for e in doc["engines"])  # nothing was started


def test_engine_dir_built_elsewhere_fails_staging_compile(pytester: pytest.Pytester) -> None:
    """A TensorRT-LLM engine dir whose sidecar names a GPU architecture this machine does not have:
    rebuild required (or, without a GPU, cannot load). The report carries the engine-dir summary."""
    _setup(pytester)
    eng = pytester.path / "engine"
    eng.mkdir()
    shutil.copy(DATA / "trtllm-engine-config-0.17.0.post1.json", eng / "config.json")
    (eng / "rank0.engine").write_bytes(b"\0" * 64)
    fp = json.loads((DATA / "fingerprint-h100-trtllm-1.2.1.json").read_text())
    fp["gpus"][0].update(name="Build-only GPU", compute_capability="1.0")
    write_sidecar(eng, fp)
    r = pytester.runpytest_subprocess(f"--engine-pair=hf,trtllm:{eng}", "suites/test_compatibility.py", "-rs",
                                      "--parity-report=r.json", "--parity-html=r.html", "-p", "no:cacheprovider",
                                      timeout=120)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.stdout.fnmatch_lines(["*engine directory not compatible with this machine*",
                            "*FAIL gpu_architecture: *SM 1.0 (Build-only GPU)*",
                            "*staging-compile*FAIL*"])
    doc = _report(pytester.path / "r.json")
    comp = doc["baseline"]["compatibility"]["candidate"]
    assert comp["verdict"] == "fail" and comp["engine_dir"] == str(eng)
    assert comp["summary"]["architecture"] == "Qwen2ForCausalLM" and comp["summary"]["builder_version"] == "0.17.0.post1"
    assert comp["sidecar"]["present"] is True
    assert doc["baseline"]["compatibility"]["reference"]["skip_reason"]
    assert _checks(doc, "staging-compile")["candidate gpu_architecture"]["verdict"] == "fail"
    assert "gpu_architecture" in (pytester.path / "r.html").read_text()


def _single_engine_wired() -> bool:
    from pytest_engineparity.config import ParityConfig

    return "single_engine" in getattr(ParityConfig, "__dataclass_fields__", {})


@pytest.mark.slow
@pytest.mark.skipif(not _single_engine_wired(), reason="baseline-only mode (--engine-pair=ENGINE) is not wired into "
                                                        "config/session yet (see baseline.expand_single_engine)")
def test_baseline_only_mode_with_one_engine(pytester: pytest.Pytester) -> None:
    """The post-driver-update check: `pytest --parity-baseline=DIR suites/` with ONE engine, which
    is baselined as the candidate; the rollback suite skips (no separate reference)."""
    _setup(pytester)
    common = ["suites/test_compatibility.py", "suites/test_rollback_readiness.py", "--engine-config=engines.toml",
              "--parity-prompts=p.jsonl", "--parity-noise-floor=false", "--parity-baseline=bl",
              "--parity-min-equivalence=0.3", "-p", "no:cacheprovider", "-rs",
              "--parity-inconclusive=pass"]  # 3 prompts leave latency inconclusive: not a block here
    r = pytester.runpytest_subprocess("--engine-pair=current", *common, timeout=1500)
    r.stdout.fnmatch_lines(["*BaselineError: *candidate*baseline.json: no candidate baseline: record one with"
                            " --parity-baseline-update*"])
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r = pytester.runpytest_subprocess("--engine-pair=current", "--parity-baseline-update", *common, timeout=1500)
    assert r.ret == 0, r.stdout.str()[-3000:]
    assert sorted(p.name for p in (pytester.path / "bl").iterdir()) == ["candidate"]
    r = pytester.runpytest_subprocess("--engine-pair=current", "--parity-report=same.json", *common, timeout=1500)
    assert r.ret == 0, r.stdout.str()[-3000:]
    r.stdout.fnmatch_lines(["*baseline-only mode (one engine): no separate reference to roll back to*"])
    doc = _report(pytester.path / "same.json")
    assert _checks(doc, "staging-compile")["candidate baseline-outputs"]["verdict"] == "pass"
    # one worker: the candidate started once, no separate reference engine was started
    assert [e["starts"] for e in doc["engines"] if e["role"] == "candidate"][0] == 1
    assert not any(e["starts"] for e in doc["engines"] if e["role"] == "reference")
    r = pytester.runpytest_subprocess("--engine-pair=degraded", *common, timeout=1500)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.stdout.fnmatch_lines(["*candidate vs its baseline*", "*staging-compile*FAIL*"])
