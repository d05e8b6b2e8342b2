"""Driver/engine compatibility and saved baselines: the post-driver-update check.

Two questions, asked of the same machine at different times:

* **Will this compiled engine load and behave here?** (``engine_compatibility``) For each engine of
  the pair whose spec is a TensorRT-LLM engine directory, read its ``config.json`` and its build
  sidecar (``engineparity-build.json``, written by ``engineparity fingerprint --engine-dir``) and
  compare them with the serving machine: SM or TensorRT / TensorRT-LLM version changed -> rebuild
  required (fail); driver older than the build, or below the minimum for the CUDA major -> fail;
  driver newer -> warn, and a baseline comparison is required. The serving machine's package
  versions are read from the interpreter the engine's worker will run (``python =``), not from the
  pytest process.
* **Does this engine still answer as it did?** (``save_baseline`` / ``load_baseline`` /
  ``compare_baseline``) ``--parity-baseline=DIR`` saves one engine's per-prompt outputs (text,
  token ids, top logprobs), per-request latency (TTFT, TPOT, end-to-end) and the machine
  fingerprint; a later run compares against it with the same layered equivalence as an engine
  pair (``compare.compare_pair`` + ``semantic.SemanticScorer``, the session's policy, then the
  suite-level ``stats.equivalence_rate_verdict``), latency with ``stats.regression_verdict``, and
  shows what changed on the machine ("driver 550.54.15 → 580.95.05").

Layout of DIR (one file per role)::

    DIR/candidate/baseline.json   the candidate: the engine being migrated to (staging-compile step)
    DIR/reference/baseline.json   the reference: the old engine, kept as the rollback target (cutover)

With one engine (baseline-only mode) that engine is the candidate. ``--parity-baseline-update``
rewrites a role's file from this run's prompts (syrupy-style): without it, a missing file is a
failure that says how to create it. Writes are atomic (temp file + ``os.replace``): a crash
mid-write leaves the previous baseline intact, and two runs writing at once leave one complete
file. Files carry ``"schema_version"``; a corrupt, foreign or newer file is a ``BaselineError``
naming it.

Plain module: no pytest import, no engine import. ``BaselineChecks`` is the ``EnginePair`` mixin
the suites call (``suites/test_compatibility.py``, ``suites/test_rollback_readiness.py``).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from ..runtime.files import atomic_write_text, read_json_object
from .compare import EquivalencePolicy, PairComparison, compare_pair, render_divergence
from ..engines.enginedir import CONFIG_FILE, EngineDirError, inspect_engine_dir
from ..runtime.fingerprint import (SIDECAR_FILE, Finding, SidecarError, check_engine_dir, compare_fingerprints,
                          machine_fingerprint, read_sidecar, worst)
from ..types import Completion, GenerationRequest

if TYPE_CHECKING:  # scipy (stats) is imported only when a comparison runs
    from .context import CheckContext
    from .stats import EquivalenceRateVerdict, RegressionVerdict

__all__ = [
    "BASELINE_SCHEMA_VERSION",
    "BASELINE_FORMAT",
    "BASELINE_FILE",
    "ROLES",
    "LATENCY_METRICS",
    "LATENCY_STATS",
    "BaselineError",
    "Baseline",
    "PromptDiff",
    "BaselineComparison",
    "EngineCompatibility",
    "baseline_path",
    "build_baseline",
    "save_baseline",
    "load_baseline",
    "compare_baseline",
    "latency_verdicts",
    "fingerprint_diff",
    "engine_diff",
    "fingerprint_summary",
    "serving_packages",
    "engine_compatibility",
    "expand_single_engine",
    "is_single_engine",
    "BaselineChecks",
    "html_section",
]

BASELINE_SCHEMA_VERSION = 1
BASELINE_FORMAT = "engineparity-baseline"
BASELINE_FILE = "baseline.json"
ROLES = ("reference", "candidate")
LATENCY_METRICS = ("ttft", "tpot", "e2e")
# p50 is conclusive from 30 requests per run (the built-in suite); p95 needs 60 and says so
LATENCY_STATS = ("p50", "p95")
UPDATE_HINT = "--parity-baseline-update"

PathLike = Union[str, "os.PathLike[str]"]
Similarities = Callable[[list], list]  # list[(text_a, text_b)] -> list[float]


class BaselineError(ValueError):
    """A baseline file that is missing, corrupt, foreign or of an unknown schema; names the file."""

    def __init__(self, path: PathLike, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


# --------------------------------------------------------------------------------------------
# the file


def baseline_path(directory: PathLike, role: str) -> Path:
    """``DIR/<role>/baseline.json`` (role: "candidate" or "reference")."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return Path(directory) / role / BASELINE_FILE


def _latency_of(c: Completion) -> dict[str, Any]:
    t = c.timings
    return {"ttft": t.ttft, "tpot": t.tpot, "e2e": t.e2e, "source": t.source}


def _samples(completions: Sequence[Completion], metric: str) -> list[float]:
    """``metric`` (ttft, tpot, e2e) of each successful completion that has it, seconds."""
    out = []
    for c in completions:
        v = _latency_of(c).get(metric) if c.ok else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out


def _stored_completion(c: Completion) -> dict[str, Any]:
    d = c.to_dict()  # timings included: ttft, e2e, every token's time (tpot), their clock
    d.pop("warnings", None)
    return d


def build_baseline(role: str, items: Sequence[tuple[GenerationRequest, Completion]], *,
                   engine: dict[str, Any], fingerprint: dict[str, Any],
                   settings: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The JSON document of one role's baseline (see the module docstring)."""
    from .. import __version__

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return {
        "schema_version": BASELINE_SCHEMA_VERSION,
        "format": BASELINE_FORMAT,
        "role": role,
        "written_by": f"pytest-engineparity {__version__}",
        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "engine": engine,
        "fingerprint": fingerprint,
        "settings": dict(settings or {}),
        "prompts": [{"key": r.key(), "id": r.label(), "request": r.to_dict(),
                     "completion": _stored_completion(c)} for r, c in items],
    }


def save_baseline(path: PathLike, doc: dict[str, Any]) -> Path:
    """Write ``doc`` to ``path`` atomically: a temp file in the same directory, flushed and
    fsynced, then ``os.replace``. An error mid-write leaves the previous file as it was (and no
    temp file); two writers at once leave one complete file, the last one's."""
    text = json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n"
    return atomic_write_text(path, text)


@dataclass
class Baseline:
    """A loaded, validated baseline file."""

    path: str
    doc: dict[str, Any]
    requests: dict[str, GenerationRequest]  # key -> request, in file order
    completions: dict[str, Completion]  # key -> completion, with its timings

    @property
    def role(self) -> str:
        return str(self.doc["role"])

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.doc["fingerprint"]

    @property
    def engine(self) -> dict[str, Any]:
        return self.doc["engine"]

    @property
    def written_at(self) -> Optional[str]:
        return self.doc.get("written_at")

    def samples(self, metric: str, keys: Optional[Sequence[str]] = None) -> list[float]:
        """Latency samples of ``metric`` (ttft, tpot, e2e) over ``keys`` (default: all), seconds."""
        return _samples([self.completions[k] for k in (keys if keys is not None else list(self.completions))
                         if k in self.completions], metric)


def _upgrade(doc: dict[str, Any], version: int) -> dict[str, Any]:
    """Bring an older schema up to BASELINE_SCHEMA_VERSION (pytest-benchmark's normalize idea).
    Version 1 is the first: nothing to do yet."""
    return doc


def load_baseline(path: PathLike) -> Baseline:
    """Read and validate a baseline file. Raises ``BaselineError`` naming the file: missing (with
    how to create it), unreadable, not JSON, not a baseline, schema_version missing/newer, or an
    entry that does not parse (naming the entry)."""
    p = Path(path)
    if not p.exists():
        raise BaselineError(p, f"no baseline here: record one with {UPDATE_HINT} "
                               f"(pytest --parity-baseline={p.parent.parent} {UPDATE_HINT} ...)")
    doc = read_json_object(p, BaselineError, f"rewrite it with {UPDATE_HINT}")
    if doc.get("format") != BASELINE_FORMAT:
        raise BaselineError(p, f"is not a pytest-engineparity baseline (expected \"format\": "
                               f"\"{BASELINE_FORMAT}\", found {doc.get('format')!r})")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BaselineError(p, f"has no integer 'schema_version' (found {version!r})")
    if version > BASELINE_SCHEMA_VERSION:
        raise BaselineError(p, f"has schema_version {version}, newer than this pytest-engineparity understands"
                               f" ({BASELINE_SCHEMA_VERSION}): upgrade pytest-engineparity, or rewrite the"
                               f" baseline with {UPDATE_HINT}")
    if version < 1:
        raise BaselineError(p, f"has invalid schema_version {version}")
    doc = _upgrade(doc, version)
    for key, typ in (("role", str), ("engine", dict), ("fingerprint", dict), ("prompts", list)):
        if not isinstance(doc.get(key), typ):
            raise BaselineError(p, f"'{key}' must be a {typ.__name__} (found {type(doc.get(key)).__name__})")
    if doc["role"] not in ROLES:
        raise BaselineError(p, f"'role' must be one of {ROLES}, found {doc['role']!r}")
    requests: dict[str, GenerationRequest] = {}
    completions: dict[str, Completion] = {}
    for i, entry in enumerate(doc["prompts"]):
        where = f"prompts[{i}]" + (f" ({entry.get('id')!r})" if isinstance(entry, dict) and entry.get("id") else "")
        try:
            if not isinstance(entry, dict):
                raise ValueError(f"expected an object, found {type(entry).__name__}")
            req = GenerationRequest.from_dict(dict(entry["request"]))
            comp = Completion.from_dict(dict(entry["completion"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BaselineError(p, f"{where} is not a valid entry: {type(exc).__name__}: {exc}") from None
        k = req.key()
        if entry.get("key") not in (None, k):
            raise BaselineError(p, f"{where}: stored key {entry.get('key')!r} does not match its request"
                                   f" ({k}): the file was edited by hand; rewrite it with {UPDATE_HINT}")
        requests[k], completions[k] = req, comp
    return Baseline(str(p), doc, requests, completions)


# --------------------------------------------------------------------------------------------
# what changed on the machine and in the engine


def _fmt(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _gpus_text(fp: dict[str, Any]) -> str:
    gpus = fp.get("gpus") or []
    if not gpus:
        nv = fp.get("nvidia") or {}
        return "no NVIDIA GPU" if nv.get("available") is False or not nv else "no GPU listed"
    counts: dict[str, int] = {}
    for g in gpus:
        label = f"{g.get('name') or 'unknown GPU'} (SM {g.get('compute_capability') or '?'})"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n}× {label}" for label, n in counts.items())


def fingerprint_summary(fp: dict[str, Any]) -> str:
    """One line: GPUs, driver, CUDA, the engine packages."""
    nv = fp.get("nvidia") or {}
    parts = [_gpus_text(fp)]
    if nv.get("available"):
        parts.append(f"driver {_fmt(nv.get('driver_version'))}, CUDA {_fmt(nv.get('cuda_driver_version'))}")
    elif nv.get("reason"):
        parts.append(f"NVML: {nv['reason']}")
    pk = fp.get("packages") or {}
    parts.append(", ".join(f"{k} {v}" for k, v in pk.items() if v is not None and not k.endswith("_distribution")))
    return "; ".join(p for p in parts if p)


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two machine fingerprints, one line each, e.g.
    ``driver 550.54.15 → 580.95.05``. Empty when nothing that matters changed (GPU uuids are
    compared but reported only when nothing else about the GPUs changed)."""
    out: list[str] = []

    def ch(label: str, a: Any, b: Any) -> None:
        if a != b:
            out.append(f"{label} {_fmt(a)} → {_fmt(b)}")

    onv, nnv = old.get("nvidia") or {}, new.get("nvidia") or {}
    if bool(onv.get("available")) != bool(nnv.get("available")):
        out.append(f"NVIDIA driver/NVML available {_fmt(bool(onv.get('available')))} → "
                   f"{_fmt(bool(nnv.get('available')))}"
                   + (f" ({nnv.get('reason')})" if nnv.get("reason") else ""))
    ch("driver", onv.get("driver_version"), nnv.get("driver_version"))
    ch("CUDA (driver API)", onv.get("cuda_driver_version"), nnv.get("cuda_driver_version"))
    og, ng = _gpus_text(old), _gpus_text(new)
    if og != ng:
        out.append(f"GPUs {og} → {ng}")
    else:
        ou = [g.get("uuid") for g in old.get("gpus") or []]
        nu = [g.get("uuid") for g in new.get("gpus") or []]
        if ou != nu:
            out.append("GPU uuid(s) changed: other physical GPUs of the same model")
        ol = [g.get("nvlink_active_links") for g in old.get("gpus") or []]
        nl = [g.get("nvlink_active_links") for g in new.get("gpus") or []]
        ch("active NVLinks per GPU", ol, nl)

    def topo(fp: dict[str, Any]) -> list[str]:
        # one label per GPU pair (NV18, PHB, ...); fingerprints written before the label existed
        # get it from the same fields, so an old baseline does not read as a topology change
        from ..runtime.fingerprint import topology_link

        links = {g.get("index"): g.get("nvlink_active_links") for g in fp.get("gpus") or []}
        out = []
        for t in fp.get("topology") or []:
            pair = list(t.get("gpus") or [None, None]) + [None, None]
            label = t.get("link") or topology_link(t.get("nvlink_p2p"), t.get("common_ancestor"),
                                                   links.get(pair[0]), links.get(pair[1]))
            out.append(f"{t.get('gpus')}: {label}")
        return out

    if topo(old) != topo(new):
        out.append(f"GPU topology {'; '.join(topo(old)) or 'none'} → {'; '.join(topo(new)) or 'none'}")
    opk, npk = old.get("packages") or {}, new.get("packages") or {}
    for k in list(dict.fromkeys([*opk, *npk])):
        ch(k, opk.get(k), npk.get(k))
    ch("python", old.get("python"), new.get("python"))
    opl, npl = old.get("platform") or {}, new.get("platform") or {}
    ch("kernel", opl.get("release"), npl.get("release"))
    ch("libc", opl.get("libc"), npl.get("libc"))
    ch("machine", opl.get("machine"), npl.get("machine"))
    return out


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def engine_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed in the engine between the baseline and now (spec, version, limits, details),
    one line each, e.g. ``spec.args.perturb_weights none → 0.15``. ``name`` and timeouts are
    not compared."""
    skip = {"spec.name", "spec.start_timeout", "spec.request_timeout", "name"}
    a, b = _flat({"spec": old.get("spec"), "info": old.get("info")}), _flat({"spec": new.get("spec"), "info": new.get("info")})
    out = []
    for k in list(dict.fromkeys([*a, *b])):
        if k in skip:
            continue
        if a.get(k) != b.get(k):
            out.append(f"{k} {_fmt(a.get(k))} → {_fmt(b.get(k))}")
    return out


# --------------------------------------------------------------------------------------------
# comparing outputs and latency


@dataclass
class PromptDiff:
    """One prompt: the baseline's completion ("reference" side of compare_pair) against now."""

    key: str
    request: GenerationRequest
    baseline: Completion
    now: Completion
    comparison: PairComparison
    require_logprobs: bool = True  # the policy's require_logprobs_close

    @property
    def label(self) -> str:
        return self.request.label()

    @property
    def hard(self) -> bool:
        """Hard evidence of a change on this prompt alone (as ``EnginePair.assert_close``): one
        side errors (or both, differently), or a token outside the other's top-k before the fork,
        or a fork with no logprobs to judge it."""
        c, a, b = self.comparison, self.baseline, self.now
        both_rejected = not a.ok and not b.ok and c.equivalent
        return (a.ok != b.ok) or (not a.ok and not both_rejected) or bool(c.logprobs.failures) \
            or (not c.exact and not c.logprobs.available and a.ok and b.ok and self.require_logprobs)

    def explain(self) -> str:
        lines = render_divergence(self.label, self.baseline, self.now, self.comparison, "baseline", "now")
        if self.comparison.logprobs.failures:
            lines.append("  (in the top-k messages: reference = the baseline, candidate = now)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        c = self.comparison
        return {"key": self.key, "id": self.label, "exact": c.exact, "equivalent": c.equivalent,
                "divergence": c.divergence, "similarity": c.similarity, "reason": c.reason,
                "explain": "" if c.exact else self.explain()}


@dataclass
class BaselineComparison:
    """A run compared with a saved baseline: outputs, latency, machine and engine changes."""

    path: str
    role: str
    written_at: Optional[str]
    prompts: list  # list[PromptDiff], in this run's order
    missing: list  # labels of this run's prompts that have no baseline entry
    unused: int  # baseline entries this run did not send (e.g. deselected with -k)
    rate: EquivalenceRateVerdict
    latency: dict  # metric -> stat -> RegressionVerdict
    latency_note: Optional[str]
    fingerprint_changes: list  # list[str]
    engine_changes: list  # list[str]

    @property
    def n_exact(self) -> int:
        return sum(d.comparison.exact for d in self.prompts)

    @property
    def outputs_passed(self) -> bool:
        return self.rate.passed and not self.missing

    @property
    def latency_verdict(self) -> str:
        vs = [v.verdict for stats in self.latency.values() for v in stats.values()]
        if any(v == "fail" for v in vs):
            return "fail"
        if not vs or any(v == "inconclusive" for v in vs):
            return "inconclusive"
        return "pass"

    def diff(self, key: str) -> Optional[PromptDiff]:
        for d in self.prompts:
            if d.key == key:
                return d
        return None

    def headline(self) -> str:
        head = (f"{self.role} vs its baseline {self.path} (written {self.written_at or '?'}): "
                f"{self.rate.message}; exact {self.n_exact}/{len(self.prompts)}")
        if self.missing:
            head += f"; {len(self.missing)} prompt(s) have no baseline entry"
        return head

    def changes_text(self) -> str:
        fp = "; ".join(self.fingerprint_changes) if self.fingerprint_changes else "no change"
        eng = "; ".join(self.engine_changes) if self.engine_changes else "no change"
        return f"machine since the baseline: {fp}. engine since the baseline: {eng}."

    def explain_outputs(self, limit: int = 3) -> str:
        lines = [self.headline(), self.changes_text()]
        if self.missing:
            shown = ", ".join(self.missing[:5]) + (" ..." if len(self.missing) > 5 else "")
            lines.append(f"no baseline entry for: {shown} — record them with {UPDATE_HINT}")
        for d in [d for d in self.prompts if not d.comparison.equivalent][:limit]:
            lines.append("")
            lines.append(d.explain())
        return "\n".join(lines)

    def explain_latency(self) -> str:
        lines = [f"{self.role} latency vs its baseline {self.path}: {self.latency_verdict}"]
        for metric, stats in self.latency.items():
            for stat, v in stats.items():
                lines.append(f"  {metric} {v.verdict}: {v.message}")
        if self.latency_note:
            lines.append(f"  note: {self.latency_note}")
        lines.append(f"  {self.changes_text()}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "role": self.role, "mode": "compare", "baseline_written_at": self.written_at,
            "fingerprint_diff": list(self.fingerprint_changes), "engine_diff": list(self.engine_changes),
            "outputs": {"verdict": "pass" if self.outputs_passed else "fail", "n": len(self.prompts),
                        "n_exact": self.n_exact, "rate": self.rate.to_dict(), "missing": list(self.missing),
                        "unused": self.unused, "prompts": [d.to_dict() for d in self.prompts]},
            "latency": {"verdict": self.latency_verdict, "note": self.latency_note,
                        "metrics": {m: {s: v.to_dict() for s, v in st.items()} for m, st in self.latency.items()}},
        }


def _default_similarities(pairs: list) -> list:
    from .semantic import SemanticScorer

    return SemanticScorer().similarities(pairs)


def latency_verdicts(old: Sequence[Completion], new: Sequence[Completion], *, max_ratio: float = 1.10,
                     confidence: float = 0.95, seed: int = 0) -> tuple[dict, list]:
    """``regression_verdict(old, new)`` for TTFT, TPOT and end-to-end at p50 and p95, and notes.

    Honest about what the samples are: too few requests is ``inconclusive`` (p50 needs 30, p95
    60); samples that take few distinct values (the requests of one batch share a step clock, so
    their TTFT or end-to-end time is one measurement repeated) are ``inconclusive`` too, whatever
    the bootstrap says; different clocks (``Timings.source``) are noted.
    """
    from .stats import regression_verdict, step_clock_guard

    latency: dict[str, dict[str, RegressionVerdict]] = {}
    notes: list[str] = []
    for metric in LATENCY_METRICS:
        a, b = _samples(old, metric), _samples(new, metric)
        stats = {stat: regression_verdict(a, b, stat=stat, max_ratio=max_ratio, confidence=confidence, seed=seed)
                 for stat in LATENCY_STATS}
        for side, samples in (("baseline run", a), ("current run", b)):
            stats = {stat: step_clock_guard(v, samples, side, metric) for stat, v in stats.items()}
        latency[metric] = stats
    src_a = {c.timings.source for c in old if c.ok}
    src_b = {c.timings.source for c in new if c.ok}
    if src_a and src_b and src_a != src_b:
        notes.append(f"timings measured differently (baseline: {', '.join(sorted(src_a))}; now:"
                     f" {', '.join(sorted(src_b))}): the ratios compare different clocks")
    vs = [v for st in latency.values() for v in st.values()]
    if any(v.verdict == "inconclusive" for v in vs):
        n = min(len(_samples(old, "e2e")), len(_samples(new, "e2e")))
        notes.append(f"{n} request(s) per run: p50 needs 30 and p95 60 for a verdict, from independent"
                     " requests; inconclusive is expected on small prompt sets or one-batch timings")
    return latency, notes


def compare_baseline(baseline: Baseline, current: Sequence[tuple[GenerationRequest, Completion]], *,
                     engine: Optional[dict[str, Any]] = None, fingerprint: Optional[dict[str, Any]] = None,
                     policy: EquivalencePolicy = EquivalencePolicy(), min_rate: float = 0.90,
                     confidence: float = 0.95, max_ratio: float = 1.10,
                     similarities: Optional[Similarities] = None, seed: int = 0) -> BaselineComparison:
    """Compare this run's completions (``current``) with a loaded baseline.

    Outputs: each prompt with ``compare_pair(baseline, now, similarity, policy)`` (similarity from
    ``similarities``, default the packaged sentence embedder, computed once for every
    non-identical pair), then ``equivalence_rate_verdict`` over the prompts both have.
    Latency: ``regression_verdict(baseline, now)`` for TTFT, TPOT and end-to-end at p50 and p95,
    over requests that succeeded in both; too few requests is ``inconclusive`` and says so.
    """
    from .stats import equivalence_rate_verdict

    sims = similarities or _default_similarities
    matched: list[tuple[str, GenerationRequest, Completion, Completion]] = []
    missing: list[str] = []
    seen: set = set()
    for req, now in current:
        k = req.key()
        if k in seen:
            continue
        seen.add(k)
        if k in baseline.completions:
            matched.append((k, req, baseline.completions[k], now))
        else:
            missing.append(req.label())
    pairs, where = [], []
    for i, (_, _, a, b) in enumerate(matched):
        if a.ok and b.ok and (list(a.token_ids) != list(b.token_ids) or a.text != b.text):
            pairs.append((a.text, b.text))
            where.append(i)
    sim: dict[int, Optional[float]] = {}
    for i, (_, _, a, b) in enumerate(matched):
        sim[i] = 1.0 if (a.ok and b.ok and a.text == b.text) else None
    if pairs:
        for i, s in zip(where, sims(pairs)):
            sim[i] = float(s)
    diffs = [PromptDiff(k, req, a, b, compare_pair(a, b, sim[i], policy), policy.require_logprobs_close)
             for i, (k, req, a, b) in enumerate(matched)]
    n_eq = sum(d.comparison.equivalent for d in diffs)
    rate = equivalence_rate_verdict(n_eq, len(diffs), min_rate, confidence)

    # latency over requests that succeeded in both runs
    both = [d for d in diffs if d.baseline.ok and d.now.ok]
    latency, notes = latency_verdicts([d.baseline for d in both], [d.now for d in both], max_ratio=max_ratio,
                                      confidence=confidence, seed=seed)
    return BaselineComparison(
        path=baseline.path, role=baseline.role, written_at=baseline.written_at, prompts=diffs,
        missing=missing, unused=len(set(baseline.completions) - seen), rate=rate, latency=latency,
        latency_note="; ".join(notes) or None,
        fingerprint_changes=fingerprint_diff(baseline.fingerprint, fingerprint) if fingerprint is not None else [],
        engine_changes=engine_diff(baseline.engine, engine) if engine is not None else [],
    )


# --------------------------------------------------------------------------------------------
# compatibility of a TensorRT-LLM engine directory with this machine

def _packages_here() -> dict[str, Any]:
    """Package versions as the engine sees them, in this interpreter."""
    from ..runtime.probes import package_versions_here

    return package_versions_here()


def serving_packages(spec: Any, timeout: float = 120.0) -> tuple[dict[str, Any], str]:
    """(package versions, where they were read) of the interpreter the engine's worker runs.

    The pytest process when the spec names no other ``python`` and no ``PYTHONPATH``; otherwise
    that interpreter, with the worker's environment, asked through the worker protocol (a
    ``probe`` before any engine starts: nothing is loaded). Raises ``RuntimeError`` naming the
    interpreter when it cannot be queried.
    """
    env_extra = {str(k): str(v) for k, v in (getattr(spec, "env", None) or {}).items()}
    python = getattr(spec, "python", None)
    if not python and "PYTHONPATH" not in env_extra:
        return _packages_here(), f"this interpreter ({sys.executable})"
    from ..errors import EngineError
    from ..runtime.client import probe_interpreter

    exe = python or sys.executable
    try:
        return probe_interpreter(spec, "package_versions", timeout=timeout), f"the engine's interpreter ({exe})"
    except EngineError as exc:
        raise RuntimeError(f"cannot run the engine's interpreter {exe!r} to read its package versions: "
                           f"{exc.reason}") from None


@dataclass
class EngineCompatibility:
    """One engine of the pair checked against this machine (``skip_reason`` when not applicable)."""

    role: str
    engine: str
    engine_dir: Optional[str] = None
    skip_reason: Optional[str] = None
    summary: Optional[dict] = None  # enginedir.EngineDirInfo.to_dict(), trimmed
    sidecar: Optional[dict] = None  # {"path", "present", "written_at", "written_by"}
    packages_from: Optional[str] = None
    findings: list = field(default_factory=list)  # list[Finding]

    @property
    def verdict(self) -> str:
        if self.skip_reason:
            return "skip"
        return worst(self.findings)

    def finding(self, name: str) -> Optional[Finding]:
        for f in self.findings:
            if f.name == name:
                return f
        return None

    @property
    def driver_changed(self) -> Optional[str]:
        """The finding's text when the driver is newer than at build time (results may move)."""
        f = self.finding("driver_version")
        return f.detail if f is not None and f.verdict == "warn" and "→" in f.detail else None

    def explain(self) -> str:
        head = f"{self.role} engine {self.engine!r}, engine dir {self.engine_dir}: {self.verdict.upper()}"
        lines = [head]
        for f in sorted(self.findings, key=lambda f: {"fail": 0, "warn": 1, "pass": 2}[f.verdict]):
            lines.append(f"  {f.verdict.upper():4} {f.name}: {f.detail}")
        if self.packages_from:
            lines.append(f"  (serving package versions read from {self.packages_from})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "engine": self.engine, "engine_dir": self.engine_dir,
                "verdict": self.verdict, "skip_reason": self.skip_reason, "summary": self.summary,
                "sidecar": self.sidecar, "packages_from": self.packages_from,
                "findings": [f.to_dict() for f in self.findings]}


_SUMMARY_KEYS = ("builder_version", "architecture", "dtype", "quant_algo", "kv_cache_quant_algo", "tp_size",
                 "pp_size", "world_size", "max_input_len", "max_seq_len", "max_batch_size", "max_num_tokens",
                 "gather_generation_logits", "missing_rank_files", "has_tokenizer")


def engine_compatibility(spec: Any, role: str, serve: Optional[dict[str, Any]] = None,
                         packages: Optional[tuple[dict[str, Any], str]] = None) -> EngineCompatibility:
    """Check one engine spec against the serving machine ``serve`` (default: this machine, with
    the engine interpreter's package versions, see ``serving_packages``).

    Only a ``trtllm`` spec whose target is a TensorRT-LLM engine directory is checked; anything
    else comes back with ``skip_reason``. Never raises for a bad directory or sidecar: that is a
    ``fail`` finding naming the file.
    """
    label = getattr(spec, "label", None) or str(getattr(spec, "name", "engine"))
    kind = getattr(spec, "kind", None)
    target = getattr(spec, "target", None)
    res = EngineCompatibility(role=role, engine=label)
    caps = _capabilities(kind)
    if caps is None or not caps.compiled_engine_dir:
        res.skip_reason = (f"the {role} engine {label!r} is a {kind} engine, not a TensorRT-LLM engine directory:"
                           " nothing compiled to check against this machine")
        return res
    if not target or target == "<embedded>":
        res.skip_reason = (f"the {role} engine {label!r} (trtllm) has no engine directory (it loads a checkpoint"
                           " with the PyTorch backend): no compiled plan tied to the build machine")
        return res
    root = Path(str(target)).expanduser()
    res.engine_dir = str(root)
    cfg = root / CONFIG_FILE
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = None  # load_engine_config below names the problem
        if isinstance(data, dict) and "pretrained_config" not in data and "build_config" not in data:
            res.skip_reason = (f"the {role} engine {label!r} (trtllm) targets {str(root)!r}, a Hugging Face"
                               " checkpoint (PyTorch backend), not a compiled engine directory: no plan tied to"
                               " the build machine")
            return res
    try:
        info = inspect_engine_dir(root)
    except EngineDirError as exc:
        res.findings.append(Finding("engine_dir", "fail", str(exc)))
        return res
    d = info.to_dict()
    res.summary = {k: d.get(k) for k in _SUMMARY_KEYS}
    res.summary["engine_bytes"] = info.engine_bytes
    if info.missing_rank_files:
        res.findings.append(Finding("rank_files", "fail",
                                    f"{root} lacks {', '.join(info.missing_rank_files)} (config.json says"
                                    f" world_size={info.world_size}): the engine cannot load"))
    else:
        res.findings.append(Finding("rank_files", "pass", f"{len(info.rank_files)} rank plan(s) present,"
                                                           f" {info.engine_bytes} bytes"))
    if serve is None:
        serve = machine_fingerprint()
        try:
            pk, where = packages if packages is not None else serving_packages(spec)
        except RuntimeError as exc:
            res.findings.append(Finding("serving_packages", "warn", f"{exc}: TensorRT / TensorRT-LLM versions"
                                                                   " are those of the pytest process"))
        else:
            serve = {**serve, "packages": pk}
            res.packages_from = where
    sc_path = root / SIDECAR_FILE
    try:
        sidecar = read_sidecar(root)
    except SidecarError as exc:
        res.sidecar = {"path": str(sc_path), "present": True, "error": str(exc)}
        res.findings.append(Finding("sidecar", "fail", str(exc)))
        return res
    res.sidecar = {"path": str(sc_path), "present": sidecar is not None,
                   "written_at": (sidecar or {}).get("written_at"), "written_by": (sidecar or {}).get("written_by")}
    try:
        found = check_engine_dir(root, serve)
    except (EngineDirError, SidecarError) as exc:
        res.findings.append(Finding("engine_dir", "fail", str(exc)))
        return res
    res.findings.extend(found)
    if sidecar is None:
        # say what cannot be checked, and check what needs no build record
        res.findings.append(Finding(
            "unchecked", "warn",
            "without the build sidecar these cannot be checked: GPU architecture (SM) the plan was built for,"
            " TensorRT version, driver change since the build. Write it on the build machine right after"
            f" trtllm-build: engineparity fingerprint --engine-dir {root}"))
        res.findings.extend(f for f in compare_fingerprints({}, serve) if f.name == "driver_minimum")
    return res


# --------------------------------------------------------------------------------------------
# baseline-only mode (one engine)


from ..config import expand_single_engine  # noqa: E402,F401  (lives in config; re-exported)


def _capabilities(kind: Any) -> Any:
    try:
        from ..engines.registry import capabilities_of

        return capabilities_of(str(kind))
    except Exception:  # an unknown kind has nothing compiled to check
        return None


def is_single_engine(session: Any) -> bool:
    """Baseline-only mode: the session runs one engine (as the candidate)."""
    return bool(getattr(session.cfg, "single_engine", False)) or session.reference is session.candidate


# --------------------------------------------------------------------------------------------
# the EnginePair mixin


@dataclass
class _RoleState:
    mode: str  # "compare" | "update"
    path: Path
    comparison: Optional[BaselineComparison] = None
    written: Optional[dict] = None
    error: Optional[BaseException] = None


@dataclass
class _State:
    fingerprint: Optional[dict] = None
    compat: dict = field(default_factory=dict)  # role -> EngineCompatibility
    roles: dict = field(default_factory=dict)  # role -> _RoleState
    recorded: set = field(default_factory=set)  # checks recorded once per session




class BaselineChecks:
    """The baseline check family (``engine_pair.baseline``): compatibility of engine dirs with this machine, and baselines.

    Works through its ``CheckContext`` only; raises
    ``session.ParityMismatch`` with a message that explains itself.
    """


    name = "baseline"

    section = "baseline"  # the report section this family owns (JSON key; HTML by ``render_html``)

    def __init__(self, ctx: "CheckContext"):
        self._ctx = ctx

    @staticmethod
    def render_html(doc: Any) -> str:
        return html_section(doc)

    # -- shared state ---------------------------------------------------------------------
    def _bl_state(self) -> _State:
        return self._ctx.state("baseline", _State)

    def _bl_section(self) -> dict[str, Any]:
        return self._ctx.section("baseline", lambda: {})

    @property
    def single_engine(self) -> bool:
        """Baseline-only mode: one engine, run as the candidate."""
        return self._ctx.single_engine

    def _handle(self, role: str) -> Any:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return self._ctx.engine(role)

    # -- fingerprint ----------------------------------------------------------------------
    def machine_fingerprint(self) -> dict[str, Any]:
        """This machine's fingerprint, taken once per session."""
        st = self._bl_state()
        if st.fingerprint is None:
            st.fingerprint = machine_fingerprint()
        return st.fingerprint

    def record_machine_fingerprint(self) -> dict[str, Any]:
        """Take the fingerprint, check it is usable, and record it (check ``machine-fingerprint``)."""
        from ..errors import ParityMismatch

        fp = self.machine_fingerprint()
        missing = [k for k in ("schema_version", "nvidia", "gpus", "packages", "platform") if k not in fp]
        summary = fingerprint_summary(fp)
        self._bl_section()["fingerprint_summary"] = summary
        if missing:
            self._ctx.record("machine-fingerprint", "fail", f"fingerprint lacks {missing}", {})
            raise ParityMismatch(f"machine fingerprint lacks {missing}: {fp}")
        self._ctx.record("machine-fingerprint", "pass", summary,
                     {"gpus": len(fp.get("gpus") or []), "nvidia_available": bool((fp.get("nvidia") or {}).get("available"))})
        return fp

    # -- compatibility --------------------------------------------------------------------
    def engine_dir_compatibility(self, role: str) -> EngineCompatibility:
        """The role's engine checked against this machine (cached); ``skip_reason`` when it is not
        a TensorRT-LLM engine directory, or when one engine runs as both (checked as candidate)."""
        st = self._bl_state()
        if role not in st.compat:
            if role == "reference" and self.single_engine:
                res = EngineCompatibility(role, self._handle(role).name, skip_reason=(
                    "baseline-only mode: the one engine is checked as the candidate"))
            else:
                res = engine_compatibility(self._handle(role).spec, role)
            st.compat[role] = res
            self._bl_section().setdefault("compatibility", {})[role] = res.to_dict()
        return st.compat[role]

    def assert_engine_dir_compatible(self, role: str) -> EngineCompatibility:
        """Record every finding as a check ``<role> <finding>``; raise if any fails (rebuild
        required, driver too old, broken directory or sidecar). The caller skips on
        ``skip_reason``."""
        from ..errors import ParityMismatch

        res = self.engine_dir_compatibility(role)
        if res.skip_reason:
            return res
        for f in res.findings:
            self._ctx.record(f"{role} {f.name}", f.verdict, f.detail, {"engine_dir": res.engine_dir})
        if res.verdict == "fail":
            raise ParityMismatch("engine directory not compatible with this machine\n" + res.explain())
        return res

    def assert_driver_change_compared(self) -> list[str]:
        """A driver newer than at engine build time loads, but results may move: require a
        baseline comparison (``--parity-baseline=DIR``, compare mode) for each engine whose driver
        changed. Records ``baseline-after-driver-change``: fail without a baseline to compare
        with; warn when rewriting it (--parity-baseline-update) or when the baseline was itself
        recorded on this driver (it cannot show what the change did); pass when it was recorded
        on another driver. Returns the driver findings (empty: nothing to require)."""
        from ..errors import ParityMismatch

        changed = {r: c.driver_changed for r in ROLES
                   for c in [self.engine_dir_compatibility(r)] if not c.skip_reason and c.driver_changed}
        if not changed:
            return []
        what = "; ".join(f"{r}: {d}" for r, d in changed.items())
        mode = self.baseline_mode
        if mode is None:
            self._ctx.record("baseline-after-driver-change", "fail", f"{what}; no --parity-baseline given", {})
            raise ParityMismatch(
                f"the NVIDIA driver changed since the engine was built ({what}). The engine loads, but its"
                " outputs and latency may move: compare against a baseline saved before the update with"
                f" --parity-baseline=DIR (record one on the old driver with {UPDATE_HINT}).")
        if mode == "update":
            self._ctx.record("baseline-after-driver-change", "warn",
                         f"{what}; {UPDATE_HINT} rewrites the baseline on this driver instead of comparing", {})
            return list(changed.values())
        now = (self.machine_fingerprint().get("nvidia") or {}).get("driver_version")
        verdicts, notes, missing = [], [], []
        for role in changed:
            path = self.baseline_file(role)
            assert path is not None
            try:
                recorded = (load_baseline(path).fingerprint.get("nvidia") or {}).get("driver_version")
            except BaselineError as exc:
                missing.append(str(exc))
                continue
            if recorded == now:
                verdicts.append("warn")
                notes.append(f"the {role} baseline {path} was recorded on this driver ({now}) already: it cannot"
                             " show what the change since the build did")
            else:
                verdicts.append("pass")
                notes.append(f"the {role} baseline {path} was recorded on driver {_fmt(recorded)}, now {_fmt(now)}:"
                             " the baseline checks compare across the change")
        if missing:
            self._ctx.record("baseline-after-driver-change", "fail", f"{what}; " + "; ".join(missing), {})
            raise ParityMismatch(f"the NVIDIA driver changed since the engine was built ({what}), and there is no"
                                 " usable baseline to compare with:\n" + "\n".join(missing))
        self._ctx.record("baseline-after-driver-change", "warn" if "warn" in verdicts else "pass",
                     f"{what}; " + "; ".join(notes), {})
        return list(changed.values())

    # -- baselines ------------------------------------------------------------------------
    def baseline_dir(self) -> Optional[Path]:
        b = self._ctx.cfg.baseline
        return Path(b).expanduser().resolve() if b else None

    @property
    def baseline_mode(self) -> Optional[str]:
        """None (no --parity-baseline), "update" (--parity-baseline-update) or "compare"."""
        cfg = self._ctx.cfg
        if not cfg.baseline:
            return None
        return "update" if cfg.baseline_update else "compare"

    def baseline_file(self, role: str = "candidate") -> Optional[Path]:
        d = self.baseline_dir()
        return baseline_path(d, role) if d is not None else None

    def _role_items(self, role: str) -> list[tuple[GenerationRequest, Completion]]:
        results = self._ctx.suite_results()  # runs every declared request once per engine
        side = "reference" if role == "reference" else "candidate"
        return [(r.request, getattr(r, side)) for r in results]

    def _engine_desc(self, role: str) -> dict[str, Any]:
        h = self._handle(role)
        return {"name": h.name, "spec": h.spec.public_dict(), "info": h.info.to_dict() if h.info else None}

    def baseline_state(self, role: str = "candidate") -> _RoleState:
        """Write (``--parity-baseline-update``) or load-and-compare the role's baseline, once per
        session. Raises ``BaselineError`` (missing, corrupt, foreign, newer schema), every time
        it is asked."""
        st = self._bl_state()
        rs = st.roles.get(role)
        if rs is None:
            cfg = self._ctx.cfg
            path = self.baseline_file(role)
            if path is None:
                raise ValueError("no --parity-baseline=DIR given")
            rs = _RoleState("update" if cfg.baseline_update else "compare", path)
            st.roles[role] = rs
            try:
                self._run_baseline(role, rs)
            except Exception as exc:  # cached: every baseline test of this role fails with it, fast
                rs.error = exc
        if rs.error is not None:
            raise rs.error
        return rs

    def _run_baseline(self, role: str, rs: _RoleState) -> None:
        cfg = self._ctx.cfg
        section = self._bl_section()
        section["dir"] = str(rs.path.parent.parent)
        roles = section.setdefault("roles", {})
        if rs.mode == "update":
            items = self._role_items(role)
            doc = build_baseline(role, items, engine=self._engine_desc(role), fingerprint=self.machine_fingerprint(),
                                 settings={"max_tokens": cfg.max_tokens, "seed": cfg.seed})
            save_baseline(rs.path, doc)
            rs.written = {"path": str(rs.path), "role": role, "mode": "update", "prompts": len(items),
                          "written_at": doc["written_at"], "fingerprint_summary": fingerprint_summary(doc["fingerprint"])}
            roles[role] = rs.written
            return
        if not rs.path.exists():
            roles[role] = {"path": str(rs.path), "role": role, "mode": "compare", "error": "missing"}
            raise BaselineError(rs.path, f"no {role} baseline: record one with {UPDATE_HINT} (pytest"
                                         f" --parity-baseline={rs.path.parent.parent} {UPDATE_HINT} ...)")
        try:
            base = load_baseline(rs.path)
        except BaselineError as exc:
            roles[role] = {"path": str(rs.path), "role": role, "mode": "compare", "error": str(exc)}
            raise
        if base.role != role:
            raise BaselineError(rs.path, f"holds the {base.role} baseline, expected the {role}'s")
        items = self._role_items(role)
        rs.comparison = compare_baseline(
            base, items, engine=self._engine_desc(role), fingerprint=self.machine_fingerprint(),
            policy=self._ctx.policy, min_rate=cfg.min_equivalence, confidence=cfg.confidence,
            max_ratio=cfg.max_slowdown, similarities=self._similarities, seed=cfg.seed)
        roles[role] = rs.comparison.to_dict()

    def _similarities(self, pairs: list) -> list:
        """The session's scorer (one model per process, its time counted in the report)."""
        session_sims = self._ctx.similarities
        return session_sims(pairs) if session_sims is not None else _default_similarities(pairs)

    def _record_changes(self, role: str, comp: BaselineComparison) -> None:
        st = self._bl_state()
        if ("changes", role) in st.recorded:
            return
        st.recorded.add(("changes", role))
        v = "warn" if comp.fingerprint_changes else "pass"
        self._ctx.record(f"{role} baseline-fingerprint", v,
                     "; ".join(comp.fingerprint_changes) or f"same machine facts as the baseline of {comp.written_at}",
                     {"changes": list(comp.fingerprint_changes), "engine_changes": list(comp.engine_changes)})

    def assert_prompt_matches_baseline(self, request: GenerationRequest, role: str = "candidate") -> Optional[PromptDiff]:
        """This prompt against the role's baseline: fails on hard evidence only (an error on one
        side, a token outside the other's top-k before the fork, no baseline entry). Whether forks
        stay rare is ``assert_matches_baseline``. Returns None while the baseline is rewritten."""
        from ..errors import ParityMismatch

        rs = self.baseline_state(role)
        if rs.mode == "update":
            return None
        comp = rs.comparison
        assert comp is not None
        d = comp.diff(request.key())
        if d is None:
            raise ParityMismatch(f"{request.label()}: no entry in the {role} baseline {comp.path}: record it"
                                 f" with {UPDATE_HINT}")
        if d.hard:
            raise ParityMismatch(f"{role} output changed since its baseline ({comp.written_at})\n{d.explain()}\n"
                                 + comp.changes_text())
        return d

    def assert_matches_baseline(self, role: str = "candidate") -> Optional[BaselineComparison]:
        """Suite-level: the equivalence rate of this run against the role's saved baseline must
        pass ``equivalence_rate_verdict`` (--parity-min-equivalence at --parity-confidence), and
        every prompt must have a baseline entry. Records ``<role> baseline-outputs`` and the
        machine/engine changes. With --parity-baseline-update, writes the baseline instead."""
        from ..errors import ParityMismatch

        rs = self.baseline_state(role)
        if rs.mode == "update":
            assert rs.written is not None
            self._ctx.record(f"{role} baseline-written", "pass",
                         f"wrote {rs.written['path']} ({rs.written['prompts']} prompts) on"
                         f" {rs.written['fingerprint_summary']}", {"prompts": rs.written["prompts"]})
            return None
        comp = rs.comparison
        assert comp is not None
        self._record_changes(role, comp)
        numbers = {**comp.rate.to_dict(), "n_exact": comp.n_exact, "missing": len(comp.missing),
                   "unused": comp.unused, "fingerprint_diff": comp.fingerprint_changes}
        detail = comp.headline() + ("; machine: " + "; ".join(comp.fingerprint_changes) if comp.fingerprint_changes else "")
        self._ctx.record(f"{role} baseline-outputs", "pass" if comp.outputs_passed else "fail", detail, numbers)
        if not comp.outputs_passed:
            raise ParityMismatch(comp.explain_outputs())
        return comp

    def assert_latency_matches_baseline(self, role: str = "candidate") -> Optional[BaselineComparison]:
        """Latency of this run against the baseline's (TTFT, TPOT, end-to-end; p50, p95): fails
        only when a bootstrap CI of now/baseline lies wholly above --parity-max-slowdown;
        inconclusive (small samples) is recorded as such and does not fail."""
        from ..errors import ParityMismatch

        rs = self.baseline_state(role)
        if rs.mode == "update":
            return None
        comp = rs.comparison
        assert comp is not None
        v = comp.latency_verdict
        msgs = [f"{m} {s}: {x.message}" for m, st in comp.latency.items() for s, x in st.items()]
        detail = "; ".join(msgs[:3]) + (f" ({comp.latency_note})" if comp.latency_note else "")
        self._ctx.record(f"{role} baseline-latency", v, detail,
                     {m: {s: x.to_dict() for s, x in st.items()} for m, st in comp.latency.items()})
        if v == "fail":
            raise ParityMismatch(comp.explain_latency())
        return comp

    def assert_still_answers(self, request: GenerationRequest, role: str = "reference") -> Completion:
        """The role's engine answered this request: a completion, or a rejection the other engine
        shares (same error type, e.g. an over-length prompt both refuse)."""
        from ..errors import ParityMismatch

        res = self._ctx.result(request, self._ctx.policy)
        mine = res.reference if role == "reference" else res.candidate
        other = res.candidate if role == "reference" else res.reference
        name = self._handle(role).name
        if mine.ok:
            return mine
        if not other.ok and other.error_type == mine.error_type:
            return mine
        raise ParityMismatch(f"{request.label()}: the {role} engine {name!r} did not answer: "
                             f"{mine.error_type or 'error'}: {mine.error}"
                             + ("" if other.ok else f" (the other engine failed differently: {other.error_type})"))


# --------------------------------------------------------------------------------------------
# HTML


def html_section(doc: dict[str, Any]) -> str:
    """The report's "baseline" section: compatibility findings, fingerprint, baseline comparisons."""
    sec = doc.get("baseline") or {}
    e = html.escape
    parts = ["<h2>Compatibility and baselines</h2>"]
    if sec.get("fingerprint_summary"):
        parts.append(f"<p>This machine: {e(str(sec['fingerprint_summary']))}</p>")
    for role, c in (sec.get("compatibility") or {}).items():
        if c.get("skip_reason"):
            parts.append(f"<p><b>{e(role)}</b>: {e(c['skip_reason'])}</p>")
            continue
        rows = "".join(f"<tr><td>{e(f['name'])}</td><td class='{e(f['verdict'])}'>{e(f['verdict'].upper())}</td>"
                       f"<td>{e(f['detail'])}</td></tr>" for f in c.get("findings") or [])
        summ = c.get("summary") or {}
        facts = ", ".join(f"{k}={v}" for k, v in summ.items() if v not in (None, [], {}))
        parts.append(f"<h3>{e(role)}: {e(str(c.get('engine')))} — {e(str(c.get('verdict', '')).upper())}</h3>"
                     f"<p>engine dir {e(str(c.get('engine_dir')))}; {e(facts)}</p>"
                     f"<table><tr><th>check</th><th>verdict</th><th>detail</th></tr>{rows}</table>")
    for role, r in (sec.get("roles") or {}).items():
        parts.append(f"<h3>{e(role)} baseline: {e(str(r.get('path')))}</h3>")
        if r.get("mode") == "update":
            parts.append(f"<p>written now ({e(str(r.get('prompts')))} prompts) on {e(str(r.get('fingerprint_summary')))}</p>")
            continue
        if r.get("error"):
            parts.append(f"<p class='fail'>{e(str(r['error']))}</p>")
            continue
        fpd = r.get("fingerprint_diff") or []
        engd = r.get("engine_diff") or []
        parts.append(f"<p>baseline written {e(str(r.get('baseline_written_at')))}. Machine changes: "
                     f"{e('; '.join(fpd) or 'none')}. Engine changes: {e('; '.join(engd) or 'none')}.</p>")
        out = r.get("outputs") or {}
        rate = out.get("rate") or {}
        parts.append(f"<p>outputs: <b>{e(str(out.get('verdict', '')).upper())}</b> — {e(str(rate.get('message', '')))};"
                     f" exact {e(str(out.get('n_exact')))}/{e(str(out.get('n')))}</p>")
        bad = [p for p in out.get("prompts") or [] if not p.get("equivalent") or not p.get("exact")]
        for p in bad[:20]:
            parts.append(f"<details><summary>{e(str(p.get('id')))}: {e(str(p.get('reason')))}</summary>"
                         f"<pre>{e(str(p.get('explain', '')))}</pre></details>")
        lat = r.get("latency") or {}
        rows = "".join(f"<tr><td>{e(m)}</td><td>{e(s)}</td><td>{e(v.get('verdict', ''))}</td><td>{e(v.get('message', ''))}</td></tr>"
                       for m, st in (lat.get("metrics") or {}).items() for s, v in st.items())
        parts.append(f"<p>latency: <b>{e(str(lat.get('verdict', '')).upper())}</b>"
                     f"{(' — ' + e(str(lat['note']))) if lat.get('note') else ''}</p>"
                     f"<table><tr><th>metric</th><th>stat</th><th>verdict</th><th>detail</th></tr>{rows}</table>")
    return "\n".join(parts)
