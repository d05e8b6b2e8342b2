"""Baselines and engine-dir compatibility (pytest_engineparity.checks.baseline), on recorded data.

``tests/data/baseline-smollm2-hf-fp32.json`` and ``baseline-smollm2-hf-perturbed-0.15.json`` are
baseline files written by this module from one real run (see their ``_provenance``): the
embedded SmolLM2-135M-Instruct in transformers fp32 on the 30 built-in prompts, and the same
model with 15 % relative weight noise (a broken engine). Similarities come from the real packaged
sentence embedder. No engine starts here.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_engineparity.checks import baseline as bl
from pytest_engineparity.checks.baseline import (BaselineError, build_baseline, compare_baseline, engine_compatibility,
                                          engine_diff, expand_single_engine, fingerprint_diff, latency_verdicts,
                                          load_baseline, save_baseline, serving_packages)
from pytest_engineparity.checks.compare import EquivalencePolicy
from pytest_engineparity.config import ConfigError, ParityConfig
from pytest_engineparity.engines.base import EngineSpec
from pytest_engineparity.runtime.fingerprint import SIDECAR_FILE, write_sidecar
from pytest_engineparity.types import Completion

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
FP32 = DATA / "baseline-smollm2-hf-fp32.json"
PERTURBED = DATA / "baseline-smollm2-hf-perturbed-0.15.json"
ENGINE_CONFIG = DATA / "trtllm-engine-config-0.17.0.post1.json"
DOUBLE_DIR = HERE / "trtllm_double"


def h100() -> dict[str, Any]:
    fp = json.loads((DATA / "fingerprint-h100-trtllm-1.2.1.json").read_text())
    fp.pop("_provenance")
    return fp


def items_of(b: bl.Baseline) -> list:
    return [(b.requests[k], b.completions[k]) for k in b.requests]


@pytest.fixture(scope="module")
def fp32() -> bl.Baseline:
    return load_baseline(FP32)


@pytest.fixture(scope="module")
def perturbed() -> bl.Baseline:
    return load_baseline(PERTURBED)


# -- the file ----------------------------------------------------------------------------------


def test_recorded_baselines_load(fp32: bl.Baseline, perturbed: bl.Baseline) -> None:
    for b in (fp32, perturbed):
        assert len(b.requests) == 30 and set(b.requests) == set(b.completions)
        c = next(iter(b.completions.values()))
        assert c.ok and c.token_ids and c.logprobs and len(c.logprobs) == len(c.token_ids)
        assert c.timings.ttft is not None and c.timings.token_times
        assert b.fingerprint["schema_version"] == 1
    assert set(fp32.requests) == set(perturbed.requests)  # the same prompts, keyed alike
    assert fp32.engine["spec"]["args"].get("perturb_weights") is None
    assert perturbed.engine["spec"]["args"]["perturb_weights"] == 0.15


def test_save_load_round_trip(tmp_path: Path, fp32: bl.Baseline) -> None:
    doc = build_baseline("candidate", items_of(fp32), engine=fp32.engine, fingerprint=fp32.fingerprint,
                         settings={"max_tokens": 64})
    path = save_baseline(bl.baseline_path(tmp_path / "bl", "candidate"), doc)
    assert path == tmp_path / "bl" / "candidate" / "baseline.json"
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # shared with the team, not mkstemp's 0600
    back = load_baseline(path)
    assert back.doc == json.loads(json.dumps(doc))
    assert back.role == "candidate" and list(back.requests) == list(fp32.requests)
    for k, c in fp32.completions.items():
        assert back.completions[k].to_dict() == c.to_dict()
        assert back.requests[k] == fp32.requests[k]
    for metric in ("ttft", "tpot", "e2e"):
        assert back.samples(metric) == fp32.samples(metric) and len(back.samples(metric)) == 30


# -- comparing outputs -------------------------------------------------------------------------


def test_unchanged_outputs_pass(fp32: bl.Baseline) -> None:
    comp = compare_baseline(fp32, items_of(fp32), engine=fp32.engine, fingerprint=fp32.fingerprint)
    assert comp.outputs_passed and comp.rate.passed
    assert comp.n_exact == 30 and comp.rate.n == 30 and comp.rate.lower_bound >= 0.90
    assert comp.missing == [] and comp.unused == 0
    assert comp.fingerprint_changes == [] and comp.engine_changes == []
    assert comp.latency_verdict != "fail"
    assert "30/30 equivalent" in comp.headline()


def test_changed_outputs_fail_with_a_diff(fp32: bl.Baseline, perturbed: bl.Baseline) -> None:
    comp = compare_baseline(fp32, items_of(perturbed), engine=perturbed.engine, fingerprint=fp32.fingerprint)
    assert not comp.outputs_passed and not comp.rate.passed
    assert comp.rate.n == 30 and comp.rate.n_equivalent < 15
    hard = [d for d in comp.prompts if d.hard]
    assert hard, "a 15 % weight perturbation must put tokens outside the baseline's top-5"
    text = comp.explain_outputs()
    first_bad = next(d for d in comp.prompts if not d.comparison.equivalent)
    assert first_bad.label in text
    assert "first divergence at token" in text and "    baseline | " in text and "    now      | " in text
    assert "top-5 logprobs" in text and "lower bound" in text
    # what changed in the engine is named
    assert "spec.args.perturb_weights none → 0.15" in comp.engine_changes
    assert "engine since the baseline: " in text and "perturb_weights none → 0.15" in text


def test_one_changed_prompt_fails_the_suite_gate(fp32: bl.Baseline, perturbed: bl.Baseline) -> None:
    """29 of the 30 prompts unchanged, one from the broken engine: 29/30 has a 95 % lower bound
    below 0.90, so the gate fails, and that prompt alone is hard evidence."""
    keys = list(fp32.requests)
    now = [(fp32.requests[k], (perturbed if k == keys[4] else fp32).completions[k]) for k in keys]
    comp = compare_baseline(fp32, now)
    assert comp.rate.n_equivalent == 29 and not comp.rate.passed
    bad = [d for d in comp.prompts if not d.comparison.equivalent]
    assert [d.key for d in bad] == [keys[4]] and bad[0].hard
    assert comp.diff(keys[0]) is not None and not comp.diff(keys[0]).hard  # type: ignore[union-attr]
    assert "29/30 equivalent" in comp.explain_outputs()


def test_missing_and_unused_prompts(fp32: bl.Baseline) -> None:
    items = items_of(fp32)
    extra_req = items[0][0].replace(max_tokens=7)  # another request: another key
    comp = compare_baseline(fp32, items[:10] + [(extra_req, items[0][1])], similarities=lambda p: [1.0] * len(p))
    assert comp.missing == [extra_req.label()] and comp.unused == 20
    assert not comp.outputs_passed
    assert "no baseline entry for" in comp.explain_outputs() and "--parity-baseline-update" in comp.explain_outputs()


def test_policy_is_honoured(fp32: bl.Baseline, perturbed: bl.Baseline) -> None:
    """The session's EquivalencePolicy decides: with top-k = 20 and similarity -1 the same pairs
    are judged by looser rules (more of them equivalent), never by hard-coded ones."""
    strict = compare_baseline(fp32, items_of(perturbed))
    loose = compare_baseline(fp32, items_of(perturbed),
                             policy=EquivalencePolicy(similarity_threshold=-1.0, top_k=None,
                                                      require_logprobs_close=False))
    assert loose.rate.n_equivalent > strict.rate.n_equivalent


# -- latency ---------------------------------------------------------------------------------------


def test_latency_of_one_batch_is_inconclusive_and_says_why(fp32: bl.Baseline) -> None:
    comp = compare_baseline(fp32, items_of(fp32))
    assert comp.latency_verdict == "inconclusive"
    ttft = comp.latency["ttft"]["p50"]
    assert ttft.verdict == "inconclusive" and "distinct value" in ttft.message
    assert "p95" in comp.latency["ttft"] and "needs at least 60" in comp.latency["ttft"]["p95"].message
    assert comp.latency_note and "inconclusive is expected" in comp.latency_note
    assert "ttft inconclusive" in comp.explain_latency()


def _with_e2e(c: Completion, e2e: float) -> Completion:
    d = c.to_dict()
    d["timings"] = {"ttft": e2e / 4, "e2e": e2e, "token_times": [e2e / 4 + i * e2e / 40 for i in range(4)],
                    "source": "client-stream"}
    return Completion.from_dict(d)


def test_latency_regression_fails_on_independent_samples(fp32: bl.Baseline) -> None:
    """Per-request latencies from separate requests (lognormal, seeded): a 1.6x slowdown fails;
    the same distribution drawn again does not."""
    cs = list(fp32.completions.values())
    rng = np.random.default_rng(7)
    base = [_with_e2e(c, float(x)) for c, x in zip(cs * 3, rng.lognormal(0.0, 0.25, 90))]
    same = [_with_e2e(c, float(x)) for c, x in zip(cs * 3, rng.lognormal(0.0, 0.25, 90))]
    slow = [_with_e2e(c, float(x) * 1.6) for c, x in zip(cs * 3, rng.lognormal(0.0, 0.25, 90))]
    v_slow, _ = latency_verdicts(base, slow, max_ratio=1.10)
    v_same, _ = latency_verdicts(base, same, max_ratio=1.10)
    assert v_slow["e2e"]["p50"].verdict == "fail" and "candidate is slower" in v_slow["e2e"]["p50"].message
    assert all(v.verdict != "fail" for st in v_same.values() for v in st.values())


# -- what changed on the machine -----------------------------------------------------------------------


def test_fingerprint_diff_text() -> None:
    old = h100()
    old["nvidia"].update(driver_version="550.54.15", cuda_driver_version="12.4")
    new = copy.deepcopy(old)
    new["nvidia"].update(driver_version="580.95.05", cuda_driver_version="13.0")
    new["packages"]["tensorrt_llm"] = "1.3.0"
    assert fingerprint_diff(old, new) == ["driver 550.54.15 → 580.95.05", "CUDA (driver API) 12.4 → 13.0",
                                          "tensorrt_llm 1.2.1 → 1.3.0"]
    assert fingerprint_diff(old, copy.deepcopy(old)) == []
    moved = copy.deepcopy(old)
    moved["gpus"][0]["uuid"] = "GPU-other"
    assert fingerprint_diff(old, moved) == ["GPU uuid(s) changed: other physical GPUs of the same model"]
    h200 = copy.deepcopy(old)
    h200["gpus"][0].update(name="NVIDIA H200", uuid="GPU-x")
    assert fingerprint_diff(old, h200) == ["GPUs 1× NVIDIA H100 80GB HBM3 (SM 9.0) → 1× NVIDIA H200 (SM 9.0)"]
    cpu = bl.machine_fingerprint()
    lines = fingerprint_diff(old, cpu)
    if not cpu["gpus"]:
        assert any(x.startswith("NVIDIA driver/NVML available yes → no") for x in lines)
        assert "driver 550.54.15 → none" in lines


def test_comparison_reports_the_fingerprint_diff(fp32: bl.Baseline) -> None:
    old = copy.deepcopy(fp32.fingerprint)
    old["nvidia"] = {"available": True, "driver_version": "550.54.15", "cuda_driver_version": "12.4"}
    new = copy.deepcopy(old)
    new["nvidia"]["driver_version"] = "580.95.05"
    doc = copy.deepcopy(fp32.doc)
    doc["fingerprint"] = old
    b = bl.Baseline(fp32.path, doc, fp32.requests, fp32.completions)
    comp = compare_baseline(b, items_of(fp32), fingerprint=new)
    assert comp.fingerprint_changes == ["driver 550.54.15 → 580.95.05"]
    assert "machine since the baseline: driver 550.54.15 → 580.95.05" in comp.changes_text()
    d = comp.to_dict()
    assert d["fingerprint_diff"] == ["driver 550.54.15 → 580.95.05"]
    json.dumps(d)
    html = bl.html_section({"baseline": {"roles": {"candidate": d}}})
    assert "driver 550.54.15 → 580.95.05" in html and "<script" not in html


def test_engine_diff_ignores_names_and_timeouts() -> None:
    a = {"name": "x", "spec": {"kind": "hf", "name": "x", "args": {"dtype": "float32"}, "start_timeout": 900},
         "info": {"version": "transformers 5.19.0"}}
    b = copy.deepcopy(a)
    b["name"] = b["spec"]["name"] = "y"
    b["spec"]["start_timeout"] = 5
    assert engine_diff(a, b) == []
    b["spec"]["args"]["dtype"] = "bfloat16"
    b["info"]["version"] = "transformers 5.20.0"
    assert engine_diff(a, b) == ["spec.args.dtype float32 → bfloat16", "info.version transformers 5.19.0 → transformers 5.20.0"]


# -- bad files -------------------------------------------------------------------------------------------


def test_corrupt_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "candidate" / "baseline.json"
    path.parent.mkdir()
    path.write_text(FP32.read_text()[:5000])  # cut mid-write by something that was not atomic
    with pytest.raises(BaselineError) as ei:
        load_baseline(path)
    assert str(path) in str(ei.value) and "corrupt" in str(ei.value) and "--parity-baseline-update" in str(ei.value)
    path.write_text('["not", "an", "object"]')
    with pytest.raises(BaselineError, match="must hold a JSON object"):
        load_baseline(path)
    path.write_text(json.dumps({"schema_version": 1, "verdict": "pass", "steps": []}))  # a parity report
    with pytest.raises(BaselineError, match="is not a pytest-engineparity baseline"):
        load_baseline(path)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BaselineError, match="cannot be read"):
        load_baseline(path)


def test_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    path = bl.baseline_path(tmp_path / "bl", "candidate")
    with pytest.raises(BaselineError) as ei:
        load_baseline(path)
    msg = str(ei.value)
    assert msg.startswith(str(path)) and f"--parity-baseline={tmp_path / 'bl'} --parity-baseline-update" in msg


@pytest.mark.parametrize("version, expected", [
    (2, "schema_version 2, newer than this pytest-engineparity understands (1): upgrade"),
    ("1", "has no integer 'schema_version' (found '1')"),
    (None, "has no integer 'schema_version' (found None)"),
    (0, "invalid schema_version 0"),
])
def test_wrong_schema_version_is_an_error(tmp_path: Path, version: Any, expected: str) -> None:
    doc = json.loads(FP32.read_text())
    if version is None:
        del doc["schema_version"]
    else:
        doc["schema_version"] = version
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError) as ei:
        load_baseline(path)
    assert str(path) in str(ei.value) and expected in str(ei.value)


def test_bad_entry_names_the_prompt(tmp_path: Path) -> None:
    doc = json.loads(FP32.read_text())
    doc["prompts"][3]["request"]["temperatur"] = 0.0
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError) as ei:
        load_baseline(path)
    assert f"prompts[3] ({doc['prompts'][3]['id']!r})" in str(ei.value) and "temperatur" in str(ei.value)
    doc = json.loads(FP32.read_text())
    doc["prompts"][0]["request"]["max_tokens"] = 5  # edited by hand: no longer the recorded request
    path.write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match=r"prompts\[0\].*does not match its request"):
        load_baseline(path)


# -- atomic writes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_interrupted_write_leaves_the_old_baseline(tmp_path: Path, fp32: bl.Baseline, perturbed: bl.Baseline,
                                                   monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    path = bl.baseline_path(tmp_path, "candidate")
    save_baseline(path, fp32.doc)
    before = path.read_bytes()

    def boom(*a: Any, **k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, where, boom)
    with pytest.raises(OSError, match="No space left"):
        save_baseline(path, perturbed.doc)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_baseline(path).doc == fp32.doc
    assert os.listdir(path.parent) == ["baseline.json"]  # no temp file left behind


_WRITER = r"""
import json, sys
from pytest_engineparity.checks.baseline import save_baseline
doc = json.loads(open(sys.argv[2]).read())
doc["written_by"] = sys.argv[3]
for i in range(int(sys.argv[4])):
    save_baseline(sys.argv[1], doc)
"""


def test_two_concurrent_writers_do_not_corrupt_it(tmp_path: Path, fp32: bl.Baseline) -> None:
    """Two processes rewrite the same baseline 15 times each while this one reads it: every read
    sees one whole, valid file, and the end state is one writer's document."""
    path = bl.baseline_path(tmp_path, "candidate")
    save_baseline(path, fp32.doc)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(src), f"writer-{n}", "15"])
             for n, src in enumerate((FP32, PERTURBED))]
    reads, writers_seen = 0, set()
    while any(p.poll() is None for p in procs) or reads == 0:
        b = load_baseline(path)  # raises BaselineError on a torn file
        writers_seen.add(b.doc["written_by"])
        reads += 1
        time.sleep(0.01)
    assert [p.wait() for p in procs] == [0, 0]
    final = load_baseline(path)
    assert final.doc["written_by"] in ("writer-0", "writer-1")
    expected = json.loads((FP32 if final.doc["written_by"] == "writer-0" else PERTURBED).read_text())
    assert final.doc["prompts"] == expected["prompts"]
    assert os.listdir(path.parent) == ["baseline.json"]
    assert reads > 1 and writers_seen <= {fp32.doc["written_by"], "writer-0", "writer-1"}


# -- engine-dir compatibility -------------------------------------------------------------------------------


def make_engine_dir(root: Path, *, version: str = "1.2.1", sidecar: Any = "h100", ranks: int = 1) -> Path:
    """The recorded engine config.json (builder version set to ``version``), one plan file per
    rank, and a build sidecar recorded on ``sidecar`` (a fingerprint, "h100", or None)."""
    root.mkdir(parents=True)
    cfg = json.loads(ENGINE_CONFIG.read_text())
    cfg["version"] = version
    (root / "config.json").write_text(json.dumps(cfg))
    for r in range(ranks):
        (root / f"rank{r}.engine").write_bytes(b"\0" * 64)
    if sidecar is not None:
        write_sidecar(root, h100() if sidecar == "h100" else sidecar)
    return root


def trt_spec(path: Path) -> EngineSpec:
    return EngineSpec(kind="trtllm", target=str(path), name="compiled")


def by_name(res: bl.EngineCompatibility) -> dict[str, Any]:
    return {f.name: f for f in res.findings}


def test_same_machine_is_compatible(tmp_path: Path) -> None:
    res = engine_compatibility(trt_spec(make_engine_dir(tmp_path / "e")), "candidate", serve=h100())
    assert res.verdict == "pass", res.explain()
    assert res.summary and res.summary["architecture"] == "Qwen2ForCausalLM" and res.summary["dtype"] == "bfloat16"
    assert res.sidecar and res.sidecar["present"] and res.driver_changed is None
    json.dumps(res.to_dict())


def test_other_sm_requires_a_rebuild(tmp_path: Path) -> None:
    serve = h100()
    serve["gpus"][0].update(name="NVIDIA B200", compute_capability="10.0")
    res = engine_compatibility(trt_spec(make_engine_dir(tmp_path / "e")), "candidate", serve=serve)
    f = by_name(res)["gpu_architecture"]
    assert res.verdict == "fail" and f.verdict == "fail" and "rebuild required" in f.detail
    assert "SM 9.0" in f.detail and "SM 10.0" in f.detail
    assert "FAIL gpu_architecture" in res.explain()


@pytest.mark.parametrize("package, label", [("tensorrt_llm", "TensorRT-LLM"), ("tensorrt", "TensorRT")])
def test_other_tensorrt_version_requires_a_rebuild(tmp_path: Path, package: str, label: str) -> None:
    serve = h100()
    serve["packages"][package] = "9.9.9"
    res = engine_compatibility(trt_spec(make_engine_dir(tmp_path / "e")), "candidate", serve=serve)
    f = by_name(res)[f"{package}_version"]
    assert f.verdict == "fail" and "rebuild required" in f.detail and "→ 9.9.9" in f.detail and label in f.detail
    assert res.verdict == "fail"


def test_older_driver_fails(tmp_path: Path) -> None:
    serve = h100()
    serve["nvidia"]["driver_version"] = "575.51.03"
    res = engine_compatibility(trt_spec(make_engine_dir(tmp_path / "e")), "candidate", serve=serve)
    found = by_name(res)
    assert found["driver_version"].verdict == "fail" and "older than the build machine's 580.159.04" in found["driver_version"].detail
    assert found["driver_minimum"].verdict == "fail" and "580.65.06" in found["driver_minimum"].detail  # CUDA 13 minimum


def test_newer_driver_warns_and_asks_for_a_baseline(tmp_path: Path) -> None:
    build = h100()
    build["nvidia"]["driver_version"] = "580.65.06"
    res = engine_compatibility(trt_spec(make_engine_dir(tmp_path / "e", sidecar=build)), "candidate", serve=h100())
    f = by_name(res)["driver_version"]
    assert res.verdict == "warn" and f.verdict == "warn"
    assert res.driver_changed == "driver changed 580.65.06 → 580.159.04: compare against a baseline"


def test_without_sidecar_says_what_cannot_be_checked(tmp_path: Path) -> None:
    root = make_engine_dir(tmp_path / "e", sidecar=None)
    serve = h100()
    serve["nvidia"]["driver_version"] = "570.10.01"  # below the CUDA 13 minimum: checkable without a sidecar
    res = engine_compatibility(trt_spec(root), "candidate", serve=serve)
    found = by_name(res)
    assert res.sidecar == {"path": str(root / SIDECAR_FILE), "present": False, "written_at": None, "written_by": None}
    assert found["sidecar"].verdict == "warn" and "missing" in found["sidecar"].detail
    unchecked = found["unchecked"].detail
    for what in ("GPU architecture", "TensorRT version", "driver change", f"engineparity fingerprint --engine-dir {root}"):
        assert what in unchecked
    assert found["driver_minimum"].verdict == "fail"
    assert found["engine_builder_version"].verdict == "pass"  # config.json version vs installed: no sidecar needed


def test_broken_engine_dirs_fail_naming_the_file(tmp_path: Path) -> None:
    root = make_engine_dir(tmp_path / "two-ranks", sidecar=None)
    cfg = json.loads((root / "config.json").read_text())
    cfg["pretrained_config"]["mapping"].update(world_size=2, tp_size=2)
    (root / "config.json").write_text(json.dumps(cfg))
    write_sidecar(root, h100())
    res = engine_compatibility(trt_spec(root), "candidate", serve=h100())
    assert by_name(res)["rank_files"].verdict == "fail" and "rank1.engine" in by_name(res)["rank_files"].detail

    corrupt = make_engine_dir(tmp_path / "corrupt-sidecar")
    (corrupt / SIDECAR_FILE).write_text("{")
    res = engine_compatibility(trt_spec(corrupt), "candidate", serve=h100())
    assert res.verdict == "fail" and str(corrupt / SIDECAR_FILE) in by_name(res)["sidecar"].detail

    res = engine_compatibility(trt_spec(tmp_path / "nowhere"), "candidate", serve=h100())
    assert res.verdict == "fail" and "does not exist" in by_name(res)["engine_dir"].detail


def test_engines_that_are_not_engine_dirs_skip_with_a_reason(tmp_path: Path) -> None:
    res = engine_compatibility(EngineSpec(kind="vllm", target="/models/x", name="current"), "reference")
    assert res.verdict == "skip" and "'current' is a vllm engine, not a TensorRT-LLM engine directory" in res.skip_reason
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    res = engine_compatibility(trt_spec(ckpt), "candidate")
    assert res.verdict == "skip" and "checkpoint (PyTorch backend)" in res.skip_reason  # type: ignore[operator]
    assert engine_compatibility(EngineSpec(kind="openai", target="http://h:8000/v1"), "candidate").skip_reason


def test_serving_packages_come_from_the_engine_interpreter(tmp_path: Path) -> None:
    """The engine's worker environment (here: PYTHONPATH to the tensorrt_llm contract double,
    which has no distribution metadata) decides the TensorRT-LLM version, not the pytest process."""
    spec = EngineSpec(kind="trtllm", target=str(tmp_path), env={"PYTHONPATH": str(DOUBLE_DIR)})
    pk, where = serving_packages(spec)
    assert pk["tensorrt_llm"] == "1.2.1" and "no distribution metadata" in pk["tensorrt_llm_distribution"]
    assert sys.executable in where
    assert bl._packages_here()["tensorrt_llm"] is None  # not in this interpreter
    with pytest.raises(RuntimeError, match="/nonexistent/python"):
        serving_packages(EngineSpec(kind="trtllm", python="/nonexistent/python"))


def test_compatibility_uses_the_engine_interpreter(tmp_path: Path) -> None:
    """End to end on this machine: the double says TensorRT-LLM 1.2.1, the engine was built by
    0.17.0.post1 -> rebuild required; NVML and the sidecar's machine decide the rest."""
    root = make_engine_dir(tmp_path / "e", version="0.17.0.post1")
    spec = EngineSpec(kind="trtllm", target=str(root), env={"PYTHONPATH": str(DOUBLE_DIR)})
    res = engine_compatibility(spec, "candidate")
    f = by_name(res)["engine_builder_version"]
    assert f.verdict == "fail" and "0.17.0.post1" in f.detail and "1.2.1" in f.detail
    assert res.packages_from and "engine's interpreter" in res.packages_from


# -- baseline-only mode ---------------------------------------------------------------------------------------


def test_expand_single_engine() -> None:
    assert expand_single_engine("vllm,hf", None) == ("vllm,hf", False)
    assert expand_single_engine("trtllm:/e", "bl") == ("trtllm:/e,trtllm:/e", True)
    with pytest.raises(ConfigError, match=r"expected REF,CAND .*one engine alone needs --parity-baseline=DIR"):
        expand_single_engine("trtllm:/e", None)


def test_single_engine_session_is_detected() -> None:
    from pytest_engineparity.session import ParitySession

    cfg = ParityConfig(engine_pair=(EngineSpec(kind="hf", name="a"), EngineSpec(kind="hf", name="b")))
    s = ParitySession(cfg)
    assert not bl.is_single_engine(s)
    s.reference = s.candidate  # what the session does in baseline-only mode
    assert bl.is_single_engine(s)
    cfg.single_engine = True  # type: ignore[attr-defined]
    assert bl.is_single_engine(ParitySession(cfg))


# -- the EnginePair mixin: a newer driver requires a baseline comparison ---------------------------------------


def _pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **cfg_kw: Any) -> tuple[Any, list]:
    """An EnginePair on a real ParitySession (no engine is started by these checks) whose
    candidate is an engine dir built on driver 580.65.06, served on an H100 with 580.159.04."""
    from pytest_engineparity.pair import EnginePair
    from pytest_engineparity.session import ParitySession

    build = h100()
    build["nvidia"]["driver_version"] = "580.65.06"
    eng = make_engine_dir(tmp_path / "engine", sidecar=build)
    monkeypatch.setattr(bl, "machine_fingerprint", h100)  # the serving machine
    cfg = ParityConfig(engine_pair=(EngineSpec(kind="vllm", target="/models/x", name="current"), trt_spec(eng)),
                       **cfg_kw)
    recorded: list = []
    return EnginePair(ParitySession(cfg), lambda *a: recorded.append(a)), recorded


def test_newer_driver_without_baseline_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_engineparity.session import ParityMismatch

    pair, recorded = _pair(tmp_path, monkeypatch)
    assert pair.engine_dir_compatibility("reference").skip_reason
    res = pair.assert_engine_dir_compatible("candidate")  # loads: warn only
    assert res.verdict == "warn"
    assert ("candidate driver_version", "warn") in [(r[0], r[1]) for r in recorded]
    with pytest.raises(ParityMismatch, match=r"driver changed since the engine was built .*580\.65\.06 → 580\.159\.04.*"
                                             r"--parity-baseline=DIR"):
        pair.assert_driver_change_compared()
    assert recorded[-1][:2] == ("baseline-after-driver-change", "fail")
    section = pair._s.sections["baseline"]["compatibility"]
    assert section["candidate"]["verdict"] == "warn" and section["candidate"]["summary"]["architecture"]


@pytest.mark.parametrize("recorded_on, verdict", [("550.54.15", "pass"), ("580.159.04", "warn"), (None, "fail")])
def test_newer_driver_with_a_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fp32: bl.Baseline,
                                      recorded_on: Any, verdict: str) -> None:
    from pytest_engineparity.session import ParityMismatch

    pair, recorded = _pair(tmp_path, monkeypatch, baseline=str(tmp_path / "bl"))
    if recorded_on is not None:
        fp = h100()
        fp["nvidia"]["driver_version"] = recorded_on
        save_baseline(bl.baseline_path(tmp_path / "bl", "candidate"),
                      build_baseline("candidate", items_of(fp32), engine=fp32.engine, fingerprint=fp))
        pair.assert_driver_change_compared()
    else:
        with pytest.raises(ParityMismatch, match="no usable baseline to compare with"):
            pair.assert_driver_change_compared()
    name, v, detail, _ = recorded[-1]
    assert name == "baseline-after-driver-change" and v == verdict
    if recorded_on == "550.54.15":
        assert "recorded on driver 550.54.15, now 580.159.04" in detail
    if recorded_on == "580.159.04":
        assert "recorded on this driver (580.159.04) already" in detail


def test_newer_driver_while_updating_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair, recorded = _pair(tmp_path, monkeypatch, baseline=str(tmp_path / "bl"), baseline_update=True)
    assert pair.assert_driver_change_compared() == ["driver changed 580.65.06 → 580.159.04: compare against a baseline"]
    assert recorded[-1][:2] == ("baseline-after-driver-change", "warn")
